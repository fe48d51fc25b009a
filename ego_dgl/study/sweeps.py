"""The paper's sensitivity studies: `sweep-layers` (Fig. 4: K with L fixed, L with K fixed,
for EgoGCN, GM and NA) and `sweep-eps` (Fig. 3: the hard threshold eps), and the
resumable cell machinery they share with `egodgl compare` (`ego_dgl.study.compare`).

A sweep lives in <out>/sweeps/<name>/: sweep.json (the options every cell shares),
cells.csv (one row per finished cell: its settings, seed, best epoch and metrics),
summary.csv (mean and std over seeds) and a PNG. Each cell trains in its own run folder
under cells/; rerunning the same command skips the finished cells and resumes an
interrupted one from its last checkpoint. `run_cells` trains the missing cells in this
process or in worker processes (`jobs`), each loading the dataset once.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from rich.markup import escape

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import protocol_label
from ego_dgl.runs import (
    DEFAULT_RESULTS,
    LAST,
    METRICS,
    read_csv,
    read_json,
    run_lock,
    slug,
    write_csv,
    write_json,
    write_png,
)
from ego_dgl.train.budget import check_fits
from ego_dgl.train.defaults import dataset_name, resolve_options
from ego_dgl.train.trainer import resolve_device, train

KINDS = ("layers", "eps")
FUSION_NAMES = {"ego": "EgoGCN", "gm": "GM", "na": "NA"}
PLOT_METRICS = ("recall@10", "ndcg@10")
RECORDED = ("precision@10", "recall@10", "ndcg@10", "hit@10")


class StudyCell(Protocol):
    """One training run of a study (a sweep or a comparison): a folder-safe `key`, the
    options it trains with, and the settings cells.csv records about it."""

    @property
    def key(self) -> str: ...

    def given(self, shared: dict[str, Any]) -> dict[str, Any]: ...

    def settings(self) -> dict[str, Any]: ...


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

    def given(self, shared: dict[str, Any]) -> dict[str, Any]:
        """Every option the cell trains with: the sweep's shared ones, then its own."""
        return {**shared, **self.options()}

    def settings(self) -> dict[str, Any]:
        """cells.csv's columns on what the cell is."""
        return {"series": self.series, "fusion": self.fusion, "layers_mm": self.layers_mm, "layers_id": self.layers_id,
                "eps": "" if self.eps is None else self.eps, "seed": self.seed}


def layer_cells(fusions: list[str], k_values: list[int], l_values: list[int], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 4's grid: K over k_values with L = l_fixed, and L over l_values with K = k_fixed."""
    cells = [Cell("K", f, k, l_fixed, None, s) for f in fusions for k in k_values for s in seeds]
    cells += [Cell("L", f, k_fixed, lv, None, s) for f in fusions for lv in l_values for s in seeds]
    return cells


def eps_cells(values: list[float], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 3's grid: EGO-hard at every eps, K and L fixed."""
    return [Cell("eps", "ego", k_fixed, l_fixed, float(e), s) for e in values for s in seeds]


def check_sweep_options(folder: Path, settings: dict[str, Any], filename: str = "sweep.json") -> None:
    """Write the settings file, or check that an existing study folder used the same
    options (cells trained with different ones must not be mixed)."""
    path = folder / filename
    if path.exists():
        saved = read_json(path)
        diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k) and k != "log")  # --log changes no figure
        if diff:
            k = diff[0]
            raise ConfigError(
                f"folder {folder} was made with {k}={saved.get(k)!r}, not {settings.get(k)!r}; "
                "rerun with the same options, or give --name for a new one"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)


def run_cell(ds: Dataset, cell: StudyCell, shared: dict[str, Any], folder: Path, display: str = "off") -> dict[str, Any]:
    """Train one cell in cells/<key>/ (resuming an attempt that was cut short) and return
    its metrics.json; `display` is the cell's progress display (progress.DISPLAYS), its
    lines tagged with the cell's key."""
    _, model_cfg, train_cfg, _ = resolve_options(cell.given(shared))
    run_dir = folder / "cells" / cell.key
    if not (run_dir / METRICS).exists():
        resume = (run_dir / LAST).exists()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # an attempt that died before its first epoch finished
        train(ds, model_cfg, train_cfg, run_dir, resume=resume, progress=display, source={"source": shared["dataset"]}, tag=cell.key)
    return read_json(run_dir / METRICS)


def cell_row(cell: StudyCell, metrics: dict[str, Any]) -> dict[str, Any]:
    """cells.csv's row: the cell's settings, selected epoch and every recorded metric."""
    row: dict[str, Any] = {"key": cell.key, **cell.settings(), "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"]}
    for split in ("valid", "test"):
        row.update({f"{split}/{m}": v for m, v in metrics[split].items() if m != "users"})
    return row


def finished_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """cells.csv's rows by cell key (empty for a new sweep)."""
    path = folder / "cells.csv"
    return {r["key"]: r for r in read_csv(path)} if path.exists() else {}


_WORKER_DATASET: Dataset | None = None


def _start_worker(dataset: str, threads: int) -> None:
    """A worker process: its share of the CPU threads, and the dataset, loaded once."""
    global _WORKER_DATASET
    import torch

    from ego_dgl.data import load_dataset

    torch.set_num_threads(threads)
    _WORKER_DATASET = load_dataset(dataset, progress=False)


def _worker_cell(cell: StudyCell, shared: dict[str, Any], folder: Path, display: str) -> dict[str, Any]:
    assert _WORKER_DATASET is not None, "worker started without its dataset"
    return run_cell(_WORKER_DATASET, cell, shared, folder, display)


def worker_threads(jobs: int) -> int:
    """Torch threads per worker: the cores split between the jobs."""
    return max(1, (os.cpu_count() or 1) // jobs)


CellHook = Callable[[StudyCell, dict[str, Any], bool], None]


def run_cells(
    ds: Dataset, cells: list[StudyCell], shared: dict[str, Any], folder: Path, on_cell: CellHook | None = None,
    display: str = "off", jobs: int = 1,
) -> dict[str, dict[str, Any]]:
    """Train every cell not yet in the folder's cells.csv (in `jobs` worker processes when
    jobs > 1, the results being those of jobs = 1) and return cells.csv's rows by key;
    `on_cell(cell, row, skipped)` is told about each cell as it is done or skipped."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    device = str(resolve_device(shared.get("device", "auto")))
    for cell in cells:
        check_fits(ds, resolve_options(cell.given(shared))[1], device)
    with run_lock(folder):
        return train_missing(ds, cells, shared, folder, on_cell, display, jobs)


def train_missing(
    ds: Dataset, cells: list[StudyCell], shared: dict[str, Any], folder: Path, on_cell: CellHook | None, display: str, jobs: int
) -> dict[str, dict[str, Any]]:
    """run_cells' work, done while it holds the folder's lock."""
    rows = finished_rows(folder)
    todo = [c for c in dict((c.key, c) for c in cells).values() if c.key not in rows]
    for cell in cells:
        if cell.key in rows and on_cell:
            on_cell(cell, rows[cell.key], True)

    def record(cell: StudyCell, metrics: dict[str, Any]) -> None:
        rows[cell.key] = cell_row(cell, metrics)
        write_csv(folder / "cells.csv", list(rows.values()))
        if on_cell:
            on_cell(cell, rows[cell.key], False)

    if jobs == 1 or len(todo) < 2:
        for cell in todo:
            record(cell, run_cell(ds, cell, shared, folder, display))
        return rows
    train_parallel(shared["dataset"], todo, shared, folder, display, jobs, record)
    return rows


def train_parallel(
    dataset: str, todo: list[StudyCell], shared: dict[str, Any], folder: Path, display: str, jobs: int,
    record: Callable[[StudyCell, dict[str, Any]], None],
) -> None:
    """Train `todo` in `jobs` worker processes, handing a worker its next cell only when it
    is free (nothing waits in the pool's queue), so that after Ctrl-C no new cell starts;
    the workers are stopped at once and their cells resume from last.pt on the next run."""
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=context, initializer=_start_worker,
                               initargs=(dataset, worker_threads(jobs)))
    queue = iter(todo)
    running: dict[Future, StudyCell] = {}

    def hand_out() -> None:
        cell = next(queue, None)
        if cell is not None:
            running[pool.submit(_worker_cell, cell, shared, folder, display)] = cell

    try:
        for _ in range(min(jobs, len(todo))):
            hand_out()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                record(running.pop(future), future.result())
                hand_out()
    except KeyboardInterrupt:
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    save_png(fig, path)


def save_png(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    write_png(path, fig)
    plt.close(fig)


def sweep_folder(out: str | Path | None, kind: str, dataset: str, name: str | None) -> Path:
    """<out or ./results>/sweeps/<name or kind-dataset>; a name is a name, not a path."""
    if name is not None and (name in ("", ".", "..") or "/" in name or os.sep in name):
        raise ConfigError(f"--name {name!r} must be a plain folder name (no '/', not '.' or '..'); the sweep goes to OUT/sweeps/NAME")
    return Path(out if out is not None else DEFAULT_RESULTS) / "sweeps" / (name or f"{kind}-{slug(dataset)}")


def run_sweep(
    ds: Dataset, kind: str, cells: list[Cell], shared: dict[str, Any], folder: Path, on_cell: CellHook | None = None,
    display: str = "off", jobs: int = 1,
) -> list[dict[str, Any]]:
    """Train every cell not yet in cells.csv, then write summary.csv and the PNG; returns
    the summary. `shared` holds the options every cell uses (dataset, epochs, ...);
    `on_cell` and `jobs` as in `run_cells`; `display` is each cell's progress display."""
    check_sweep_options(folder, {"kind": kind, **shared})
    rows = run_cells(ds, cells, shared, folder, on_cell, display, jobs)
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
SHARED_OPTIONS = ("epochs", "patience", "batch_size", "lr", "reg", "dim", "device", "backend", "protocol", "threshold", "log")


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
    from ego_dgl.train.records import dataset_source

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
        resolve_options(cell.given(shared))
    return shared, cells


class CellProgress:
    """The display over a study's cells: a bar on a terminal; in a log (stderr not a
    terminal), one plain line per cell, each cell's own epoch lines (`cell_display`)
    tagged with its key; nothing when `progress` is False. Used as the `on_cell` hook."""

    def __init__(self, title: str, total: int, progress: bool = True):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from ego_dgl.train.progress import resolve_display

        self.lines = progress and resolve_display("auto") == "lines"
        self.cell_display = "lines" if self.lines else "off"
        self.console = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
        self.bar = Progress(*columns, console=self.console, disable=not progress or self.lines)
        self.task = self.bar.add_task(escape(title), total=total, info="")
        self.done, self.total = 0, total

    def __enter__(self) -> "CellProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, cell: StudyCell, row: dict[str, Any], skipped: bool) -> None:
        self.done += 1
        state = "done before" if skipped else (
            f"valid R@10 {float(row['valid/recall@10']):.4f}, test R@10 {float(row['test/recall@10']):.4f} (epoch {row['best_epoch']})")
        if self.lines:
            self.console.print(escape(f"cell {self.done}/{self.total} {cell.key}: {state}"), highlight=False, soft_wrap=True)
        self.bar.update(self.task, advance=1, info=escape(f"{cell.key}: {state}"))


def launch_sweep(kind: str, opts: dict[str, Any], progress: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Plan, load the dataset once, and run (or finish) a sweep with a progress display
    over its cells; returns the sweep folder and the summary."""
    from ego_dgl.data import load_dataset

    if kind not in KINDS:
        raise ConfigError(f"unknown sweep {kind!r}; use one of {', '.join(KINDS)}")
    shared, cells = plan_sweep(kind, opts)
    resolve_device(shared.get("device", "auto"))
    folder = sweep_folder(opts.get("out"), kind, dataset_name(opts), opts.get("name"))
    ds = load_dataset(shared["dataset"], progress=progress)
    with CellProgress(f"sweep {kind}", len(cells), progress) as display:
        summary = run_sweep(ds, kind, cells, shared, folder, on_cell=display, display=display.cell_display, jobs=opts.get("jobs", 1))
    return folder, summary
