"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020), with early-fused multimodal inputs (`early_fusion`).

e(0) = the early-fusion inputs x_u, x_i (no normalisation: the paper's);
e(l+1)_u = sum over i in N(u) of e(l)_i / sqrt(|N_u| |N_i|), the same for items (Eq. 3);
e_u = sum over l = 0..L of e(l)_u / (L + 1) (Eq. 4: alpha_l = 1 / (L + 1));
score <e_u, e_i> (Eq. 5); BPR with the regulariser on the batch's raw ID rows (Eq. 15),
as the authors' code computes it: ||E(0) rows of the batch||^2 / (2B), every term (users,
positives, negatives) over the same 2B (here 2B·D: `loss.pair_regulariser`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ego_dgl.model.base import Tables
from ego_dgl.model.layers.early_fusion import BaselineConfig, NormalisedGraphModel
from ego_dgl.model.layers.id_branch import lightgcn
from ego_dgl.model.layers.loss import pair_regulariser


@dataclass
class LightGCNConfig(BaselineConfig):
    """LightGCN: the paper's 3 layers."""

    name: ClassVar[str] = "lightgcn"
    layers: int = 3

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and LightGCN's layers (the paper studies 1-4)."""
        return {**super().search_space(), "layers": {"low": 1, "high": 4}}


class LightGCN(NormalisedGraphModel):
    """Parameter-free propagation of the input embeddings; layer mean as the output."""

    def propagate(self) -> Tables:
        users, items = self.inputs()
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        out_u, out_i = lightgcn(to_users, to_items, users, items, self.norm, self.norm, self.cfg.layers)
        scale = 1.0 / (self.cfg.layers + 1)
        return Tables(out_u * scale, out_i * scale)

    def regularise(self, users: list[Tensor], items: list[Tensor]) -> Tensor:
        """Every term over the same 2·B·D (module docstring)."""
        return pair_regulariser(users, items)
