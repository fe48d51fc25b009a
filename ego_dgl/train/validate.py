"""A run folder's files checked before use: config.json field by field (its model's and its
training options by name, type and range) and a checkpoint's payload (its keys and their
kinds, and, before torch reads it, the size its archive claims). A damaged or hand-edited
file is one ConfigError naming the file and the field."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import MODELS, config_fields, config_type
from ego_dgl.system import available_memory, gib
from ego_dgl.train.defaults import TrainConfig
from ego_dgl.untrusted import MAX_COUNT, Field, check_record

CONFIG_HINT = "restore the config.json the run wrote, or train again"
CKPT_HINT = "use a checkpoint this run wrote, or train again"
CONFIG_FIELDS = {"dataset": Field(dict), "model": Field(dict), "train": Field(dict), "model_name": Field(str, required=False)}
DATASET_FIELDS = {"source": Field(str), "fingerprint": Field(str)}
# every option but the cut-offs optional: a run folder from before an option existed gets its default, as it always did
TRAIN_FIELDS = {"epochs": Field(int, False, 1), "patience": Field(int, False, 1), "batch_size": Field(int, False, 1),
                "lr": Field(float, False), "reg": Field(float, False), "seed": Field(int, False), "device": Field(str, False),
                "protocol": Field(str, False), "ks": Field(list), "sampler": Field(str, False),
                "fanouts": Field(str, False), "procs": Field(int, False, 1), "dist": Field(str, False),
                "eval_chunk": Field(int, False, 0), "compile": Field(str, False), "log": Field(str, False)}
PAYLOAD_FIELDS = {"format": Field(int), "model": Field(dict), "optimizer": Field(dict), "train_state": Field(dict),
                  "rng": Field(dict)}
STATE_FIELDS = {"epoch": Field(int, low=0), "best_epoch": Field(int, low=0), "best_value": Field(float, finite=False),
                "bad_epochs": Field(int, low=0), "history": Field(list)}
RNG_FIELDS = {"sampler": Field(dict), "torch": Field(torch.Tensor), "python": Field((tuple, list)), "numpy": Field(dict),
              "numpy_extra": Field(dict), "cuda": Field(list, required=False)}
PYTHON_TYPES = {int: int, float: float, str: str, bool: bool}


def check_run_config(config: Any, path: Path) -> dict[str, Any]:
    """config.json with its sections, a known model, that model's options and the training
    options each of its type and valid (checked by the configs' own `validate`)."""
    where = str(path)
    check_record(config, CONFIG_FIELDS, where, ConfigError, CONFIG_HINT, extra_ok=True)
    check_record(config["dataset"], DATASET_FIELDS, f"{where} field 'dataset'", ConfigError, CONFIG_HINT, extra_ok=True)
    name = config.get("model_name", "egogcn")
    if name not in MODELS:
        raise ConfigError(f"{where}: field 'model_name' {name!r:.60} is not a model ego-dgl knows "
                          f"({', '.join(MODELS)}); {CONFIG_HINT}")
    model_fields = {k: Field(PYTHON_TYPES.get(t, t), required=False, low=-MAX_COUNT if t is int else None,
                             high=MAX_COUNT if t is int else None) for k, t in config_fields(name).items()}
    check_record(config["model"], model_fields, f"{where} field 'model'", ConfigError, CONFIG_HINT)
    check_record(config["train"], TRAIN_FIELDS, f"{where} field 'train'", ConfigError, CONFIG_HINT)
    ks = config["train"]["ks"]
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        raise ConfigError(f"{where}: field 'train.ks' must be a list of integers; {CONFIG_HINT}")
    try:
        config_type(name)(**config["model"]).validate()
        TrainConfig(**{**config["train"], "ks": tuple(ks)}).validate()
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}; {CONFIG_HINT}") from None
    return config


def check_archive(path: Path) -> None:
    """Refuse, before torch unpacks it, a checkpoint archive whose entries claim more
    bytes than the machine has free or far more than the file holds: torch stores
    tensors uncompressed, so a 2 MB file claiming gigabytes is a zip bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            claimed = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not an archive: torch.load says so in its own words
    size, free = path.stat().st_size, available_memory("cpu")
    if claimed > 16 * size + 2**20 or (free is not None and claimed > free):
        raise ConfigError(f"checkpoint {path}: its archive claims {gib(claimed)} unpacked from {size:,} bytes "
                          f"(ego-dgl writes tensors uncompressed); it is damaged or not an ego-dgl checkpoint; {CKPT_HINT}")


def check_payload(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """A checkpoint's payload with exactly the keys `save_checkpoint` writes, the model's
    state a mapping of tensors and the training and random states of their kinds."""
    where = f"checkpoint {path}"
    check_record(payload, PAYLOAD_FIELDS, where, ConfigError, CKPT_HINT)
    check_record(payload["train_state"], STATE_FIELDS, f"{where} field 'train_state'", ConfigError, CKPT_HINT)
    check_record(payload["rng"], RNG_FIELDS, f"{where} field 'rng'", ConfigError, CKPT_HINT)
    bad = [k for k, v in payload["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"{where}: field 'model' entry {str(bad[0])!r:.60} is not a tensor; {CKPT_HINT}")
    bad = [k for k, v in payload["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # training stops before saving a NaN (errors.non_finite_loss): such a file scored every item NaN
        raise ConfigError(f"{where}: field 'model' entry {str(bad[0])!r:.60} holds NaN or inf, which training never saves; {CKPT_HINT}")
    return payload

