"""Item-item k-nearest-neighbour graphs from content, without an items x items matrix.

Cosine similarity of feature rows, top-k per row, computed over blocks of rows so that
memory grows with items x block + items x k, never items x items (a dense float32
similarity of synthetic-tiktok's 76,085 items would be 23 GB). Ties are broken as
`torch.topk` breaks them; a row's own item is among its neighbours when it is among the
k most similar (as in LATTICE's and FREEDOM's constructions, where it always is)."""

from __future__ import annotations

import torch
from torch import Tensor

from ego_dgl.errors import ConfigError


def knn_indices(features: Tensor, k: int, block_rows: int = 2048) -> Tensor:
    """The k most cosine-similar rows of every row of `features` [Q, F], as [Q, k] long
    indices, most similar first; rows of zeros are similar to nothing (similarity 0)."""
    if not 1 <= k <= len(features):
        raise ConfigError(f"the kNN graph needs 1 <= k <= {len(features)} items, got k={k}")
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    out = torch.empty(len(unit), k, dtype=torch.long)
    for start in range(0, len(unit), block_rows):
        block = unit[start : start + block_rows] @ unit.T
        out[start : start + len(block)] = block.topk(k, dim=1).indices
    return out


def knn_edges(neighbours: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the directed edges row -> neighbour of a [Q, k] index table."""
    rows = torch.arange(len(neighbours)).repeat_interleave(neighbours.shape[1])
    return rows, neighbours.reshape(-1)


def sym_norm_weights(rows: Tensor, cols: Tensor, num_nodes: int) -> Tensor:
    """D^-1/2 A D^-1/2 values of an unweighted edge list, D the row sums of A (the
    normalisation LATTICE, FREEDOM and MGCN apply to their item-item graphs)."""
    degree = torch.bincount(rows, minlength=num_nodes).float()
    inv_sqrt = degree.clamp(min=1).pow(-0.5)
    return inv_sqrt[rows] * inv_sqrt[cols]
