"""`--log tensorboard|mlflow`: each epoch's record as scalars a researcher can watch while
a run trains, and the run's resolved options as hyper-parameters.

What is logged per epoch (the trainer's history record, numbers only): the loss and its
parts (`train/loss`, `train/bpr`, `train/reg`), the validation (and, under the legacy
protocol, test) metrics (`valid/recall@10`, ...), the fused shares of EGO-hard
(`fused/...`) and the seconds per phase (`seconds/t_forward`, ..., `seconds/epoch`).
- TensorBoard: event files in RUN/tensorboard (`tensorboard --logdir RUN_OR_STUDY`), the
  options as an HParams session whose metric is `valid/recall@10`.
- MLflow: one MLflow run per ego-dgl run (named by its tag, e.g. a compare cell's key,
  else its folder), in the experiment `egodgl`, in the store of MLFLOW_TRACKING_URI when
  set, else a local SQLite store RESULTS/mlflow.db beside the run folders (`mlflow ui
  --backend-store-uri sqlite:///RESULTS/mlflow.db`). MLflow's names take no `@` or `>`,
  so `valid/recall@10` is logged as `valid/recall_at_10` and `fused/visual/item->user` as
  `fused/visual/item_to_user`.
Both are optional extras: a missing package is one ConfigError saying what to install.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ego_dgl.errors import ConfigError

LOGGERS = ("tensorboard", "mlflow")
EXPERIMENT = "egodgl"
TB_FOLDER = "tensorboard"
MLFLOW_STORE = "mlflow.db"
STUDY_KINDS = ("runs", "compare", "sweeps", "tune")  # the folders a results folder holds runs under
SELECTION = "valid/recall@10"


class Tracker(Protocol):
    """What the trainer calls: once per epoch, and once at the end."""

    def epoch(self, record: dict[str, Any]) -> None: ...

    def close(self, status: str) -> None: ...


def check_logger(name: str) -> None:
    """Refuse an unknown --log value."""
    if name and name not in LOGGERS:
        raise ConfigError(f"--log {name!r} is not one of: {', '.join(LOGGERS)}")


def scalar_name(key: str) -> str:
    """The logged name of a history column: train/ for the loss and its parts, seconds/
    for the phase times, the metrics and fused shares as they are."""
    if "/" in key:
        return key
    if key == "seconds" or key.startswith("t_"):
        return f"seconds/{'epoch' if key == 'seconds' else key}"
    return f"train/{key}"


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch record, by logged name (the epoch and the best flag are the
    step and a property of the history, not scalars)."""
    return {scalar_name(k): float(v) for k, v in record.items() if k not in ("epoch", "best") and isinstance(v, (int, float))}


def flat_params(options: dict[str, Any]) -> dict[str, Any]:
    """Options as hyper-parameters: numbers, strings and booleans as they are, anything
    else (the cut-offs) as text."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in options.items()}


def mlflow_name(name: str) -> str:
    """A scalar's name as MLflow accepts it (alphanumerics, _ - . : / and spaces)."""
    return re.sub(r"[^\w\-.:/ ]", "_", name.replace("@", "_at_").replace("->", "_to_"))


def results_folder(run_dir: Path) -> Path:
    """The results folder a run folder lies under (the parent of its runs/, compare/,
    sweeps/ or tune/ folder), else the run folder's parent."""
    run_dir = run_dir.resolve()
    for parent in run_dir.parents:
        if parent.name in STUDY_KINDS and parent.parent != parent:
            return parent.parent
    return run_dir.parent


def mlflow_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the local SQLite store of the results folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_folder(run_dir) / MLFLOW_STORE}"


class TensorBoardTracker:
    """Scalars per epoch and an HParams session in RUN/tensorboard."""

    def __init__(self, run_dir: Path, params: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise ConfigError("--log tensorboard needs TensorBoard: pip install 'ego-dgl[tensorboard]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(str(run_dir / TB_FOLDER))
        for summary in hparams(flat_params(params), {SELECTION: 0.0}):
            self.writer.file_writer.add_summary(summary)

    def epoch(self, record: dict[str, Any]) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record["epoch"])
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


class MLflowTracker:
    """One MLflow run: the options as params, the scalars as metrics per epoch (step)."""

    def __init__(self, run_dir: Path, name: str, params: dict[str, Any]):
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
            from sqlalchemy.exc import SQLAlchemyError  # MLflow's SQL stores
        except ImportError:
            raise ConfigError("--log mlflow needs MLflow: pip install 'ego-dgl[mlflow]' (or pip install mlflow)") from None
        uri = mlflow_uri(run_dir)
        store = results_folder(run_dir) / MLFLOW_STORE
        if not os.environ.get("MLFLOW_TRACKING_URI") and store.exists() and not store.is_file():  # MLflow retries it for minutes
            raise ConfigError(f"--log mlflow: {store}, the tracking store of this results folder, is not a file; move it away")
        try:  # a damaged store (results/mlflow.db not a database, a folder in its place) fails as early as the client
            self.client = MlflowClient(uri)
            found = self.client.get_experiment_by_name(EXPERIMENT)
            experiment = found.experiment_id if found is not None else self.client.create_experiment(EXPERIMENT)
        except (MlflowException, SQLAlchemyError) as err:
            why = " ".join(str(getattr(err, "orig", None) or err).split())[:200]
            raise ConfigError(f"--log mlflow: cannot use the tracking store {uri} ({why}); check MLFLOW_TRACKING_URI") from None
        self.run_id = self.client.create_run(experiment, run_name=name, tags={"egodgl.run_dir": str(run_dir.resolve())}).info.run_id
        for key, value in flat_params(params).items():
            self.client.log_param(self.run_id, key, value)

    def epoch(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(1000 * time.time())
        metrics = [Metric(mlflow_name(k), v, stamp, record["epoch"]) for k, v in scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class NoTracker:
    """--log not given: nothing is logged."""

    def epoch(self, record: dict[str, Any]) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def open_tracker(kind: str, run_dir: Path, name: str, params: dict[str, Any]) -> Tracker:
    """The tracker of `--log KIND` for a run folder (NoTracker without one)."""
    check_logger(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, params)
    if kind == "mlflow":
        return MLflowTracker(run_dir, name, params)
    return NoTracker()


@contextmanager
def tracking(kind: str, run_dir: Path, name: str, params: dict[str, Any]) -> Iterator[Callable[[dict[str, Any]], None]]:
    """What the trainer calls with each epoch's record while training under `--log KIND`;
    the tracker is closed at the end, its MLflow run marked FINISHED, or KILLED when the
    run stopped early (Ctrl-C, a pruned trial, an error)."""
    tracker = open_tracker(kind, run_dir, name, params)
    try:
        yield tracker.epoch
    except BaseException:
        tracker.close("KILLED")
        raise
    tracker.close("FINISHED")
