"""The MMRec layout: `<name>.inter` (TSV `userID itemID rating timestamp x_label`,
x_label 0 train / 1 valid / 2 test, 0-based ids) and one `<modality>_feat.npy` per
modality (rows by itemID). ego-dgl adds, and reads when present, `meta.json`,
`<modality>_mask.npy` (which items have the modality), `<modality>_words.npy`
(a 2 x N (item, word id) word-bag modality) and `user_ids.tsv` / `item_ids.tsv` (the
raw id behind each dense id)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ego_dgl.data.dataset import SPLITS, Dataset, Features, WordBag
from ego_dgl.data.files import (
    atomic_folder,
    folder_dataset,
    load_npy,
    read_meta,
    read_raw_ids,
    require_folder,
    wordbag_from_pairs,
    write_meta,
    write_raw_ids,
)
from ego_dgl.errors import DataError
from ego_dgl.untrusted import read_text

COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
REQUIRED = ("userID", "itemID", "x_label")
HINT = "an MMRec folder holds <name>.inter and <modality>_feat.npy files"


def is_mmrec(folder: Path) -> bool:
    return any(Path(folder).glob("*.inter"))


def inter_file(folder: Path) -> Path:
    """The folder's one .inter file (or the one named after the folder)."""
    files = sorted(Path(folder).glob("*.inter"))
    if not files:
        raise DataError(f"{folder}: no .inter file; {HINT}")
    if len(files) > 1:
        named = Path(folder) / f"{Path(folder).name}.inter"
        if named in files:
            return named
        raise DataError(f"{folder}: several .inter files ({', '.join(f.name for f in files)}); keep one")
    return files[0]


def read_inter(path: Path) -> dict[str, np.ndarray]:
    """The three splits of an .inter file as int64 [n, 2] (user, item) arrays, in file order."""
    header = read_text(path).split("\n", 1)[0].rstrip("\r").split("\t")  # the whole file checked to be UTF-8
    table = read_columns(path, header)
    label = table["x_label"].to_numpy()
    pairs = table[["userID", "itemID"]].to_numpy()
    return {s: pairs[label == k] for k, s in enumerate(SPLITS)}


def read_columns(path: Path, header: list[str]) -> pd.DataFrame:
    """The userID, itemID and x_label columns as int64 with valid labels, or a DataError
    naming the problem."""
    twice = [c for c in header if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}: the header names column {twice[0]!r} twice; give every column its own name")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(
            f"{path}: malformed header {' '.join(header)!r} (missing {', '.join(missing)}); "
            f"the first line must be the tab-separated columns {' '.join(COLUMNS)}"
        )
    try:
        table = pd.read_csv(path, sep="\t", usecols=list(REQUIRED), dtype=np.int64, encoding="utf-8")
    except (ValueError, OverflowError, pd.errors.ParserError) as err:
        raise DataError(
            f"{path}: rows must hold integer userID, itemID and x_label, ids from 0 to 2**63-1 ({str(err).splitlines()[0]})"
        ) from None
    label = table["x_label"].to_numpy()
    bad = ~np.isin(label, (0, 1, 2))
    if bad.any():
        raise DataError(f"{path}: x_label {label[bad][0]} on data row {np.flatnonzero(bad)[0] + 1}; use 0 train, 1 valid, 2 test")
    return table


def read_mmrec(folder: Path, name: str | None = None) -> Dataset:
    """A validated Dataset from an MMRec folder (modalities in meta.json's order, else
    by file name; users = largest userID + 1 and items = feature rows unless meta.json
    says otherwise)."""
    folder = require_folder(folder, HINT)
    path = inter_file(folder)
    meta = read_meta(folder)
    splits = read_inter(path)
    features, sources = _read_features(folder, meta), {s: str(path) for s in SPLITS}
    if not features:
        raise DataError(f"{folder}: no <modality>_feat.npy file; add at least one item-feature matrix")
    sources.update({m: str(folder / f"{m}_{kind}.npy") for m, kind in _kinds(features).items()})
    masks = {m: load_npy(folder / f"{m}_mask.npy") for m in features if (folder / f"{m}_mask.npy").exists()}
    pairs = np.concatenate(list(splits.values()))
    num_users = meta.get("num_users", int(pairs[:, 0].max()) + 1 if len(pairs) else 0)
    num_items = meta.get("num_items", _feature_rows(features, pairs))
    if "num_items" not in meta:
        _check_feature_rows(folder, features, pairs, path)
    ds = folder_dataset(folder, name, meta, num_users, num_items, splits, features, masks, sources)
    return replace(ds, user_ids=read_raw_ids(folder, "user", ds.num_users), item_ids=read_raw_ids(folder, "item", ds.num_items))


def _read_features(folder: Path, meta: dict) -> dict[str, Features]:
    found = {p.name[: -len("_feat.npy")]: p for p in sorted(folder.glob("*_feat.npy"))}
    words = {p.name[: -len("_words.npy")]: p for p in sorted(folder.glob("*_words.npy"))}
    both = sorted(set(found) & set(words))
    if both:
        raise DataError(f"{folder}: {both[0]}_feat.npy and {both[0]}_words.npy both exist; keep one")
    order = [m for m in meta.get("modalities", []) if m in found or m in words]
    order += [m for m in sorted(set(found) | set(words)) if m not in order]
    num_words = meta.get("num_words", {})
    return {
        m: load_npy(found[m]) if m in found else wordbag_from_pairs(load_npy(words[m]), words[m], num_words.get(m))
        for m in order
    }


def _check_feature_rows(folder: Path, features: dict[str, Features], pairs: np.ndarray, inter: Path) -> None:
    """Items are counted by the rows of the first dense feature matrix, so an item id
    beyond them most likely means too few rows: say so of that file, not of the .inter."""
    top = int(pairs[:, 1].max()) if len(pairs) else -1
    m, f = next(((m, f) for m, f in features.items() if not isinstance(f, WordBag)), (None, None))
    if m is not None and np.ndim(f) == 2 and top >= np.shape(f)[0]:
        raise DataError(
            f"{folder / f'{m}_feat.npy'}: {np.shape(f)[0]} rows, but {inter.name} uses item id {top}; items are "
            f"counted by feature rows, so give one row per item ({top + 1} or more, in item-id order) or fix the ids"
        )


def _kinds(features: dict[str, Features]) -> dict[str, str]:
    return {m: "words" if isinstance(f, WordBag) else "feat" for m, f in features.items()}


def _feature_rows(features: dict[str, Features], pairs: np.ndarray) -> int:
    """Items = rows of the first dense feature matrix (validate checks the others);
    with only word bags, the largest item id seen + 1."""
    for f in features.values():
        if not isinstance(f, WordBag):
            return int(np.shape(f)[0])
    ids = [pairs[:, 1]] + [f.items for f in features.values()]
    return int(max(int(a.max()) for a in ids if len(a))) + 1


def write_inter(path: Path, ds: Dataset) -> None:
    """Rows in split order (train, valid, test); rating 1 and timestamp 0, since
    ego-dgl keeps neither."""
    rows = [np.column_stack([p, np.ones(len(p), np.int64), np.zeros(len(p), np.int64), np.full(len(p), k)])
            for k, p in enumerate(ds.split(s) for s in SPLITS)]
    table = pd.DataFrame(np.concatenate(rows), columns=list(COLUMNS))
    table.to_csv(path, sep="\t", index=False, lineterminator="\n")


def write_mmrec(ds: Dataset, folder: Path, overwrite: bool = False, recipe: str | None = None) -> Path:
    """Writes `ds` as an MMRec folder atomically; `recipe` tags a prepared built-in."""
    folder = Path(folder)
    with atomic_folder(folder, overwrite) as tmp:
        write_mmrec_files(tmp, folder.name, ds, recipe)
    return folder


def write_mmrec_files(tmp: Path, name: str, ds: Dataset, recipe: str | None = None) -> None:
    """The MMRec files of `ds` (and its raw ids when known) into the fresh folder `tmp`."""
    write_inter(tmp / f"{name}.inter", ds)
    for m, f in ds.features.items():
        if isinstance(f, WordBag):
            np.save(tmp / f"{m}_words.npy", np.stack([f.items, f.words]))
        else:
            np.save(tmp / f"{m}_feat.npy", np.ascontiguousarray(f, dtype=np.float32))
    for m, mask in ds.feature_masks.items():
        np.save(tmp / f"{m}_mask.npy", mask)
    write_meta(tmp, ds, recipe)
    write_raw_ids(tmp, ds)
