"""What a run folder records about a run: config.json (every resolved option, the
dataset's fingerprint, versions, device and backend), metrics.json (the selected epoch
and its figures), and the note a resume leaves in config.json."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.evaluate import protocol_label
from ego_dgl.model.base import Recommender
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.registry import model_name
from ego_dgl.runs import CONFIG, read_json, write_json
from ego_dgl.train.defaults import TrainConfig, profile_for, selection
from ego_dgl.train.validate import check_run_config


@dataclass
class RunResult:
    """What a finished run reports: the test figures of the selected epoch."""

    run_dir: Path
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    protocol: str


def package_versions() -> dict[str, str]:
    import ego_dgl

    return {
        "ego_dgl": ego_dgl.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "numpy": np.__version__,
    }


def run_config(
    ds: Dataset, source: dict[str, Any], model_cfg: RecommenderConfig, train_cfg: TrainConfig, device: torch.device, model: Recommender
) -> dict[str, Any]:
    """Everything needed to understand and rebuild the run: config.json's content."""
    return {
        "created": datetime.now().isoformat(timespec="microseconds"),
        "dataset": {
            **source,
            "name": ds.name,
            "fingerprint": ds.fingerprint(),
            "num_users": ds.num_users,
            "num_items": ds.num_items,
            "num_train": len(ds.train),
            "modalities": ds.modality_dims(),
        },
        "profile": profile_for(str(source["source"])),
        "model_name": model_name(model_cfg),
        "model": asdict(model_cfg),
        "train": {**asdict(train_cfg), "ks": list(train_cfg.ks)},
        "selection": selection(train_cfg),
        "protocol": train_cfg.protocol,
        "protocol_label": protocol_label(train_cfg.protocol),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backend": model.backend,
        "backend_note": model.backend_note,
        "versions": package_versions(),
    }


def metrics_record(result: RunResult, cfg: TrainConfig) -> dict[str, Any]:
    """metrics.json: the selected epoch and its valid and test figures, labelled."""
    return {
        "protocol": result.protocol,
        "protocol_label": protocol_label(result.protocol),
        "selection": selection(cfg),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.epochs_run < cfg.epochs,
        "valid": result.valid,
        "test": result.test,
    }


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run folder, checked field by field."""
    return check_run_config(read_json(Path(run_dir) / CONFIG), Path(run_dir) / CONFIG)


def note_resume(run_dir: Path, cfg: TrainConfig, at_epoch: int, device: torch.device) -> None:
    """Record in config.json when and with which stopping options a run was resumed."""
    config = load_run_config(run_dir)
    config["train"].update(epochs=cfg.epochs, patience=cfg.patience)
    config.setdefault("resumed", []).append({"at_epoch": at_epoch, "time": datetime.now().isoformat(timespec="seconds"), "device": str(device)})
    write_json(run_dir / CONFIG, config)


def dataset_source(dataset: str) -> dict[str, Any]:
    """How config.json records the dataset: a folder as an absolute path, a name as is,
    and (for information) the folder of prepared datasets in use."""
    from ego_dgl.data import datasets_root

    path = Path(dataset)
    source = str(path.resolve()) if path.is_dir() else dataset
    return {"source": source, "datasets_root": str(datasets_root().resolve())}
