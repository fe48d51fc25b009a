"""Commands on one run: train, models, eval, recommend, export."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from ego_dgl.cli.group import console, main
from ego_dgl.cli.options import TRAIN_OPTION_HELP, training_options
from ego_dgl.cli.ranges import COUNT, POSITIVE


@main.command("train")
@training_options(list(TRAIN_OPTION_HELP))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="any other option of the model, repeatable (egodgl models lists them)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or YAML file with the same options; the command line wins")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder; the run goes to OUT/runs/<run-id> [default: results]")
@click.option("--resume", type=click.Path(file_okay=False), default=None, help="continue the run in this folder from its last checkpoint")
def train_command(config_path, out, resume, params, **options) -> None:
    """Train EgoGCN, a variant or a baseline (--model) to early stopping; print the
    metrics of the best validation epoch."""
    from ego_dgl.cli.tables import metrics_table
    from ego_dgl.errors import ConfigError
    from ego_dgl.runner import resume_run, start_run
    from ego_dgl.train.config_file import load_config_file, merge_options, parse_params

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
    from ego_dgl.cli.tables import models_table

    console.print(models_table())


@main.command("eval")
@click.argument("run_dir", required=False, type=click.Path())
@click.option("--split", type=click.Choice(["valid", "test"]), default=None, help="one split [default: both]")
@click.option("--protocol", type=click.Choice(["full", "legacy", "mmrec"]), default=None, help="[default: the run's]")
@click.option("--k", "ks", type=POSITIVE, multiple=True, help="cut-off, repeatable: --k 5 --k 10 [default: the run's]")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="results folder to take the most recent run from [default: results]")
@click.option("--eval-chunk", type=COUNT, default=None, help=TRAIN_OPTION_HELP["eval-chunk"].replace("[default: 0", "[default: the run's; 0"))
@click.option("--by", type=click.Choice(["item-degree", "user-degree"]), default=None,
              help="metrics per quantile bucket of training degree, as a table, by-<view>-<split>.csv and .png in RUN_DIR "
                   "(RUN_DIR may also be a compare folder: every finished cell, averaged over seeds)")
@click.option("--bins", type=POSITIVE, default=5, show_default=True, help="quantile buckets for --by")
def eval_command(run_dir, split, protocol, ks, as_json, device, out, eval_chunk, by, bins) -> None:
    """Recompute the metrics of a run's best checkpoint (default: the most recent run)."""
    if by is not None:
        from ego_dgl.cli.tables import degree_command

        if protocol or ks or eval_chunk is not None:
            from ego_dgl.errors import ConfigError

            raise ConfigError("--by uses the run's own protocol and cut-offs; drop --protocol, --k and --eval-chunk")
        return degree_command(run_dir, out, split or "test", by, bins, device, as_json)

    from ego_dgl.cli.tables import metrics_table
    from ego_dgl.evaluate import protocol_label
    from ego_dgl.runs import latest_run, runs_root
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
@click.option("--user", type=COUNT, required=True, help="user id (0-based, as in the dataset)")
@click.option("--k", type=POSITIVE, default=10, show_default=True, help="how many items")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
def recommend_command(run_dir, user, k, as_json, device) -> None:
    """The top items for a user from a run's best checkpoint (training items excluded)."""
    import os

    from ego_dgl.cli.tables import recommend_table
    from ego_dgl.serve.recommend import recommend
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
    from ego_dgl.serve.export import export_run

    folder = export_run(run_dir, out, fmt, device)
    console.print(f"exported to {folder}", highlight=False, soft_wrap=True, markup=False)
