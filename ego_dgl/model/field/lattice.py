"""LATTICE (Zhang, Zhu, Liu, Wu, Wang, Wang, "Mining Latent Structures for Multimedia
Recommendation", ACM MM 2021): an item-item graph learned from the content, mixed with
the initial kNN graph, propagates the item IDs; LightGCN runs on the user-item graph.

1. Initial graphs (Eq. 1-3): per modality m, S~_m = the top-k (k = `knn_k` = 10) cosine
   similarities of the raw features, kept weighted; A~_m = D^-1/2 S~_m D^-1/2 (D the
   row sums). Built once from the features at initialisation.
2. Learned graphs (Eq. 4-5): x~_m = W_m x_m + b_m (width `feat_dim` = 64); S_m = the
   top-k cosine similarities of x~_m, weighted. The top-k choice carries no gradient,
   the similarities do (as the dense top-k of MMRec and the authors).
3. Mixing (Eq. 6-7): alpha = softmax of a trainable [M] vector (initially equal);
   A = (1 - lambda) D^-1/2 (sum_m alpha_m S_m) D^-1/2 + lambda sum_m alpha_m A~_m,
   lambda = `lam` = 0.9 (MMRec's lambda_coeff; the paper's skip connection).
4. Item graph convolution (Eq. 8): h = A^L' e_i, L' = `item_layers` = 1, on the raw
   item ID table e_i.
5. CF backbone (Eq. 9-10, MMRec's cf_model lightgcn): L = `layers` = 2 propagations of
   [e_u; e_i] by D^-1 (A_ui + I) (MMRec's and the authors' normalisation, after NGCF's
   code: each node averages itself and its neighbours), the mean of layers 0..L.
6. Output: users e_u^L; items e_i^L + normalize(h); score the inner product.
7. Loss: BPR + reg * (||u||^2 + ||i+||^2 + ||i-||^2) / (2 B) on the batch's output rows
   (MMRec's; `--reg` is its reg_weight, grid 0, 1e-5, 1e-4, 1e-3; lr grid 1e-4, 5e-4,
   1e-3, 5e-3).
Choices where the paper is silent, as MMRec's code: the learned graph (2-3) is rebuilt at
the first batch of each epoch with gradients and reused detached for the rest of the
epoch, and rebuilt for evaluation; the raw feature tables are trainable (they feed the
learned graph); ID tables xavier-uniform. MMRec's learning-rate decay (0.96 per 50
epochs) is not applied: the trainer keeps one learning rate. The graphs are sparse [Q, k]
tables (ego_dgl.graph.knn), never the items x items matrices of MMRec's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.knn import sym_normalise
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.field.graphs import (
    FixedSparse,
    KnnSearchSpace,
    RowSparse,
    bipartite_row_self,
    dense_features,
    knn_cosine,
    knn_matrix,
    layer_mean,
    output_rows_loss,
    train_edges,
    xavier_uniform,
)
from ego_dgl.model.layers.cold import keep_rows, masked


@dataclass
class LATTICEConfig(KnnSearchSpace, RecommenderConfig):
    """LATTICE's options; defaults are MMRec's LATTICE.yaml (module docstring)."""

    name: ClassVar[str] = "lattice"
    # --protocol mmrec: reg_weight and learning_rate are grids in MMRec's yaml; 1e-4 and
    # 5e-4 are our pick from them
    mmrec_defaults: ClassVar[dict[str, Any]] = {"reg": 1e-4, "lr": 5e-4}

    dim: int = 64  # D: ID tables
    feat_dim: int = 64  # width of the projected features the learned graph comes from
    layers: int = 2  # L: user-item propagations (MMRec: len(weight_size))
    item_layers: int = 1  # L': propagations on the item graph (n_layers)
    knn_k: int = 10  # neighbours per item in every kNN graph
    lam: float = 0.9  # lambda: weight of the initial graph against the learned one (lambda_coeff)

    def validate(self) -> LATTICEConfig:
        """Raise ConfigError naming the first bad option."""
        if min(self.dim, self.feat_dim, self.knn_k) < 1:
            raise ConfigError(f"--dim, feat_dim and knn_k must be positive integers, got {self.dim}, {self.feat_dim}, {self.knn_k}")
        if self.layers < 0 or self.item_layers < 0:
            raise ConfigError(f"--layers and item_layers must be >= 0, got {self.layers} and {self.item_layers}")
        if not 0 <= self.lam <= 1:
            raise ConfigError(f"lam must lie in 0..1, got {self.lam}")
        return self


def weighted_knn(features: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top-k cosine neighbours [Q, k] and their similarities [Q, k] (steps 1-2)."""
    return knn_cosine(features, min(k, len(features)))


def squared_penalty(users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """(||u||^2 + ||i+||^2 + ||i-||^2) / (2 B) (step 7)."""
    return (users.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / (2 * len(users))


class LATTICE(Recommender):
    """Learned + initial item graphs over item IDs, LightGCN over users and items."""

    cold_start = "content"  # the content kNN item graph reaches a cold item from its neighbours

    def __init__(self, ds: Dataset, cfg: LATTICEConfig):
        super().__init__()
        self.cfg = cfg
        self.num_users = ds.num_users
        raw = dense_features(ds, cfg.name)
        self.ui_graph = FixedSparse(bipartite_row_self(*train_edges(ds), ds.num_users, ds.num_items))
        for m, (nb, sim) in enumerate(weighted_knn(x, cfg.knn_k) for x in raw.values()):
            self.register_buffer(f"init_nb{m}", nb, persistent=False)
            self.register_buffer(f"init_w{m}", sym_normalise(nb, sim), persistent=False)
        self.ids = xavier_uniform(ds.num_users + ds.num_items, cfg.dim)
        self.register_buffer("id_keep", keep_rows(ds, ds.num_users), persistent=False)  # cold items' ID rows zeroed
        self.raw = nn.ParameterList([nn.Parameter(x) for x in raw.values()])
        self.project = nn.ModuleList([nn.Linear(x.shape[1], cfg.feat_dim) for x in raw.values()])
        self.modal_logits = nn.Parameter(torch.zeros(len(raw)))
        self.cached: RowSparse | None = None  # this epoch's item graph, detached

    def start_epoch(self, epoch: int, rng: np.random.Generator) -> None:
        """A new epoch rebuilds the learned graph at its first batch (draws nothing)."""
        self.cached = None

    def item_graph(self) -> RowSparse:
        """A of step 3, over the concatenated neighbour tables of every graph."""
        alpha = torch.softmax(self.modal_logits, 0)
        learned = [weighted_knn(proj(x), self.cfg.knn_k) for proj, x in zip(self.project, self.raw)]
        nb_learned = torch.cat([nb for nb, _ in learned], 1)
        w_learned = sym_normalise(nb_learned, torch.cat([a * s for a, (_, s) in zip(alpha, learned)], 1))
        count = len(self.raw)
        nb_init = [getattr(self, f"init_nb{m}") for m in range(count)]
        w_init = [alpha[m] * getattr(self, f"init_w{m}") for m in range(count)]
        lam = self.cfg.lam
        return knn_matrix(torch.cat([nb_learned, *nb_init], 1), torch.cat([(1 - lam) * w_learned, *(lam * w for w in w_init)], 1))

    def current_graph(self) -> RowSparse:
        """The epoch's graph: built with gradients at its first batch, then reused
        detached; rebuilt, and not kept, without autograd (evaluation)."""
        if not torch.is_grad_enabled():
            return self.item_graph()
        if self.cached is not None:
            return self.cached
        graph = self.item_graph()
        self.cached = graph.detach()
        return graph

    def propagate(self) -> Tables:
        ids = masked(self.ids, self.id_keep)
        h = ids[self.num_users :]
        graph = self.current_graph()
        for _ in range(self.cfg.item_layers):
            h = graph.mm(h)
        out = layer_mean(self.ui_graph, ids, self.cfg.layers)
        return Tables(out[: self.num_users], out[self.num_users :] + F.normalize(h, dim=1))

    def input_tables(self) -> Tables:
        return Tables(self.ids[: self.num_users], self.ids[self.num_users :])

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR + reg * the squared norms of the scored rows over 2B (step 7)."""
        return output_rows_loss(self.propagate(), users, pos, neg, reg, squared_penalty)
