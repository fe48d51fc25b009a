"""Checkpoints (best.pt, last.pt): model, optimizer, every random state the training
draws from, and the early-stopping state, so a resumed run ends exactly like an
uninterrupted one."""

from __future__ import annotations

import io
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ego_dgl.errors import ConfigError
from ego_dgl.runs import write_atomic
from ego_dgl.train.validate import check_archive, check_payload

FORMAT = 1


@dataclass
class TrainState:
    """Where training stands after `epoch` completed epochs."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = -math.inf  # selection metric (recall@10) of best_epoch
    bad_epochs: int = 0  # epochs since the selection metric last improved
    history: list[dict[str, Any]] = field(default_factory=list)


def rng_state(sampler_rng: np.random.Generator) -> dict[str, Any]:
    """Every random state training draws from: the sampler's generator, torch (CPU and
    CUDA), python's and numpy's global ones."""
    state = {
        "sampler": sampler_rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in np.random.get_state(legacy=False)["state"].items()},
        "numpy_extra": {k: v for k, v in np.random.get_state(legacy=False).items() if k != "state"},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], sampler_rng: np.random.Generator) -> None:
    """Put back what `rng_state` saved (CUDA states only where CUDA is present)."""
    sampler_rng.bit_generator.state = state["sampler"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    legacy = dict(state["numpy_extra"])
    legacy["state"] = {"key": np.asarray(state["numpy"]["key"], dtype=np.uint32), "pos": state["numpy"]["pos"]}
    np.random.set_state(legacy)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, state: TrainState, sampler_rng: np.random.Generator
) -> None:
    """Write the checkpoint atomically."""
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "train_state": asdict(state),
        "rng": rng_state(sampler_rng),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint's payload, tensors on `device`; ConfigError if it is not one."""
    if not Path(path).exists():
        raise ConfigError(f"checkpoint {path} does not exist")
    check_archive(Path(path))
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise ConfigError(f"checkpoint {path} cannot be read ({type(err).__name__}); it is damaged or not an ego-dgl checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {path} is not an ego-dgl checkpoint of format {FORMAT}")
    check_payload(payload, path)
    # the RNG byte tensors must stay on the CPU whatever the map location
    payload["rng"]["torch"] = payload["rng"]["torch"].cpu()
    if "cuda" in payload["rng"]:
        payload["rng"]["cuda"] = [t.cpu() for t in payload["rng"]["cuda"]]
    return payload


def load_model_state(
    path: Path, payload: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Put a checkpoint's parameters (and optimizer state) into the model; a checkpoint
    of another configuration is a one-line ConfigError naming the first difference."""
    try:
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise ConfigError(
            f"checkpoint {path} belongs to another configuration than its run's config.json ({detail}); "
            "use the checkpoints this run wrote"
        ) from None


def train_state(payload: dict[str, Any]) -> TrainState:
    return TrainState(**payload["train_state"])
