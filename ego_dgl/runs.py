"""Run folders: results/runs/<run-id>/ with config.json, history.csv, metrics.json and the
checkpoints. Every record is written atomically (temporary file, then rename), so an
interrupted run never leaves a half-written file."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ego_dgl import untrusted
from ego_dgl.errors import ConfigError, os_error_message
from ego_dgl.umask import file_mode

DEFAULT_RESULTS = Path("results")
CONFIG, HISTORY, METRICS = "config.json", "history.csv", "metrics.json"
BEST, LAST = "best.pt", "last.pt"
RECORD_HINT = "restore the file the run wrote, or delete the folder"


def runs_root(out: str | Path | None = None) -> Path:
    """Where run folders live: <out or ./results>/runs."""
    return Path(out if out is not None else DEFAULT_RESULTS) / "runs"


def slug(text: str) -> str:
    """A file-name-safe short form of a dataset name or path; never dots alone ('.' or '..'
    named the study folder OUT/compare/. or .., its parent), which become 'dataset'."""
    name = Path(str(text).rstrip("/")).name or str(text)
    short = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return short if short.strip(".") else "dataset"


def ensure_folder(path: Path) -> Path:
    """`path` as an existing folder (made if missing), or a one-line ConfigError saying
    why it cannot be (a file in the way, a read-only file system, ...)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot make the results folder {path} ({os_error_message(err)}); choose another --out") from None
    return path


def create_run_dir(root: Path, dataset: str, label: str) -> Path:
    """A new, empty run folder named <timestamp>-<dataset>-<label>[-n]."""
    ensure_folder(root)
    base = f"{datetime.now():%Y%m%d-%H%M%S}-{slug(dataset)}-{label}"
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise ConfigError(f"cannot make a run folder under {root} ({os_error_message(err)}); choose another --out") from None
    raise ConfigError(f"cannot create a run folder under {root}: too many runs named {base}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; colleagues may read results as the umask allows
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """A JSON file of a run or study folder; missing, damaged or not UTF-8 is one ConfigError line."""
    if not Path(path).exists():
        raise ConfigError(f"{path} does not exist")
    return untrusted.read_json(path, error=ConfigError, hint=RECORD_HINT)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV; the columns are the union of the rows' keys in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


@contextmanager
def pyplot() -> Iterator[Any]:
    """matplotlib.pyplot on the Agg backend (files only, no display), TeX parsing off for the
    text made inside: names from folders, files and options are drawn as typed, $...$ too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):
        yield plt


def save_png(fig: Any, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    """Lay a matplotlib figure out within `rect` (figure fractions; room left outside it,
    e.g. for a legend or caption), write it as PNG atomically like every record, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png")
    write_atomic(path, buf.getvalue())
    plt.close(fig)


def read_csv(path: Path, required: tuple[str, ...] = (), numeric: tuple[str, ...] = (),
             integers: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """A CSV record of a run or study folder (cells.csv, history.csv), checked before use:
    unreadable, not UTF-8, not CSV, a row of more or fewer fields than the header, a
    `required` column missing or empty, a value of a column starting with one of `numeric`
    that is not a number or one of `integers` that is not a count is one ConfigError line
    naming the file and the row."""
    text = untrusted.read_text(path, error=ConfigError, limit=untrusted.MAX_JSON_BYTES, hint=RECORD_HINT)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as err:
        raise ConfigError(f"{path}: not a valid CSV file ({err}); {RECORD_HINT}") from None
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise ConfigError(f"{path}: column {missing[0]!r} is missing; {RECORD_HINT}")
    for k, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise ConfigError(f"{path}: row {k} does not have the header's {len(header)} fields; {RECORD_HINT}")
        empty = next((c for c in required if row[c] == ""), None)
        if empty:
            raise ConfigError(f"{path}: row {k}, column {empty!r} is empty; {RECORD_HINT}")
        bad = next((c for c in integers if row.get(c, "") != "" and not (row[c].isascii() and row[c].isdigit())), None)
        if bad:
            raise ConfigError(f"{path}: row {k}, column {bad!r} must be a whole number, found {row[bad]!r:.40}; {RECORD_HINT}")
        for column, value in row.items():
            if numeric and value != "" and column.startswith(numeric):
                try:
                    float(value)
                except ValueError:
                    raise ConfigError(f"{path}: row {k}, column {column!r} must be a number, found {value!r:.40}; "
                                      f"{RECORD_HINT}") from None
    return rows


def check_run_dir(run_dir: str | Path, checkpoint: str = BEST) -> Path:
    """The run folder, after checking it holds a config and the named checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a folder" if run_dir.exists() else "does not exist"
        raise ConfigError(f"run folder {run_dir} {what}; give a run's folder (OUT/runs/<run-id>)")
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run folder: it has no {CONFIG}")
    if not (run_dir / checkpoint).is_file():
        if not (run_dir / LAST).is_file():
            raise ConfigError(
                f"run folder {run_dir} has no checkpoint {checkpoint}: it never saved a checkpoint (it stopped during "
                "its first epoch), so there is nothing to continue or evaluate; start a new run with egodgl train "
                f"and the options in {run_dir / CONFIG}"
            )
        raise ConfigError(f"run folder {run_dir} has no checkpoint {checkpoint}; continue it with egodgl train --resume {run_dir}")
    return run_dir


def latest_run(root: Path) -> Path:
    """The most recently created run folder under `root` (by the time in its config) that
    has a best checkpoint: a run killed before its first epoch ended has nothing to use."""
    runs = [p for p in root.glob("*") if (p / CONFIG).is_file() and (p / BEST).is_file()] if root.is_dir() else []
    if not runs:
        raise ConfigError(f"no runs under {root} with a best checkpoint; train one with egodgl train, or pass RUN_DIR")
    created = {p: untrusted.check_record(read_json(p / CONFIG), {"created": untrusted.Field(str, required=False)}, str(p / CONFIG),
                                         ConfigError, RECORD_HINT, extra_ok=True).get("created", "") for p in runs}
    return max(runs, key=lambda p: (created[p], p.name))


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a run (or sweep) folder while one process writes it: flock on
    the folder itself, so no lock file is left behind and the lock ends with the process."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder} is in use by another egodgl process; wait for it to finish or stop it first") from None
        yield
    finally:
        os.close(fd)
