"""Accuracy by training degree (`egodgl eval RUN --by item-degree|user-degree`): where
long-tail items and light users are, content should matter most.

Buckets are quantiles of the training degree (`degree_edges`): of the evaluated users
for user-degree, of the distinct held-out items of the split for item-degree (cold items,
degree 0, fall in the first bucket). Ties collapse buckets, so there may be fewer than
--bins. Both views recombine exactly to the overall metric:

- user-degree: each bucket's figures are the mean over its users, so the user-weighted
  mean of the buckets is the overall figure;
- item-degree: each bucket's figures are its items' share of each user's metric (hits
  on the bucket's items over the user's whole held-out set, the DCG of those hits over
  the user's ideal DCG), averaged over all evaluated users, so the buckets sum to the
  overall precision, recall and NDCG (hit rate does not split and is not shown). Its
  `retrieved@K` is the share of the bucket's held-out (user, item) pairs in the top K.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import (
    auto_chunk_size,
    hit_matrix,
    metric_values,
    pairs_to_csr,
    top_items,
)
from ego_dgl.runs import pyplot, save_png, write_csv

VIEWS = ("item-degree", "user-degree")
SHARE_METRICS = ("precision", "recall", "ndcg")  # the metrics that split over item buckets
USER_METRICS = ("precision", "recall", "ndcg", "hit")


@dataclass
class Ranked:
    """The evaluated users of a split, their top-K items, hits and held-out counts."""

    users: np.ndarray  # [U]
    items: np.ndarray  # [U, K] ranked item ids
    hits: np.ndarray  # [U, K] bool
    heldout: np.ndarray  # [U] number of held-out items
    heldout_items: np.ndarray  # the held-out items of every evaluated user, concatenated


@torch.no_grad()
def rank_users(user_table: torch.Tensor, item_table: torch.Tensor, ds: Dataset, split: str, k: int, protocol: str = "full") -> Ranked:
    """Every evaluated user's top-k, ranked as `evaluate` ranks them (known items masked)."""
    known = ds.known_csr(split)
    heldout = pairs_to_csr(ds.num_users, ds.split(split))
    counts = np.diff(heldout.indptr)
    users = np.flatnonzero(counts > 0)
    chunk = auto_chunk_size(ds.num_items, item_table.device)
    items, hits = [], []
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        ranked = top_items(user_table, item_table, batch, known, k, protocol)
        items.append(ranked.cpu().numpy())
        hits.append(hit_matrix(ranked, heldout, batch, ds.num_items).cpu().numpy())
    width = min(k, ds.num_items)
    return Ranked(users, np.concatenate(items) if items else np.zeros((0, width), np.int64),
                  np.concatenate(hits) if hits else np.zeros((0, width), bool), counts[users], heldout.indices)


def degree_edges(degrees: np.ndarray, bins: int) -> np.ndarray:
    """Distinct quantile edges of `degrees` (bins + 1 at most, first = min, last = max)."""
    if bins < 1:
        raise ConfigError(f"--bins {bins}: give a positive number of buckets, e.g. 5")
    # more buckets than degrees gives the same edges (each distinct degree): never allocate --bins 10**9 quantiles
    bins = min(bins, max(len(degrees), 1))
    return np.unique(np.quantile(degrees, np.linspace(0, 1, bins + 1), method="lower"))


def bucket_of(degree: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket index of each degree: bucket b holds [edges[b], edges[b + 1]), the last
    bucket also its upper edge; a single edge makes one bucket."""
    if len(edges) == 1:
        return np.zeros(len(degree), dtype=np.int64)
    return np.clip(np.searchsorted(edges, degree, side="right") - 1, 0, len(edges) - 2)


def bucket_label(edges: np.ndarray, b: int) -> str:
    if len(edges) == 1:
        return f"{edges[0]}"
    hi = edges[b + 1] if b == len(edges) - 2 else edges[b + 1] - 1
    return f"{edges[b]}" if hi <= edges[b] else f"{edges[b]}-{hi}"


def by_user_degree(r: Ranked, ds: Dataset, ks: tuple[int, ...], bins: int, protocol: str = "full") -> list[dict[str, Any]]:
    """One row per user-degree bucket: its users and their mean metrics."""
    values = metric_values(torch.from_numpy(r.hits), torch.from_numpy(r.heldout), ks, protocol)
    degree = ds.user_degree[r.users]
    edges = degree_edges(degree, bins)
    bucket = bucket_of(degree, edges)
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        inside = torch.from_numpy(bucket == b)
        row: dict[str, Any] = {"bucket": b, "degree": bucket_label(edges, b), "users": int(inside.sum())}
        row |= {f"{m}@{k}": float(values[f"{m}@{k}"][inside].mean()) if inside.any() else 0.0 for m in USER_METRICS for k in ks}
        rows.append(row)
    return rows


def by_item_degree(r: Ranked, ds: Dataset, ks: tuple[int, ...], bins: int, protocol: str = "full") -> list[dict[str, Any]]:
    """One row per item-degree bucket: its items' share of each metric (module docstring)."""
    edges = degree_edges(ds.item_degree[np.unique(r.heldout_items)], bins)
    item_bucket = bucket_of(ds.item_degree, edges)  # every item, so ranked items map too
    ranked_bucket = item_bucket[r.items]
    n = torch.from_numpy(r.heldout)
    full = torch.from_numpy(r.hits)
    count = max(len(r.users), 1)
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        part = torch.from_numpy(r.hits & (ranked_bucket == b))
        values = metric_values(part, n, ks, protocol, ideal_hits=full)
        held_pairs = int((item_bucket[r.heldout_items] == b).sum())
        items_b = len(np.unique(r.heldout_items[item_bucket[r.heldout_items] == b]))
        row: dict[str, Any] = {"bucket": b, "degree": bucket_label(edges, b), "items": items_b, "heldout_pairs": held_pairs}
        row |= {f"{m}@{k}": float(values[f"{m}@{k}"].sum()) / count for m in SHARE_METRICS for k in ks}
        row |= {f"retrieved@{k}": float(part[:, :k].sum()) / held_pairs if held_pairs else 0.0 for k in ks}
        rows.append(row)
    return rows


def degree_rows(user_table: torch.Tensor, item_table: torch.Tensor, ds: Dataset, split: str, by: str,
                ks: tuple[int, ...], bins: int, protocol: str = "full") -> list[dict[str, Any]]:
    """The table of `by` ("item-degree" or "user-degree") for one model's tables."""
    if by not in VIEWS:
        raise ConfigError(f"--by {by!r}: use one of {', '.join(VIEWS)}")
    ranked = rank_users(user_table, item_table, ds, split, max(ks), protocol)
    return (by_item_degree if by == "item-degree" else by_user_degree)(ranked, ds, ks, bins, protocol)


def run_degree_rows(run_dir: Path, split: str, by: str, bins: int, device: str = "auto") -> list[dict[str, Any]]:
    """`degree_rows` of a run folder's best checkpoint, with the run's cut-offs and protocol."""
    from ego_dgl.train.loading import load_run

    run = load_run(run_dir, device)
    tables = run.model.final_tables()
    return degree_rows(tables.users, tables.items, run.ds, split, by, run.train_cfg.ks, bins, run.train_cfg.protocol)


def compare_degree_rows(folder: Path, split: str, by: str, bins: int, device: str = "auto") -> list[dict[str, Any]]:
    """Every finished cell of a compare folder: one row per cell and bucket, named by the
    cell's model (cells.csv) and seed; all cells share the dataset, so the buckets match."""
    from ego_dgl.study.cells import read_cells

    rows = []
    for cell in read_cells(folder):
        run_dir = folder / "cells" / cell["key"]
        if (run_dir / "best.pt").is_file():
            meta = {"model": cell.get("name", cell["key"]), "seed": cell.get("seed", "")}
            rows += [meta | row for row in run_degree_rows(run_dir, split, by, bins, device)]
    if not rows:
        raise ConfigError(f"{folder}: no finished cell with a checkpoint; train some with egodgl compare first")
    return rows


def mean_by_model(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several seeds averaged per (model, bucket), with the seed count."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["bucket"]), []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        numeric = [k for k, v in first.items() if isinstance(v, float)]
        out.append({k: v for k, v in first.items() if k not in numeric and k != "seed"} | {"seeds": len(members)}
                   | {k: float(np.mean([m[k] for m in members])) for k in numeric})
    return out


def plot_degree(rows: list[dict[str, Any]], by: str, metric: str, title: str) -> Any:
    """Bars of `metric` per bucket, one series per model (a single run: one series)."""
    models = list(dict.fromkeys(r.get("model", "run") for r in rows))
    labels = list(dict.fromkeys(r["degree"] for r in rows))
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(models) * len(labels) + 3), 4.0))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            mine = {r["degree"]: r[metric] for r in rows if r.get("model", "run") == model}
            ax.bar(np.arange(len(labels)) + (k - (len(models) - 1) / 2) * width, [mine.get(lb, 0.0) for lb in labels], width,
                   label=model)
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel(f"training degree ({by.split('-')[0]} bucket, quantiles)")
        ax.set_ylabel(metric + (" (share of the overall)" if by == "item-degree" and not metric.startswith("retrieved") else ""))
        ax.set_title(title, fontsize=9)
        if len(models) > 1:
            ax.legend(fontsize=7, ncol=2)
    return fig


def write_degree(folder: Path, rows: list[dict[str, Any]], by: str, split: str, metric: str, title: str) -> tuple[Path, Path]:
    """by-<view>-<split>.csv and .png in `folder` (a run or compare folder ego-dgl wrote)."""
    csv_path, png_path = folder / f"by-{by}-{split}.csv", folder / f"by-{by}-{split}.png"
    write_csv(csv_path, rows)
    save_png(plot_degree(rows, by, metric, title), png_path)
    return csv_path, png_path
