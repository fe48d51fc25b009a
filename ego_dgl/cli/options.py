"""Options several commands share: the training options (each with its help text), the
sweeps' options and the datasets folder."""

from __future__ import annotations

from pathlib import Path

import click

TRAIN_OPTION_HELP = {
    "model": "model or preset (egodgl models lists them): egogcn, egogcn-hard, egogcn-soft, gm, na, id-only, pop, lightgcn, ... [default: egogcn]",
    "dataset": "built-in name (ml100k, movielens, tiktok, synthetic, synthetic-tiny, ...) or a dataset folder [default: ml100k]",
    "mode": "EGO fusion: hard (threshold, Eq. 2) or soft (gates, Eq. 3-4) [default: hard]",
    "eps": "hard-mode importance threshold, usually in 0..1; allowed on purpose: > 1 fuses no edge (the same model as "
           "--fusion gm), < 0 fuses every edge [default: per dataset, 0.4 Movielens, 0.6 Tiktok]",
    "threshold": "hard mode: absolute (the paper's, s > eps) or relative (an extension, not the paper's: s * |N(v)| > eps, the weight against the uniform share) [default: absolute]",
    "gate": "soft-mode gate: scalar (the paper's) or vector (the authors' code) [default: scalar]",
    "layers-mm": "K, multimodal layers including the EGO layer [default: per dataset]",
    "layers-id": "L, LightGCN layers of the ID branch [default: per dataset]",
    "fusion": "ego, gm (graph merge, no modulation) or na (node alignment) [default: ego]",
    "branches": "id+mm, id (ID only) or mm (multimodal only) [default: id+mm]",
    "id-weights": "ID-branch edge weights: lightgcn or soft-pruning [default: lightgcn]",
    "epochs": "maximum number of epochs [default: 1000]",
    "patience": "stop after this many epochs without a better validation recall@10 [default: 20]",
    "batch-size": "BPR triples per batch [default: per dataset]",
    "lr": "Adam learning rate [default: per dataset]",
    "reg": "regulariser weight lambda [default: per dataset]",
    "dim": "embedding width D [default: per dataset, 64 for the paper's]",
    "seed": "random seed [default: 0]",
    "device": "auto, cpu, cuda or cuda:N [default: auto = cuda when available]",
    "backend": "graph backend: auto, dgl, dgl-udf (EGO as DGL edge functions, slower) or torch [default: auto]",
    "protocol": "full, or legacy (the authors' evaluator, labelled as such) [default: full]",
    "sampler": "full (every batch propagates the whole graph, the paper's) or neighbor (DGL blocks around the batch, EgoGCN only) [default: full]",
    "procs": "data-parallel training in this many processes on this machine (DDP: gloo on CPU, nccl on CUDA), each with its share of every epoch's batches of --batch-size; under torchrun leave it out (torchrun starts the processes) [default: 1]",
    "dist": "DistDGL: train on the partitions of this config (egodgl data partition writes OUT/<name>.json), started by egodgl dist-launch "
            "or DGL's tools/launch.py; --dataset defaults to the partitioned one and --sampler to neighbor",
    "fanouts": "--sampler neighbor: in-edges sampled per node and layer, comma-separated per layer or one for all; -1 takes every neighbour [default: 10]",
    "eval-chunk": "evaluate by exact layer-wise inference over chunks of this many nodes (EgoGCN; memory of one layer, not the whole "
                  "graph's propagation) [default: 0 = the whole graph at once]",
    "compile": "torch.compile the training step: off, default, or reduce-overhead (CUDA graphs on CUDA; on the CPU the same as "
               "default); the first step compiles (minutes on a CPU); full-graph training in one process only [default: off]",
    "log": "watch the run: tensorboard (event files in RUN/tensorboard) or mlflow (MLFLOW_TRACKING_URI, else sqlite RESULTS/mlflow.db): "
           "per-epoch loss, validation metrics, fused shares, seconds per phase, and the options [default: none]",
    "layers": "propagation layers of a baseline model (not EgoGCN: --layers-mm, --layers-id) [default: per model]",
}
TRAIN_OPTION_TYPES = {"eps": float, "layers-mm": int, "layers-id": int, "layers": int, "epochs": int, "patience": int,
                      "batch-size": int, "procs": int, "eval-chunk": int, "lr": float, "reg": float, "dim": int, "seed": int}


def training_options(names: list[str]):
    """Decorator adding the named training options, each defaulting to None (not given)."""

    def decorate(f):
        for name in reversed(names):
            f = click.option(f"--{name}", type=TRAIN_OPTION_TYPES.get(name, str), default=None, help=TRAIN_OPTION_HELP[name])(f)
        return f

    return decorate


SWEEP_OPTIONS = ["dataset", "epochs", "patience", "batch-size", "lr", "reg", "dim", "device", "backend", "protocol", "log"]


def sweep_options(f):
    """The options both sweeps share."""
    f = training_options(SWEEP_OPTIONS)(f)
    for option in reversed([
        click.option("--seeds", type=int, default=1, show_default=True, help="seeds per cell; the summary gives mean and std"),
        click.option("--seed", type=int, default=0, show_default=True, help="first seed"),
        click.option("--jobs", type=int, default=1, show_default=True, help="cells trained at once, each in a worker process with its share of the CPU threads"),
        click.option("--k-fixed", type=int, default=None, help="K while L varies (and for eps) [default: per dataset]"),
        click.option("--l-fixed", type=int, default=None, help="L while K varies (and for eps) [default: per dataset]"),
        click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the sweep goes to OUT/sweeps/<name> [default: results]"),
        click.option("--name", default=None, help="sweep folder name; rerunning with the same name skips finished cells [default: <kind>-<dataset>]"),
    ]):
        f = option(f)
    return f


DATASETS_ROOT = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of prepared datasets (default: $EGODGL_DATASETS or ./datasets).",
)
