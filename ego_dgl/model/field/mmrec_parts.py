"""The pieces BM3, MGCN and LGMRec share, as MMRec's models build them: each modality's
item content as a dense [Q, F_m] table, the user-item graph with LightGCN's symmetric
weights and the sums of a user's items (graphs.py's sparse matrices, as FREEDOM's).

Choices where MMRec is silent (its datasets have every modality for every item, as dense
matrices):
- an item lacking a modality has a zero content row (as `ItemFeatures` zeroes it before
  projecting), which the kNN construction makes similar to nothing;
- a word-bag modality (the GRCN layout's Tiktok text) has no fixed matrix to project or
  to build a kNN graph from, so these models refuse it with the fix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.field.graphs import (
    FixedSparse,
    RowSparse,
    bipartite_sym,
    dense_features,
    layer_mean,
    lightgcn_norm,
    train_edges,
    xavier_uniform,
)
from ego_dgl.model.layers.cold import keep_rows, masked


class ContentTables(nn.Module):
    """Every modality's content [Q, F_m] in dataset order: trainable parameters when
    `trainable` (MMRec's BM3 and MGCN fine-tune the features), else fixed buffers that no
    checkpoint stores (LGMRec's, frozen)."""

    def __init__(self, ds: Dataset, model: str, trainable: bool):
        super().__init__()
        matrices = list(dense_features(ds, model).values())
        self.trainable = trainable
        self.params = nn.ParameterList([nn.Parameter(x) for x in matrices] if trainable else [])
        for k, x in enumerate([] if trainable else matrices):
            self.register_buffer(f"x{k}", x, persistent=False)
        masks = [torch.from_numpy(ds.mask(m).astype(bool)) for m in ds.modalities]
        self.register_buffer("available", torch.stack(masks, 1), persistent=False)
        self.dims = [int(x.shape[1]) for x in matrices]

    def forward(self) -> list[Tensor]:
        return list(self.params) if self.trainable else [getattr(self, f"x{k}") for k in range(len(self.dims))]


def projection(width: int, dim: int) -> nn.Linear:
    """W x + b from `width` to `dim`, W xavier-normal (MMRec's BM3), b torch's default."""
    layer = nn.Linear(width, dim)
    nn.init.xavier_normal_(layer.weight)
    return layer


def user_item_sums(users: Tensor, items: Tensor, num_users: int, num_items: int, weights: str) -> FixedSparse:
    """The [P, Q] matrix summing each user's items, weighted 'norm' (LightGCN's 1/sqrt(|N_u| |N_i|)), 'mean'
    (1/|N_u|) or 'ones'."""
    if weights == "norm":
        w = lightgcn_norm(users, items, num_users, num_items)
    elif weights == "mean":
        w = torch.bincount(users, minlength=num_users).float().reciprocal()[users]
    else:
        w = torch.ones(len(users))
    return FixedSparse(RowSparse.from_edges(users, items, w, num_users, num_items))


class GraphContentModel(Recommender):
    """What BM3, MGCN and LGMRec hold alike: `cfg`, the user-item `graph` (bipartite_sym), the `user_item_sums`
    named in `user_sums`, the content tables, and xavier-uniform ID tables users [P, D] and items [Q, D]."""

    def __init__(self, ds: Dataset, cfg: Any, trainable_content: bool, user_sums: tuple[str, ...] = ()):
        super().__init__()
        self.cfg = cfg
        self.num_users = ds.num_users
        users, items = train_edges(ds)
        self.graph = FixedSparse(bipartite_sym(users, items, ds.num_users, ds.num_items))
        self.user_sums = nn.ModuleDict({w: user_item_sums(users, items, ds.num_users, ds.num_items, w) for w in user_sums})
        self.content = ContentTables(ds, cfg.name, trainable_content)
        self.users = xavier_uniform(ds.num_users, cfg.dim)
        self.items = xavier_uniform(ds.num_items, cfg.dim)
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)  # cold items' ID rows zeroed

    def item_ids(self) -> Tensor:
        """The item ID table as the models use it: cold items' rows zeroed (layers/cold.py)."""
        return masked(self.items, self.item_keep)

    def input_tables(self) -> Tables:
        return Tables(self.users, self.items)

    def id_layer_mean(self, layers: int) -> Tensor:
        """LightGCN over the ID tables: the mean of layers 0..`layers`, [P + Q, D]."""
        return layer_mean(self.graph, torch.cat([self.users, self.item_ids()]), layers)

    def batch_rows(self, table: Tensor, users: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's user, positive and negative rows of a users-then-items table."""
        return table[users], table[self.num_users + pos], table[self.num_users + neg]

    def split(self, table: Tensor) -> Tables:
        """A users-then-items [P + Q, D] table as Tables."""
        return Tables(table[: self.num_users], table[self.num_users :])
