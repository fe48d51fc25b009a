"""DisenGCN (Ma, Cui, Kuang, Wang, Zhu, "Disentangled Graph Convolutional Networks",
ICML 2019), on the user/item graph with early-fused multimodal inputs (`early_fusion`).

The model is not multimodal by design; as the EgoGCN paper says (Sec. 4.2), its inputs
x_u, x_i are the early-fusion ones. The bipartite graph is treated as DisenGCN treats any
graph: one node set, one DisenConv per layer shared by users and items (their inputs live
in one space), every node routing over its neighbours (a user over its items, an item
over its users). One DisenConv layer (the paper's Algorithm 1), with K factors of width
d = dim / K:

    z_{i,k} = normalize(leaky_relu(W_k x_i + b_k))                      for every node i, k = 1..K
    c_{u,k} = z_{u,k}, then T times, for every edge v -> u:
        p_{v,k} = softmax over k of <z_{v,k}, c_{u,k}> / tau      (over the K factors, per edge)
        c_{u,k} = normalize(z_{u,k} + sum over v in N(u) of p_{v,k} z_{v,k})
    y_u = [c_{u,1} || ... || c_{u,K}]                              (dim wide)

L layers feed y into the next layer's x; the final tables are the last layer's y (no layer
combination: the paper's), scores <y_u, y_i>; BPR with the regulariser on the raw ID rows.
L = 0 gives the inputs themselves.

Choices where the paper leaves a range or is silent:
- sigma is leaky ReLU, the activation the authors' released code applies after its
  projections (the paper says only "a nonlinear activation");
- T = 3 routing iterations: T is a hyper-parameter of the paper's search (its code's
  `routit`; public re-implementations default to 6); routing settles within a few
  iterations, each one is a pass over the edges for both sides, and 3 keeps an epoch on
  ml100k cheap on CPU (set --param iterations=T to change it);
- K = 4 factors (dim / K = 16 each at dim 64), tau = 1 (the paper's), L = 2 layers (the
  two-hop depth of the other graph baselines here; the paper searches L in 1..6);
- no dropout between layers: the paper tunes a dropout rate per dataset and the EgoGCN
  paper reports none for this baseline, so it is left off (NGCF is the one model here
  with dropout by default: its authors' message dropout 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import Relation, interaction_edges
from ego_dgl.graph.heterograph import structure_graph
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.layers.early_fusion import BaselineConfig, EarlyFusionInputs
from ego_dgl.model.layers.features import normalize


@dataclass
class DisenGCNConfig(BaselineConfig):
    """DisenGCN: K factors, T routing iterations, temperature tau (module docstring)."""

    name: ClassVar[str] = "disengcn"
    factors: int = 4  # K channels, each dim / K wide
    iterations: int = 3  # T neighbourhood-routing iterations per layer
    tau: float = 1.0  # softmax temperature of the routing

    def validate(self) -> DisenGCNConfig:
        super().validate()
        if self.factors < 1 or self.dim % self.factors:
            raise ConfigError(f"--param factors={self.factors} must be a positive divisor of --dim {self.dim}")
        if self.iterations < 1:
            raise ConfigError(f"--param iterations must be >= 1, got {self.iterations}")
        if not self.tau > 0:
            raise ConfigError(f"--param tau must be > 0, got {self.tau}")
        return self

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and DisenGCN's routing iterations (the paper's 3 in the middle)."""
        return {**super().search_space(), "iterations": {"low": 1, "high": 5}}


def factor_softmax(logits: Tensor) -> Tensor:
    """Softmax of per-edge logits [E, K] over the K factors. Computed on the [K, E]
    transpose: torch's CPU softmax over a short last axis measured 5x slower."""
    return torch.softmax(logits.T.contiguous(), 0).T


class DisenConv(nn.Module):
    """One DisenConv layer: per-factor projection and neighbourhood routing."""

    def __init__(self, dim: int, factors: int, iterations: int, tau: float):
        super().__init__()
        self.proj = nn.Linear(dim, dim)  # the K stacked (W_k, b_k)
        self.factors, self.iterations, self.tau = factors, iterations, tau

    def project(self, x: Tensor) -> Tensor:
        """z [N, K, dim / K]: each factor's normalised projection of x [N, dim]."""
        return normalize(F.leaky_relu(self.proj(x)).view(x.shape[0], self.factors, -1))

    def route(self, rel: Relation, z_src: Tensor, z_dst: Tensor) -> Tensor:
        """The destinations' factors c [N_dst, K, d] after T routing iterations over `rel`;
        the softmax runs over the K factors of each edge."""
        c = z_dst
        for _ in range(self.iterations):
            p = factor_softmax(rel.edge_dot(z_src, c) / self.tau)  # [E, K]
            c = normalize(z_dst + rel.aggregate(z_src, p))
        return c

    def forward(self, to_users: Relation, to_items: Relation, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        z_users, z_items = self.project(users), self.project(items)
        out_users = self.route(to_users, z_items, z_users)
        out_items = self.route(to_items, z_users, z_items)
        return out_users.flatten(1), out_items.flatten(1)


class DisenGCN(Recommender):
    """L DisenConv layers over the user/item graph; the last layer's output is the table."""

    def __init__(self, ds: Dataset, cfg: DisenGCNConfig):
        super().__init__()
        self.cfg = cfg
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        self.inputs = EarlyFusionInputs(ds, cfg)
        self.cold_start = self.inputs.cold_start
        self.convs = nn.ModuleList([DisenConv(cfg.dim, cfg.factors, cfg.iterations, cfg.tau) for _ in range(cfg.layers)])

    def input_tables(self) -> Tables:
        return Tables(*self.inputs())

    def propagate(self) -> Tables:
        users, items = self.inputs()
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        for conv in self.convs:
            users, items = conv(to_users, to_items, users, items)
        return Tables(users, items)

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return self.inputs.reg_rows(users, items)
