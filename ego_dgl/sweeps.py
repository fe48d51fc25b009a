"""The paper's sensitivity studies: `sweep-layers` (Fig. 4: K with L fixed, L with K fixed,
for EgoGCN, GM and NA) and `sweep-eps` (Fig. 3: the hard threshold eps).

A sweep lives in <out>/sweeps/<name>/: sweep.json (the options every cell shares),
cells.csv (one row per finished cell: its settings, seed, best epoch and metrics),
summary.csv (mean and std over seeds) and a PNG. Each cell trains in its own run folder
under cells/; rerunning the same command skips the finished cells and resumes an
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import protocol_label
from ego_dgl.memory import check_fits
from ego_dgl.runs import DEFAULT_RESULTS, LAST, METRICS, read_csv, read_json, run_lock, slug, write_csv, write_json
from ego_dgl.train.defaults import dataset_name, resolve_options
from ego_dgl.train.trainer import train

KINDS = ("layers", "eps")
FUSION_NAMES = {"ego": "EgoGCN", "gm": "GM", "na": "NA"}
PLOT_METRICS = ("recall@10", "ndcg@10")
RECORDED = ("precision@10", "recall@10", "ndcg@10", "hit@10")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep: the swept value, the variant and the seed."""

    series: str  # "K", "L" or "eps": which axis this cell belongs to
    fusion: str
    layers_mm: int
    layers_id: int
    eps: float | None
    seed: int

    @property
    def key(self) -> str:
        """A folder-safe id; equal settings give equal keys whatever the series."""
        eps = "" if self.eps is None else f"-eps{self.eps:g}"
        return f"{self.fusion}-K{self.layers_mm}-L{self.layers_id}{eps}-s{self.seed}"

    @property
    def x(self) -> float:
        return {"K": self.layers_mm, "L": self.layers_id, "eps": self.eps}[self.series]

    def options(self) -> dict[str, Any]:
        """The model options this cell sets over the sweep's shared ones."""
        opts: dict[str, Any] = {"fusion": self.fusion, "layers_mm": self.layers_mm, "layers_id": self.layers_id, "seed": self.seed}
        if self.eps is not None:
            opts.update(mode="hard", eps=self.eps)
        return opts


def layer_cells(fusions: list[str], k_values: list[int], l_values: list[int], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 4's grid: K over k_values with L = l_fixed, and L over l_values with K = k_fixed."""
    cells = [Cell("K", f, k, l_fixed, None, s) for f in fusions for k in k_values for s in seeds]
    cells += [Cell("L", f, k_fixed, lv, None, s) for f in fusions for lv in l_values for s in seeds]
    return cells


def eps_cells(values: list[float], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 3's grid: EGO-hard at every eps, K and L fixed."""
    return [Cell("eps", "ego", k_fixed, l_fixed, float(e), s) for e in values for s in seeds]


def check_sweep_options(folder: Path, settings: dict[str, Any]) -> None:
    """Write sweep.json, or check that an existing sweep folder used the same options
    (cells trained with different ones must not be mixed)."""
    path = folder / "sweep.json"
    if path.exists():
        saved = read_json(path)
        diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if diff:
            k = diff[0]
            raise ConfigError(
                f"sweep folder {folder} was made with {k}={saved.get(k)!r}, not {settings.get(k)!r}; "
                "rerun with the same options, or give --name for a new sweep"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)


def run_cell(ds: Dataset, cell: Cell, shared: dict[str, Any], folder: Path, display: str = "off") -> dict[str, Any]:
    """Train one cell in cells/<key>/ (resuming an attempt that was cut short) and return
    its metrics.json; `display` is the cell's progress display (progress.DISPLAYS)."""
    _, model_cfg, train_cfg, _ = resolve_options({**shared, **cell.options()})
    run_dir = folder / "cells" / cell.key
    if not (run_dir / METRICS).exists():
        resume = (run_dir / LAST).exists()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # an attempt that died before its first epoch finished
        train(ds, model_cfg, train_cfg, run_dir, resume=resume, progress=display, source={"source": shared["dataset"]})
    return read_json(run_dir / METRICS)


def cell_row(cell: Cell, metrics: dict[str, Any]) -> dict[str, Any]:
    """cells.csv's row: the cell's settings, selected epoch and recorded metrics."""
    row: dict[str, Any] = {"key": cell.key, "series": cell.series, "fusion": cell.fusion, "layers_mm": cell.layers_mm,
                           "layers_id": cell.layers_id, "eps": "" if cell.eps is None else cell.eps, "seed": cell.seed,
                           "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"]}
    for split in ("valid", "test"):
        row.update({f"{split}/{m}": metrics[split][m] for m in RECORDED})
    return row


def finished_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """cells.csv's rows by cell key (empty for a new sweep)."""
    path = folder / "cells.csv"
    return {r["key"]: r for r in read_csv(path)} if path.exists() else {}


def summarize(cells: list[Cell], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std (over seeds; 0 for one seed) of the test metrics per series, variant
    and value, in the order the cells were listed."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell.series, cell.fusion, cell.x), []).append(rows[cell.key])
    out = []
    for (series, fusion, x), members in groups.items():
        entry: dict[str, Any] = {"series": series, "fusion": fusion, "x": x, "seeds": len(members)}
        for m in RECORDED:
            values = np.array([float(r[f"test/{m}"]) for r in members])
            entry[f"{m}_mean"] = float(values.mean())
            entry[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """One panel per (metric, series): test metric against the swept value, one line per
    variant with std error bars, like the paper's Fig. 3 and 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(e["series"] for e in summary))
    axis_names = {"K": "K (multimodal layers, L fixed)", "L": "L (ID layers, K fixed)", "eps": "eps (hard threshold)"}
    fig, axes = plt.subplots(len(PLOT_METRICS), len(series), figsize=(4.2 * len(series), 3.2 * len(PLOT_METRICS)), squeeze=False)
    for col, s in enumerate(series):
        for row, metric in enumerate(PLOT_METRICS):
            ax = axes[row][col]
            for fusion in dict.fromkeys(e["fusion"] for e in summary if e["series"] == s):
                pts = [e for e in summary if e["series"] == s and e["fusion"] == fusion]
                ax.errorbar([e["x"] for e in pts], [e[f"{metric}_mean"] for e in pts], yerr=[e[f"{metric}_std"] for e in pts],
                            marker="o", capsize=3, label=FUSION_NAMES[fusion])
            ax.set_xticks(sorted({e["x"] for e in summary if e["series"] == s}))
            ax.set_xlabel(axis_names[s])
            ax.set_ylabel(f"test {metric}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def sweep_folder(out: str | Path | None, kind: str, dataset: str, name: str | None) -> Path:
    """<out or ./results>/sweeps/<name or kind-dataset>; a name is a name, not a path."""
    if name is not None and (name in ("", ".", "..") or "/" in name or os.sep in name):
        raise ConfigError(f"--name {name!r} must be a plain folder name (no '/', not '.' or '..'); the sweep goes to OUT/sweeps/NAME")
    return Path(out if out is not None else DEFAULT_RESULTS) / "sweeps" / (name or f"{kind}-{slug(dataset)}")


CellHook = Callable[[Cell, dict[str, Any], bool], None]


def run_sweep(
    ds: Dataset, kind: str, cells: list[Cell], shared: dict[str, Any], folder: Path, on_cell: CellHook | None = None,
    display: str = "off",
) -> list[dict[str, Any]]:
    """Train every cell not yet in cells.csv, then write summary.csv and the PNG; returns
    the summary. `shared` holds the options every cell uses (dataset, epochs, ...);
    `on_cell(cell, row, skipped)` is told about each cell as it is done or skipped;
    `display` is each cell's progress display."""
    check_sweep_options(folder, {"kind": kind, **shared})
    with run_lock(folder):
        return sweep_cells(ds, kind, cells, shared, folder, on_cell)


def sweep_cells(
    ds: Dataset, kind: str, cells: list[Cell], shared: dict[str, Any], folder: Path, on_cell: CellHook | None
) -> list[dict[str, Any]]:
    """run_sweep's work, done while it holds the sweep folder's lock."""
    rows = finished_rows(folder)
    for cell in cells:
        if cell.key in rows:
            if on_cell:
                on_cell(cell, rows[cell.key], True)
            continue
        rows[cell.key] = cell_row(cell, run_cell(ds, cell, shared, folder, display))
        write_csv(folder / "cells.csv", list(rows.values()))
        if on_cell:
            on_cell(cell, rows[cell.key], False)
    summary = summarize(cells, rows)
    write_csv(folder / "summary.csv", summary)
    label = protocol_label(shared.get("protocol", "full"))
    title = f"{'Fig. 4 layers' if kind == 'layers' else 'Fig. 3 eps'} sweep on {shared['dataset']}: test at best epoch, {label}"
    plot(summary, folder / f"sweep-{kind}.png", title)
    return summary


def base_layers(dataset: str) -> tuple[int, int]:
    """The dataset's default (K, L): the values held fixed while the other one varies."""
    _, model_cfg, _, _ = resolve_options({"dataset": dataset})
    return model_cfg.layers_mm, model_cfg.layers_id


# options a sweep passes to every cell (anything else is set per cell)
SHARED_OPTIONS = ("epochs", "patience", "batch_size", "lr", "reg", "dim", "device", "backend", "protocol")


def parse_values(text: str, kind: type, option: str) -> list:
    """A comma-separated list of numbers or names, e.g. '1,2,3' or 'ego,gm'."""
    try:
        values = [kind(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes a comma-separated list of {kind.__name__}s, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    return values


def plan_sweep(kind: str, opts: dict[str, Any]) -> tuple[dict[str, Any], list[Cell]]:
    """The shared options and the cells of a sweep from the command's options; every
    cell's options are checked before anything trains."""
    from ego_dgl.train.launch import dataset_source

    dataset = dataset_name(opts)
    shared = {"dataset": dataset_source(dataset)["source"], **{k: opts[k] for k in SHARED_OPTIONS if opts.get(k) is not None}}
    if opts.get("seeds", 1) < 1:
        raise ConfigError("--seeds must be >= 1")
    seeds = list(range(opts.get("seed", 0), opts.get("seed", 0) + opts.get("seeds", 1)))
    k_default, l_default = base_layers(dataset)
    k_fixed, l_fixed = opts.get("k_fixed") or k_default, opts.get("l_fixed") or l_default
    if kind == "layers":
        cells = layer_cells(
            parse_values(opts.get("fusions", "ego,gm,na"), str, "--fusions"),
            parse_values(opts.get("k_values", "1,2,3,4"), int, "--k-values"),
            parse_values(opts.get("l_values", "1,2,3"), int, "--l-values"),
            k_fixed, l_fixed, seeds,
        )
    else:
        cells = eps_cells(parse_values(opts.get("values", "0.3,0.4,0.5,0.6,0.7"), float, "--values"), k_fixed, l_fixed, seeds)
    for cell in cells:
        resolve_options({**shared, **cell.options()})
    return shared, cells


def launch_sweep(kind: str, opts: dict[str, Any], progress: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Plan, load the dataset once, and run (or finish) a sweep with a progress bar over
    its cells; returns the sweep folder and the summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ego_dgl.data import load_dataset
    from ego_dgl.train.progress import resolve_display
    from ego_dgl.train.trainer import resolve_device

    if kind not in KINDS:
        raise ConfigError(f"unknown sweep {kind!r}; use one of {', '.join(KINDS)}")
    shared, cells = plan_sweep(kind, opts)
    resolve_device(shared.get("device", "auto"))
    folder = sweep_folder(opts.get("out"), kind, dataset_name(opts), opts.get("name"))
    ds = load_dataset(shared["dataset"], progress=progress)
    for cell in cells:
        check_fits(ds, resolve_options({**shared, **cell.options()})[1], str(resolve_device(shared.get("device", "auto"))))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(f"sweep {kind}", total=len(cells), info="")

        def advance(cell: Cell, row: dict[str, Any], skipped: bool) -> None:
            state = "done before" if skipped else f"test R@10 {float(row['test/recall@10']):.4f}"
            bar.update(task, advance=1, info=f"{cell.key}: {state}")

        # on a terminal the sweep's bar is the display; in a log, each cell's epoch lines
        cell_display = "lines" if progress and resolve_display("auto") == "lines" else "off"
        summary = run_sweep(ds, kind, cells, shared, folder, on_cell=advance, display=cell_display)
    return folder, summary
