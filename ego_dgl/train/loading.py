"""Bringing a trained run back from its folder: its options, its dataset (refused if the
data changed since training) and the model with its best checkpoint's parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import DataError
from ego_dgl.evaluate import check_eval_options, protocol_ks
from ego_dgl.model.base import Recommender
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.registry import config_type
from ego_dgl.runs import BEST, CONFIG, check_run_dir
from ego_dgl.train.budget import build_in_memory
from ego_dgl.train.checkpoint import load_checkpoint, load_model_state
from ego_dgl.train.defaults import TrainConfig, check_eval_chunk
from ego_dgl.train.records import load_run_config
from ego_dgl.train.trainer import evaluate_model, resolve_device
from ego_dgl.train.validate import CONFIG_HINT


def configs_of(config: dict[str, Any]) -> tuple[Any, TrainConfig]:
    """The model and training options a run folder's config.json recorded (runs from
    before the registry are EgoGCN's)."""
    train_opts = {**config["train"], "ks": tuple(config["train"]["ks"])}
    return config_type(config.get("model_name", "egogcn"))(**config["model"]), TrainConfig(**train_opts)


def load_run_dataset(config: dict[str, Any], progress: bool = False) -> Dataset:
    """Reload a run's dataset, refusing one whose content changed since training."""
    from ego_dgl.data import load_dataset

    info = config["dataset"]
    ds = load_dataset(info["source"], progress=progress)
    if ds.fingerprint() != info["fingerprint"]:
        raise DataError(
            f"dataset {info['source']!r} changed since the run was trained (fingerprint {ds.fingerprint()} != {info['fingerprint']}); "
            "its checkpoint no longer matches the data"
        )
    return ds


@dataclass
class LoadedRun:
    """A trained run brought back: its dataset, options and the best checkpoint's model."""

    run_dir: Path
    config: dict[str, Any]
    ds: Dataset
    model_cfg: RecommenderConfig
    train_cfg: TrainConfig
    model: Recommender
    epoch: int  # the epoch the best checkpoint was taken at


def load_run(run_dir: str | Path, device: str = "auto", progress: bool = False) -> LoadedRun:
    """Rebuild a run's model with the parameters of its best checkpoint."""
    run_dir = check_run_dir(run_dir, BEST)
    config = load_run_config(run_dir)
    model_cfg, train_cfg = configs_of(config)
    ds = load_run_dataset(config, progress)
    torch_device = resolve_device(device)
    model = build_in_memory(ds, model_cfg, torch_device, f"{run_dir / CONFIG} asks for it; {CONFIG_HINT}")
    payload = load_checkpoint(run_dir / BEST, torch_device)
    load_model_state(run_dir / BEST, payload, model)
    model.eval()
    return LoadedRun(run_dir, config, ds, model_cfg, replace(train_cfg, device=device), model, payload["train_state"]["epoch"])


def evaluate_run(
    run: LoadedRun, splits: tuple[str, ...] = ("valid", "test"), protocol: str | None = None, ks: tuple[int, ...] | None = None,
    eval_chunk: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of a run's best checkpoint, by default with the options it was trained with
    (`eval_chunk`: nodes per chunk of layer-wise inference, 0 the whole graph); asking
    for --protocol mmrec without cut-offs gives MMRec's 5/10/20/50."""
    cfg = replace(
        run.train_cfg, protocol=protocol or run.train_cfg.protocol,
        ks=tuple(ks) if ks else protocol_ks("mmrec") if protocol == "mmrec" else run.train_cfg.ks,
        eval_chunk=run.train_cfg.eval_chunk if eval_chunk is None else eval_chunk,
    )
    check_eval_options(cfg.ks, cfg.protocol)
    check_eval_chunk(cfg.eval_chunk)
    return evaluate_model(run.model, run.ds, splits, cfg)
