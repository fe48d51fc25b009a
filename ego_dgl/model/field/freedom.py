"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures
for Multimodal Recommendation", ACM MM 2023): LightGCN on a user-item graph pruned anew
each epoch by degree, plus a frozen item-item kNN graph from the raw content.

1. Frozen item graph (Sec. 3.1): per modality m, S_m = the k nearest items by cosine of
   the raw features (k = `knn_k` = 10, unweighted), normalised D^-1/2 S_m D^-1/2 (D the
   row sums); mixed S = sum_m w_m S_m (MMRec: image 0.1, text 0.9, `image_weight`; see
   graphs.modality_shares for other modality sets). Built once, never trained
   (graphs built in blocks of rows, ego_dgl.graph.knn: no items x items matrix).
2. Item content branch: h = S^L' e_i (L' = `item_layers` = 1) on the item ID table.
3. Degree-sensitive edge pruning (Sec. 3.2), before every training epoch (`start_epoch`):
   keep (1 - `dropout`) of the training edges, drawn without replacement with
   probability proportional to 1 / sqrt(d_u d_i); the kept graph is normalised with its
   own degrees. Evaluation uses the full graph, D^-1/2 A D^-1/2. The draw here is
   Efraimidis-Spirakis (the smallest Exp(1) / w keys), the same distribution as
   MMRec's sequential torch.multinomial, from the trainer's checkpointed generator.
4. LightGCN on the (pruned) user-item graph, L = `layers` = 2, the mean of layers 0..L
   of [e_u; e_i] (both tables xavier-uniform, D = `dim` = 64).
5. Output: users e_u^L; items e_i^L + h; score the inner product.
6. Loss: BPR(u, i+, i-) + reg * sum_m BPR with the items' projected raw features
   W_m x_i,m + b_m (width D) in place of the items (the modality-aware BPR of Sec. 3.3;
   `--reg` is MMRec's reg_weight, grid 0, 1e-5, 1e-4, 1e-3). No L2 term, as MMRec's.
Choices where the paper is silent, as MMRec's code: the raw feature tables are
trainable (they feed only the projections of step 6; the graph stays frozen). Ours: the
user-item weights leave out MMRec's 1e-7 floor on degrees (graphs.lightgcn_norm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender, Tables, inner
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.field.graphs import (
    FixedSparse,
    KnnSearchSpace,
    RowSparse,
    bipartite_sym,
    dense_features,
    knn_matrix,
    knn_sym,
    layer_mean,
    modality_shares,
    train_edges,
    xavier_uniform,
)
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.loss import bpr


@dataclass
class FREEDOMConfig(KnnSearchSpace, RecommenderConfig):
    """FREEDOM's options; defaults are MMRec's FREEDOM.yaml (module docstring)."""

    name: ClassVar[str] = "freedom"
    # --protocol mmrec: dropout and reg_weight are grids in MMRec's yaml (0.8, 0.9; 0, 1e-5,
    # 1e-4, 1e-3); 0.8 and 1e-4 are our pick from them
    mmrec_defaults: ClassVar[dict[str, Any]] = {"dropout": 0.8, "reg": 1e-4}

    dim: int = 64  # D: ID tables and projected features
    layers: int = 2  # L: LightGCN layers on the user-item graph (n_ui_layers)
    item_layers: int = 1  # L': propagations on the frozen item graph (n_mm_layers)
    knn_k: int = 10  # neighbours per item in each modality's kNN graph
    image_weight: float = 0.1  # share of the image modality in the mixed item graph (mm_image_weight)
    dropout: float = 0.8  # share of training edges pruned each epoch (degree-sensitive)

    def validate(self) -> FREEDOMConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.knn_k < 1:
            raise ConfigError(f"--dim and knn_k must be positive integers, got dim={self.dim}, knn_k={self.knn_k}")
        if self.layers < 0 or self.item_layers < 0:
            raise ConfigError(f"--layers and item_layers must be >= 0, got {self.layers} and {self.item_layers}")
        if not 0 <= self.image_weight <= 1 or not 0 <= self.dropout < 1:
            raise ConfigError(f"image_weight must lie in 0..1 and dropout in 0..1 (1 excluded), got {self.image_weight} and {self.dropout}")
        return self


def frozen_item_graph(features: dict[str, Tensor], k: int, image_weight: float) -> RowSparse:
    """Step 1: sum over modalities of w_m D^-1/2 S_m D^-1/2, S_m the unweighted kNN graph."""
    shares = modality_shares(list(features), image_weight)
    neighbours, values = [], []
    for share, x in zip(shares, features.values()):
        nb, w = knn_sym(x, min(k, len(x)))
        neighbours.append(nb)
        values.append(share * w)
    return knn_matrix(torch.cat(neighbours, 1), torch.cat(values, 1))


def degree_sensitive_keep(users: Tensor, items: Tensor, num_users: int, num_items: int, keep: int, rng: np.random.Generator) -> Tensor:
    """Step 3: indices of `keep` edges drawn without replacement, each with probability
    proportional to 1 / sqrt(d_u d_i) (Efraimidis-Spirakis keys)."""
    d_u = torch.bincount(users, minlength=num_users).double()
    d_i = torch.bincount(items, minlength=num_items).double()
    weight = (d_u[users] * d_i[items]).rsqrt().numpy()
    keys = rng.exponential(size=len(weight)) / weight
    return torch.from_numpy(np.sort(np.argpartition(keys, keep - 1)[:keep]))


class FREEDOM(Recommender):
    """Frozen content kNN item graph + per-epoch degree-pruned LightGCN (module docstring)."""

    cold_start = "content"  # the content kNN item graph reaches a cold item from its neighbours

    def __init__(self, ds: Dataset, cfg: FREEDOMConfig):
        super().__init__()
        self.cfg = cfg
        self.num_users, self.num_items = ds.num_users, ds.num_items
        raw = dense_features(ds, cfg.name)
        self.users_e, self.items_e = train_edges(ds)
        self.full = FixedSparse(bipartite_sym(self.users_e, self.items_e, ds.num_users, ds.num_items))
        self.pruned: FixedSparse | None = None
        self.item_graph = FixedSparse(frozen_item_graph(raw, cfg.knn_k, cfg.image_weight))
        self.ids = xavier_uniform(ds.num_users + ds.num_items, cfg.dim)
        self.register_buffer("id_keep", keep_rows(ds, ds.num_users), persistent=False)  # cold items' ID rows zeroed
        self.raw = nn.ParameterList([nn.Parameter(x) for x in raw.values()])
        self.project = nn.ModuleList([nn.Linear(x.shape[1], cfg.dim) for x in raw.values()])

    def start_epoch(self, epoch: int, rng: np.random.Generator) -> None:
        """Step 3: this epoch's pruned, renormalised user-item graph."""
        if self.cfg.dropout <= 0:
            self.pruned = None
            return
        keep = max(1, int(len(self.users_e) * (1.0 - self.cfg.dropout)))
        kept = degree_sensitive_keep(self.users_e, self.items_e, self.num_users, self.num_items, keep, rng)
        self.pruned = FixedSparse(bipartite_sym(self.users_e[kept], self.items_e[kept], self.num_users, self.num_items)).to(self.ids.device)

    def graph(self) -> FixedSparse:
        """The pruned graph while training (after `start_epoch`), else the full one."""
        return self.pruned if self.training and self.pruned is not None else self.full

    def propagate(self) -> Tables:
        ids = masked(self.ids, self.id_keep)
        h = ids[self.num_users :]
        for _ in range(self.cfg.item_layers):
            h = self.item_graph.mm(h)
        out = layer_mean(self.graph(), ids, self.cfg.layers)
        return Tables(out[: self.num_users], out[self.num_users :] + h)

    def input_tables(self) -> Tables:
        return Tables(self.ids[: self.num_users], self.ids[self.num_users :])

    def projected(self) -> list[Tensor]:
        """Each modality's W_m x_m + b_m [Q, D] (step 6)."""
        return [proj(x) for proj, x in zip(self.project, self.raw)]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR + reg * the modalities' BPR terms (step 6)."""
        t = self.propagate()
        u = t.users[users]
        bpr_term = bpr(inner(u, t.items[pos]), inner(u, t.items[neg]))
        content = torch.stack([bpr(inner(u, x[pos]), inner(u, x[neg])) for x in self.projected()]).sum()
        reg_term = reg * content
        return bpr_term + reg_term, {"bpr": bpr_term.detach(), "reg": reg_term.detach()}
