"""Options several commands share: the training options (each with its help text), the
sweeps' options and the datasets folder."""

from __future__ import annotations

from pathlib import Path

import click

from ego_dgl.cli.ranges import COUNT, POSITIVE, SEED

TRAIN_OPTION_HELP = {
    "model": "model or preset (egodgl models lists them): egogcn, egogcn-hard, egogcn-soft, gm, na, id-only, pop, lightgcn, ...",
    "dataset": "built-in name (ml100k, movielens, tiktok, synthetic, synthetic-tiny, ...) or a dataset folder",
    "mode": "EGO fusion: hard (threshold, Eq. 2) or soft (gates, Eq. 3-4)",
    "eps": "hard-mode importance threshold, usually in 0..1; allowed on purpose: > 1 fuses no edge (the same model as "
           "--fusion gm), < 0 fuses every edge",
    "threshold": "hard mode: absolute (the paper's, s > eps) or relative (an extension, not the paper's: s * |N(v)| > eps, the weight "
        "against the uniform share)",
    "gate": "soft-mode gate: scalar (the paper's) or vector (the authors' code)",
    "layers-mm": "K, multimodal layers including the EGO layer",
    "layers-id": "L, LightGCN layers of the ID branch",
    "fusion": "ego, gm (graph merge, no modulation) or na (node alignment)",
    "branches": "id+mm, id (ID only) or mm (multimodal only)",
    "id-weights": "ID-branch edge weights: lightgcn or soft-pruning",
    "epochs": "maximum number of epochs",
    "patience": "stop after this many epochs without a better validation recall@10 (recall@20 under --protocol mmrec)",
    "batch-size": "BPR triples per batch",
    "lr": "Adam learning rate",
    "reg": "regulariser weight lambda",
    "dim": "embedding width D",
    "seed": "random seed",
    "device": "auto, cpu, cuda or cuda:N",
    "backend": "graph backend: auto, dgl, dgl-udf (EGO as DGL edge functions, slower), torch or fused (fused C++ attention kernels, CPU)",
    "protocol": "full, legacy (the authors' evaluator, labelled as such) or mmrec (MMRec's: epoch by validation recall@20, "
        "cut-offs 5/10/20/50, patience 20, MMRec's overall and per-model defaults)",
    "sampler": "full (every batch propagates the whole graph, the paper's) or neighbor (DGL blocks around the batch, EgoGCN only)",
    "procs": "data-parallel training in this many processes on this machine (DDP: gloo on CPU, nccl on CUDA), each with its share of every "
        "epoch's batches of --batch-size; under torchrun leave it out (torchrun starts the processes)",
    "dist": "DistDGL: train on the partitions of this config (egodgl data partition writes OUT/<name>.json), started by egodgl dist-launch "
            "or DGL's tools/launch.py; --dataset defaults to the partitioned one and --sampler to neighbor",
    "fanouts": "--sampler neighbor: in-edges sampled per node and layer, comma-separated per layer or one for all; -1 takes every neighbour",
    "eval-chunk": "evaluate by exact layer-wise inference over chunks of this many nodes (EgoGCN; memory of one layer, not the whole "
                  "graph's propagation)",
    "compile": "torch.compile the training step: off, default, or reduce-overhead (CUDA graphs on CUDA; on the CPU the same as "
               "default); the first step compiles (minutes on a CPU); full-graph training in one process only",
    "log": "watch the run: tensorboard (event files in RUN/tensorboard) or mlflow (MLFLOW_TRACKING_URI, else sqlite RESULTS/mlflow.db): "
           "per-epoch loss, validation metrics, fused shares, seconds per phase, and the options",
    "layers": "propagation layers of a baseline model (not EgoGCN: --layers-mm, --layers-id)",
}
TRAIN_OPTION_TYPES = {"eps": float, "layers-mm": int, "layers-id": int, "layers": int, "epochs": int, "patience": int,
                      "batch-size": int, "procs": int, "eval-chunk": int, "lr": float, "reg": float, "dim": int, "seed": int}


class ConfigDefaultOption(click.Option):
    """A training option whose help ends with the default the configs give it
    (`train.defaults.shown_default`), read when help is shown: not restated here, and the
    configs (which import torch) stay unimported until then."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from ego_dgl.train.defaults import shown_default

        default = shown_default(self.name or "")
        record = super().get_help_record(ctx)
        return (record[0], f"{record[1]} [default: {default}]") if record and default is not None else record


def training_options(names: list[str]):
    """Decorator adding the named training options, each defaulting to None (not given)."""

    def decorate(f):
        for name in reversed(names):
            f = click.option(f"--{name}", cls=ConfigDefaultOption, type=TRAIN_OPTION_TYPES.get(name, str), default=None,
                             help=TRAIN_OPTION_HELP[name])(f)
        return f

    return decorate


SWEEP_OPTIONS = ["dataset", "epochs", "patience", "batch-size", "lr", "reg", "dim", "device", "backend", "protocol", "log"]


def sweep_options(f):
    """The options both sweeps share."""
    f = training_options(SWEEP_OPTIONS)(f)
    for option in reversed([
        click.option("--seeds", type=POSITIVE, default=1, show_default=True, help="seeds per cell; the summary gives mean and std"),
        click.option("--seed", type=SEED, default=0, show_default=True, help="first seed"),
        click.option("--jobs", type=POSITIVE, default=1, show_default=True,
            help="cells trained at once, each in a worker process with its share of the CPU threads"),
        click.option("--k-fixed", type=POSITIVE, default=None, help="K while L varies (and for eps) [default: per dataset]"),
        click.option("--l-fixed", type=COUNT, default=None, help="L while K varies (and for eps) [default: per dataset]"),
        click.option("--out", type=click.Path(file_okay=False), default=None,
            help="results folder; the sweep goes to OUT/sweeps/<name> [default: results]"),
        click.option("--name", default=None, help="sweep folder name; rerunning with the same name skips finished cells [default: <kind>-<dataset>]"),
    ]):
        f = option(f)
    return f


DATASETS_ROOT = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of prepared datasets (default: $EGODGL_DATASETS or ./datasets).",
)
