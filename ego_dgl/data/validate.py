"""The dataset folder's own JSON files (meta.json, card.json) checked field by field before
use: a damaged or hand-edited one is one DataError naming the file and the field, never a
KeyError or TypeError later. Also the caps on what an array file's header may claim."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ego_dgl.errors import DataError
from ego_dgl.system import check_memory
from ego_dgl.untrusted import Field, check_record, kind_name

COUNT = Field(int, low=0)
META_FIELDS = {
    "format": Field(str),
    "name": Field(str, required=False),
    "num_users": Field(int, required=False, low=0),
    "num_items": Field(int, required=False, low=0),
    "modalities": Field(list, required=False),
    "num_words": Field(dict, required=False),
    "recipe": Field(str, required=False),
    "item_titles": Field(list, required=False),
    "files": Field(list, required=False),
    # a partition folder's meta.json (ego_dgl.distributed.partition) adds these
    "kind": Field(str, required=False),
    "dataset": Field(str, required=False),
    "fingerprint": Field(str, required=False),
    "parts": Field(int, required=False, low=1),
    "method": Field(str, required=False),
}
CARD_FIELDS = {
    "format": Field(str), "name": Field(str), "built_by": Field(str), "recipe": Field((str, type(None)), required=False),
    "sources": Field(list), "options": Field(dict), "counts": Field(list), "split": Field(dict), "modalities": Field(list),
    "users": COUNT, "items": COUNT, "fingerprint": Field(str), "build_seconds": Field(float, low=0),
    "variant": Field(dict, required=False),  # a prepared variant's (data/variants.py), e.g. ml100k-cold0.1
}
VARIANT_FIELDS = {"cold_items": Field(float, low=0, high=1), "train_fraction": Field(float, low=0, high=1), "seed": COUNT,
                  "cold_item_count": COUNT, "train_interactions": COUNT}
CARD_PARTS = {
    "sources": {"path": Field(str), "bytes": COUNT, "sha256": Field(str)},
    "counts": {"stage": Field(str), "interactions": COUNT, "users": COUNT, "items": COUNT},
    "modalities": {"name": Field(str), "kind": Field(str), "dim": COUNT, "coverage": Field(float, low=0, high=1),
                   "items_with": COUNT, "columns": Field(list, required=False), "file": Field(str, required=False)},
}
SPLIT_FIELDS = {"kind": Field(str), "ratios": Field(list), "seed": Field((int, type(None))), "sizes": Field(dict),
                "users_train_only": COUNT, "note": Field(str)}
META_HINT = "fix the file, or delete it (ego-dgl then infers sizes from the arrays)"
CARD_HINT = "rebuild the dataset or delete the file"


def check_items(values: list, kind: type | tuple[type, ...], where: str, field: str, hint: str) -> None:
    """Every element of the list `field` is of `kind` (no true/false for numbers)."""
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, kind):
            wanted = kind.__name__ if isinstance(kind, type) else "a number"
            raise DataError(f"{where}: field {field!r}, element {k}, must be {wanted}, found {kind_name(v)}; {hint}")


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """A parsed meta.json with every field of its type (sizes non-negative integers, lists
    of names) and no unknown field."""
    check_record(meta, META_FIELDS, str(path), hint=META_HINT)
    for field in ("modalities", "item_titles", "files"):
        check_items(meta.get(field, []), str, str(path), field, META_HINT)
    check_record(meta.get("num_words", {}), {m: COUNT for m in meta.get("num_words", {})}, f"{path} field 'num_words'",
                 hint=META_HINT)
    return meta


def check_card(card: Any, path: Path) -> dict[str, Any]:
    """A parsed card.json with every field `card_table` and the README use."""
    check_record(card, CARD_FIELDS, str(path), hint=CARD_HINT)
    for part, fields in CARD_PARTS.items():
        for k, row in enumerate(card[part]):
            check_record(row, fields, f"{path} field {part!r}, element {k}", hint=CARD_HINT,
                         extra_ok=part == "modalities")  # each kind of modality records its own extras
            check_items(row.get("columns", []), str, f"{path} field {part!r}, element {k}", "columns", CARD_HINT)
    check_record(card["split"], SPLIT_FIELDS, f"{path} field 'split'", hint=CARD_HINT)
    check_items(card["split"]["ratios"], (int, float), str(path), "split.ratios", CARD_HINT)
    check_record(card["split"]["sizes"], {s: COUNT for s in card["split"]["sizes"]}, f"{path} field 'split.sizes'",
                 hint=CARD_HINT)
    if "variant" in card:
        check_record(card["variant"], VARIANT_FIELDS, f"{path} field 'variant'", hint=CARD_HINT)
    return card


def check_array_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, data_bytes: int) -> None:
    """Refuse a .npy header whose shape the file cannot hold: a numeric array needs
    prod(shape) * itemsize bytes after its header, an object array at least one pickled
    byte per element. So a 64-byte file claiming 10^18 values is refused before any
    allocation, and whatever passes is also checked against the free memory."""
    count = math.prod(shape)
    need = count * (1 if dtype.hasobject else dtype.itemsize)
    if need > data_bytes:
        raise DataError(f"{path}: its header claims shape {shape} of {dtype}, {need:,} bytes, but the file holds "
                        f"{data_bytes:,}; the file is truncated or damaged, re-save it with numpy.save")
    check_memory(f"{path}: loading it", count * dtype.itemsize, "use a machine with more memory or a smaller dataset",
                 DataError)

