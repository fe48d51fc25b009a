"""VBPR (He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit
Feedback", AAAI 2016): matrix factorisation whose item factors carry a learned
projection of the item's content; no graph.

Paper, Eq. 3: x_ui = alpha + beta_u + beta_i + gamma_u^T gamma_i + theta_u^T (E f_i)
+ beta'^T f_i, trained with BPR and an L2 penalty on the parameters.
Here, as in MMRec's VBPR (enoche/MMRec, where the published Baby/Sports anchors come
from), which is the de-facto reference:
- no biases (alpha, beta_u, beta_i, beta'): ranking per user ignores alpha and beta_u,
  and MMRec drops the item biases too;
- f_i = [f_i,1 || ... || f_i,M], every modality's raw features concatenated (MMRec:
  text then image; here the dataset's modality order), fixed (not trained);
- item i = [gamma_i || E f_i + b] (E with a bias, `nn.Linear`), user u = [gamma_u ||
  theta_u], one 2D-wide table; score <u, i> (so gamma_u^T gamma_i + theta_u^T (E f_i + b));
- tables xavier-uniform initialised, D = `dim` = 64 (MMRec's embedding_size);
- loss: BPR (batch mean of -log sigmoid(x_ui - x_uj)) + reg * (||U_b|| + ||I+_b|| +
  ||I-_b||) / B, the Frobenius norms (not squared) of the batch's final user, positive
  and negative rows over the batch size B (MMRec's EmbLoss on the rows it scores;
  `--reg` is MMRec's reg_weight, its grid 2, 1, 0.1, 0.01, 1e-3, 1e-4, 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.field.graphs import dense_features, output_rows_loss, xavier_uniform
from ego_dgl.model.layers.cold import keep_rows, masked


@dataclass
class VBPRConfig(RecommenderConfig):
    """VBPR's options (module docstring); D is MMRec's embedding_size."""

    name: ClassVar[str] = "vbpr"
    # --protocol mmrec: reg_weight is a grid in MMRec's VBPR.yaml; 1e-3 is our pick from it
    mmrec_defaults: ClassVar[dict[str, Any]] = {"reg": 1e-3}

    dim: int = 64  # D: width of gamma and of the content projection (users are 2D wide)

    def validate(self) -> VBPRConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1:
            raise ConfigError(f"--dim must be a positive integer, got {self.dim}")
        return self


def norm_penalty(users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """MMRec's EmbLoss: the sum of the three Frobenius norms over the batch size."""
    return (users.norm() + pos.norm() + neg.norm()) / len(users)


class VBPR(Recommender):
    """MF with projected item content (module docstring)."""

    cold_start = "content"  # the projected content half of an item's factors

    def __init__(self, ds: Dataset, cfg: VBPRConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("content", torch.cat(list(dense_features(ds, cfg.name).values()), 1), persistent=False)
        self.users = xavier_uniform(ds.num_users, 2 * cfg.dim)
        self.items = xavier_uniform(ds.num_items, cfg.dim)
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)  # cold items' ID rows zeroed
        self.project = nn.Linear(self.content.shape[1], cfg.dim)

    def propagate(self) -> Tables:
        # clone: a new tensor, so that `final_tables` (no autograd) holds no parameter
        return Tables(self.users.clone(), torch.cat([masked(self.items, self.item_keep), self.project(self.content)], 1))

    def input_tables(self) -> Tables:
        return self.propagate()

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR + reg * EmbLoss of the scored rows (module docstring)."""
        return output_rows_loss(self.propagate(), users, pos, neg, reg, norm_penalty)
