"""Popularity: every user gets the items with the most training interactions. It learns
nothing, so every model must beat it; a one-column inner product carries the ranking
(user table of ones, item table of counts) through the same evaluator as the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ego_dgl.data.dataset import Dataset
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig


@dataclass
class PopConfig(RecommenderConfig):
    """Popularity has no options."""

    name: ClassVar[str] = "pop"

    def validate(self) -> PopConfig:
        return self


class Popularity(Recommender):
    """Scores <1, count_i>: items by their number of training interactions."""

    trainable = False

    def __init__(self, ds: Dataset, cfg: PopConfig):
        super().__init__()
        counts = ds.item_degree.astype(np.float32)
        self.register_buffer("counts", torch.from_numpy(counts).unsqueeze(1))
        self.register_buffer("ones", torch.ones(ds.num_users, 1))

    def propagate(self) -> Tables:
        return Tables(self.ones, self.counts)

    input_tables = propagate
