"""The training loop: BPR steps with early stopping on validation recall@10, best.pt and
last.pt checkpoints, resumable to the same result as an uninterrupted run.

The per-phase pieces (`seed_everything`, `resolve_device`, `sample_epoch`, `train_step`,
`evaluate_model`) are plain functions so the benchmark can time them one by one; `train`
strings them together into a resumable run. The loop never knows which model it holds
(`ego_dgl.model.base.Recommender`); what it shows lives in `progress`, what it records
in `records`, and how a finished run is loaded back in `loading`.
"""

from __future__ import annotations

import math
import queue
import random
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.markup import escape

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError, EgoDGLError, non_finite_loss
from ego_dgl.evaluate import (
    cold_refusal,
    evaluate,
    evaluate_groups,
    protocol_label,
    select_metric,
)
from ego_dgl.graph.blocks import BlockSampler, parse_fanouts
from ego_dgl.graph.heterograph import structure_graph
from ego_dgl.model.base import Recommender
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.registry import model_name
from ego_dgl.runs import BEST, CONFIG, HISTORY, LAST, METRICS, write_csv, write_json
from ego_dgl.system import check_process_count
from ego_dgl.train.budget import build_in_memory
from ego_dgl.train.checkpoint import (
    TrainState,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
    train_state,
)
from ego_dgl.train.defaults import (
    DEFAULT_FANOUT,
    TrainConfig,
    check_device,
    select_split,
)
from ego_dgl.train.parallel import (
    Rank,
    free_port,
    join_group,
    launched_group,
    launched_rank,
    objective,
    shard_batches,
    steps_per_epoch,
    total,
)
from ego_dgl.train.progress import EpochProgress
from ego_dgl.train.records import RunResult, metrics_record, note_resume, run_config
from ego_dgl.train.sampler import Batch, NegativeSampler
from ego_dgl.train.tracking import tracking


class DistTraining(Protocol):
    """What the trainer needs of a distributed graph (`ego_dgl.distributed.graph`, which
    sits above training and implements this): its block sampler, and this trainer's share
    of the training edges as steps and batches."""

    def block_sampler(self, fanouts: list[int]) -> BlockSampler: ...

    def steps(self, batch_size: int) -> int: ...

    def batches(self, sampler: NegativeSampler, rng: np.random.Generator, place: Rank, batch_size: int) -> list[Batch]: ...

EpochHook = Callable[[dict[str, Any]], None]
SHORT = {"precision": "P", "recall": "R", "ndcg": "N", "hit": "H"}


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch (every device) and DGL."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    dgl.seed(seed % 2**31)  # DGL takes a C int: seeds from 2**31 on are mapped onto its range


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for CUDA without it is a ConfigError."""
    if check_device(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this machine has no CUDA device (or torch was built without CUDA); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def make_optimizer(model: Recommender, lr: float) -> torch.optim.Optimizer | None:
    """Adam over the model's parameters; None for a model with nothing to train."""
    return torch.optim.Adam(model.parameters(), lr=lr) if model.trainable else None


class PhaseClock:
    """Accumulates wall seconds per named phase; on CUDA it synchronises first so the
    time lands in the phase that queued the work."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def sample_epoch(sampler: NegativeSampler, rng: np.random.Generator, batch_size: int) -> list[Batch]:
    """The epoch's shuffled batches, each positive with a fresh uniform negative."""
    return NegativeSampler.batches(sampler.epoch(rng), batch_size)


def block_sampler(model: Recommender, ds: Dataset, cfg: TrainConfig, dist: DistTraining | None = None) -> BlockSampler | None:
    """The block sampler of `--sampler neighbor` (None for full-graph training), on the
    partitioned graph under --dist; a model without a sampled path is a ConfigError."""
    if cfg.sampler == "full":
        return None
    if not model.supports_sampling:
        raise ConfigError(f"--sampler {cfg.sampler} is built for EgoGCN and its variants only; use --sampler full with this model")
    fanouts = parse_fanouts(cfg.fanouts or DEFAULT_FANOUT, model.sampling_layers())
    return BlockSampler(structure_graph(ds), fanouts) if dist is None else dist.block_sampler(fanouts)


def train_step(
    model: Recommender, optimizer: torch.optim.Optimizer, batch: Batch, reg: float, clock: PhaseClock,
    blocks: BlockSampler | None, batch_loss: torch.nn.Module,
) -> tuple[float, dict[str, float]]:
    """One optimisation step on a batch: (loss, the loss parts and propagation stats);
    with `blocks`, the propagation runs over the batch's sampled blocks; `batch_loss` is
    the model's objective as a module (`parallel.objective`: DDP-wrapped under --procs,
    compiled under --compile)."""
    device = model.device
    users, pos, neg = (torch.from_numpy(a).to(device) for a in (batch.users, batch.pos, batch.neg))
    sampled = None if blocks is None else blocks.sample(users, torch.cat([pos, neg]), device)
    clock.lap("t_sample")
    loss, parts = batch_loss(users, pos, neg, reg, sampled)
    clock.lap("t_forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clock.lap("t_backward")
    optimizer.step()
    clock.lap("t_optim")
    return float(loss.detach()), {k: float(v.detach()) for k, v in parts.items()}


def evaluate_model(
    model: Recommender, ds: Dataset, splits: tuple[str, ...], cfg: TrainConfig, chunk_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Full-ranking metrics of the model's current parameters on each split; the tables
    come layer by layer in chunks of `cfg.eval_chunk` nodes when it is set."""
    was_training = model.training
    model.eval()
    tables = model.layerwise_tables(cfg.eval_chunk) if cfg.eval_chunk else model.final_tables()
    out = {s: evaluate(tables.users, tables.items, ds, s, cfg.ks, cfg.protocol, chunk_size)
           | evaluate_groups(tables.users, tables.items, ds, s, cfg.ks, cfg.protocol, chunk_size, model.cold_start) for s in splits}
    model.train(was_training)
    return out


def mean_parts(sums: dict[str, float], count: int) -> dict[str, float]:
    return {k: v / max(count, 1) for k, v in sums.items()}


class Trainer:
    """The state of one run: model, optimizer, sampler, generator and early stopping."""

    def __init__(
        self, ds: Dataset, model_cfg: RecommenderConfig, train_cfg: TrainConfig, run_dir: Path, place: Rank = Rank(), dist: DistTraining | None = None
    ):
        self.ds, self.model_cfg, self.cfg, self.run_dir, self.place = ds, model_cfg, train_cfg.validate(), Path(run_dir), place
        self.dist = dist
        self.device = rank_device(resolve_device(train_cfg.device), place)
        seed_everything(train_cfg.seed)
        self.model = build_in_memory(ds, model_cfg, self.device)
        self.optimizer = make_optimizer(self.model, train_cfg.lr)
        self.sampler = NegativeSampler(ds)
        self.blocks = block_sampler(self.model, ds, self.cfg, dist)
        if self.cfg.eval_chunk:
            self.model.check_layerwise()  # before the first epoch, not at its evaluation
        self.batch_loss = objective(self.model, place, self.cfg.compile)
        self.rng = np.random.default_rng(train_cfg.seed)
        self.state = TrainState()

    def resume(self) -> None:
        """Load last.pt: parameters, optimizer, random states and early stopping."""
        payload = load_checkpoint(self.run_dir / LAST, self.device)
        load_model_state(self.run_dir / LAST, payload, self.model, self.optimizer)
        restore_rng_state(payload["rng"], self.rng)
        self.state = train_state(payload)

    @property
    def max_epochs(self) -> int:
        """The epoch limit: one for a model with nothing to train."""
        return self.cfg.epochs if self.model.trainable else 1

    def done(self) -> bool:
        return self.state.epoch >= self.max_epochs or self.state.bad_epochs >= self.cfg.patience

    def run_epoch(self, progress: EpochProgress) -> dict[str, Any]:
        """Train one epoch, evaluate, update early stopping; the epoch's history record."""
        epoch = self.state.epoch + 1
        start = time.perf_counter()
        clock = PhaseClock(self.device)
        self.model.train()
        self.model.start_epoch(epoch, self.rng)  # before the batches: a model may change its graph per epoch
        batches = self.epoch_batches() if self.model.trainable else []
        if self.blocks is not None:  # DGL's sampling generator, from the checkpointed one: resumable
            dgl.seed(int(self.rng.integers(2**31)))
        progress.start_epoch(epoch)
        sums: dict[str, float] = {"loss": 0.0}
        for k, batch in enumerate(batches, 1):
            loss, parts = train_step(self.model, self.optimizer, batch, self.cfg.reg, clock, self.blocks, self.batch_loss)
            if not math.isfinite(loss):
                raise non_finite_loss(loss, epoch, k, len(batches), self.cfg.lr)
            n = len(batch.users)
            sums["loss"] += loss * n
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * n
            progress.batch(loss)
        sums = total(sums, self.place, self.device)
        splits = ("valid", "test") if self.cfg.protocol == "legacy" else ("valid",)
        metrics = evaluate_model(self.model, self.ds, splits, self.cfg)
        clock.lap("t_eval")
        record: dict[str, Any] = {"epoch": epoch, **mean_parts(sums, len(self.sampler.pairs))}
        for split, values in metrics.items():
            record.update({f"{split}/{k}": v for k, v in values.items() if k.rsplit("/", 1)[-1] != "users"})
        record["seconds"] = time.perf_counter() - start
        record.update(clock.seconds)
        self.advance(record, metrics[select_split(self.cfg)][select_metric(self.cfg.protocol)])
        return record

    def steps(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        if self.dist is not None:
            return self.dist.steps(self.cfg.batch_size)
        return steps_per_epoch(len(self.sampler.pairs), self.place, self.cfg.batch_size)

    def epoch_batches(self) -> list[Batch]:
        """The epoch's batches, or this rank's shard of them under --procs (its share of
        the edges under --dist)."""
        if self.dist is not None:
            return self.dist.batches(self.sampler, self.rng, self.place, self.cfg.batch_size)
        if self.place.world == 1:
            return sample_epoch(self.sampler, self.rng, self.cfg.batch_size)
        return shard_batches(self.sampler.epoch(self.rng), self.place, self.cfg.batch_size)

    def advance(self, record: dict[str, Any], value: float) -> None:
        """Record the epoch, update early stopping, write best.pt (on improvement), last.pt
        and history.csv."""
        state = self.state
        state.epoch = record["epoch"]
        improved = value > state.best_value
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch, 0
        else:
            state.bad_epochs += 1
        record["best"] = int(improved)
        state.history.append(record)
        if not self.place.writes:
            return
        if improved:
            save_checkpoint(self.run_dir / BEST, self.model, self.optimizer, state, self.rng)
        save_checkpoint(self.run_dir / LAST, self.model, self.optimizer, state, self.rng)
        write_csv(self.run_dir / HISTORY, state.history)

    def finish(self) -> RunResult:
        """Evaluate best.pt on valid and test and write metrics.json."""
        best = load_checkpoint(self.run_dir / BEST, self.device)
        self.model.load_state_dict(best["model"])
        metrics = evaluate_model(self.model, self.ds, ("valid", "test"), self.cfg)
        result = RunResult(
            self.run_dir, self.state.best_epoch, self.state.epoch, metrics["valid"], metrics["test"], self.state.history, self.cfg.protocol
        )
        record = metrics_record(result, replace(self.cfg, epochs=self.max_epochs))
        if self.ds.has_cold_items:  # what the cold groups of metrics mean, and a refusal by name
            record["cold_items"] = {"count": len(self.ds.cold_items), "cold_start": self.model.cold_start,
                                    "refused": cold_refusal(self.model_cfg.label(), self.model.cold_start)}
        write_json(self.run_dir / METRICS, record)
        return result


def rank_device(device: torch.device, place: Rank) -> torch.device:
    """The device of one rank: CUDA device `local rank` when several processes share CUDA."""
    return torch.device("cuda", place.device_index) if device.type == "cuda" and place.world > 1 else device


def train(
    ds: Dataset,
    model_cfg: RecommenderConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool | str = True,
    source: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
    tag: str | None = None,
    dist: DistTraining | None = None,
) -> RunResult | None:
    """Train to early stopping (or the epoch limit) in the run folder `out_dir`; with
    `resume`, continue from its last.pt. `source` records how to reload the dataset
    (default: its name); `on_epoch` sees every epoch's record once its checkpoint is saved.
    `progress`: True (a live bar on a terminal, else a line per epoch), False, or one of
    progress.DISPLAYS; `tag` starts each plain line (e.g. a sweep cell's key); `dist`: this
    trainer's DistDGL graph and edge share (`train --dist`, in a launched process).
    With `train_cfg.procs` > 1 the epochs run data-parallel in that many processes; in a
    process a launcher started (torchrun), as its rank of the launcher's group (the result
    on rank 0, None on the others)."""
    run_dir = Path(out_dir)
    place = launched_rank(train_cfg.procs)
    if place is None or place.writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / CONFIG).exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it with --resume or pick a new folder")
    kwargs = dict(ds=ds, model_cfg=model_cfg, train_cfg=train_cfg, run_dir=run_dir, resume=resume, progress=progress, source=source, tag=tag)
    if place is not None:
        with launched_group(place, rank_device(resolve_device(train_cfg.device), place)):
            return train_rank(place, on_epoch=on_epoch, dist=dist, **kwargs)
    if train_cfg.procs > 1:
        if on_epoch is not None:
            raise ConfigError("an on_epoch hook runs in one process; train with procs=1")
        check_procs(train_cfg.procs, resolve_device(train_cfg.device))
        return spawn_ranks(train_cfg.procs, kwargs)
    return train_rank(Rank(), on_epoch=on_epoch, dist=dist, **kwargs)


def check_procs(procs: int, device: torch.device) -> None:
    """Refuse more --procs than there are CUDA devices (one per process) or than the CPU's
    cores can run (system.check_process_count)."""
    if device.type != "cuda":
        check_process_count("--procs", procs)
    elif procs > torch.cuda.device_count():
        raise ConfigError(f"--procs {procs} on CUDA needs one device per process, but {torch.cuda.device_count()} are present")


def train_rank(
    place: Rank, ds: Dataset, model_cfg: RecommenderConfig, train_cfg: TrainConfig, run_dir: Path, resume: bool,
    progress: bool | str, source: dict[str, Any] | None, tag: str | None, on_epoch: EpochHook | None = None,
    dist: DistTraining | None = None,
) -> RunResult | None:
    """`train` in one process (rank 0 of 1, or one rank of --procs): the result on the
    rank that writes the run folder, None on the others."""
    trainer = Trainer(ds, model_cfg, train_cfg, run_dir, place, dist)
    if resume:
        trainer.resume()
        if trainer.done() and (run_dir / METRICS).exists():
            raise ConfigError(
                f"run {run_dir} already finished at epoch {trainer.state.epoch}; raise --epochs or --patience to continue it"
            )
        if place.writes:
            note_resume(run_dir, trainer.cfg, trainer.state.epoch, trainer.device)
    elif place.writes:
        write_json(run_dir / CONFIG, run_config(ds, source or {"source": ds.name}, model_cfg, trainer.cfg, trainer.device, trainer.model))
    split = select_split(trainer.cfg)
    batches = trainer.steps()
    display = {True: "auto", False: "off"}.get(progress, progress) if place.writes else "off"
    log = trainer.cfg.log if place.writes else ""
    params = {"model_name": model_name(model_cfg), **asdict(model_cfg), **asdict(trainer.cfg)}
    with EpochProgress(display, trainer.max_epochs, trainer.state.epoch, batches, trainer.cfg.patience, tag) as bar, \
            tracking(log, run_dir, tag or run_dir.name, params) as track:
        if trainer.model.backend_note:
            bar.note(f"note: {escape(trainer.model.backend_note)}")
        if trainer.cfg.compile != "off":
            bar.note(f"note: --compile {trainer.cfg.compile}: the first step compiles the training step (minutes on a CPU)")
        if trainer.cfg.protocol == "legacy":
            bar.note(f"[yellow]{protocol_label('legacy')}[/]")
        while not trainer.done():
            record = trainer.run_epoch(bar)
            bar.end_epoch(record, trainer.state, split, "R@" + select_metric(trainer.cfg.protocol).split("@")[1])
            track(record)
            if on_epoch is not None:
                on_epoch(record)
    return trainer.finish() if place.writes else None


def _rank_main(rank: int, world: int, port: int, results: Any, kwargs: dict[str, Any]) -> None:
    """One spawned rank: join the group, train, hand rank 0's result (or any project
    error, to be raised as is) to the parent."""
    place = Rank(rank, world)
    join_group(place, port, rank_device(resolve_device(kwargs["train_cfg"].device), place))
    try:
        result = train_rank(place, **kwargs)
        if place.writes:
            results.put(result)
    except EgoDGLError as err:
        results.put(err)
        raise
    finally:
        torch.distributed.destroy_process_group()


def spawn_ranks(world: int, kwargs: dict[str, Any]) -> RunResult:
    """Run `train_rank` in `world` spawned processes joined over a free localhost port;
    rank 0's result, or the first project error a rank raised."""
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = torch.multiprocessing.start_processes(_rank_main, (world, free_port(), results, kwargs), nprocs=world, join=False, start_method="spawn")
    received: list[Any] = []
    try:
        while not procs.join(timeout=0.2):
            while not results.empty():  # read while the ranks run: a full pipe would block them
                received.append(results.get())
    except torch.multiprocessing.ProcessRaisedException:
        errors = [r for r in received + drain(results) if isinstance(r, EgoDGLError)]
        if errors:
            raise errors[0] from None
        raise
    received += drain(results)
    return next(r for r in received if isinstance(r, RunResult))


def drain(results: Any) -> list[Any]:
    """What is left in a multiprocessing queue, waiting briefly for items in flight."""
    out = []
    while True:
        try:
            out.append(results.get(timeout=1.0))
        except queue.Empty:
            return out
