"""Inputs of the baselines that are not multimodal by design (GraphSAGE, NGCF, DisenGCN,
GAT, LightGCN): as the paper says (Sec. 4.2), the multimodal features are concatenated
into the input node embeddings ("early fusion"), before any propagation.

- item i: x_i = W [i_1(0) || ... || i_M(0)] + b + e_i, where i_m(0) are the projected,
  normalised item features EgoGCN's layer 0 starts from (`features.ItemFeatures`, missing
  modalities filled the same way) and e_i a trainable ID embedding (`item_ids`, default on);
- user u: x_u = e_u, a trainable ID embedding: users have no content, so, as in these
  models' papers, their inputs are free embeddings learned from the interactions.
With no modality (or `content` off) the inputs are the ID embeddings alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import interaction_edges
from ego_dgl.graph.heterograph import lightgcn_weights, structure_graph
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.features import ItemFeatures, xavier_table


@dataclass
class BaselineConfig(RecommenderConfig):
    """Options every graph baseline shares; a baseline's config adds its own fields."""

    name: ClassVar[str] = ""

    dim: int = 64  # width of every embedding
    layers: int = 2  # propagation layers
    content: bool = True  # early-fused multimodal item features in the inputs
    item_ids: bool = True  # a trainable item ID embedding added to the item inputs
    word_dim: int = 128  # width of the learned word table for word-bag text modalities

    def validate(self) -> BaselineConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.word_dim < 1:
            raise ConfigError("--dim must be a positive integer")
        if self.layers < 0:
            raise ConfigError(f"--layers must be >= 0, got {self.layers}")
        if not (self.content or self.item_ids):
            raise ConfigError("--param content=false needs item_ids=true: the items would have no input at all")
        return self


class EarlyFusionInputs(nn.Module):
    """The [P, D] user and [Q, D] item input embeddings (module docstring)."""

    def __init__(self, ds: Dataset, cfg: BaselineConfig):
        super().__init__()
        self.num_users = ds.num_users
        self.users = xavier_table(ds.num_users, cfg.dim)
        self.items = xavier_table(ds.num_items, cfg.dim) if cfg.item_ids else None
        self.register_buffer("item_keep", keep_rows(ds), persistent=False)  # cold items' ID rows zeroed
        self.features = None
        if cfg.content and ds.modalities:
            self.features = ItemFeatures(ds, cfg.dim, cfg.word_dim)
            self.fuse = nn.Linear(cfg.dim * len(ds.modalities), cfg.dim)
        if self.items is None and self.features is None:
            raise ConfigError(f"dataset {ds.name!r} has no modality, so items need their ID embedding: drop --param item_ids=false")
        self.cold_start = "early-fused" if self.features is not None else "none"

    def forward(self) -> tuple[Tensor, Tensor]:
        items = masked(self.items, self.item_keep) if self.items is not None else 0
        if self.features is not None:
            items = items + self.fuse(self.features().flatten(1))
        return self.users, items

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The raw ID rows of the batch (the regulariser's input)."""
        return [self.users[users]], [self.items[items]] if self.items is not None else []


class NormalisedGraphModel(Recommender):
    """What LightGCN and NGCF hold alike: the config, the interaction relations with
    LightGCN's weights 1/sqrt(|N_u| |N_i|) (`norm`), and the early-fused inputs, whose
    cold-start behaviour is the model's."""

    def __init__(self, ds: Dataset, cfg: BaselineConfig):
        super().__init__()
        self.cfg = cfg
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        self.register_buffer("norm", lightgcn_weights(g), persistent=False)
        self.inputs = EarlyFusionInputs(ds, cfg)
        self.cold_start = self.inputs.cold_start

    def input_tables(self) -> Tables:
        return Tables(*self.inputs())

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The raw rows of the batch's users and items: the inputs' ID rows."""
        return self.inputs.reg_rows(users, items)
