"""The `egodgl` command: a thin Click layer over functions the tests call too."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ego_dgl.errors import EgoDGLError, EgoDGLWarning

console = Console()
_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """EgoDGLWarning as one yellow line; other warnings as Python shows them."""
    if issubclass(category, EgoDGLWarning):
        Console(stderr=True).print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


class FriendlyGroup(click.Group):
    """Turns EgoDGLError into one red line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.simplefilter("always", EgoDGLWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except EgoDGLError as err:
                Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
                sys.exit(2)


@click.group(cls=FriendlyGroup)
@click.version_option(package_name="ego-dgl")
def main() -> None:
    """EgoGCN multimodal graph recommendation on DGL."""


# --- training, evaluation, sweeps and recommendations (issue 4). Heavy modules are
# imported inside the commands so `egodgl --help` stays fast.

TRAIN_OPTION_HELP = {
    "model": "model or preset (egodgl models lists them): egogcn, egogcn-hard, egogcn-soft, gm, na, id-only, pop, lightgcn, ... [default: egogcn]",
    "dataset": "built-in name (ml100k, movielens, tiktok, synthetic, synthetic-tiny, ...) or a dataset folder [default: ml100k]",
    "mode": "EGO fusion: hard (threshold, Eq. 2) or soft (gates, Eq. 3-4) [default: hard]",
    "eps": "hard-mode importance threshold [default: per dataset, 0.4 Movielens, 0.6 Tiktok]",
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
    "layers": "propagation layers of a baseline model (not EgoGCN: --layers-mm, --layers-id) [default: per model]",
}
TRAIN_OPTION_TYPES = {"eps": float, "layers-mm": int, "layers-id": int, "layers": int, "epochs": int, "patience": int,
                      "batch-size": int, "lr": float, "reg": float, "dim": int, "seed": int}


def training_options(names: list[str]):
    """Decorator adding the named training options, each defaulting to None (not given)."""

    def decorate(f):
        for name in reversed(names):
            f = click.option(f"--{name}", type=TRAIN_OPTION_TYPES.get(name, str), default=None, help=TRAIN_OPTION_HELP[name])(f)
        return f

    return decorate


@main.command("train")
@training_options(list(TRAIN_OPTION_HELP))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="any other option of the model, repeatable (egodgl models lists them)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or YAML file with the same options; the command line wins")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the run goes to OUT/runs/<run-id> [default: results]")
@click.option("--resume", type=click.Path(file_okay=False), default=None, help="continue the run in this folder from its last checkpoint")
def train_command(config_path, out, resume, params, **options) -> None:
    """Train EgoGCN, a variant or a baseline (--model) to early stopping; print the
    metrics of the best validation epoch."""
    from ego_dgl.config_file import load_config_file, merge_options, parse_params
    from ego_dgl.errors import ConfigError
    from ego_dgl.train.launch import resume_run, start_run
    from ego_dgl.train.report import metrics_table

    given = {**parse_params(params), **{k: v for k, v in options.items() if v is not None}}
    if resume is not None:
        if config_path is not None or out is not None:
            raise ConfigError("--resume continues a run with its saved options; drop --config and --out")
        result = resume_run(resume, given)
    else:
        result = start_run(merge_options(load_config_file(config_path) if config_path else {}, {**given, "out": out}))
    title = f"best epoch {result.best_epoch} of {result.epochs_run}"
    console.print(metrics_table(title, {"valid": result.valid, "test": result.test}, result.protocol))
    console.print(f"run folder: {result.run_dir}", highlight=False, soft_wrap=True)


@main.command("models")
def models_command() -> None:
    """The models and presets --model takes, with their options and defaults."""
    from ego_dgl.train.report import models_table

    console.print(models_table())


@main.command("eval")
@click.argument("run_dir", required=False, type=click.Path())
@click.option("--split", type=click.Choice(["valid", "test"]), default=None, help="one split [default: both]")
@click.option("--protocol", type=click.Choice(["full", "legacy"]), default=None, help="[default: the run's]")
@click.option("--k", "ks", type=int, multiple=True, help="cut-off, repeatable: --k 5 --k 10 [default: the run's]")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder to take the most recent run from [default: results]")
def eval_command(run_dir, split, protocol, ks, as_json, device, out) -> None:
    """Recompute the metrics of a run's best checkpoint (default: the most recent run)."""
    import json

    from ego_dgl.evaluate import protocol_label
    from ego_dgl.runs import latest_run, runs_root
    from ego_dgl.train.report import metrics_table
    from ego_dgl.train.loading import evaluate_run, load_run

    run = load_run(run_dir if run_dir is not None else latest_run(runs_root(out)), device)
    used = protocol or run.train_cfg.protocol
    results = evaluate_run(run, (split,) if split else ("valid", "test"), used, ks or None)
    if as_json:
        payload = {"run": str(run.run_dir), "epoch": run.epoch, "protocol": used, "protocol_label": protocol_label(used), **results}
        click.echo(json.dumps(payload, indent=2))
    else:
        console.print(metrics_table(f"best checkpoint (epoch {run.epoch})", results, used))
        console.print(f"run folder: {run.run_dir}", highlight=False, soft_wrap=True)


@main.command("recommend")
@click.argument("run_dir", type=click.Path())
@click.option("--user", type=int, required=True, help="user id (0-based, as in the dataset)")
@click.option("--k", type=int, default=10, show_default=True, help="how many items")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def recommend_command(run_dir, user, k, as_json, device) -> None:
    """The top items for a user from a run's best checkpoint (training items excluded)."""
    import json
    import os

    from ego_dgl.recommend import recommend
    from ego_dgl.train.report import recommend_table
    from ego_dgl.train.loading import load_run

    rows = recommend(load_run(run_dir, device), user, k)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        console.print(recommend_table(f"top {k} for user {user} ({os.path.basename(os.path.normpath(run_dir))})", rows))


SWEEP_OPTIONS = ["dataset", "epochs", "patience", "batch-size", "lr", "reg", "dim", "device", "backend", "protocol"]


def sweep_options(f):
    """The options both sweeps share."""
    f = training_options(SWEEP_OPTIONS)(f)
    for option in reversed([
        click.option("--seeds", type=int, default=1, show_default=True, help="seeds per cell; the summary gives mean and std"),
        click.option("--seed", type=int, default=0, show_default=True, help="first seed"),
        click.option("--k-fixed", type=int, default=None, help="K while L varies (and for eps) [default: per dataset]"),
        click.option("--l-fixed", type=int, default=None, help="L while K varies (and for eps) [default: per dataset]"),
        click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the sweep goes to OUT/sweeps/<name> [default: results]"),
        click.option("--name", default=None, help="sweep folder name; rerunning with the same name skips finished cells [default: <kind>-<dataset>]"),
    ]):
        f = option(f)
    return f


def run_sweep_command(kind: str, options: dict) -> None:
    from ego_dgl.sweeps import launch_sweep
    from ego_dgl.train.report import summary_table

    folder, summary = launch_sweep(kind, options)
    console.print(summary_table(f"sweep-{kind}: test metrics at the best validation epoch", summary))
    console.print(f"sweep folder: {folder} (cells.csv, summary.csv, sweep-{kind}.png)", highlight=False, soft_wrap=True)


@main.command("sweep-layers")
@sweep_options
@click.option("--fusions", default="ego,gm,na", show_default=True, help="variants, comma-separated: ego, gm, na")
@click.option("--k-values", default="1,2,3,4", show_default=True, help="K values (with L fixed)")
@click.option("--l-values", default="1,2,3", show_default=True, help="L values (with K fixed)")
def sweep_layers_command(**options) -> None:
    """Test metrics against K (L fixed) and L (K fixed) for EgoGCN, GM and NA, as in
    the paper's figure 4."""
    run_sweep_command("layers", options)


@main.command("sweep-eps")
@sweep_options
@click.option("--values", default="0.3,0.4,0.5,0.6,0.7", show_default=True, help="eps values")
def sweep_eps_command(**options) -> None:
    """Test metrics of EgoGCN-hard against the threshold eps, as in the paper's figure 3."""
    run_sweep_command("eps", options)


@main.command("bench")
@click.option("--suite", "suites", multiple=True, default=("ml100k",), show_default=True,
              help="ml100k, synthetic-tiktok, scaling (synthetic at 1x-8x the ml100k edges) or synthetic-tiny; repeatable")
@click.option("--repeats", type=int, default=3, show_default=True, help="repetitions per figure (the median is reported)")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads per case")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--batches", type=int, default=None, help="time this many batches and project the epoch [default: per suite]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/bench"), show_default=True,
              help="folder for <suite>.json, <suite>-cuda.json on CUDA (and scaling.png)")
def bench_command(suites, repeats, threads, device, batches, out) -> None:
    """Time training epochs phase by phase, full evaluation and peak memory; write JSON."""
    from ego_dgl.bench import report_path, report_table, run_suite

    for suite in suites:
        report = run_suite(suite, repeats, threads, device, out, batches)
        console.print(report_table(report))
        for key, value in report["ratios"].items():
            console.print(f"{key}: {value:.2f}x", highlight=False)
        for name, why in report["skipped"].items():
            console.print(f"skipped {escape(name)}: {escape(why)}", highlight=False, soft_wrap=True)
        console.print(f"written: {escape(str(report_path(out, suite, device)))}", highlight=False, soft_wrap=True)


DATASETS_ROOT = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of prepared datasets (default: $EGODGL_DATASETS or ./datasets).",
)


@main.group()
def data() -> None:
    """Prepare, inspect and convert datasets."""


@data.command("prepare")
@click.argument("name")
@DATASETS_ROOT
@click.option("--force", is_flag=True, help="Rebuild even when an up-to-date prepared copy exists.")
def data_prepare(name: str, root: Path | None, force: bool) -> None:
    """Prepare NAME (ml100k, synthetic-tiktok: built once into the datasets folder;
    other names and folders: loaded and checked) and show its summary."""
    from ego_dgl.data import load_dataset, prepare
    from ego_dgl.data.registry import CACHED
    from ego_dgl.data.report import summary_table

    if name in CACHED:
        prepare(name, root, progress=True, force=force)
    console.print(summary_table(load_dataset(name, root)))


@data.command("info")
@click.argument("dataset")
@DATASETS_ROOT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_info(dataset: str, root: Path | None, as_json: bool) -> None:
    """Users, items, interactions per split, density and modalities of DATASET
    (a built-in name or a folder in MMRec or GRCN layout)."""
    from ego_dgl.data import load_dataset
    from ego_dgl.data.report import summary_table

    ds = load_dataset(dataset, root)
    if as_json:
        click.echo(json.dumps(ds.summary(), indent=2))
    else:
        console.print(summary_table(ds))


@data.command("convert")
@click.argument("src")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "layout", type=click.Choice(["mmrec", "grcn"]), required=True, help="Layout to write.")
@DATASETS_ROOT
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def data_convert(src: str, dst: Path, layout: str, root: Path | None, overwrite: bool) -> None:
    """Write dataset SRC (a name or a folder) into folder DST in the MMRec or GRCN layout."""
    from ego_dgl.data import load_dataset, write_grcn, write_mmrec

    ds = load_dataset(src, root)
    (write_mmrec if layout == "mmrec" else write_grcn)(ds, dst, overwrite=overwrite)
    console.print(f"wrote {ds.name} to {dst} ({layout} layout)", highlight=False)


if __name__ == "__main__":
    main()
