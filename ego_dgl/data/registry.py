"""Dataset names, where prepared datasets live, and `load_dataset`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.synthetic import PRESETS, make_preset, make_synthetic_scaled
from ego_dgl.errors import DataError

KNOWN = ("ml100k", "synthetic", "synthetic-tiny", "synthetic-tiktok", "tiktok", "movielens")
SCALED = re.compile(r"synthetic-x(\d+(?:\.\d+)?)")


def datasets_root() -> Path:
    """Folder of prepared datasets: $EGODGL_DATASETS, else ./datasets."""
    return Path(os.environ.get("EGODGL_DATASETS") or "datasets")


def known_names() -> str:
    return ", ".join(KNOWN) + ", synthetic-x<scale> (e.g. synthetic-x4)"


def load_dataset(name_or_path: str, root: Path | None = None, progress: bool = True) -> Dataset:
    """A validated dataset by built-in name or from a folder in MMRec or GRCN layout.

    Built-ins that take a while to build (ml100k, synthetic-tiktok) are prepared once
    into `root` (default `datasets_root()`) and read from there afterwards.
    """
    name = str(name_or_path)
    if name in PRESETS and name != "synthetic-tiktok":
        return make_preset(name).validate()
    if name == "synthetic":
        return make_synthetic_scaled(1.0).validate()
    if m := SCALED.fullmatch(name):
        return make_synthetic_scaled(float(m.group(1))).validate()
    raise DataError(f"unknown dataset {name!r}; use one of {known_names()}, or a folder in MMRec or GRCN layout")
