"""MMGCN (Wei, Wang, Nie, He, Hong, Chua, "MMGCN: Multi-modal Graph Convolution Network
for Personalized Recommendation of Micro-video", ACM MM 2019): one user-item graph per
modality, each with its own parameters; the modalities meet only in the final sum.

Per modality m (all modalities run at once as a [N, M, D] axis), for every node v (users
and items alike, with the same parameters, as in the authors' code):
- layer-0 input x(0)_v: for a user the preference row u_m (a trainable [P, D_lat] table
  per modality), for an item its modality features, both L2-normalised (the authors'
  F.normalize over the concatenated [users; items] rows);
- aggregation (Eq. 1-2): h_v = leaky_relu(W_m * agg over j in N(v) of x(l)_j), with agg
  the mean over the neighbours (`aggregation=mean`, the authors' setting) or their sum;
  isolated nodes get h = leaky_relu(0) = 0 (PyG's scatter of nothing);
- combination (Eq. 3-6): x^_v = leaky_relu(W'_m x(l)_v + b'_m) + e_v, with e_v the node's
  ID embedding (`has_id`), one table shared by every modality and every layer (authors'
  code); then x(l+1)_v = leaky_relu(W''_m [h_v || x^_v] + b''_m) (`combine=concat`) or
  leaky_relu(W''_m h_v + b''_m + x^_v) (`combine=add`);
- representation after L layers (`layers`): r_v = sum over m of x(L)_v,m (the paper's
  Eq. 8); score <r_u, r_i>. The authors' code divides the sum by the number of
  modalities: the same ranking with scores scaled by 1/M^2, which made BPR learn
  several times slower here (12 epochs on synthetic-x0.2: validation recall@10 0.102 with
  the mean, below popularity's 0.104; 0.149 with the sum), so we keep the paper's sum.
Widths: layer 1 maps D_lat -> D (W_m is D_lat x D_lat, W' D_lat -> D, W'' D_lat + D -> D),
later layers D -> D.

Defaults, from the authors' code (weiyinwei/MMGCN, Movielens/train.py and main.py):
mean aggregation, concatenation (main.py passes concate='False' as a string, which is
true, so its runs concatenate too), has_id on, D = 64, item features first projected to
D_lat = 128 (the authors project visual/acoustic features to 128). Depth: the authors'
model always stacks 3 layers (main.py's num_layer = 2 is never read by it); we default
to L = 2, the two-hop depth of the other graph baselines here and of the recorded
comparisons; `--param layers=3` is the authors' depth.
Where we differ, and why:
- item input: the project's `features.ItemFeatures` at width D_lat, i.e.
  normalize(leaky_relu(W X_m + b)) (the authors: normalize(W X_m + b), no activation),
  because it is what turns any modality into a dense input here: Tiktok-style word bags
  (mean of a learned word table, then projected) and items lacking a modality (filled as
  that module says). Every modality is projected, also narrow ones.
- the ID embedding and the preference tables are trainable parameters (in the authors'
  code they are plain tensors, created with `.cuda()` after requires_grad, so Adam never
  sees them); weights are xavier-normal initialised, biases zero;
- the regulariser (default BPR loss + reg) covers the batch's ID rows of users and items
  and the batch users' preference rows of every modality (the authors: ID rows plus the
  whole visual preference table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import interaction_edges
from ego_dgl.graph.heterograph import structure_graph
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.layers.cold import keep_rows, masked
from ego_dgl.model.layers.features import ItemFeatures, UserPreferences, require_modalities, xavier_table

AGGREGATIONS = ("mean", "sum")
COMBINATIONS = ("concat", "add")


@dataclass
class MMGCNConfig(RecommenderConfig):
    """MMGCN's options; defaults are the authors' (module docstring)."""

    name: ClassVar[str] = "mmgcn"

    dim: int = 64  # D: ID embedding and layer output width
    latent_dim: int = 128  # D_lat: projected item features and user preferences (layer-0 input)
    layers: int = 2  # L graph convolution layers per modality
    aggregation: str = "mean"  # neighbour aggregation (Eq. 1): mean | sum
    combine: str = "concat"  # combination layer (Eq. 6): concat | add
    has_id: bool = True  # the ID embedding added in the combination layer (Eq. 5)
    word_dim: int = 128  # width of the learned word table for word-bag text modalities

    def validate(self) -> MMGCNConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.latent_dim < 1 or self.word_dim < 1:
            raise ConfigError("--dim, latent_dim and word_dim must be positive integers")
        if self.layers < 1:
            raise ConfigError(f"--layers must be >= 1 for mmgcn (its combination layer is the model), got {self.layers}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"--param aggregation={self.aggregation!r} is not one of: {', '.join(AGGREGATIONS)}")
        if self.combine not in COMBINATIONS:
            raise ConfigError(f"--param combine={self.combine!r} is not one of: {', '.join(COMBINATIONS)}")
        return self

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and MMGCN's layers per modality (the paper studies 1-3)."""
        return {**super().search_space(), "layers": {"low": 1, "high": 3}}


class ModalityLinear(nn.Module):
    """One linear map per modality, applied to [N, M, d_in] at once -> [N, M, d_out]."""

    def __init__(self, modalities: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(modalities, d_in, d_out))
        for w in self.weight.data:
            nn.init.xavier_normal_(w)
        self.bias = nn.Parameter(torch.zeros(modalities, d_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        out = torch.einsum("nmi,mio->nmo", x, self.weight)
        return out if self.bias is None else out + self.bias


class MMGCNLayer(nn.Module):
    """Aggregation (W, Eq. 1-2) and combination (W', W'', Eq. 3-6) of one layer, every
    modality with its own weights."""

    def __init__(self, modalities: int, d_in: int, dim: int, combine: str):
        super().__init__()
        self.combine = combine
        self.conv = ModalityLinear(modalities, d_in, d_in, bias=False)
        self.linear = ModalityLinear(modalities, d_in, dim)
        self.merge = ModalityLinear(modalities, d_in + dim if combine == "concat" else d_in, dim)

    def forward(self, x: Tensor, agg: Tensor, ids: Tensor | None) -> Tensor:
        """x(l+1) [N, M, D] from x(l) [N, M, d_in], the neighbour aggregates of x(l)
        [N, M, d_in] (W is linear, so it is applied after aggregating) and the ID rows [N, D]."""
        h = F.leaky_relu(self.conv(agg))
        x_hat = F.leaky_relu(self.linear(x))
        if ids is not None:
            x_hat = x_hat + ids.unsqueeze(1)
        if self.combine == "concat":
            return F.leaky_relu(self.merge(torch.cat([h, x_hat], -1)))
        return F.leaky_relu(self.merge(h) + x_hat)


def neighbour_weights(dst: Tensor, num_dst: int, aggregation: str) -> Tensor:
    """Per-edge weights [E] of Eq. 1's aggregation: 1 / |N(dst)| for the mean, 1 for the sum."""
    if aggregation == "sum":
        return torch.ones(len(dst))
    degree = torch.bincount(dst, minlength=num_dst).clamp(min=1)
    return 1.0 / degree[dst].to(torch.get_default_dtype())


class MMGCN(Recommender):
    """Per-modality graph convolutions with ID-enriched combination; modality sum output."""

    def __init__(self, ds: Dataset, cfg: MMGCNConfig):
        super().__init__()
        self.cfg = cfg
        M = require_modalities(ds, "mmgcn is built from modalities", "use --model lightgcn")
        self.num_users = ds.num_users
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        users, items = self.to_items.src, self.to_items.dst
        # [E, M]: the relations take one weight per edge and channel
        w_users = neighbour_weights(users, ds.num_users, cfg.aggregation)
        w_items = neighbour_weights(items, ds.num_items, cfg.aggregation)
        self.register_buffer("w_to_users", w_users.unsqueeze(1).repeat(1, M), persistent=False)
        self.register_buffer("w_to_items", w_items.unsqueeze(1).repeat(1, M), persistent=False)
        self.item_features = ItemFeatures(ds, cfg.latent_dim, cfg.word_dim)
        self.preferences = UserPreferences(ds.num_users, M, cfg.latent_dim)
        self.ids = xavier_table(ds.num_users + ds.num_items, cfg.dim) if cfg.has_id else None
        self.cold_start = "content"  # a cold item: its features per modality, a zero ID row
        self.register_buffer("id_keep", keep_rows(ds, ds.num_users), persistent=False)
        widths = [cfg.latent_dim] + [cfg.dim] * (cfg.layers - 1)
        self.layers = nn.ModuleList(MMGCNLayer(M, d_in, cfg.dim, cfg.combine) for d_in in widths)

    def inputs(self) -> tuple[Tensor, Tensor]:
        """Layer-0 inputs: normalised preferences [P, M, D_lat] and item features [Q, M, D_lat]."""
        return self.preferences(), self.item_features()

    def input_tables(self) -> Tables:
        """The layer-0 inputs summed over modalities (D_lat wide), as the output is."""
        users, items = self.inputs()
        return Tables(users.sum(1), items.sum(1))

    def propagate(self) -> Tables:
        to_users, to_items = self.to_users.relation("torch"), self.to_items.relation("torch")
        users, items = self.inputs()
        for layer in self.layers:
            agg = torch.cat([to_users.aggregate(items, self.w_to_users), to_items.aggregate(users, self.w_to_items)])
            x = layer(torch.cat([users, items]), agg, None if self.ids is None else masked(self.ids, self.id_keep))
            users, items = x[: self.num_users], x[self.num_users :]
        return Tables(users.sum(1), items.sum(1))

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        ids_u, ids_i = ([self.ids[users]], [self.ids[items + self.num_users]]) if self.ids is not None else ([], [])
        return ids_u + self.preferences.raw_rows(users), ids_i
