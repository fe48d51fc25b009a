"""GRCN (Wei, Wang, Nie, He, Chua, "Graph-Refined Convolutional Network for Multimedia
Recommendation with Implicit Feedback", ACM MM 2020): the user-item graph is refined from
the content (edges whose content disagrees with the user are down-weighted or pruned),
then an ID graph convolution runs on the refined graph; the prediction concatenates the
ID and the per-modality content representations.

Inputs (all modalities at once, [N, M, C]): u_m, a trainable preference table per
modality, and i_m, the item's modality features; both L2-normalised (`has_norm`).
1. Graph refining, prototypical routing per modality (R iterations, `routing`):
   s_ui = softmax over i' in N(u) of <u_m, i'_m>;  u_m <- normalize(u_m + sum_i s_ui i_m).
   The items' features stay fixed; the routed u_m is the user's prototype.
2. Edge affinities, one softmax per direction over the final <u_m, i_m>:
   a^m_{i->u} over N(u), a^m_{u->i} over N(i); the content representation of modality m
   is x_m + sum over neighbours j of a^m_{j->v} x_j,m (no activation, `has_act` off).
3. Edge weights of the refined graph (`weight_mode`): confid (default) w_{j->v} =
   max over m of a^m_{j->v} c_{j,m}, with c a trainable [P + Q, M] confidence of the
   source node j in modality m; max: max over m of a^m; mean: mean over m of a^m. Pruning
   (`pruning`, default on): w <- relu(w), so edges with a negative weight are cut.
4. ID graph convolution on the refined graph (`layers` = 2): e(0) = normalize(ID table),
   e(l+1)_v = sum over neighbours j of w_{j->v} e(l)_j (sum aggregation, no activation);
   id_v = e(0) + e(1) + ... + e(L).
5. Prediction: v* = [id_v || content_v,1 || ... || content_v,M]; score <u*, i*>.

Defaults are the authors' (weiyinwei/GRCN main.py and Model_routing.py): dim_E = dim_C =
64, 3 routing iterations, weight_mode confid, pruning on, fusion_mode concat, has_norm on,
has_act off, aggr_mode add, edge dropout 0 (not implemented here), two ID layers.
Where we differ, and why:
- routing: as we read the released code, its routing loop passes only the (user, item)
  edges, whose messages PyG delivers to the items, so the users' preferences are only
  normalised there; we route the users from their items as the paper describes.
- item features: the project's `features.ItemFeatures` at width C, i.e.
  normalize(leaky_relu(W X_m + b)) as the authors' dense modalities, with items lacking a
  modality filled as that module says; a word-bag text modality is a learned word table
  averaged per item and then projected like the others (the authors average a C-wide word
  table and do not project it).
- the confidence table is xavier-normal initialised as theirs and, as theirs, not
  regularised; the regulariser (default BPR + reg) covers the batch's raw ID rows and the
  batch users' preference rows of every modality, as the authors' loss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import Relation, interaction_edges
from ego_dgl.graph.heterograph import structure_graph
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.layers.attention import DIRECTIONS, shared_logits
from ego_dgl.model.layers.cold import keep_rows
from ego_dgl.model.layers.features import ItemFeatures, UserPreferences, require_modalities, xavier_table
from ego_dgl.model.layers.id_branch import IdTable, lightgcn
from ego_dgl.model.layers.routing import route

WEIGHT_MODES = ("confid", "max", "mean")


@dataclass
class GRCNConfig(RecommenderConfig):
    """GRCN's options; defaults are the authors' (module docstring)."""

    name: ClassVar[str] = "grcn"

    dim: int = 64  # dim_E: ID embedding width
    content_dim: int = 64  # dim_C: per-modality preference and item feature width
    routing: int = 3  # routing iterations of the graph refining layer
    layers: int = 2  # ID graph convolution layers on the refined graph
    weight_mode: str = "confid"  # how modalities' affinities become one edge weight: confid | max | mean
    pruning: bool = True  # relu on the edge weights: negative edges are cut
    word_dim: int = 128  # width of the learned word table for word-bag text modalities

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and GRCN's routing iterations (the paper's 3 in the middle)."""
        return {**super().search_space(), "routing": {"low": 1, "high": 5}}

    def validate(self) -> GRCNConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.content_dim < 1 or self.word_dim < 1:
            raise ConfigError("--dim, content_dim and word_dim must be positive integers")
        if self.routing < 0 or self.layers < 0:
            raise ConfigError(f"--layers and routing must be >= 0, got layers={self.layers}, routing={self.routing}")
        if self.weight_mode not in WEIGHT_MODES:
            raise ConfigError(f"--param weight_mode={self.weight_mode!r} is not one of: {', '.join(WEIGHT_MODES)}")
        return self


def edge_weights(affinity: Tensor, confidence: Tensor | None, mode: str, pruning: bool) -> Tensor:
    """One weight per edge [E] from the per-modality affinities [E, M] (step 3): confid
    weighs them by the source's confidence [E, M] first; then max or mean over modalities."""
    if mode == "mean":
        w = affinity.mean(-1)
    else:
        w = (affinity * confidence if mode == "confid" else affinity).amax(-1)
    return torch.relu(w) if pruning else w


class GRCN(Recommender):
    """Content-refined graph (routing, affinities, pruning) under an ID graph convolution."""

    def __init__(self, ds: Dataset, cfg: GRCNConfig):
        super().__init__()
        self.cfg = cfg
        M = require_modalities(ds, "grcn refines its graph from modalities", "use --model lightgcn")
        self.num_users = ds.num_users
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        self.item_features = ItemFeatures(ds, cfg.content_dim, cfg.word_dim)
        self.preferences = UserPreferences(ds.num_users, M, cfg.content_dim)
        self.cold_start = "content"  # a cold item: its refined content, a zero ID row
        self.ids = IdTable(ds.num_users, ds.num_items, cfg.dim, keep_rows(ds, ds.num_users))
        self.confidence = xavier_table(ds.num_users + ds.num_items, M) if cfg.weight_mode == "confid" else None

    def inputs(self) -> tuple[Tensor, Tensor]:
        """Normalised preferences [P, M, C] and item features [Q, M, C]."""
        return self.preferences(), self.item_features()

    def input_tables(self) -> Tables:
        """[normalised ID row || the modalities' inputs], concatenated as `propagate`'s."""
        e_users, e_items = self.ids()
        users, items = self.inputs()
        return Tables(torch.cat([e_users, users.flatten(1)], 1), torch.cat([e_items, items.flatten(1)], 1))

    def propagate(self) -> Tables:
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        users, items = self.inputs()
        for _ in range(self.cfg.routing):
            users = route(to_users, items, users)
        logits = shared_logits(to_items, users, items)
        a_users, a_items = to_users.softmax(logits), to_items.softmax(logits)
        content_u = users + to_users.aggregate(items, a_users)
        content_i = items + to_items.aggregate(users, a_items)
        w_users, w_items = self._weights(to_users, to_items, a_users, a_items)
        id_u, id_i = lightgcn(to_users, to_items, *self.ids(), w_users, w_items, self.cfg.layers)
        stats = {f"pruned/{d}": (w.detach() <= 0).float().mean() for d, w in zip(DIRECTIONS, (w_users, w_items))} if self.cfg.pruning else {}
        return Tables(torch.cat([id_u, content_u.flatten(1)], 1), torch.cat([id_i, content_i.flatten(1)], 1), stats)

    def _weights(self, to_users: Relation, to_items: Relation, a_users: Tensor, a_items: Tensor) -> tuple[Tensor, Tensor]:
        """Refined edge weights of item->user and user->item edges (step 3)."""
        conf_u = conf_i = None
        if self.confidence is not None:  # the source's confidence: an item's toward users, a user's toward items
            conf_u = self.confidence[self.num_users + to_users.src]
            conf_i = self.confidence[to_items.src]
        mode, pruning = self.cfg.weight_mode, self.cfg.pruning
        return edge_weights(a_users, conf_u, mode, pruning), edge_weights(a_items, conf_i, mode, pruning)

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return [self.ids.user_rows(users), *self.preferences.raw_rows(users)], [self.ids.item_rows(items)]
