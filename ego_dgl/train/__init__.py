"""Training: options and per-dataset defaults, negative sampling, the trainer, checkpoints."""

from ego_dgl.train.defaults import TrainConfig, resolve_options
from ego_dgl.train.records import RunResult
from ego_dgl.train.trainer import train

__all__ = ["RunResult", "TrainConfig", "resolve_options", "train"]
