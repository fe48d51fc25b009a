"""`egodgl export`: a run's final user and item representations (best checkpoint) with
the raw ids, for serving with an ANN index. Scoring is the inner product; `recommend`'s
top-k equals ranking `items @ users[u]` with the user's training items (`seen`) left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.files import atomic_folder
from ego_dgl.data.tables import PARQUET_HINT
from ego_dgl.errors import ConfigError
from ego_dgl.train.loading import load_run

FORMATS = ("npy", "parquet")
MANIFEST = "export.json"


def raw_ids(ds: Dataset) -> tuple[list[str], list[str]]:
    """The raw user and item ids when the dataset keeps them, else the dense ids."""
    users = ds.user_ids if ds.user_ids is not None else [str(u) for u in range(ds.num_users)]
    items = ds.item_ids if ds.item_ids is not None else [str(i) for i in range(ds.num_items)]
    return users, items


def write_npy(folder: Path, users: np.ndarray, items: np.ndarray, ids: tuple[list[str], list[str]], seen: np.ndarray) -> None:
    """users.npy [P, D], items.npy [Q, D] (float32), seen.npy [n, 2] (user row, item row)
    training pairs, user_ids.txt and item_ids.txt (line k = row k)."""
    np.save(folder / "users.npy", users)
    np.save(folder / "items.npy", items)
    np.save(folder / "seen.npy", seen)
    for kind, values in zip(("user", "item"), ids):
        (folder / f"{kind}_ids.txt").write_text("".join(f"{v}\n" for v in values), encoding="utf-8")


def write_parquet(folder: Path, users: np.ndarray, items: np.ndarray, ids: tuple[list[str], list[str]], seen: np.ndarray) -> None:
    """users.parquet (id, row, vector, seen: the user's training item rows) and
    items.parquet (id, row, vector)."""
    import pandas as pd

    per_user = np.split(seen[:, 1], np.cumsum(np.bincount(seen[:, 0], minlength=len(users)))[:-1])
    pd.DataFrame({"id": ids[0], "row": np.arange(len(users)), "vector": list(users), "seen": per_user}).to_parquet(
        folder / "users.parquet", index=False)
    pd.DataFrame({"id": ids[1], "row": np.arange(len(items)), "vector": list(items)}).to_parquet(
        folder / "items.parquet", index=False)


def export_run(run_dir: str | Path, out: Path | None = None, fmt: str = "npy", device: str = "cpu") -> Path:
    """Writes the export folder (default RUN/export-<fmt>) atomically and returns it."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine)
        except ImportError:
            raise ConfigError(f"--format parquet: {PARQUET_HINT}") from None
    run = load_run(run_dir, device)
    folder = Path(out) if out is not None else run.run_dir / f"export-{fmt}"
    if folder.exists():
        raise ConfigError(f"{folder} already exists; delete it or export elsewhere with --out")
    tables = run.model.final_tables()
    users = tables.users.detach().cpu().numpy().astype(np.float32)
    items = tables.items.detach().cpu().numpy().astype(np.float32)
    seen = np.ascontiguousarray(run.ds.train[np.lexsort((run.ds.train[:, 1], run.ds.train[:, 0]))], dtype=np.int64)
    ids = raw_ids(run.ds)
    with atomic_folder(folder) as tmp:
        (write_npy if fmt == "npy" else write_parquet)(tmp, users, items, ids, seen)
        manifest = {"run": str(run.run_dir), "epoch": run.epoch, "dataset": run.ds.name,
                    "fingerprint": run.ds.fingerprint(), "format": fmt, "users": len(users), "items": len(items),
                    "dim": int(users.shape[1]), "raw_ids": run.ds.item_ids is not None, "score": "inner product"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return folder
