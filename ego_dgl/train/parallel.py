"""Data-parallel training on one machine (`train --procs N`): N processes, each with the
same model, a shard of every epoch's BPR triples and DDP averaging the gradients (gloo
on CPU, nccl on CUDA, one device per process). The same ranks run under a launcher
that starts the processes itself (torchrun, DGL's launch tools): `launched_rank` reads
their place from the environment and `launched_group` joins the launcher's group.

Every rank draws the same epoch from the same generator and keeps the triples r, r + N,
r + 2N, ...; the shards are cut into the same number of batches so that the ranks step
in lockstep. Every rank evaluates (the same parameters give the same figures, so early
stopping agrees without messages); only rank 0 writes the run folder.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender
from ego_dgl.train.sampler import Batch


@dataclass(frozen=True)
class Rank:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local: int | None = None  # the rank among this machine's processes (a launcher's LOCAL_RANK); default: rank

    @property
    def device_index(self) -> int:
        """The CUDA device this rank uses when the ranks share CUDA: its local rank."""
        return self.rank if self.local is None else self.local

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


def objective(model: Recommender, place: Rank, compile_mode: str = "off") -> nn.Module:
    """The batch objective of `model`: DDP-wrapped across the ranks when there are several
    (DDP also copies rank 0's parameters to the others at the start); under torch.compile
    with `compile_mode` (`train --compile`), which is built for one process only: a
    launcher's ranks (torchrun, where --procs stays 1) are refused here."""
    loss = BatchLoss(model)
    if not model.trainable:
        return loss
    if compile_mode != "off":
        if place.world > 1:
            raise ConfigError(f"--compile is built for training in one process, but this is rank {place.rank} of {place.world}; drop --compile")
        return compiled(loss, compile_mode)
    if place.world == 1:
        return loss
    device_ids = [model.device.index] if model.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(loss, device_ids=device_ids, find_unused_parameters=True)


def compiled(loss: nn.Module, mode: str) -> nn.Module:
    """`loss` under torch.compile: dynamo traces the forward and, through AOTAutograd, the
    backward into inductor kernels; what it cannot trace (DGL's C kernels, data-dependent
    shapes) runs eagerly between the compiled pieces. With "reduce-overhead" inductor
    replays CUDA graphs of the pieces on CUDA (on the CPU it is "default"). The first step
    compiles, and the shorter last batch of an epoch once more. The graph breaks at DGL's
    kernels are expected, so dynamo's warnings about them are silenced in this process."""
    torch._logging.set_logs(dynamo=logging.ERROR)
    warnings.filterwarnings("ignore", message=r"Dynamo ", category=UserWarning)
    return torch.compile(loss, mode=mode)


def backend_for(device: torch.device) -> str:
    """The collective backend of a device: nccl on CUDA, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_group(place: Rank, port: int, device: torch.device) -> None:
    """Join the process group of the run on localhost:`port`."""
    dist.init_process_group(backend_for(device), init_method=f"tcp://127.0.0.1:{port}", rank=place.rank, world_size=place.world)


LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_rank(procs: int = 1, env: Mapping[str, str] = os.environ) -> Rank | None:
    """This process's place when a launcher (torchrun) started it, from RANK, WORLD_SIZE
    and LOCAL_RANK; None when they are not set. --procs N (which spawns its own
    processes) under a launcher, or a partial launcher environment, is a ConfigError."""
    present = [v for v in LAUNCH_VARIABLES if v in env]
    if not present:
        return None
    if len(present) < len(LAUNCH_VARIABLES):
        missing = ", ".join(v for v in LAUNCH_VARIABLES if v not in env)
        raise ConfigError(f"the environment sets {present[0]} but not {missing}: start the processes with torchrun, or unset {present[0]}")
    if procs > 1:
        raise ConfigError(f"--procs {procs} spawns its own processes, but this one was started by a launcher (torchrun sets RANK); "
                          "drop --procs and give the process count to the launcher (--nproc_per_node)")
    try:
        place = Rank(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (the launcher sets them)") from None
    if not 0 <= place.rank < place.world:
        raise ConfigError(f"RANK {place.rank} does not lie in 0..WORLD_SIZE-1 (WORLD_SIZE {place.world})")
    return place


@contextmanager
def launched_group(place: Rank | None, device: torch.device) -> Iterator[None]:
    """Inside the block, this process is in the launcher's process group (joined from the
    environment, env://, unless it already is, and left at the end); no-op for None."""
    join = place is not None and not dist.is_initialized()
    if join:
        dist.init_process_group(backend_for(device), init_method="env://", rank=place.rank, world_size=place.world)
    try:
        yield
    finally:
        if join:
            dist.destroy_process_group()


def from_rank0(value: Any, place: Rank | None) -> Any:
    """Rank 0's `value` on every rank (e.g. the run folder rank 0 created)."""
    if place is None or place.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(values: dict[str, float], place: Rank, device: torch.device) -> dict[str, float]:
    """The per-key sums of `values` over every rank (the same keys on every rank)."""
    if place.world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))
