"""Commands over many runs: the sweeps, compare, plot-embeddings and bench."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ego_dgl.cli.group import console, main
from ego_dgl.cli.options import SWEEP_OPTIONS, sweep_options, training_options
from ego_dgl.cli.ranges import COUNT, FINITE, POSITIVE, SEED, THREADS


def run_sweep_command(kind: str, options: dict) -> None:
    from ego_dgl.cli.tables import summary_table
    from ego_dgl.study.sweeps import launch_sweep

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
@click.option("--models", default="", metavar="NAME,NAME,...",
              help="models or presets (egodgl models lists them), comma-separated; options after a name as +KEY=VALUE, "
                   "e.g. pop,lightgcn,egogcn-hard,egogcn-hard+threshold=relative+eps=2")
@click.option("--params-from", "params_from", multiple=True, type=click.Path(file_okay=False), metavar="STUDY_FOLDER",
              help="repeatable: add the model of an egodgl tune study with its best trial's values (OUT/tune/<name>)")
@click.option("--seeds", type=int, default=5, show_default=True, help="seeds per model, the same for every model (the paired test needs >= 2)")
@click.option("--seed", type=SEED, default=0, show_default=True, help="first seed")
@click.option("--jobs", type=POSITIVE, default=1, show_default=True,
    help="cells trained at once, each in a worker process with its share of the CPU threads")
@click.option("--tune", multiple=True, metavar="KEY=V1,V2",
              help="repeatable: per model that has KEY free, try the values on the first seed, keep the best by validation recall@10")
@click.option("--out", type=click.Path(file_okay=False), default=None,
    help="results folder; the comparison goes to OUT/compare/<name> [default: results]")
@click.option("--name", default=None, help="comparison folder name; rerunning with the same name skips finished cells [default: <dataset>]")
@click.option("--finished-only", is_flag=True,
              help="train nothing: tabulate the cells finished so far (e.g. while a long study runs), each model over the seeds it has")
@click.option("--pair", "pairs", multiple=True, metavar="A:B",
              help="repeatable: also test model A against model B (names as the table prints them), paired across seeds; "
                   "to paired.csv and table.md")
def compare_command(params_from, **options) -> None:
    """Train models side by side with the same seeds and tabulate them like the paper's
    Table 3: test P/R/NDCG@10 and @20 (mean ± std), the improvement of the best EgoGCN
    variant over the best baseline, and a paired test across seeds.

    A name is a model or preset with optional options: NAME+KEY=VALUE+KEY=VALUE (no
    quoting needed), e.g. lightgcn+layers=3 or egogcn-hard+threshold=relative+eps=2.
    Writes cells.csv, tuning.csv, summary.csv, paired.csv, table.md and compare.png;
    rerunning skips finished cells and resumes an interrupted one; --finished-only
    tabulates what has finished without training."""
    from ego_dgl.cli.tables import compare_table
    from ego_dgl.study.compare import launch_compare
    from ego_dgl.study.tune import tuned_entry

    options["models"] = ",".join([options["models"], *(tuned_entry(f) for f in params_from)]).strip(",")
    result = launch_compare(options)
    console.print(compare_table("compare: test figures at the best validation epoch", result.summary, result.paired))
    names = ("cells.csv", "tuning.csv", "summary.csv", "paired.csv", "table.md", "compare.png")
    files = ", ".join(n for n in names if (result.folder / n).exists())
    console.print(f"comparison folder: {result.folder} ({files})", highlight=False, soft_wrap=True, markup=False)


@main.command("plot-embeddings")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--users", type=int, default=8, show_default=True, help="how many users to plot (each with at least 3 held-out items)")
@click.option("--seed", type=SEED, default=0, show_default=True, help="seed of the user choice, the random items and t-SNE")
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True, help="the held-out items shown")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="the PNG; its .json and .csv go beside it [default: results/plots/embeddings-<split>-seed<S>.png]")
@click.option("--overwrite", is_flag=True, help="replace existing output files")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def plot_embeddings_command(runs, users, seed, split, out, overwrite, device) -> None:
    """t-SNE of a few users and their held-out items before and after propagation, one
    column per run (the paper's figure 5), with the distances as figures."""
    from rich.markup import escape

    from ego_dgl.cli.tables import embedding_table
    from ego_dgl.study.embeddings import figure_rows, plot_embeddings

    result = plot_embeddings(list(runs), users, seed, split, out, overwrite, device)
    title = f"{len(result.selection.users)} users and their {split} items (seed {seed}): users {result.selection.users}"
    console.print(embedding_table(title, figure_rows(result.runs), result.note))
    console.print(f"written: {escape(', '.join(str(p) for p in result.paths))}", highlight=False, soft_wrap=True)


@main.command("bench")
@click.option("--suite", "suites", multiple=True, default=("ml100k",), show_default=True,
              help="ml100k, models (every baseline beside EgoGCN-hard on ml100k), synthetic-tiktok, scaling (full-graph against "
                   "neighbour-sampled training on synthetic data at 1x-64x the ml100k edges), sampling (full against fanouts 10 and 5 on "
                   "ml100k and synthetic-tiktok), compile (the eager training step against --compile's), knn (LATTICE's and "
                   "FREEDOM's kNN item graphs and first steps on synthetic-tiktok), crossover (dgl against fused as the node tables "
                   "grow, synthetic-x1 to x32) or synthetic-tiny; repeatable")
@click.option("--repeats", type=POSITIVE, default=3, show_default=True, help="repetitions per figure (the median is reported)")
@click.option("--threads", type=THREADS, default=2, show_default=True, help="CPU threads per case")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--batches", type=POSITIVE, default=None, help="time this many batches and project the epoch [default: per suite]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/bench"), show_default=True,
              help="folder for <suite>.json, <suite>-cuda.json on CUDA (and scaling.png)")
def bench_command(suites, repeats, threads, device, batches, out) -> None:
    """Time training epochs phase by phase, full evaluation and peak memory; write JSON."""
    from ego_dgl.study.bench import report_path, report_table, run_suite

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


@main.command("plot-sparsity")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for sparsity.csv and sparsity.png")
@click.option("--overwrite", is_flag=True, help="replace sparsity.csv and sparsity.png if OUT has them")
def plot_sparsity_command(folders, out, overwrite) -> None:
    """Test R@10 against the train fraction, one line per model, and EGO's fused shares
    per level, from compare FOLDERS on train-fraction variants (e.g. ml100k-train0.25)."""
    from ego_dgl.errors import ConfigError
    from ego_dgl.study.sparsity import write_sparsity

    if not overwrite and any((out / f).exists() for f in ("sparsity.csv", "sparsity.png")):
        raise ConfigError(f"{out} already holds sparsity.csv or sparsity.png; pass --overwrite or choose another --out")
    csv_path, png_path = write_sparsity(list(folders), out)
    console.print(f"wrote {escape(str(csv_path))} and {escape(str(png_path))}", highlight=False, soft_wrap=True)

@main.command("tune")
@click.option("--model", required=True, help="the model or preset to tune (egodgl models lists them)")
@training_options([*SWEEP_OPTIONS, "seed"])
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="fix any other option of the model (it is then not searched), repeatable")
@click.option("--trials", type=POSITIVE, default=20, show_default=True,
    help="finished trials (complete or pruned) the study should hold; a rerun with more adds trials")
@click.option("--timeout", type=FINITE, default=None, help="stop starting trials after this many minutes (per worker)")
@click.option("--jobs", type=POSITIVE, default=1, show_default=True,
    help="worker processes sharing the study, each with its share of the CPU threads")
@click.option("--space", type=click.Path(dir_okay=False), default=None,
              help="TOML/YAML search space replacing the model's: KEY = {low, high[, log]} or {choices = [...]}")
@click.option("--startup-trials", "startup", type=COUNT, default=5, show_default=True, help="finished trials before the pruner stops any")
@click.option("--warmup", type=COUNT, default=5, show_default=True, help="epochs of each trial before it may be pruned")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the study goes to OUT/tune/<name> [default: results]")
@click.option("--name", default=None, help="study folder name; rerunning with the same name continues the study [default: <model>-<dataset>]")
def tune_command(model, params, trials, timeout, jobs, space, startup, warmup, out, name, **options) -> None:
    """Search a model's hyper-parameters on Optuna (TPE, median pruning on validation
    recall@10 per epoch; never test) and write the best trial as a config file that
    train --config and compare --params-from take."""
    from ego_dgl.cli.tables import tune_table
    from ego_dgl.study.tune import launch_tune
    from ego_dgl.train.config_file import parse_params

    given = {**parse_params(params), **{k: v for k, v in options.items() if v is not None}}
    opts = {"model": model, "given": given, "trials": trials, "timeout": timeout, "jobs": jobs, "space": space, "startup": startup,
            "warmup": warmup, "out": out, "name": name}
    result = launch_tune(opts)
    console.print(tune_table(result))
    files = ", ".join(n for n in ("best.toml", "trials.csv", "trials.json", "history.png", "importance.png") if (result.folder / n).exists())
    console.print(f"study folder: {escape(str(result.folder))} ({files})", highlight=False, soft_wrap=True)
