"""Data-parallel training on one machine (`train --procs N`): N processes, each with the
same model, a shard of every epoch's BPR triples and DDP averaging the gradients (gloo
on CPU, nccl on CUDA, one device per process).

Every rank draws the same epoch from the same generator and keeps the triples r, r + N,
r + 2N, ...; the shards are cut into the same number of batches so that the ranks step
in lockstep. Every rank evaluates (the same parameters give the same figures, so early
stopping agrees without messages); only rank 0 writes the run folder.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ego_dgl.model.base import Recommender
from ego_dgl.train.sampler import Batch


@dataclass(frozen=True)
class Rank:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder and shows progress (rank 0)."""
        return self.rank == 0


def free_port() -> int:
    """A TCP port on localhost that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def steps_per_epoch(triples: int, place: Rank, batch_size: int) -> int:
    """Batches per rank and epoch: what the largest shard needs at `batch_size`."""
    return math.ceil(math.ceil(triples / place.world) / batch_size)


def shard_batches(epoch: Batch, place: Rank, batch_size: int) -> list[Batch]:
    """This rank's batches of an epoch: every world-th triple from its rank, cut into
    `steps_per_epoch` batches, so every rank takes the same number of steps."""
    count = steps_per_epoch(len(epoch.users), place, batch_size)
    parts = [np.array_split(a[place.rank :: place.world], count) for a in (epoch.users, epoch.pos, epoch.neg)]
    return [Batch(u, p, n) for u, p, n in zip(*parts)]


class BatchLoss(nn.Module):
    """The model's batch objective as a module call, so DDP (which hooks `forward`)
    can average its gradients: `loss`, or `sampled_loss` when a sampled batch is given."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float, sampled: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        if sampled is None:
            return self.model.loss(users, pos, neg, reg)
        return self.model.sampled_loss(users, pos, neg, reg, sampled)


def objective(model: Recommender, place: Rank) -> nn.Module:
    """The batch objective of `model`: DDP-wrapped across the ranks when there are several
    (DDP also copies rank 0's parameters to the others at the start)."""
    loss = BatchLoss(model)
    if place.world == 1 or not model.trainable:
        return loss
    device_ids = [model.device.index] if model.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(loss, device_ids=device_ids, find_unused_parameters=True)


def join_group(place: Rank, port: int, device: torch.device) -> None:
    """Join the process group of the run on localhost:`port`."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=place.rank, world_size=place.world)


def total(values: dict[str, float], place: Rank, device: torch.device) -> dict[str, float]:
    """The per-key sums of `values` over every rank (the same keys on every rank)."""
    if place.world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))
