"""Top-K recommendations for one user from a trained run."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import pairs_to_csr, top_items
from ego_dgl.train.loading import LoadedRun


@torch.no_grad()
def recommend(run: LoadedRun, user: int, k: int = 10) -> list[dict[str, Any]]:
    """The user's k best-scored items outside their training items: rank, item id, score,
    title (when the dataset has titles) and whether the item is one of the user's held-out
    valid/test items."""
    ds = run.ds
    if not 0 <= user < ds.num_users:
        raise ConfigError(f"--user {user} is out of range; this dataset has users 0..{ds.num_users - 1}")
    if k < 1:
        raise ConfigError("--k must be a positive integer")
    tables = run.model.final_tables()
    users = np.array([user], dtype=np.int64)
    ranked = top_items(tables.users, tables.items, users, ds.train_csr, k)[0]
    ranked = ranked[: max(0, ds.num_items - len(ds.train_csr.row(user)))]
    scores = tables.items[ranked] @ tables.users[user]
    held = {split: set(pairs_to_csr(ds.num_users, ds.split(split)).row(user).tolist()) for split in ("valid", "test")}
    rows = []
    for rank, (item, score) in enumerate(zip(ranked.tolist(), scores.tolist()), start=1):
        row: dict[str, Any] = {"rank": rank, "item": item, "score": score}
        if ds.item_titles is not None:
            row["title"] = ds.item_titles[item]
        row["held_out"] = next((s for s in ("valid", "test") if item in held[s]), "")
        rows.append(row)
    return rows
