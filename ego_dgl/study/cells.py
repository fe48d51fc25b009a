"""The cell engine every study shares (`sweep-layers`, `sweep-eps`, `compare`): a study is a
list of cells, each one training run with its own options, in one folder.

- plan: `study_folder` (OUT/<kind>/<name>, the name a plain slug), `shared_options` (what
  every cell of the study uses), `seed_list` and `check_cell_count` (a cap, so that a
  typo such as --seeds 100000000 is refused at once), and `Planner`, which resolves each
  cell's options once, refusing a bad one before anything trains, and carries them;
- run: `run_cells` trains the cells not yet in cells.csv, under the folder's lock, in this
  process or in `jobs` worker processes (each loading the dataset once);
- resume: a finished cell is a row of cells.csv and is skipped; an interrupted one resumes
  from its last.pt (Ctrl-C and SIGTERM alike stop the workers at once); a worker whose
  parent is gone stops by itself;
- summarise: `summarise` gives the mean and std over seeds of each group of cells.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.markup import escape

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.files import process_alive
from ego_dgl.errors import ConfigError, TrainingError
from ego_dgl.evaluate import METRICS as METRIC_NAMES
from ego_dgl.evaluate import protocol_ks
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.runs import DEFAULT_RESULTS, LAST, METRICS, RECORD_HINT, read_csv, read_json, run_lock, write_csv, write_json
from ego_dgl.train.budget import check_fits
from ego_dgl.train.defaults import TrainConfig, resolve_options
from ego_dgl.train.trainer import resolve_device, train
from ego_dgl.untrusted import Field, check_record

# options a study passes to every cell (anything else is set per cell)
SHARED_OPTIONS = ("epochs", "patience", "batch_size", "lr", "reg", "dim", "device", "backend", "protocol", "threshold", "log")
MAX_CELLS = 10_000  # more is a typo (--seeds 100000000), not a study: refused before planning
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a plain slug: no path, nothing rich reads as markup
CELL_KEY = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*")  # a cell's folder under cells/: a name, never a path
CELL_METRICS = {"best_epoch": Field(int, low=0), "epochs_run": Field(int, low=0), "valid": Field(dict), "test": Field(dict)}
WATCH_SECONDS = 0.5  # how often a worker checks that its parent is still there


class StudyCell(Protocol):
    """One training run of a study: a folder-safe `key`, the options it trains with, and
    the settings cells.csv records about it."""

    @property
    def key(self) -> str: ...

    def given(self, shared: dict[str, Any]) -> dict[str, Any]: ...

    def settings(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Planned:
    """A cell with its options resolved (once, by `Planner`)."""

    cell: StudyCell
    model: RecommenderConfig
    train: TrainConfig

    @property
    def key(self) -> str:
        return self.cell.key


class Planner:
    """Resolves each cell's options over the study's shared ones, once per cell key: a bad
    option is refused before anything trains, and training reuses the result."""

    def __init__(self, shared: dict[str, Any]):
        self.shared = shared
        self.done: dict[str, Planned] = {}

    def plan(self, cells: list[StudyCell]) -> list[Planned]:
        """The cells with their configs, in order (a cell listed twice is planned once)."""
        check_cell_count(len(cells))
        for cell in cells:
            if cell.key not in self.done:
                _, model_cfg, train_cfg, _ = resolve_options(cell.given(self.shared))
                self.done[cell.key] = Planned(cell, model_cfg, train_cfg)
        return [self.done[c.key] for c in cells]


def check_cell_count(count: int, what: str = "the study") -> None:
    """Refuse, before building anything, a study of more than MAX_CELLS cells."""
    if count > MAX_CELLS:
        raise ConfigError(f"{what} would train {count:,} cells; at most {MAX_CELLS:,} are planned at once (check --seeds and the value lists)")


def seed_list(opts: dict[str, Any], default: int) -> list[int]:
    """--seed, --seed + 1, ... (--seeds of them): refused below 1 or above MAX_CELLS."""
    count, first = opts.get("seeds", default), opts.get("seed", 0)
    if count < 1:
        raise ConfigError("--seeds must be >= 1")
    check_cell_count(count, f"--seeds {count}")
    return list(range(first, first + count))


def shared_options(dataset: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The options every cell shares: the dataset as its source string, then each of
    SHARED_OPTIONS the command was given."""
    from ego_dgl.train.records import dataset_source

    return {"dataset": dataset_source(dataset)["source"], **{k: opts[k] for k in SHARED_OPTIONS if opts.get(k) is not None}}


def parse_values(text: str, kind: type, option: str) -> list:
    """A comma-separated list of numbers or names, e.g. '1,2,3' or 'ego,gm'."""
    items = [v.strip() for v in str(text).split(",")]
    if not any(items):
        raise ConfigError(f"{option} needs at least one value")
    if not all(items):
        raise ConfigError(f"{option} has an empty value in {text!r}; separate the values by single commas, e.g. 1,2,3")
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise ConfigError(f"{option} takes a comma-separated list of {kind.__name__}s, got {text!r}") from None


def study_folder(out: str | Path | None, kind: str, name: str | None, default: str) -> Path:
    """<out or ./results>/<kind>/<name or default>; --name must be a plain slug (letters,
    digits, then also . _ -): no path, nothing a terminal would read as markup."""
    if name is not None and not NAME.fullmatch(name):
        raise ConfigError(
            f"--name {name!r} must be a plain folder name (letters, digits, '.', '_', '-'; at most 100, "
            f"starting with a letter or digit); the study goes to OUT/{kind}/NAME"
        )
    return Path(out if out is not None else DEFAULT_RESULTS) / kind / (name or default)


def check_study_options(folder: Path, settings: dict[str, Any], filename: str) -> None:
    """Write the settings file, or check that an existing study folder used the same
    options (cells trained with different ones must not be mixed)."""
    path = folder / filename
    if path.exists():
        saved = check_record(read_json(path), {}, str(path), ConfigError, RECORD_HINT, extra_ok=True)
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


def run_cell(ds: Dataset, planned: Planned, source: str, folder: Path, display: str = "off") -> dict[str, Any]:
    """Train one cell in cells/<key>/ (resuming an attempt that was cut short) and return
    its metrics.json; `display` is the cell's progress display (progress.DISPLAYS), its
    lines tagged with the cell's key."""
    run_dir = folder / "cells" / planned.key
    if not (run_dir / METRICS).exists():
        resume = (run_dir / LAST).exists()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)  # an attempt that died before its first epoch finished
        train(ds, planned.model, planned.train, run_dir, resume=resume, progress=display, source={"source": source}, tag=planned.key)
    return check_cell_metrics(read_json(run_dir / METRICS), run_dir / METRICS)


def check_cell_metrics(metrics: Any, path: Path) -> dict[str, Any]:
    """A finished cell's metrics.json with the fields cells.csv takes from it, each figure a number."""
    check_record(metrics, CELL_METRICS, str(path), ConfigError, RECORD_HINT, extra_ok=True)
    for split in ("valid", "test"):
        check_record(metrics[split], {m: Field(float, finite=False) for m in metrics[split]}, f"{path} field {split!r}",
                     ConfigError, RECORD_HINT)
    return metrics


def cell_row(cell: StudyCell, metrics: dict[str, Any]) -> dict[str, Any]:
    """cells.csv's row: the cell's settings, selected epoch and every recorded metric."""
    row: dict[str, Any] = {"key": cell.key, **cell.settings(), "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"]}
    for split in ("valid", "test"):
        row.update({f"{split}/{m}": v for m, v in metrics[split].items() if m != "users"})
    return row


def read_cells(folder: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """cells.csv's rows, checked before any is used: each with a key that names a folder
    under cells/ (never a path), the `required` columns its reader uses, its epochs whole
    numbers and every figure a number; a damaged or hand-edited file is one line."""
    path = folder / "cells.csv"
    rows = read_csv(path, required=("key", *required), numeric=("valid/", "test/"), integers=("best_epoch", "epochs_run"))
    for k, row in enumerate(rows, start=1):
        if not CELL_KEY.fullmatch(row["key"]):
            raise ConfigError(f"{path}: row {k}, key {row['key']!r:.60} is not a cell's folder name; {RECORD_HINT}")
    return rows


def finished_rows(folder: Path, protocol: str = "full") -> dict[str, dict[str, Any]]:
    """cells.csv's rows by cell key (empty for a new study), each with every figure the
    evaluator records under `protocol`."""
    figures = tuple(f"{split}/{m}@{k}" for split in ("valid", "test") for m in METRIC_NAMES for k in protocol_ks(protocol))
    return {r["key"]: r for r in read_cells(folder, ("best_epoch", "epochs_run", *figures))} if (folder / "cells.csv").exists() else {}


def summarise(groups: dict[Any, tuple[dict[str, Any], list[dict[str, Any]]]], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per group (its head columns, which name its number of seeds, and its cells.csv
    rows, one per seed): the head, then the mean and std (ddof 1; 0 for one seed) of each
    test metric."""
    out = []
    for head, members in groups.values():
        entry: dict[str, Any] = dict(head)
        for m in metrics:
            values = np.array([float(r[f"test/{m}"]) for r in members])
            entry[f"{m}_mean"] = float(values.mean())
            entry[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out


CellHook = Callable[[StudyCell, dict[str, Any], bool], None]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a study trains, SIGTERM (a scheduler's stop, `kill`) acts as Ctrl-C: the
    workers stop at once and every cell resumes on the next run. Only in the main thread,
    the one Python delivers signals to."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cells(
    ds: Dataset, cells: list[Planned], shared: dict[str, Any], folder: Path, on_cell: CellHook | None = None,
    display: str = "off", jobs: int = 1,
) -> dict[str, dict[str, Any]]:
    """Train every cell not yet in the folder's cells.csv (in `jobs` worker processes when
    jobs > 1, the results being those of jobs = 1) and return cells.csv's rows by key;
    `on_cell(cell, row, skipped)` is told about each cell as it is done or skipped."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    device = str(resolve_device(shared.get("device", "auto")))
    for planned in {p.key: p for p in cells}.values():
        check_fits(ds, planned.model, device)
    with run_lock(folder), sigterm_as_interrupt():
        return train_missing(ds, cells, shared["dataset"], folder, on_cell, display, jobs, shared.get("protocol") or "full")


def train_missing(
    ds: Dataset, cells: list[Planned], source: str, folder: Path, on_cell: CellHook | None, display: str, jobs: int,
    protocol: str = "full",
) -> dict[str, dict[str, Any]]:
    """run_cells' work, done while it holds the folder's lock."""
    rows = finished_rows(folder, protocol)
    todo = [p for p in {p.key: p for p in cells}.values() if p.key not in rows]
    for planned in cells:
        if planned.key in rows and on_cell:
            on_cell(planned.cell, rows[planned.key], True)

    def record(planned: Planned, metrics: dict[str, Any]) -> None:
        rows[planned.key] = cell_row(planned.cell, metrics)
        write_csv(folder / "cells.csv", list(rows.values()))
        if on_cell:
            on_cell(planned.cell, rows[planned.key], False)

    if jobs == 1 or len(todo) < 2:
        for planned in todo:
            record(planned, run_cell(ds, planned, source, folder, display))
        return rows
    train_parallel(source, todo, folder, display, jobs, record)
    return rows


_WORKER_DATASET: Dataset | None = None


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, dead but not yet reaped, does not)."""
    if not process_alive(pid):
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def watch_parent(parent: int, poll: float = WATCH_SECONDS) -> None:
    """Exit this process as soon as the study's process is gone (killed, so nobody would
    record the cell): the cell resumes from last.pt on the next run. The study's process,
    not the worker's own parent: under forkserver that is the fork server, which the
    workers themselves keep alive."""
    while alive(parent):
        time.sleep(poll)
    os._exit(1)


def start_parent_watch(parent: int) -> None:
    """Run `watch_parent(parent)` in a daemon thread of this worker process (the study's
    and `egodgl tune`'s workers)."""
    threading.Thread(target=watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _start_worker(dataset: str, threads: int, parent: int) -> None:
    """A worker process: a watchdog on the study's process, its share of the CPU threads,
    and the dataset, loaded once."""
    global _WORKER_DATASET
    import torch

    from ego_dgl.data import load_dataset

    start_parent_watch(parent)
    torch.set_num_threads(threads)
    _WORKER_DATASET = load_dataset(dataset, progress=False)


def _worker_cell(planned: Planned, source: str, folder: Path, display: str) -> dict[str, Any]:
    assert _WORKER_DATASET is not None, "worker started without its dataset"
    return run_cell(_WORKER_DATASET, planned, source, folder, display)


def worker_threads(jobs: int) -> int:
    """Torch threads per worker: the cores split between the jobs."""
    return max(1, (os.cpu_count() or 1) // jobs)


def train_parallel(
    source: str, todo: list[Planned], folder: Path, display: str, jobs: int, record: Callable[[Planned, dict[str, Any]], None],
) -> None:
    """Train `todo` in `jobs` worker processes, handing a worker its next cell only when it
    is free (nothing waits in the pool's queue), so that after Ctrl-C or SIGTERM no new
    cell starts; the workers are stopped at once and their cells resume from last.pt on
    the next run. Should this process be killed outright, each worker's watchdog
    (`watch_parent`) stops it."""
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=context, initializer=_start_worker,
                               initargs=(source, worker_threads(jobs), os.getpid()))
    queue = iter(todo)
    running: dict[Future, Planned] = {}

    def hand_out() -> None:
        planned = next(queue, None)
        if planned is not None:
            running[pool.submit(_worker_cell, planned, source, folder, display)] = planned

    try:
        for _ in range(min(jobs, len(todo))):
            hand_out()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                planned = running.pop(future)
                try:
                    metrics = future.result()
                except BrokenProcessPool:  # a worker died without a word: killed (the OOM killer's SIGKILL) or crashed
                    raise TrainingError(
                        f"a worker process died while training cells ({planned.key} among them), most often killed for memory; "
                        f"the finished cells are kept: run the same command again to resume the others from their checkpoints "
                        f"(with fewer --jobs if memory ran out)"
                    ) from None
                record(planned, metrics)
                hand_out()
    except (KeyboardInterrupt, TrainingError):
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class CellProgress:
    """The display over a study's cells: a bar on a terminal; in a log (stderr not a
    terminal), one plain line per cell, each cell's own epoch lines (`cell_display`)
    tagged with its key; nothing when `progress` is False. Used as the `on_cell` hook."""

    def __init__(self, title: str, total: int, progress: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ego_dgl.train.progress import resolve_display
        from ego_dgl.untrusted import SafeConsole

        self.lines = progress and resolve_display("auto") == "lines"
        self.cell_display = "lines" if self.lines else "off"
        self.console = SafeConsole(stderr=True, emoji=False)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
        self.bar = Progress(*columns, console=self.console, disable=not progress or self.lines)
        self.task = self.bar.add_task(escape(title), total=total, info="")
        self.done, self.total = 0, total

    def __enter__(self) -> CellProgress:
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
