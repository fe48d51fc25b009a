"""The `egodgl` command: a thin Click layer over functions the tests call too."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ego_dgl.errors import EgoDGLError, EgoDGLWarning, os_error_message

console = Console()
_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """EgoDGLWarning as one yellow line; other warnings as Python shows them."""
    if issubclass(category, EgoDGLWarning):
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def fail(message: str) -> None:
    """The one red error line, then exit code 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


class FriendlyGroup(click.Group):
    """Turns EgoDGLError, file-system errors and interruptions (Ctrl-C) into one red line
    and exit code 2, never a traceback or Click's "Aborted!"."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.simplefilter("always", EgoDGLWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except EgoDGLError as err:
                fail(str(err))
            except OSError as err:  # the file system's (full disk, read-only, a file in the way)
                fail(os_error_message(err))
            except (KeyboardInterrupt, click.exceptions.Abort):
                fail("interrupted; nothing half-written was left behind (a run that saved a checkpoint says how to resume it); "
                     "run the command again to start over")


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
    "backend": "graph backend: auto, dgl, dgl-udf (EGO as DGL edge functions, slower), torch or fused (fused C++ attention kernels, CPU) [default: auto]",
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
    if result is None:  # a launcher's rank other than 0: rank 0 reports
        return
    title = f"best epoch {result.best_epoch} of {result.epochs_run}"
    console.print(metrics_table(title, {"valid": result.valid, "test": result.test}, result.protocol))
    console.print(f"run folder: {escape(str(result.run_dir))}", highlight=False, soft_wrap=True)


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
@click.option("--eval-chunk", type=int, default=None, help=TRAIN_OPTION_HELP["eval-chunk"].replace("[default: 0", "[default: the run's; 0"))
def eval_command(run_dir, split, protocol, ks, as_json, device, out, eval_chunk) -> None:
    """Recompute the metrics of a run's best checkpoint (default: the most recent run)."""
    import json

    from ego_dgl.evaluate import protocol_label
    from ego_dgl.runs import latest_run, runs_root
    from ego_dgl.train.report import metrics_table
    from ego_dgl.train.loading import evaluate_run, load_run

    run = load_run(run_dir if run_dir is not None else latest_run(runs_root(out)), device)
    used = protocol or run.train_cfg.protocol
    results = evaluate_run(run, (split,) if split else ("valid", "test"), used, ks or None, eval_chunk)
    if as_json:
        payload = {"run": str(run.run_dir), "epoch": run.epoch, "protocol": used, "protocol_label": protocol_label(used), **results}
        click.echo(json.dumps(payload, indent=2))
    else:
        console.print(metrics_table(f"best checkpoint (epoch {run.epoch})", results, used))
        console.print(f"run folder: {escape(str(run.run_dir))}", highlight=False, soft_wrap=True)


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


@main.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["npy", "parquet"]), default="npy", show_default=True,
              help="npy: users.npy, items.npy, seen.npy, user_ids.txt, item_ids.txt; parquet: users.parquet, items.parquet")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder to write [default: RUN/export-<format>]")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
def export_command(run_dir, fmt, out, device) -> None:
    """The final user and item representations of a run's best checkpoint, with the raw
    ids, for serving with an ANN index (score = inner product)."""
    from ego_dgl.export import export_run

    folder = export_run(run_dir, out, fmt, device)
    console.print(f"exported to {folder}", highlight=False, soft_wrap=True, markup=False)


SWEEP_OPTIONS = ["dataset", "epochs", "patience", "batch-size", "lr", "reg", "dim", "device", "backend", "protocol"]


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


def run_sweep_command(kind: str, options: dict) -> None:
    from ego_dgl.sweeps import launch_sweep
    from ego_dgl.train.report import summary_table

    folder, summary = launch_sweep(kind, options)
    console.print(summary_table(f"sweep-{kind}: test metrics at the best validation epoch", summary))
    console.print(f"sweep folder: {escape(str(folder))} (cells.csv, summary.csv, sweep-{kind}.png)", highlight=False, soft_wrap=True)


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
@training_options(["threshold"])
def sweep_eps_command(**options) -> None:
    """Test metrics of EgoGCN-hard against the threshold eps, as in the paper's figure 3."""
    run_sweep_command("eps", options)


@main.command("compare")
@training_options(SWEEP_OPTIONS)
@click.option("--models", required=True, metavar="NAME,NAME,...",
              help="models or presets (egodgl models lists them), comma-separated; options after a name as +KEY=VALUE, "
                   "e.g. pop,lightgcn,egogcn-hard,egogcn-hard+threshold=relative+eps=2")
@click.option("--seeds", type=int, default=5, show_default=True, help="seeds per model, the same for every model (the paired test needs >= 2)")
@click.option("--seed", type=int, default=0, show_default=True, help="first seed")
@click.option("--jobs", type=int, default=1, show_default=True, help="cells trained at once, each in a worker process with its share of the CPU threads")
@click.option("--tune", multiple=True, metavar="KEY=V1,V2",
              help="repeatable: per model that has KEY free, try the values on the first seed, keep the best by validation recall@10")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the comparison goes to OUT/compare/<name> [default: results]")
@click.option("--name", default=None, help="comparison folder name; rerunning with the same name skips finished cells [default: <dataset>]")
@click.option("--finished-only", is_flag=True,
              help="train nothing: tabulate the cells finished so far (e.g. while a long study runs), each model over the seeds it has")
def compare_command(**options) -> None:
    """Train models side by side with the same seeds and tabulate them like the paper's
    Table 3: test P/R/NDCG@10 and @20 (mean ± std), the improvement of the best EgoGCN
    variant over the best baseline, and a paired test across seeds.

    A name is a model or preset with optional options: NAME+KEY=VALUE+KEY=VALUE (no
    quoting needed), e.g. lightgcn+layers=3 or egogcn-hard+threshold=relative+eps=2.
    Writes cells.csv, tuning.csv, summary.csv, paired.csv, table.md and compare.png;
    rerunning skips finished cells and resumes an interrupted one; --finished-only
    tabulates what has finished without training."""
    from ego_dgl.compare import launch_compare
    from ego_dgl.train.report import compare_table

    result = launch_compare(options)
    console.print(compare_table("compare: test figures at the best validation epoch", result.summary, result.paired))
    names = ("cells.csv", "tuning.csv", "summary.csv", "paired.csv", "table.md", "compare.png")
    files = ", ".join(n for n in names if (result.folder / n).exists())
    console.print(f"comparison folder: {result.folder} ({files})", highlight=False, soft_wrap=True)


@main.command("plot-embeddings")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--users", type=int, default=8, show_default=True, help="how many users to plot (each with at least 3 held-out items)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the user choice, the random items and t-SNE")
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True, help="the held-out items shown")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="the PNG; its .json and .csv go beside it [default: results/plots/embeddings-<split>-seed<S>.png]")
@click.option("--overwrite", is_flag=True, help="replace existing output files")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def plot_embeddings_command(runs, users, seed, split, out, overwrite, device) -> None:
    """t-SNE of a few users and their held-out items before and after propagation, one
    column per run (the paper's figure 5), with the distances as figures."""
    from rich.markup import escape

    from ego_dgl.embeddings import figure_rows, plot_embeddings
    from ego_dgl.train.report import embedding_table

    result = plot_embeddings(list(runs), users, seed, split, out, overwrite, device)
    title = f"{len(result.selection.users)} users and their {split} items (seed {seed}): users {result.selection.users}"
    console.print(embedding_table(title, figure_rows(result.runs), result.note))
    console.print(f"written: {escape(', '.join(str(p) for p in result.paths))}", highlight=False, soft_wrap=True)


@main.command("bench")
@click.option("--suite", "suites", multiple=True, default=("ml100k",), show_default=True,
              help="ml100k, models (every baseline beside EgoGCN-hard on ml100k), synthetic-tiktok, scaling (full-graph against "
                   "neighbour-sampled training on synthetic data at 1x-64x the ml100k edges), sampling (full against fanouts 10 and 5 on "
                   "ml100k and synthetic-tiktok), compile (the eager training step against --compile's) or synthetic-tiny; repeatable")
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
        for name, why in report["failed"].items():
            console.print(f"failed {escape(name)}: {escape(why)}", highlight=False, soft_wrap=True)
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
    (a built-in name or a folder in MMRec or GRCN layout), and its card when it has one."""
    from ego_dgl.data import load_dataset
    from ego_dgl.data.build import read_card
    from ego_dgl.data.report import card_table, summary_table

    from ego_dgl.data.registry import CACHED, datasets_root

    ds = load_dataset(dataset, root)
    folder = Path(root or datasets_root()) / dataset if dataset in CACHED else Path(dataset)
    card = read_card(folder) if folder.is_dir() else None
    if as_json:
        click.echo(json.dumps(ds.summary() | ({"card": card} if card else {}), indent=2))
    else:
        console.print(summary_table(ds))
        if card:
            console.print(card_table(card))


def _ratios(value: str) -> tuple[float, float, float]:
    """'8:1:1' or '0.8,0.1,0.1' as fractions summing to 1."""
    from ego_dgl.errors import ConfigError

    try:
        parts = [float(p) for p in value.replace(",", ":").split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise ConfigError(f"--ratios {value!r}: give three non-negative numbers, e.g. 8:1:1")
    return tuple(p / sum(parts) for p in parts)


@data.command("build")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--interactions", type=click.Path(dir_okay=False), required=True,
              help="Interactions table: .csv, .tsv, .parquet or RecBole .inter.")
@click.option("--items", type=click.Path(dir_okay=False), default=None, help="Item table (same types, or RecBole .item).")
@click.option("--user", default="user_id", show_default=True, help="User column of the interactions.")
@click.option("--item", default="item_id", show_default=True, help="Item column of the interactions (and of the item table).")
@click.option("--item-key", default=None, help="Item id column of the item table [default: --item].")
@click.option("--rating", default="rating", show_default=True, help="Rating column (read with --min-rating).")
@click.option("--time", "time_col", default="timestamp", show_default=True, help="Time column (read with --split temporal).")
@click.option("--title", default=None, help="Item-table column shown as the item's title by `egodgl recommend`.")
@click.option("--min-rating", type=float, default=None, help="Keep interactions rated at least this (implicit feedback).")
@click.option("--k-core", type=int, default=0, show_default=True, help="Drop users and items with fewer interactions, repeatedly.")
@click.option("--split", type=click.Choice(["random", "temporal"]), default="random", show_default=True,
              help="Per user: at random (seeded) or by time (the latest to valid and test).")
@click.option("--ratios", default="8:1:1", show_default=True, help="train:valid:test per user.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random split.")
@click.option("--text", multiple=True, metavar="NAME=COLS", help="Sentence embedding (all-MiniLM-L6-v2) of item-table columns; repeatable.")
@click.option("--categories", multiple=True, metavar="NAME=COL[:SEP]", help="Multi-hot of a column of SEP-separated categories (default '|'); repeatable.")
@click.option("--numbers", multiple=True, metavar="NAME=COLS", help="Standardised numeric columns; repeatable.")
@click.option("--embedding", multiple=True, metavar="NAME=FILE",
              help="Precomputed vectors keyed by raw item id: .parquet (id column + vector column) or .npy with FILE.ids.txt; repeatable.")
@click.option("--name", default=None, help="Dataset name [default: the interactions file's name].")
@click.option("--overwrite", is_flag=True, help="Replace OUT (atomically) if it exists.")
def data_build(out: Path, interactions, items, user, item, item_key, rating, time_col, title, min_rating, k_core, split,
               ratios, seed, text, categories, numbers, embedding, name, overwrite) -> None:
    """Build dataset OUT (MMRec layout plus card.json and README.md) from an interactions
    table and an item table; train on it with `egodgl train --dataset OUT`."""
    from ego_dgl.data.build import BuildConfig, build, check_config, check_destination, parse_modality, write_built
    from ego_dgl.data.progress import steps
    from ego_dgl.data.registry import datasets_root
    from ego_dgl.data.report import card_table
    from ego_dgl.data.text import cache_folder

    specs = tuple(parse_modality(kind, v) for kind, values in
                  (("text", text), ("categories", categories), ("numbers", numbers), ("embedding", embedding)) for v in values)
    cfg = BuildConfig(interactions=interactions, items=items, user=user, item=item, rating=rating, time=time_col,
                      item_key=item_key, title=title, min_rating=min_rating, k_core=k_core, split=split,
                      ratios=_ratios(ratios), seed=seed, modalities=specs, name=name or out.name)
    check_config(cfg)
    check_destination(out, overwrite)
    with steps(Console(stderr=True).is_terminal) as s:  # live bars only where someone watches
        built = build(cfg, s, cache_folder(datasets_root()))
        with s.step(f"writing {out}"):
            write_built(built, out, overwrite)
    console.print(card_table(built.card))
    console.print(f"wrote {out}; train on it with: egodgl train --dataset {out}", highlight=False, soft_wrap=True,
                  markup=False)


@data.command("convert")
@click.argument("src")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "layout", type=click.Choice(["mmrec", "grcn"]), required=True, help="Layout to write.")
@DATASETS_ROOT
@click.option("--overwrite", is_flag=True, help="Replace DST if it is a folder ego-dgl wrote (any other is refused).")
def data_convert(src: str, dst: Path, layout: str, root: Path | None, overwrite: bool) -> None:
    """Write dataset SRC (a name or a folder) into folder DST in the MMRec or GRCN layout."""
    from ego_dgl.data import load_dataset, write_grcn, write_mmrec
    from ego_dgl.data.files import check_separate

    if Path(src).is_dir():
        check_separate(Path(src), dst)
    ds = load_dataset(src, root)
    (write_mmrec if layout == "mmrec" else write_grcn)(ds, dst, overwrite=overwrite)
    console.print(f"wrote {escape(ds.name)} to {escape(str(dst))} ({layout} layout)", highlight=False)


@data.command("partition")
@click.argument("dataset")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--parts", type=int, required=True, help="Number of partitions (one per machine of the DistDGL job).")
@click.option("--method", type=click.Choice(["metis", "random"]), default="metis", show_default=True, help="How nodes are assigned to partitions.")
@DATASETS_ROOT
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a folder ego-dgl wrote (any other is refused).")
def data_partition(dataset: str, out: Path, parts: int, method: str, root: Path | None, overwrite: bool) -> None:
    """Cut DATASET's training graph (users, items, both edge directions) into DistDGL
    partitions in folder OUT; train on them with egodgl dist-launch ... -- train --dist OUT/<name>.json."""
    from ego_dgl.data import load_dataset
    from ego_dgl.dist.partition import partition_dataset
    from ego_dgl.train.launch import dataset_source

    if Path(dataset).is_dir():
        from ego_dgl.data.files import check_separate

        check_separate(Path(dataset), out)
    ds = load_dataset(dataset, root)
    config = partition_dataset(ds, dataset_source(dataset)["source"], out, parts, method, overwrite)
    console.print(f"wrote {parts} {method} partition(s) of {escape(ds.name)} to {escape(str(out))}; train on them with: "
                  f"egodgl dist-launch --parts-config {escape(str(config))} --trainers {parts} -- train", highlight=False, soft_wrap=True)


@main.command("dist-launch", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--parts-config", type=click.Path(dir_okay=False), required=True, help="The partition config, OUT/<name>.json of egodgl data partition.")
@click.option("--trainers", type=int, default=1, show_default=True, help="Trainer processes in all (a multiple of the partitions).")
@click.option("--servers", type=int, default=1, show_default=True, help="Graph server processes per partition.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def dist_launch_command(parts_config: str, trainers: int, servers: int, command: tuple[str, ...]) -> None:
    """Run a DistDGL training job on this machine: graph servers for every partition and
    the trainers, all on 127.0.0.1; COMMAND is a train command (after --), e.g.
    egodgl dist-launch --parts-config parts/tiny.json --trainers 2 -- train --epochs 5.
    On a cluster, run the same train command with DGL's tools/launch.py."""
    from ego_dgl.dist.launch import launch

    code = launch(parts_config, list(command), trainers, servers)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
