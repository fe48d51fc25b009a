"""What `egodgl train` does around the trainer: resolve options, load the dataset, make
the run folder, train or resume, and turn an interruption into a resume hint.

In a process a launcher started (torchrun), rank 0 makes, locks and writes the run
folder and shows progress; the other ranks train beside it and return None. With --dist
the process first joins DistDGL's graph servers (a server process serves there and exits)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError, EgoDGLError
from ego_dgl.runs import (
    LAST,
    check_run_dir,
    create_run_dir,
    ensure_folder,
    run_lock,
    runs_root,
)
from ego_dgl.train.budget import check_fits
from ego_dgl.train.defaults import TrainConfig, resolve_options, run_label
from ego_dgl.train.loading import configs_of, load_run_dataset
from ego_dgl.train.parallel import Rank, from_rank0, launched_group, launched_rank
from ego_dgl.train.records import RunResult, dataset_source, load_run_config
from ego_dgl.train.trainer import rank_device, resolve_device, train

# options that may change when a run is resumed: they do not alter what an epoch computes
RESUME_OPTIONS = ("epochs", "patience", "device", "compile", "log")


def guarded_train(run_dir: Path, fresh: bool, **kwargs: Any) -> RunResult:
    """train() holding the run folder's lock; a fresh run that fails before its first
    checkpoint leaves no folder behind, and an interruption after it ends with the
    command that resumes it."""
    try:
        with run_lock(run_dir):
            return train(out_dir=run_dir, **kwargs)
    except BaseException as err:
        if not (run_dir / LAST).exists():
            if fresh:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if isinstance(err, KeyboardInterrupt):
            raise EgoDGLError(f"interrupted; continue the run with: egodgl train --resume {run_dir}") from None
        raise


def rank_train(place: Rank | None, run_dir: Path, fresh: bool, **kwargs: Any) -> RunResult | None:
    """`guarded_train` in the process that writes the run folder; plain `train` (which
    writes nothing) on the other ranks of a launcher's group."""
    if place is None or place.writes:
        return guarded_train(run_dir, fresh, **kwargs)
    return train(out_dir=run_dir, **kwargs)


def dist_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """With --dist: the partition config as an absolute path, and --dataset (the
    partitioned one) and --sampler (neighbor) when not given."""
    if not given.get("dist"):
        return given
    from ego_dgl.distributed.partition import read_partitions

    parts = read_partitions(given["dist"])
    return {"dataset": parts.dataset, "sampler": "neighbor", **given, "dist": str(parts.config)}


def dist_training(train_cfg: TrainConfig) -> Callable[[Dataset, Rank], Any] | None:
    """Under --dist: join the graph servers now (before the dataset is loaded: a server
    process serves its partition there and exits) and return what makes this trainer's
    DistTraining from the dataset (which must be the partitioned one); None otherwise."""
    if not train_cfg.dist:
        return None
    from ego_dgl.distributed.graph import DistTraining, connect
    from ego_dgl.distributed.partition import read_partitions
    from ego_dgl.train.sampler import NegativeSampler

    parts = read_partitions(train_cfg.dist)
    graph = connect(parts)

    def share(ds: Dataset, place: Rank) -> DistTraining:
        parts.check_dataset(ds)
        return DistTraining.of(graph, parts, NegativeSampler(ds).pairs, place)

    return share


def start_run(given: dict[str, Any], progress: bool = True) -> RunResult | None:
    """A new run from the explicitly given options (command line over config file); None
    on a launcher's ranks other than 0."""
    from ego_dgl.data import load_dataset

    dataset, model_cfg, train_cfg, _ = resolve_options(dist_defaults(given))
    device = resolve_device(train_cfg.device)  # fail before anything is written
    share = dist_training(train_cfg)
    place = launched_rank(train_cfg.procs)
    progress = progress and (place is None or place.writes)
    root = ensure_folder(runs_root(given.get("out")))  # and before the dataset is loaded
    ds = load_dataset(dataset, progress=progress)
    check_fits(ds, model_cfg, str(device))
    dist = share(ds, place or Rank()) if share else None
    with launched_group(place, rank_device(device, place or Rank())):
        made = create_run_dir(root, dataset, run_label(model_cfg, train_cfg)) if place is None or place.writes else None
        run_dir = Path(from_rank0(str(made), place))
        return rank_train(
            place, run_dir, True, ds=ds, model_cfg=model_cfg, train_cfg=train_cfg, progress=progress, source=dataset_source(dataset),
            dist=dist,
        )


def resume_run(run_dir: str | Path, given: dict[str, Any], progress: bool = True) -> RunResult | None:
    """Continue a run from its last checkpoint with its saved options; only the stopping
    options, the device and --compile may be changed. None on a launcher's ranks other than 0."""
    extra = sorted(k for k in given if k not in RESUME_OPTIONS)
    if extra:
        name = extra[0].replace("_", "-")
        raise ConfigError(f"--resume continues a run with its saved options; drop --{name} (only --epochs, --patience, --device, --compile, --log "
            "may change)")
    run_dir = check_run_dir(run_dir, LAST)
    config = load_run_config(run_dir)
    model_cfg, train_cfg = configs_of(config)
    train_cfg = replace(train_cfg, **given)
    device = resolve_device(train_cfg.device)
    share = dist_training(train_cfg)
    place = launched_rank(train_cfg.procs)
    progress = progress and (place is None or place.writes)
    ds = load_run_dataset(config, progress)
    check_fits(ds, model_cfg, str(device))
    return rank_train(
        place, run_dir, False, ds=ds, model_cfg=model_cfg, train_cfg=train_cfg, resume=True, progress=progress,
        dist=share(ds, place or Rank()) if share else None,
    )
