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


def sym_normalise(neighbours: Tensor, values: Tensor) -> Tensor:
    """D^-1/2 S D^-1/2 of S with `values` [Q, K] at `neighbours` [Q, K], D its row sums (MMRec's, for LATTICE's,
    FREEDOM's and MGCN's item graphs); a row summing to 0 or less weighs 0 (MMRec's would be inf or NaN)."""
    rowsum = values.sum(1)
    inv = torch.where(rowsum > 0, rowsum.clamp(min=1e-30).rsqrt(), torch.zeros_like(rowsum))
    return inv.unsqueeze(1) * values * inv[neighbours]
