"""HUIGN (Wei, Wang, He, Nie, Rui, Chua, "Hierarchical User Intent Graph Network for
Multimedia Recommendation", arXiv 2110.14925, 2021; IEEE Transactions on Multimedia), at
the core of the authors' released code (github.com/weiyinwei/HUIGN, Model.py: the
FeaturePooling module and Net), which is followed where the paper is not at hand.

Multi-level user intents are learned from the co-interacted patterns of items, per
modality m, by recursively (levels l = 0..L-1, with C_0 > C_1 > ... intent nodes; the
authors' 32, 8, 4):
- intra-level aggregation on the level's graph (nodes N_l, adjacency A_l; level 0: the
  items and their co-interacted item graph), a mean-aggregating graph convolution
      H_l = leaky_relu(D_l^-1 A_l X_l W_l),     D_l = diag(max(1, row sums of A_l));
- inter-level aggregation: each node is softly assigned to the next level's intent nodes
      S_l = softmax over the C_l columns of (H_l P_l)                  [N_l, C_l],
  the intent graph of the next level is A_{l+1} = S_l^T A_l S_l, and the intent nodes'
  features are the assignment's prototypes, X_{l+1} = P_l^T [C_l, D] (the authors' code).
An item's representation is its distribution over the discovered intents of every level,
  r_i = [ (S_0)_i || (S_0 S_1)_i || ... || (S_0 ... S_{L-1})_i ],
concatenated over the modalities [M * sum C_l]; a user's is a trainable preference vector
over the same intents, p_u (the authors' `user_preferences`). With `ids` (the authors'
has_id, default on) trainable ID embeddings are concatenated in front:
  e_u = [id_u || p_u], e_i = [id_i || r_i], score <e_u, e_i>.
Loss (the authors'): BPR + reg * (mean id_u^2 + mean id_i^2 + mean p_u^2 over the batch
+ sum over m, l of the mean row entropy of S_l + sum over m, l of
||P_l^T P_l - I||_F / C_l^2), the entropy making assignments crisp and the last term
keeping the intent prototypes independent. The logs show the three regulariser terms as
"reg", "entropy" and "independence" (each already times reg).

Where this differs from the released code, and why ([impl]):
- level 0 starts from the project's projected, normalised item features i_m(0)
  (`features.ItemFeatures`, D = dim wide, missing modalities filled), not the raw
  features: one input path for every model and for word-bag text, and D x D
  convolutions instead of 2048 x 2048 ones;
- the co-interacted item graph: the released code loads a prebuilt `item_adj` whose
  construction is not published; here item j is a neighbour of item i when some user
  interacted with both, keeping i's `links` most co-interacted items (ties: lower item
  index first), binary, no self-loops: the full co-interaction graph of ml100k is
  nearly complete, and a mean over it would wash out every pattern;
- one convolution per level: the released code applies the same convolution twice when
  has_act is on (conv, then leaky_relu(conv) again), which looks like a slip;
- the convolution weights are xavier-normal initialised (the released code leaves them
  as uninitialised memory).
`input_tables` gives the same representation without any intra-level aggregation
(H_l = leaky_relu(X_l W_l)): the intents each item's own features would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import Edges
from ego_dgl.graph.heterograph import ITEM, unique_pairs
from ego_dgl.model.base import Recommender, Tables, inner
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.features import ItemFeatures, require_modalities, xavier_table
from ego_dgl.model.layers.loss import bpr, regulariser

CO_CLICKED = (ITEM, "co_clicked", ITEM)  # item j -> item i: i's co-interacted neighbour j


@dataclass
class HUIGNConfig(RecommenderConfig):
    """HUIGN: intent levels, co-interacted item graph and ID embeddings (module docstring)."""

    name: ClassVar[str] = "huign"

    dim: int = 64  # width of the ID embeddings and of the projected item features
    intents: str = "32,8,4"  # intent nodes per level, finest first (the authors' cluster_list)
    links: int = 10  # co-interacted neighbours kept per item
    ids: bool = True  # trainable ID embeddings concatenated in front (the authors' has_id)
    word_dim: int = 128  # width of the learned word table for word-bag text modalities

    def levels(self) -> list[int]:
        """The number of intent nodes of each level, finest first."""
        try:
            sizes = [int(s) for s in self.intents.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"--param intents={self.intents!r} must be positive integers separated by commas, e.g. 32,8,4")
        return sizes

    def validate(self) -> HUIGNConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.word_dim < 1:
            raise ConfigError("--dim must be a positive integer")
        self.levels()
        if self.links < 1:
            raise ConfigError(f"--param links must be >= 1, got {self.links}")
        return self

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and HUIGN's co-interacted neighbours per item (around the authors' 10)."""
        return {**super().search_space(), "links": {"low": 5, "high": 20}}


def co_interaction_edges(ds: Dataset, links: int) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) of the co-interacted item graph: for every item i, edges j -> i from its
    `links` items most often interacted with by the same users (ties: lower j first)."""
    pairs = unique_pairs(ds.train)
    r = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(ds.num_users, ds.num_items))
    counts = (r.T @ r).tocoo()
    off = counts.row != counts.col
    dst, src, n = counts.row[off], counts.col[off], counts.data[off]
    order = np.lexsort((src, -n, dst))
    dst, src = dst[order], src[order]
    starts = np.searchsorted(dst, np.arange(ds.num_items))
    rank = np.arange(len(dst)) - starts[dst]
    keep = rank < links
    return src[keep].astype(np.int64), dst[keep].astype(np.int64)


def stacked_xavier(count: int, rows: int, cols: int) -> nn.Parameter:
    """`count` xavier-normal [rows, cols] matrices as one trainable [count, rows, cols]."""
    return nn.Parameter(torch.stack([nn.init.xavier_normal_(torch.empty(rows, cols)) for _ in range(count)]))


@dataclass
class Intents:
    """Every item's intent distributions over all levels [Q, M, sum C_l], and the
    assignment regularisers summed over modalities and levels."""

    items: Tensor
    entropy: Tensor
    independence: Tensor


class HUIGN(Recommender):
    """Hierarchical intents per modality from the co-interacted item graph; items as
    intent distributions, users as intent preferences (module docstring)."""

    def __init__(self, ds: Dataset, cfg: HUIGNConfig):
        super().__init__()
        m = require_modalities(ds, "HUIGN builds its intents from item features", "use --model lightgcn")
        self.cfg = cfg
        sizes = cfg.levels()
        src, dst = co_interaction_edges(ds, cfg.links)
        self.items_graph = Edges(torch.from_numpy(src), torch.from_numpy(dst), ds.num_items, ds.num_items, CO_CLICKED)
        degree = np.bincount(dst, minlength=ds.num_items).clip(min=1)
        self.register_buffer("mean_w", torch.from_numpy(1.0 / degree[dst]).float(), persistent=False)
        self.features = ItemFeatures(ds, cfg.dim, cfg.word_dim)
        self.conv = nn.ParameterList([stacked_xavier(m, cfg.dim, cfg.dim) for _ in sizes])
        self.assign = nn.ParameterList([stacked_xavier(m, cfg.dim, c) for c in sizes])
        self.preferences = xavier_table(ds.num_users, m * sum(sizes))
        self.user_ids = xavier_table(ds.num_users, cfg.dim) if cfg.ids else None
        self.item_ids = xavier_table(ds.num_items, cfg.dim) if cfg.ids else None
        self.cold_start = "content"  # a cold item: its intents from its features, a zero ID row
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)

    def intents(self, aggregate: bool = True) -> Intents:
        """The hierarchy of every modality at once; without `aggregate`, no intra-level
        aggregation (H_l = leaky_relu(X_l W_l)) and the intent graphs are not needed."""
        rel = self.items_graph.relation("torch")
        x = self.features()  # X_0 [Q, M, D]
        h = torch.einsum("qmd,mde->qme", x, self.conv[0])
        if aggregate:
            h = rel.aggregate(h, self.mean_w.unsqueeze(1).expand(-1, h.shape[1]))
        s = torch.softmax(torch.einsum("qmd,mdc->qmc", F.leaky_relu(h), self.assign[0]), -1)  # S_0 [Q, M, C_0]
        entropy, independence = _entropy(s.transpose(0, 1)), _independence(self.assign[0])
        membership, levels = s, [s]
        adj = None
        if aggregate:  # A_1 = S_0^T A_0 S_0, with A_0 S_0 as a neighbour sum [M, C_0, C_0]
            ones = torch.ones_like(self.mean_w).unsqueeze(1).expand(-1, s.shape[1])
            adj = torch.einsum("qmc,qmk->mck", s, rel.aggregate(s, ones))
        for conv, assign, prev in zip(self.conv[1:], self.assign[1:], self.assign[:-1]):
            h = prev.transpose(1, 2) @ conv  # X_l W_l [M, C_{l-1}, D]
            if adj is not None:
                h = adj @ h / adj.sum(-1, keepdim=True).clamp(min=1)
            s = torch.softmax(F.leaky_relu(h) @ assign, -1)  # S_l [M, C_{l-1}, C_l]
            entropy, independence = entropy + _entropy(s), independence + _independence(assign)
            membership = torch.einsum("qmc,mck->qmk", membership, s)
            levels.append(membership)
            if adj is not None:
                adj = s.transpose(1, 2) @ adj @ s
        return Intents(torch.cat(levels, -1), entropy, independence)

    def _tables(self, intents: Intents) -> Tables:
        users, items = self.preferences, intents.items.flatten(1)
        if self.user_ids is not None:
            users, items = torch.cat([self.user_ids, users], 1), torch.cat([masked(self.item_ids, self.item_keep), items], 1)
        return Tables(users, items)

    def propagate(self) -> Tables:
        return self._tables(self.intents())

    def input_tables(self) -> Tables:
        return self._tables(self.intents(aggregate=False))

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if self.user_ids is None:
            return [self.preferences[users]], []
        return [self.user_ids[users], self.preferences[users]], [self.item_ids[items]]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR + reg * (ID and preference rows' regulariser + assignment entropy +
        prototype independence), the authors' objective."""
        intents = self.intents()
        tables = self._tables(intents)
        user_rows, pos_rows, neg_rows = tables.users[users], tables.items[pos], tables.items[neg]
        bpr_term = bpr(inner(user_rows, pos_rows), inner(user_rows, neg_rows))
        reg_term = reg * regulariser(*self.reg_rows(users, torch.cat([pos, neg])))
        entropy, independence = reg * intents.entropy, reg * intents.independence
        parts = {"bpr": bpr_term.detach(), "reg": reg_term.detach(), "entropy": entropy.detach(), "independence": independence.detach()}
        return bpr_term + reg_term + entropy + independence, parts


def _entropy(s: Tensor) -> Tensor:
    """Sum over modalities of the mean row entropy of assignments s [M, N, C]."""
    return (-s * torch.log(s + 1e-15)).sum(-1).mean(-1).sum()


def _independence(assign: Tensor) -> Tensor:
    """Sum over modalities of ||P^T P - I||_F / C^2 for prototypes assign [M, D, C]."""
    c = assign.shape[-1]
    gram = assign.transpose(1, 2) @ assign
    return torch.linalg.matrix_norm(gram - torch.eye(c, dtype=gram.dtype, device=gram.device)).sum() / (c * c)
