"""BPR-MF (Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback",
UAI 2009): matrix factorisation trained with the BPR criterion, the floor every graph
model has to beat.

x_ui = <w_u, h_i> (Sec. 4.3.1: MF with the bias-free inner product; the paper's k is `dim`);
the objective is BPR-Opt (Eq. 4 in the paper): sum of ln sigma(x_ui - x_uj) - lambda ||Theta||^2.
Choices where the paper is silent or that follow this project's trainer: mini-batch Adam
instead of LearnBPR's per-triple SGD; the mean over the batch instead of the sum; lambda
on the mean squared entry of the batch's rows (the shared `regulariser`, as every other
model here, so `--reg` means the same for all); xavier-normal initialisation; no content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.features import xavier_table


@dataclass
class BPRConfig(RecommenderConfig):
    """BPR-MF: the factor count k (64, as the issue's reference run)."""

    name: ClassVar[str] = "bpr"

    dim: int = 64  # k, the factors of each user and item

    def validate(self) -> BPRConfig:
        if self.dim < 1:
            raise ConfigError(f"--dim must be a positive integer, got {self.dim}")
        return self


class BPRMF(Recommender):
    """A user table W [P, k] and an item table H [Q, k]; no propagation."""

    cold_start = "none"  # nothing but trained rows: a cold item's row is zeroed (layers/cold.py)

    def __init__(self, ds: Dataset, cfg: BPRConfig):
        super().__init__()
        self.users = xavier_table(ds.num_users, cfg.dim)
        self.items = xavier_table(ds.num_items, cfg.dim)
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)

    def propagate(self) -> Tables:
        return Tables(self.users, masked(self.items, self.item_keep))

    def input_tables(self) -> Tables:
        """The factor tables, detached (without propagation they are also the final ones)."""
        return Tables(self.users.detach(), masked(self.items, self.item_keep).detach())

    final_tables = input_tables

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return [self.users[users]], [self.items[items]]
