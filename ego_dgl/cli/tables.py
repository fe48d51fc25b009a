"""Rich tables for what the commands print: metrics, sweep summaries, recommendations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ego_dgl.evaluate import COLD_GROUPS, METRICS, protocol_label

METRIC_TITLES = {"precision": "P", "recall": "R", "ndcg": "NDCG", "hit": "Hit"}


def metrics_table(title: str, results: dict[str, dict[str, float]], protocol: str) -> Table:
    """One row per split and metric, one column per cut-off K; the protocol and the
    number of evaluated users in the caption."""
    first = next(iter(results.values()))
    ks = sorted({int(key.split("@")[1]) for key in first if "@" in key})
    users = ", ".join(f"{split} {int(values['users'])}" for split, values in results.items())
    caption = f"{protocol_label(protocol)}; users evaluated: {users}"
    if "warm/users" in first and "cold/users" not in first:
        caption += "; cold metrics refused: the model cannot score items never seen in training (cold_start 'none')"
    table = Table(title=escape(title), caption=caption, caption_style="bold yellow" if protocol == "legacy" else "dim")
    table.add_column("split")
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for split, values in results.items():
        for group in ("", *(f"{g}/" for g in COLD_GROUPS if f"{g}/users" in values)):  # cold-item groups when present
            for metric in METRICS:
                table.add_row(f"{split} {group[:-1]}".strip(), METRIC_TITLES[metric], *(f"{values[f'{group}{metric}@{k}']:.4f}" for k in ks))
            table.add_section()
    return table


def summary_table(title: str, summary: list[dict[str, Any]]) -> Table:
    """A sweep's mean±std test recall and NDCG at 10 per series, variant and value (the
    full set is in summary.csv)."""
    table = Table(title=escape(title), caption="test metrics, mean±std over seeds; all of them in summary.csv", caption_style="dim")
    for col in ("series", "variant", "value", "seeds", "R@10", "NDCG@10"):
        table.add_column(col, justify="left" if col in ("series", "variant") else "right", no_wrap=True)
    for e in summary:
        r10, n10 = (f"{e[f'{m}_mean']:.4f}±{e[f'{m}_std']:.4f}" for m in ("recall@10", "ndcg@10"))
        table.add_row(e["series"], e["fusion"], f"{e['x']:g}", str(e["seeds"]), r10, n10)
    return table


def compare_table(title: str, summary: list[dict[str, Any]], paired: list[dict[str, Any]]) -> Table:
    """A comparison's mean±std test figures at 10 per model, then the improvement of the
    best EgoGCN variant over the best baseline and the paired t-test's p (the @20 figures,
    the Wilcoxon test and the caption are in table.md)."""
    from rich.markup import escape

    from ego_dgl.study.compare import fmt_p, fmt_pct, metric_title

    mmrec = bool(summary) and "recall@50_mean" in summary[0]  # --protocol mmrec: MMRec's cut-offs
    metrics = ("recall@5", "recall@10", "recall@20", "recall@50", "ndcg@20") if mmrec else ("precision@10", "recall@10", "ndcg@10")
    note = f"%improv. and p: {paired[0]['variant']} over {paired[0]['baseline']}, paired t-test across seeds; " if paired else ""
    table = Table(title=title, caption=escape(f"mean±std over seeds; {note}all figures in table.md"), caption_style="dim")
    table.add_column("model")
    table.add_column("seeds", justify="right")
    for m in metrics:
        table.add_column(metric_title(m), justify="right", no_wrap=True)
    for e in summary:
        name = escape(e["name"]) + (" (floor)" if e["role"] == "floor" else "")
        table.add_row(name, str(e["seeds"]), *(f"{e[f'{m}_mean']:.4f}±{e[f'{m}_std']:.4f}" for m in metrics))
    if paired:
        by_metric = {r["metric"]: r for r in paired}
        table.add_section()
        table.add_row("%improv.", "", *(fmt_pct(by_metric[m]["improvement_pct"]) for m in metrics))
        table.add_row("p", "", *(fmt_p(by_metric[m]["p_ttest"]) for m in metrics))
    return table


def recommend_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Rank, item, score, title (when known) and held-out marker per recommended item."""
    table = Table(title=escape(title), caption="held out: the item is one of the user's valid/test items", caption_style="dim")
    columns = [c for c in ("rank", "item", "score", "title", "held_out") if rows and c in rows[0]]
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right" if col in ("rank", "item", "score") else "left")
    for row in rows:
        table.add_row(*(f"{row[c]:.4f}" if c == "score" else escape(str(row[c])) for c in columns))
    return table


def models_table() -> Table:
    """Every model and preset --model takes: what it is and its options with defaults."""
    from dataclasses import asdict

    from ego_dgl.model.registry import MODELS, PRESETS, config_type

    table = Table(title="models (--model NAME)", caption="options: --param KEY=VALUE, a config file, or the flags of egodgl train",
        caption_style="dim")
    for col in ("name", "what", "options \\[default]"):
        table.add_column(col)
    for name, spec in MODELS.items():
        options = ", ".join(f"{k}={v}" for k, v in asdict(config_type(name)()).items())
        mmrec = ", ".join(f"{k}={v}" for k, v in config_type(name).mmrec_defaults.items())
        table.add_row(name, spec.summary, (options or "-") + (f"; under --protocol mmrec: {mmrec}" if mmrec else ""))
    table.add_section()
    for name, (model, opts) in PRESETS.items():
        table.add_row(name, f"preset of {model}", ", ".join(f"{k}={v}" for k, v in opts.items()))
    return table


def embedding_table(title: str, rows: list[dict[str, Any]], note: str | None = None) -> Table:
    """plot-embeddings' figures, one row per run and stage: mean distances from the chosen
    users to their held-out items and to random unseen items, and the ratio."""
    from rich.markup import escape

    caption = "distances in each model's space (not t-SNE's); ratio = held-out / random, < 1: relevant items nearer"
    table = Table(title=escape(title), caption=escape(f"{caption}; {note}" if note else caption), caption_style="dim")
    for col in ("run", "model", "stage", "width", "eucl held", "eucl random", "eucl ratio", "cos held", "cos random", "cos ratio"):
        table.add_column(col, justify="left" if col in ("run", "model", "stage") else "right", no_wrap=True)
    for row in rows:
        figures = ["-" if row[f"{m}_{k}"] is None else f"{row[f'{m}_{k}']:.3f}"
                   for m in ("euclidean", "cosine") for k in ("held_out", "random", "ratio")]
        table.add_row(escape(Path(row["run"]).name), escape(row["model"]), row["stage"], str(row["width"]), *figures)
        if row["stage"] == "after":
            table.add_section()
    return table


def degree_command(run_dir: str | None, out: str | None, split: str, by: str, bins: int, device: str, as_json: bool) -> None:
    """`egodgl eval --by`: the by-degree table of a run (or of a compare folder's cells),
    printed and written next to it as CSV and PNG."""
    import json as json_module
    from pathlib import Path

    import click

    from ego_dgl.cli.group import console
    from ego_dgl.runs import latest_run, runs_root
    from ego_dgl.study.degree import (
        compare_degree_rows,
        mean_by_model,
        run_degree_rows,
        write_degree,
    )

    folder = Path(run_dir) if run_dir is not None else latest_run(runs_root(out))
    if (folder / "cells.csv").is_file():
        rows = mean_by_model(compare_degree_rows(folder, split, by, bins, device))
    else:
        rows = run_degree_rows(folder, split, by, bins, device)
    metric = "recall@10" if "recall@10" in rows[0] else next(k for k in rows[0] if k.startswith("recall@"))
    title = f"{folder.name}: {split} {metric} by {by}"
    csv_path, png_path = write_degree(folder, rows, by, split, metric, title)
    if as_json:
        click.echo(json_module.dumps(rows, indent=2))
        return
    cut = metric.split("@")[1]
    columns = [c for c in rows[0] if "@" not in c or c.endswith(f"@{cut}")]  # one cut-off shown; all in the CSV
    table = Table(title=escape(title), caption=escape(f"written: {csv_path}, {png_path}"), caption_style="dim")
    for col in columns:
        table.add_column(escape(col), justify="left" if col in ("model", "degree") else "right")
    for row in rows:
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row[c], float) else escape(str(row[c])) for c in columns))
    console.print(table)

def tune_table(result: Any) -> Table:
    """A tune study: its trials by state, and the best trial's validation recall@10 and
    options (every trial in trials.csv)."""
    states = ", ".join(f"{n} {state}" for state, n in sorted(result.states.items()))
    table = Table(title=f"tune: {escape(result.folder.name)}", caption=f"trials: {states or 'none'}; all in trials.csv", caption_style="dim")
    table.add_column("best trial")
    table.add_column("value", justify="right")
    if result.best is None:
        table.add_row("none finished yet", "")
        return table
    table.add_row("trial", str(result.best["_trial"]))
    table.add_row("valid R@10", f"{result.best['_value']:.4f}")
    for key, value in result.best.items():
        if not key.startswith("_"):
            table.add_row(escape(key), escape(str(value)))
    return table
