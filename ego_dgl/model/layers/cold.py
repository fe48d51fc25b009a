"""What a model does with cold items (items a cold-start variant kept out of training,
data/variants.py), declared as `Recommender.cold_start`:

- "content": scored from the item's features through a content branch (EgoGCN, GRCN, MMGCN, HUIGN);
- "early-fused": scored from the features fused into the item's input embedding
  (the graph baselines with `content` on);
- "none": the model has nothing but trained rows to score with (ID-only EgoGCN, the graph
  baselines with `content` off, popularity); cold metrics are refused for it by name.

A cold item's ID row is zeroed wherever a model uses it (`keep_rows`): the row is never
trained (the item is no positive, and the sampler draws negatives from warm items only),
so it is still its random initialisation and would add noise of the init's scale to the
item's score; with the row zeroed, the score comes from the content alone. A dataset
without cold items gets no mask, so its figures are unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ego_dgl.data.dataset import Dataset

COLD_START = ("content", "early-fused", "none")


def keep_rows(ds: Dataset, num_users: int = 0) -> Tensor | None:
    """Float [num_users + Q, 1] row multipliers of an ID table whose item rows follow
    `num_users` user rows: 0 for cold items, 1 elsewhere; None without cold items."""
    if not ds.has_cold_items:
        return None
    keep = torch.ones(num_users + ds.num_items, 1)
    keep[num_users + torch.from_numpy(ds.cold_items)] = 0.0
    return keep


def masked(table: Tensor, keep: Tensor | None) -> Tensor:
    """`table` with the rows `keep` zeroes set to zero (the table itself without a mask)."""
    return table if keep is None else table * keep


def content_or_none(has_content: bool) -> str:
    """The declaration of a model whose cold items are scored through its content branch when it has one."""
    return "content" if has_content else "none"
