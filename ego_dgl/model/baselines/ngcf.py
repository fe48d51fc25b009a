"""NGCF (Wang, He, Wang, Feng and Chua, "Neural Graph Collaborative Filtering", SIGIR
2019), with early-fused multimodal inputs (`early_fusion`).

E(0) = the early-fusion inputs x_u, x_i (users and items stacked, no normalisation);
one layer, the paper's matrix form (Eq. 7), with L the Laplacian norm p_ui = 1/sqrt(|N_u| |N_i|):
  E(l) = LeakyReLU((L + I) E(l-1) W1(l) + (L E(l-1)) ⊙ E(l-1) W2(l)),
i.e. per node (Eq. 3-5): e(l)_u = LeakyReLU(m_u<-u + sum over i in N(u) of m_u<-i), with
m_u<-i = p_ui (W1 e(l-1)_i + W2 (e(l-1)_i ⊙ e(l-1)_u)) and the self-connection m_u<-u = W1 e(l-1)_u;
the same for items. W1(l), W2(l) are D x D and shared by users and items;
final e_u = e(0)_u || n(e(1)_u) || ... || n(e(L)_u) (Eq. 9), width D (L + 1); score <e_u, e_i>
(Eq. 10); BPR with the regulariser on the batch's raw ID rows (the project's, as LightGCN).

Where the paper is silent, the authors' code (xiangwang1223/neural_graph_collaborative_filtering,
NGCF.py `_create_ngcf_embed`) is followed:
- n(.) L2-normalises each propagated layer's output before the concatenation; E(0) is
  concatenated as it is, and the next layer propagates the unnormalised E(l);
- LeakyReLU's negative slope is TensorFlow's default, 0.2;
- message dropout (`dropout`, the code's default 0.1) drops entries of E(l) after the
  activation, in training only; node dropout (the code's `node_dropout_flag`) is off by
  default there and not offered here.
Where the code departs from the paper, the paper is followed: no bias terms, one LeakyReLU
over the sum (the code has b1, b2 and one LeakyReLU per term), the symmetric Laplacian
(the code's default `norm` adjacency is row-normalised D^-1 (A + I)), and the interaction
term (L E) ⊙ E (the code's ((L + I) E) ⊙ E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Tables
from ego_dgl.model.layers.early_fusion import BaselineConfig, NormalisedGraphModel
from ego_dgl.model.layers.features import normalize

NEGATIVE_SLOPE = 0.2  # tf.nn.leaky_relu's default, as in the authors' code


@dataclass
class NGCFConfig(BaselineConfig):
    """NGCF: the paper's 3 layers of size 64, the authors' message dropout 0.1."""

    name: ClassVar[str] = "ngcf"
    layers: int = 3
    dropout: float = 0.1  # message dropout on each layer's output, in training

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and NGCF's message dropout (the paper searches 0.0-0.8; above 0.5 rarely helps)."""
        return {**super().search_space(), "dropout": {"low": 0.0, "high": 0.5}}

    def validate(self) -> NGCFConfig:
        super().validate()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--param dropout must be in [0, 1), got {self.dropout}")
        return self


class NGCFLayer(nn.Module):
    """One propagation layer (Eq. 7): W1 on the self-connected neighbour sum, W2 on the
    element-wise interaction with the neighbour sum."""

    def __init__(self, dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)

    def forward(self, own: Tensor, side: Tensor) -> Tensor:
        """own: E(l-1) rows [N, D]; side: their rows of L E(l-1) [N, D]."""
        return F.leaky_relu(self.w1(own + side) + self.w2(side * own), NEGATIVE_SLOPE)


class NGCF(NormalisedGraphModel):
    """Embedding propagation with feature transforms and interaction terms; the
    L2-normalised layer outputs concatenated after the inputs."""

    def __init__(self, ds: Dataset, cfg: NGCFConfig):
        super().__init__(ds, cfg)
        self.layers = nn.ModuleList(NGCFLayer(cfg.dim) for _ in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)

    def propagate(self) -> Tables:
        users, items = self.inputs()
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        out_u, out_i = [users], [items]
        for layer in self.layers:
            side_u, side_i = to_users.aggregate(items, self.norm), to_items.aggregate(users, self.norm)
            users, items = self.dropout(layer(users, side_u)), self.dropout(layer(items, side_i))
            out_u.append(normalize(users))
            out_i.append(normalize(items))
        return Tables(torch.cat(out_u, -1), torch.cat(out_i, -1))
