"""BPR training with early stopping, checkpoints and run records.

The per-phase pieces (`seed_everything`, `resolve_device`, `sample_epoch`, `train_step`,
`evaluate_model`) are plain functions so the benchmark can time them one by one; `train`
strings them together into a resumable run.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError, DataError, non_finite_loss
from ego_dgl.evaluate import check_eval_options, evaluate, protocol_label
from ego_dgl.model.config import ModelConfig
from ego_dgl.runs import BEST, CONFIG, HISTORY, LAST, METRICS, check_run_dir, read_json, write_csv, write_json
from ego_dgl.train.checkpoint import TrainState, load_checkpoint, load_model_state, restore_rng_state, save_checkpoint, train_state
from ego_dgl.train.defaults import SELECT_METRIC, TrainConfig, profile_for
from ego_dgl.train.sampler import Batch, NegativeSampler

EpochHook = Callable[[dict[str, Any]], None]
SHORT = {"precision": "P", "recall": "R", "ndcg": "N", "hit": "H"}


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


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch (every device) and DGL."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    dgl.seed(seed)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for CUDA without it is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: this machine has no CUDA device (or torch was built without CUDA); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device


def build_model(ds: Dataset, cfg: ModelConfig, device: torch.device) -> torch.nn.Module:
    """EgoGCN on `device` (graphs and index tensors included)."""
    from ego_dgl.model import EgoGCN

    return EgoGCN(ds, cfg).to(device)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


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


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, reg: float, clock: PhaseClock
) -> tuple[float, dict[str, float]]:
    """One optimisation step on a batch: (loss, the loss parts and propagation stats)."""
    device = next(model.parameters()).device
    users, pos, neg = (torch.from_numpy(a).to(device) for a in (batch.users, batch.pos, batch.neg))
    clock.lap("t_sample")
    loss, parts = model.loss(users, pos, neg, reg)
    clock.lap("t_forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clock.lap("t_backward")
    optimizer.step()
    clock.lap("t_optim")
    return float(loss.detach()), {k: float(v.detach()) for k, v in parts.items()}


def evaluate_model(
    model: torch.nn.Module, ds: Dataset, splits: tuple[str, ...], cfg: TrainConfig, chunk_size: int | None = None
) -> dict[str, dict[str, float]]:
    """Full-ranking metrics of the model's current parameters on each split."""
    was_training = model.training
    model.eval()
    tables = model.final_tables()
    out = {s: evaluate(tables.users, tables.items, ds, s, cfg.ks, cfg.protocol, chunk_size) for s in splits}
    model.train(was_training)
    return out


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
    ds: Dataset, source: dict[str, Any], model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, model: torch.nn.Module
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
        "model": asdict(model_cfg),
        "train": {**asdict(train_cfg), "ks": list(train_cfg.ks)},
        "selection": f"{select_split(train_cfg)} {SELECT_METRIC}",
        "protocol": train_cfg.protocol,
        "protocol_label": protocol_label(train_cfg.protocol),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backend": model.backend,
        "backend_note": model.backend_note,
        "versions": package_versions(),
    }


def select_split(cfg: TrainConfig) -> str:
    """The split whose recall@10 picks the epoch: valid, or test under the legacy protocol."""
    return "test" if cfg.protocol == "legacy" else "valid"


def mean_parts(sums: dict[str, float], count: int) -> dict[str, float]:
    return {k: v / max(count, 1) for k, v in sums.items()}


class EpochProgress:
    """A rich progress display: an epoch bar (best selection metric) and a batch bar
    (running loss, latest validation metrics). Silent when disabled."""

    def __init__(self, enabled: bool, total_epochs: int, done_epochs: int, batches: int, patience: int):
        self.enabled, self.patience = enabled, patience
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=not enabled,
        )
        self.epochs = self.progress.add_task("epochs", total=total_epochs, completed=done_epochs, info="")
        self.batches = self.progress.add_task("batches", total=batches, info="")

    def __enter__(self) -> "EpochProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)

    def start_epoch(self, epoch: int) -> None:
        self.progress.reset(self.batches, description=f"epoch {epoch}", info="")

    def batch(self, loss: float) -> None:
        self.progress.update(self.batches, advance=1, info=f"loss {loss:.4f}")

    def end_epoch(self, record: dict[str, Any], state: TrainState, split: str) -> None:
        valid = " ".join(f"{SHORT[k.split('/')[1].split('@')[0]]}@10 {v:.4f}" for k, v in record.items() if k.startswith("valid/") and k.endswith("@10"))
        self.progress.update(self.batches, info=f"loss {record['loss']:.4f} | valid {valid}")
        best = f"best {split} R@10 {state.best_value:.4f} @{state.best_epoch}"
        self.progress.update(self.epochs, completed=record["epoch"], info=f"{best}, {state.bad_epochs}/{self.patience} w/o gain")


class Trainer:
    """The state of one run: model, optimizer, sampler, generator and early stopping."""

    def __init__(self, ds: Dataset, model_cfg: ModelConfig, train_cfg: TrainConfig, run_dir: Path):
        self.ds, self.model_cfg, self.cfg, self.run_dir = ds, model_cfg, train_cfg.validate(), Path(run_dir)
        self.device = resolve_device(train_cfg.device)
        seed_everything(train_cfg.seed)
        self.model = build_model(ds, model_cfg, self.device)
        self.optimizer = make_optimizer(self.model, train_cfg.lr)
        self.sampler = NegativeSampler(ds)
        self.rng = np.random.default_rng(train_cfg.seed)
        self.state = TrainState()

    def resume(self) -> None:
        """Load last.pt: parameters, optimizer, random states and early stopping."""
        payload = load_checkpoint(self.run_dir / LAST, self.device)
        load_model_state(self.run_dir / LAST, payload, self.model, self.optimizer)
        restore_rng_state(payload["rng"], self.rng)
        self.state = train_state(payload)

    def done(self) -> bool:
        return self.state.epoch >= self.cfg.epochs or self.state.bad_epochs >= self.cfg.patience

    def run_epoch(self, progress: EpochProgress) -> dict[str, Any]:
        """Train one epoch, evaluate, update early stopping; the epoch's history record."""
        epoch = self.state.epoch + 1
        start = time.perf_counter()
        clock = PhaseClock(self.device)
        self.model.train()
        batches = sample_epoch(self.sampler, self.rng, self.cfg.batch_size)
        progress.start_epoch(epoch)
        sums: dict[str, float] = {"loss": 0.0}
        for k, batch in enumerate(batches, 1):
            loss, parts = train_step(self.model, self.optimizer, batch, self.cfg.reg, clock)
            if not math.isfinite(loss):
                raise non_finite_loss(loss, epoch, k, len(batches), self.cfg.lr)
            n = len(batch.users)
            sums["loss"] += loss * n
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * n
            progress.batch(loss)
        splits = ("valid", "test") if self.cfg.protocol == "legacy" else ("valid",)
        metrics = evaluate_model(self.model, self.ds, splits, self.cfg)
        clock.lap("t_eval")
        record: dict[str, Any] = {"epoch": epoch, **mean_parts(sums, len(self.sampler.pairs))}
        for split, values in metrics.items():
            record.update({f"{split}/{k}": v for k, v in values.items() if k != "users"})
        record["seconds"] = time.perf_counter() - start
        record.update(clock.seconds)
        self.advance(record, metrics[select_split(self.cfg)][SELECT_METRIC])
        return record

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
        write_json(self.run_dir / METRICS, metrics_record(result, self.cfg))
        return result


def metrics_record(result: RunResult, cfg: TrainConfig) -> dict[str, Any]:
    """metrics.json: the selected epoch and its valid and test figures, labelled."""
    return {
        "protocol": result.protocol,
        "protocol_label": protocol_label(result.protocol),
        "selection": f"{select_split(cfg)} {SELECT_METRIC}",
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.epochs_run < cfg.epochs,
        "valid": result.valid,
        "test": result.test,
    }


def note_resume(run_dir: Path, trainer: Trainer) -> None:
    """Record in config.json when and with which stopping options a run was resumed."""
    config = load_run_config(run_dir)
    config["train"].update(epochs=trainer.cfg.epochs, patience=trainer.cfg.patience)
    config.setdefault("resumed", []).append(
        {"at_epoch": trainer.state.epoch, "time": datetime.now().isoformat(timespec="seconds"), "device": str(trainer.device)}
    )
    write_json(run_dir / CONFIG, config)


def train(
    ds: Dataset,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
) -> RunResult:
    """Train to early stopping (or the epoch limit) in the run folder `out_dir`; with
    `resume`, continue from its last.pt. `source` records how to reload the dataset
    (default: its name); `on_epoch` sees every epoch's record once its checkpoint is saved."""
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and (run_dir / CONFIG).exists():
        raise ConfigError(f"{run_dir} already holds a run; resume it with --resume or pick a new folder")
    trainer = Trainer(ds, model_cfg, train_cfg, run_dir)
    if resume:
        trainer.resume()
        if trainer.done() and (run_dir / METRICS).exists():
            raise ConfigError(
                f"run {run_dir} already finished at epoch {trainer.state.epoch}; raise --epochs or --patience to continue it"
            )
        note_resume(run_dir, trainer)
    else:
        write_json(run_dir / CONFIG, run_config(ds, source or {"source": ds.name}, model_cfg, trainer.cfg, trainer.device, trainer.model))
    split = select_split(trainer.cfg)
    batches = trainer.sampler.num_batches(trainer.cfg.batch_size)
    with EpochProgress(progress, trainer.cfg.epochs, trainer.state.epoch, batches, trainer.cfg.patience) as bar:
        if trainer.model.backend_note:
            bar.note(f"note: {trainer.model.backend_note}")
        if trainer.cfg.protocol == "legacy":
            bar.note(f"[yellow]{protocol_label('legacy')}[/]")
        while not trainer.done():
            record = trainer.run_epoch(bar)
            bar.end_epoch(record, trainer.state, split)
            if on_epoch is not None:
                on_epoch(record)
    return trainer.finish()


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run folder."""
    return read_json(Path(run_dir) / CONFIG)


def configs_of(config: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The model and training options a run folder's config.json recorded."""
    train_opts = {**config["train"], "ks": tuple(config["train"]["ks"])}
    return ModelConfig(**config["model"]), TrainConfig(**train_opts)


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
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    model: torch.nn.Module
    epoch: int  # the epoch the best checkpoint was taken at


def load_run(run_dir: str | Path, device: str = "auto", progress: bool = False) -> LoadedRun:
    """Rebuild a run's model with the parameters of its best checkpoint."""
    run_dir = check_run_dir(run_dir, BEST)
    config = load_run_config(run_dir)
    model_cfg, train_cfg = configs_of(config)
    ds = load_run_dataset(config, progress)
    torch_device = resolve_device(device)
    model = build_model(ds, model_cfg, torch_device)
    payload = load_checkpoint(run_dir / BEST, torch_device)
    load_model_state(run_dir / BEST, payload, model)
    model.eval()
    return LoadedRun(run_dir, config, ds, model_cfg, replace(train_cfg, device=device), model, payload["train_state"]["epoch"])


def evaluate_run(
    run: LoadedRun, splits: tuple[str, ...] = ("valid", "test"), protocol: str | None = None, ks: tuple[int, ...] | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of a run's best checkpoint, by default with the options it was trained with."""
    cfg = replace(run.train_cfg, protocol=protocol or run.train_cfg.protocol, ks=tuple(ks) if ks else run.train_cfg.ks)
    check_eval_options(cfg.ks, cfg.protocol)
    return evaluate_model(run.model, run.ds, splits, cfg)
