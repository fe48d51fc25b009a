"""The GRCN / EgoGCN layout (the paper authors' files).

- `train.npy`: E x 2 rows [user, item + P]; item ids are offset by the number of users P.
- `val_full.npy`, `test_full.npy`: object arrays, one row per user [user, item + P, ...].
- `user_item_dict.npy`: pickled dict user -> training items (offset). Redundant with
  train.npy, so the reader ignores it; the writer writes it for the authors' code.
- `feat_v`, `feat_a`, `feat_t` (visual, acoustic, textual; any other `feat_<name>` is
  modality <name>) as `.npy` or `.pt`; an integer 2 x N array is Tiktok's text, (item,
  word id) pairs, kept as a WordBag.

P (users) and Q (items) when no meta.json says them: Q = rows of the dense feature
files (largest word-bag item + 1 without any); P = the largest user id + 1, raised to
(largest offset item) - Q + 1 when the item offsets show more users than appear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ego_dgl.data.dataset import Dataset, Features, WordBag
from ego_dgl.data.files import (
    atomic_folder,
    folder_dataset,
    is_word_ids,
    load_npy,
    load_pt,
    read_meta,
    require_folder,
    save_pt,
    wordbag_from_pairs,
    write_meta,
)
from ego_dgl.errors import DataError

SPLIT_FILES = {"train": "train.npy", "valid": "val_full.npy", "test": "test_full.npy"}
SHORT = {"v": "visual", "a": "acoustic", "t": "textual"}
LONG = {name: short for short, name in SHORT.items()}
HINT = "a GRCN folder holds train.npy, val_full.npy, test_full.npy and feat_v/feat_a/feat_t (.npy or .pt)"


def is_grcn(folder: Path) -> bool:
    return (Path(folder) / "train.npy").exists()


def whole_numbers(values: np.ndarray, path: Path) -> np.ndarray:
    """Ids as int64: integers, or floats that are whole (81.0); 81.7 is refused, never truncated."""
    if values.dtype == object:
        values = np.array(values.tolist())  # plain Python numbers: their own dtype (int, float)
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.mod(values, 1) == 0):
        bad = values[np.mod(values, 1) != 0][0]
        raise DataError(f"{path}: id {bad!r} is not a whole number; ids must be integers from 0 to 2**63-1")
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)) and len(values):
        raise TypeError(values.dtype)
    return values.astype(np.int64)


def rows_to_pairs(rows: np.ndarray, path: Path) -> np.ndarray:
    """[user, item, item, ...] rows (object array or a regular 2-D array) as (user, item) pairs."""
    if rows.dtype != object and rows.ndim == 2:
        rows = list(rows)
    try:
        parts = [whole_numbers(np.asarray(r).reshape(-1), path) for r in rows]
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: each row must be [user, item, item, ...] of integers from 0 to 2**63-1") from None
    if any(len(p) == 0 for p in parts):
        raise DataError(f"{path}: empty row; each row must start with its user id")
    users = np.concatenate([np.full(len(p) - 1, p[0]) for p in parts] or [np.zeros(0, np.int64)])
    items = np.concatenate([p[1:] for p in parts] or [np.zeros(0, np.int64)])
    return np.stack([users, items], axis=1).astype(np.int64)


def read_offset_splits(folder: Path) -> dict[str, np.ndarray]:
    """The three splits with items still offset by P."""
    train_path = folder / SPLIT_FILES["train"]
    train = load_npy(train_path)
    if train.ndim != 2 or train.shape[1] != 2 or not np.issubdtype(train.dtype, np.integer):
        raise DataError(f"{train_path}: must be an E x 2 integer array of [user, item + num_users] rows")
    out = {"train": train.astype(np.int64)}
    for s in ("valid", "test"):
        path = folder / SPLIT_FILES[s]
        out[s] = rows_to_pairs(load_npy(path), path)
    return out


def infer_num_users(splits: dict[str, np.ndarray], num_items: int | None) -> int:
    """P from the offset structure (see the module docstring)."""
    pairs = np.concatenate(list(splits.values()))
    users = int(pairs[:, 0].max()) + 1
    top_item = int(pairs[:, 1].max())
    return max(users, top_item - num_items + 1) if num_items else users


def read_features(folder: Path, meta: dict) -> tuple[dict[str, Features], dict[str, str]]:
    """Every feat_<key>.npy / .pt as modality name -> features, and name -> file."""
    files: dict[str, Path] = {}
    for p in sorted(folder.glob("feat_*.npy")) + sorted(folder.glob("feat_*.pt")):
        key = p.stem[len("feat_") :]
        if key in files:
            raise DataError(f"{folder}: both {files[key].name} and {p.name}; keep one")
        files[key] = p
    if not files:
        raise DataError(f"{folder}: no feat_v / feat_a / feat_t file; {HINT}")
    names = {SHORT.get(k, k): p for k, p in files.items()}
    order = [m for m in meta.get("modalities", []) if m in names]
    order += [SHORT[k] for k in "vat" if k in files and SHORT[k] not in order]
    order += [m for m in sorted(names) if m not in order]
    features = {}
    for m in order:
        p = names[m]
        arr = load_pt(p) if p.suffix == ".pt" else load_npy(p)
        features[m] = wordbag_from_pairs(arr, p, meta.get("num_words", {}).get(m)) if is_word_ids(arr) else arr
    return features, {m: str(p) for m, p in names.items()}


def read_grcn(folder: Path, name: str | None = None) -> Dataset:
    """A validated Dataset from a GRCN / EgoGCN folder."""
    folder = require_folder(folder, HINT)
    meta = read_meta(folder)
    splits = read_offset_splits(folder)
    features, sources = read_features(folder, meta)
    num_items = meta.get("num_items") or _dense_rows(features)
    num_users = meta.get("num_users") or infer_num_users(splits, num_items)
    if num_items is None:
        num_items = max(int(f.items.max()) for f in features.values() if len(f.items)) + 1
    for s, pairs in splits.items():
        low = int(pairs[:, 1].min()) if len(pairs) else num_users
        if low < num_users:
            raise DataError(
                f"{folder / SPLIT_FILES[s]}: item id {low} is below the number of users ({num_users}); "
                "items must be offset by the number of users (item + num_users)"
            )
        splits[s] = pairs - np.array([0, num_users])
    masks = {}
    for m in features:
        path = folder / f"mask_{LONG.get(m, m)}.npy"
        if path.exists():
            masks[m] = load_npy(path)
    sources |= {s: str(folder / f) for s, f in SPLIT_FILES.items()}
    return folder_dataset(folder, name, meta, num_users, num_items, splits, features, masks, sources)


def _dense_rows(features: dict[str, Features]) -> int | None:
    return next((int(f.shape[0]) for f in features.values() if not isinstance(f, WordBag)), None)


def held_out_rows(pairs: np.ndarray, offset: int) -> np.ndarray:
    """[user, item + offset, ...] per user (users in id order, items in split order)."""
    order = np.argsort(pairs[:, 0], kind="stable")
    users, items = pairs[order, 0], pairs[order, 1] + offset
    starts = np.flatnonzero(np.r_[True, np.diff(users) != 0]) if len(users) else np.zeros(0, np.int64)
    rows = np.empty(len(starts), dtype=object)
    for k, (u, group) in enumerate(zip(users[starts], np.split(items, starts[1:]))):
        rows[k] = [int(u), *group.tolist()]
    return rows


def write_grcn(ds: Dataset, folder: Path, overwrite: bool = False) -> Path:
    """Writes `ds` in the GRCN / EgoGCN layout atomically (plus meta.json and masks)."""
    folder = Path(folder)
    p = ds.num_users
    with atomic_folder(folder, overwrite) as tmp:
        np.save(tmp / "train.npy", ds.train + np.array([0, p]))
        np.save(tmp / "val_full.npy", held_out_rows(ds.valid, p))  # object arrays, pickled by np.save
        np.save(tmp / "test_full.npy", held_out_rows(ds.test, p))
        csr = ds.train_csr
        user_items = {u: (csr.row(u) + p).tolist() for u in range(ds.num_users) if len(csr.row(u))}
        np.save(tmp / "user_item_dict.npy", np.array(user_items, dtype=object))
        for m, f in ds.features.items():
            key = LONG.get(m, m)
            if isinstance(f, WordBag):
                save_pt(tmp / f"feat_{key}.pt", np.stack([f.items, f.words]))
            else:
                np.save(tmp / f"feat_{key}.npy", np.ascontiguousarray(f, dtype=np.float32))
        for m, mask in ds.feature_masks.items():
            np.save(tmp / f"mask_{LONG.get(m, m)}.npy", mask)
        write_meta(tmp, ds)
    return folder
