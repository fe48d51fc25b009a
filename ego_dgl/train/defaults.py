"""Training options, the paper's per-dataset hyper-parameters, and how the options a user
gives (command line, config file) are resolved over those defaults."""

from __future__ import annotations

import math
import re
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import (
    DEFAULT_KS,
    PROTOCOLS,
    check_eval_options,
    protocol_ks,
    select_metric,
)
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.registry import (
    MODELS,
    all_option_types,
    config_fields,
    config_type,
    resolve_model,
)
from ego_dgl.train.tracking import check_logger
from ego_dgl.untrusted import MAX_COUNT, MAX_SEED, beyond_int64

DEFAULT_DATASET = "ml100k"
DEFAULT_MODEL = "egogcn"
SELECT_METRIC = "recall@10"
SAMPLERS = ("full", "neighbor")
COMPILE_MODES = ("off", "default", "reduce-overhead")
DEFAULT_FANOUT = "10"


def check_device(name: str) -> str:
    """The one check of every --device: auto, cpu, cuda or cuda:N (torch's other device
    strings are not ones ego-dgl runs on; an empty or garbled one is refused in one line)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"--device {name!r} is not one of: auto, cpu, cuda (or cuda:N)")
    return name


@dataclass
class TrainConfig:
    """How to train: BPR with Adam, early stopping on validation recall@10."""

    epochs: int = 1000  # maximum number of epochs
    patience: int = 20  # epochs without a better selection metric before stopping
    batch_size: int = 2048
    lr: float = 2e-4
    reg: float = 1e-4  # lambda of the regulariser
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    protocol: str = "full"  # full | legacy (authors' evaluator, epoch picked by test recall)
    ks: tuple[int, ...] = DEFAULT_KS
    sampler: str = "full"  # full (whole-graph propagation per batch) | neighbor (DGL blocks)
    fanouts: str = ""  # neighbor: per-layer in-edges sampled, e.g. "10,10"; -1 takes all [default: 10]
    procs: int = 1  # data-parallel processes (DDP), each with its shard of every epoch
    dist: str = ""  # DistDGL partition config (OUT/<name>.json): train on the partitioned graph's servers
    eval_chunk: int = 0  # evaluation: nodes per chunk of exact layer-wise inference; 0 propagates the whole graph at once
    compile: str = "off"  # torch.compile of the training step: off | default | reduce-overhead (CUDA graphs on CUDA)
    log: str = ""  # per-epoch scalars to watch: tensorboard | mlflow (train/tracking.py); "" logs nothing

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad option."""
        for name in ("epochs", "patience", "batch_size", "procs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be positive and finite, got {self.lr}")
        if not (self.reg >= 0 and math.isfinite(self.reg)):
            raise ConfigError(f"--reg must be a finite number >= 0, got {self.reg}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must lie in 0..{MAX_SEED} (numpy's seed range), got {self.seed}")
        check_device(self.device)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler {self.sampler!r} is not one of: {', '.join(SAMPLERS)}")
        check_eval_chunk(self.eval_chunk)
        if self.fanouts and self.sampler != "neighbor":
            raise ConfigError("--fanouts applies to --sampler neighbor; add it or drop --fanouts")
        if self.dist and self.sampler != "neighbor":
            raise ConfigError("--dist samples blocks on the partitioned graph; use it with --sampler neighbor")
        if self.dist and self.procs > 1:
            raise ConfigError("--dist runs one process per trainer, started by the launcher (--trainers); drop --procs")
        check_compile(self)
        check_logger(self.log)
        self.ks = check_eval_options(self.ks, self.protocol)
        watched = select_metric(self.protocol)
        if int(watched.split("@")[1]) not in self.ks:
            raise ConfigError(f"the cut-offs must include {watched.split('@')[1]}: early stopping watches {watched}")
        return self


def check_compile(cfg: TrainConfig) -> None:
    """Refuse an unknown --compile mode, and --compile with the paths it is not built for:
    sampled blocks change shape every batch, and DDP's hooks are untested under it."""
    if cfg.compile not in COMPILE_MODES:
        raise ConfigError(f"--compile {cfg.compile!r} is not one of: {', '.join(COMPILE_MODES)}")
    if cfg.compile != "off" and (cfg.sampler != "full" or cfg.procs > 1):
        raise ConfigError("--compile is built for full-graph training in one process; drop --compile, or --sampler/--procs")


def check_eval_chunk(value: int) -> None:
    """Refuse a negative --eval-chunk (0 means the whole graph at once) or one beyond torch's int64."""
    if not 0 <= value <= MAX_COUNT:
        raise ConfigError(f"--eval-chunk must be a positive number of nodes per chunk up to 2**63-1 (0: the whole graph at once), got {value}")


# The paper's hyper-parameters (docs/egogcn.md, "Hyper-parameters"); synthetic presets get small, fast values.
PROFILES: dict[str, dict[str, Any]] = {
    "movielens": dict(eps=0.4, layers_mm=4, layers_id=3, reg=1e-4, lr=2e-4, batch_size=2048, dim=64),
    "tiktok": dict(eps=0.6, layers_mm=2, layers_id=2, reg=1e-3, lr=3e-4, batch_size=1024, dim=64),
    "synthetic": dict(eps=0.4, layers_mm=2, layers_id=2, reg=1e-4, lr=1e-3, batch_size=2048, dim=64),
    "synthetic-tiny": dict(eps=0.2, layers_mm=2, layers_id=2, reg=1e-4, lr=5e-3, batch_size=256, dim=32, epochs=50),
}
PROFILE_OF = {
    "ml100k": "movielens",
    "movielens": "movielens",
    "tiktok": "tiktok",
    "synthetic-tiktok": "tiktok",
    "synthetic": "synthetic",
    "synthetic-tiny": "synthetic-tiny",
}

# --protocol mmrec: MMRec's overall.yaml (learning_rate, train_batch_size, epochs,
# stopping_step, embedding_size) over the dataset's profile; each model's own
# `mmrec_defaults` (its MMRec yaml) over these
MMREC_OVERALL: dict[str, Any] = {"lr": 1e-3, "batch_size": 2048, "epochs": 1000, "patience": 20, "dim": 64}

# every option a config file or the `train` command accepts, with its type: these, the
# training options and every model's options
RUN_OPTION_TYPES: dict[str, type] = {"dataset": str, "out": str, "model": str}


def option_types() -> dict[str, type]:
    """Every option a config file or `train` accepts, with its type."""
    train = {k: t for k, t in typing.get_type_hints(TrainConfig).items() if k != "ks"}
    return {**RUN_OPTION_TYPES, **train, **all_option_types()}


# what a default means where the config's value alone does not say it
SHOWN_DEFAULTS = {"fanouts": DEFAULT_FANOUT, "device": "auto = cuda when available", "eval_chunk": "0 = the whole graph at once"}


def shown_default(key: str) -> str | None:
    """The default `--help` shows for an option, read from where it is set: the paper's
    per-dataset profile (its Movielens and Tiktok values), TrainConfig, or the model
    configs (one value, or 'per model' when they differ); None when there is none."""
    run_defaults = {"dataset": DEFAULT_DATASET, "model": DEFAULT_MODEL}
    if key in run_defaults or key in SHOWN_DEFAULTS:
        return {**run_defaults, **SHOWN_DEFAULTS}[key]
    if key in PROFILES["movielens"]:
        movielens, tiktok = PROFILES["movielens"][key], PROFILES["tiktok"][key]
        return f"per dataset, {movielens:g} Movielens, {tiktok:g} Tiktok" if movielens != tiktok else f"per dataset, {movielens:g} in the paper"
    train = {f.name: f.default for f in fields(TrainConfig)}
    if key in train:
        return str(train[key]) if train[key] != "" else None
    values = {getattr(config_type(m)(), key) for m in MODELS if key in config_fields(m)}
    return (str(values.pop()) if len(values) == 1 else "per model") if values else None


def selection(cfg: TrainConfig) -> str:
    """What picks the epoch, as run records write it: e.g. 'valid recall@20'."""
    return f"{select_split(cfg)} {select_metric(cfg.protocol)}"


def select_split(cfg: TrainConfig) -> str:
    """The split whose recall@10 picks the epoch: valid, or test under the legacy protocol."""
    return "test" if cfg.protocol == "legacy" else "valid"


def profile_for(dataset: str) -> str:
    """The hyper-parameter profile of a built-in name or a folder named like one
    (anything else gets the paper's Movielens values)."""
    key = dataset if dataset in PROFILE_OF else Path(dataset).name.lower()
    if re.fullmatch(r"synthetic-x[\d.]+", key):
        return "synthetic"
    return PROFILE_OF.get(key, "movielens")


def check_compatible(given: dict[str, Any], model: RecommenderConfig) -> None:
    """Reject explicitly given options that the chosen model or variant would silently ignore."""
    ignored = model.ignored_options()
    for key in given:
        if key in ignored:
            raise ConfigError(ignored[key])


def dataset_name(given: dict[str, Any]) -> str:
    """The --dataset given (ml100k when not given); an empty one is a ConfigError."""
    if "dataset" in given and not str(given["dataset"] or "").strip():
        raise ConfigError("--dataset is empty; give a built-in name (e.g. synthetic-tiny) or a dataset folder")
    return str(given.get("dataset") or DEFAULT_DATASET)


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def model_options(name: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model a `--model` name means and the options its preset sets; an explicit option
    that contradicts the preset, or that the model does not have, is refused."""
    model, preset = resolve_model(name)
    for key, value in preset.items():
        if key in given and given[key] != value:
            raise ConfigError(f"--model {name} sets {flag(key)} {value}; drop {flag(key)} {given[key]} or use --model {model}")
    train_keys = {f.name for f in fields(TrainConfig)}
    own = config_fields(model)
    for key in given:
        if key not in own and key not in train_keys and key not in RUN_OPTION_TYPES:
            known = ", ".join(flag(k) for k in own) or "none"
            raise ConfigError(f"{flag(key)} is not an option of --model {model} (its options: {known})")
    return model, preset


def check_int_sizes(given: dict[str, Any]) -> None:
    """Refuse an integer option beyond torch's int64 (e.g. --param heads=10**30): no count,
    width or size that large can be allocated or indexed, and torch fails on it with a traceback."""
    for key, value in given.items():
        if beyond_int64(value):
            raise ConfigError(f"{flag(key)} {value} is outside ±(2**63-1), the integers torch takes; give a smaller value")


def resolve_options(given: dict[str, Any]) -> tuple[str, RecommenderConfig, TrainConfig, str]:
    """(dataset, model config, training config, profile name) from the options the user
    set explicitly, over the model's preset, over the dataset's profile, over the
    dataclass defaults."""
    unknown = sorted(set(given) - set(option_types()))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(option_types()))}")
    check_int_sizes(given)
    dataset = dataset_name(given)
    profile = profile_for(dataset)
    model, preset = model_options(str(given.get("model") or DEFAULT_MODEL), given)
    cfg_type = config_type(model)
    if given.get("protocol") not in (None, *PROTOCOLS):
        raise ConfigError(f"--protocol {given['protocol']!r} is not one of: {', '.join(PROTOCOLS)}")
    mmrec = {**MMREC_OVERALL, **cfg_type.mmrec_defaults, "ks": protocol_ks("mmrec")} if given.get("protocol") == "mmrec" else {}
    values = {**asdict(cfg_type()), **asdict(TrainConfig()), **PROFILES[profile], **mmrec, **preset, **given}
    model_cfg = cfg_type(**{k: v for k, v in values.items() if k in config_fields(model)})
    train = TrainConfig(**{k: v for k, v in values.items() if k in {f.name for f in fields(TrainConfig)}})
    check_compatible(given, model_cfg.validate())
    return dataset, model_cfg, train.validate(), profile


def run_label(model: RecommenderConfig, train: TrainConfig) -> str:
    """Short name of what a run trains, used in run ids: hard, soft, gm, na, id, lightgcn...,
    with -legacy or -mmrec for those protocols, -neighbor for sampled training and -dist on
    DistDGL partitions."""
    label = model.label()
    label = f"{label}-{train.protocol}" if train.protocol != "full" else label
    label = f"{label}-{train.sampler}" if train.sampler != "full" else label
    return f"{label}-dist" if train.dist else label
