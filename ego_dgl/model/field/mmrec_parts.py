"""The pieces BM3, MGCN and LGMRec share, as MMRec's models build them: each modality's
item content as a dense [Q, F_m] table, the user-item graph with LightGCN's symmetric
weights, and fixed item-item kNN graphs of content (`ego_dgl.graph.knn`).

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
from ego_dgl.graph.backends import Edges, interaction_edges
from ego_dgl.graph.heterograph import ITEM, lightgcn_weights, structure_graph
from ego_dgl.graph.knn import knn_edges, knn_indices, sym_norm_weights
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.field.graphs import dense_features, xavier_uniform
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.id_branch import lightgcn

SIMILAR = (ITEM, "similar", ITEM)  # item -> item edges of a kNN content graph


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


class UserItemGraph(nn.Module):
    """The training interactions both ways, with LightGCN's 1/sqrt(|N_u| |N_i|) per edge
    (MMRec's normalised adjacency D^-1/2 A D^-1/2 of the user-item graph)."""

    def __init__(self, ds: Dataset):
        super().__init__()
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        self.register_buffer("norm", lightgcn_weights(g), persistent=False)
        self.register_buffer("user_degree", g.out_degrees(etype=self.to_items.etype).float(), persistent=False)

    def layer_mean(self, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
        """LightGCN: the mean of layers 0..`layers` of normalised propagation."""
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        out_u, out_i = lightgcn(to_users, to_items, users, items, self.norm, self.norm, layers)
        return out_u / (layers + 1), out_i / (layers + 1)

    def propagate(self, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
        """The last of `layers` normalised propagations (no layer mean)."""
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        for _ in range(layers):
            users, items = to_users.aggregate(items, self.norm), to_items.aggregate(users, self.norm)
        return users, items

    def users_from_items(self, items: Tensor, weights: str) -> Tensor:
        """Per user, the sum over its items of `items` rows weighted by 'norm' (LightGCN's
        weights), 'ones' (a plain sum) or 'mean' (1/|N_u|)."""
        rel = self.to_users.relation("torch")
        if weights == "norm":
            w = self.norm
        elif weights == "mean":
            w = self.user_degree.clamp(min=1).reciprocal()[rel.dst]
        else:
            w = torch.ones_like(self.norm)
        return rel.aggregate(items, w)


class ItemGraph(nn.Module):
    """A fixed item-item graph: each item's `k` most cosine-similar items by content
    (blocked, never items x items), weighted D^-1/2 A D^-1/2; `forward(x)` is S x."""

    def __init__(self, content: Tensor, k: int):
        super().__init__()
        num_items = len(content)
        rows, cols = knn_edges(knn_indices(content, k))
        self.edges = Edges(cols, rows, num_items, num_items, SIMILAR)  # row aggregates its neighbours
        self.register_buffer("weights", sym_norm_weights(rows, cols, num_items), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.edges.relation("torch").aggregate(x, self.weights)


class GraphContentModel(Recommender):
    """What BM3, MGCN and LGMRec hold alike: `cfg`, the user-item graph, the content
    tables, and xavier-uniform ID tables users [P, cfg.dim] and items [Q, cfg.dim] (their
    inputs before propagation)."""

    def __init__(self, ds: Dataset, cfg: Any, trainable_content: bool):
        super().__init__()
        self.cfg = cfg
        self.num_users = ds.num_users
        self.graph = UserItemGraph(ds)
        self.content = ContentTables(ds, cfg.name, trainable_content)
        self.users = xavier_uniform(ds.num_users, cfg.dim)
        self.items = xavier_uniform(ds.num_items, cfg.dim)
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)  # cold items' ID rows zeroed

    def item_ids(self) -> Tensor:
        """The item ID table as the models use it: cold items' rows zeroed (layers/cold.py)."""
        return masked(self.items, self.item_keep)

    def input_tables(self) -> Tables:
        return Tables(self.users, self.items)

    def batch_rows(self, table: Tensor, users: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's user, positive and negative rows of a users-then-items table."""
        return table[users], table[self.num_users + pos], table[self.num_users + neg]

    def split(self, table: Tensor) -> Tables:
        """A users-then-items [P + Q, D] table as Tables."""
        return Tables(table[: self.num_users], table[self.num_users :])
