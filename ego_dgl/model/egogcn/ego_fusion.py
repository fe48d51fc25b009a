"""Layer 0 of the multimodal branch: EGO fusion (Eq. 1-6) and the GM variant.

Written for one direction (source -> destination, e.g. items -> users) with all
modalities at once: node features [N, M, D], per-edge scalars [E, M]. Layer 0 runs on both
directions with the same code (the paper's two sides are symmetric), each direction with
its own soft gates.

- hard (Eq. 2): the message of edge (j -> v) in modality m is the fused mean
  f_j = mean over m' of x_j,m' when the Eq. 1 affinity exceeds eps, else x_j,m. On large
  graphs few (edge, modality) pairs pass eps (about 1% on Tiktok), so the own-feature
  logits and sum are computed over all edges by the relation's kernels, and only the
  fused pairs are gathered: their logits <f_j, x_v> replace Eq. 1's, their weights are
  zeroed in the own-feature sum and their a f_j added to it. No pair fused: Eq. 5 is Eq. 1.
  "Edge-wise": the same source sends different messages along different edges, and the
  modulated features are never written back onto the nodes.
  `threshold="relative"` is an extension, not the paper's: an (edge, modality) pair fuses
  when s * |N(v)| > eps, |N(v)| the number of incoming edges of the destination v that
  the softmax runs over, i.e. when its weight exceeds eps times the uniform share
  1/|N(v)|. The paper's absolute threshold rarely passes on dense graphs (a user's
  softmax over ~85 items on ml100k); the relative one means the same at every degree.
- soft (Eq. 3-4): the gates depend only on the source's features, so the message
  (x_m + sum over h != m of g^{h->m} x_h) / |M| is a node quantity computed once per node;
  re-attention (Eq. 5) is still per edge.
- GM: no modulation, the message is x_j,m.
With a single modality, fusion is the identity: the fused mean is the feature itself and
there is no other modality to gate, so hard, soft and GM coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ego_dgl.graph.backends import Relation
from ego_dgl.graph.fused import FusedRelation, hard_attention
from ego_dgl.model.layers.attention import attend, layer_logits
from ego_dgl.model.layers.features import normalize


@dataclass
class Attention:
    """What one direction of layer 0 computed; per-edge tensors are [E, M]."""

    out: Tensor  # [N_dst, M, D] layer-0 output, normalised (Eq. 6)
    weights: Tensor  # re-attention softmax (Eq. 5)
    affinity: Tensor | None = None  # Eq. 1 softmax; soft mode does not need it
    fused: Tensor | None = None  # hard mode: 1.0 where the edge carries the fused message


def merge_direction(rel: Relation, src: Tensor, dst: Tensor, logits: Tensor | None = None) -> Attention:
    """GM: attention aggregation of unmodulated features; its weights are Eq. 1's."""
    agg, weights = attend(rel, src, dst, logits)
    return Attention(normalize(agg), weights, affinity=weights)


def in_degree(rel: Relation) -> Tensor:
    """|N(v)| of each edge's destination v, [E, 1]: how many edges its softmax runs over."""
    return torch.bincount(rel.dst).index_select(0, rel.dst).unsqueeze(-1)


def passes(rel: Relation, s: Tensor, eps: float, threshold: str) -> Tensor:
    """Which (edge, modality) pairs fuse, [E, M] bool: s > eps ("absolute", Eq. 2) or
    s * |N(v)| > eps ("relative", an extension: the weight against the uniform share)."""
    s = s.detach()
    return (s * in_degree(rel).to(s.dtype) if threshold == "relative" else s) > eps


def hard_direction(
    rel: Relation, src: Tensor, dst: Tensor, eps: float, logits: Tensor | None = None, threshold: str = "absolute"
) -> Attention:
    """Eq. 1, 2, 5, 6: the own-feature messages over all edges, corrected on the fused
    (edge, modality) pairs only (see the module docstring); `logits` are Eq. 1's if known;
    `threshold` how the affinity is held against eps (`passes`)."""
    if isinstance(rel, FusedRelation):
        agg, weights, s, passed = hard_attention(rel, src, dst, lambda s: passes(rel, s, eps, threshold))
        return Attention(normalize(agg), weights, affinity=s, fused=passed.to(src.dtype))
    if logits is None:
        logits = rel.edge_dot(src, dst)
    s = rel.softmax(logits)
    passed = passes(rel, s, eps, threshold)
    fused = passed.to(src.dtype)
    edge, channel = passed.nonzero(as_tuple=True)
    if edge.numel() == 0:  # every message is the own feature: Eq. 5 repeats Eq. 1
        return Attention(normalize(rel.aggregate(src, s)), s, affinity=s, fused=fused)
    sources, targets = rel.src[edge], rel.dst[edge]
    mean = src[sources].mean(1)  # [F, D] the fused messages
    weights = rel.softmax(logits.index_put((edge, channel), (mean * dst[targets, channel]).sum(-1)))
    own = rel.aggregate(src, weights.index_put((edge, channel), weights.new_zeros(())))
    agg = own.index_put((targets, channel), weights[edge, channel].unsqueeze(-1) * mean, accumulate=True)
    return Attention(normalize(agg), weights, affinity=s, fused=fused)


class SoftGates(nn.Module):
    """Influence gates g^{h->m} for every ordered modality pair h != m of one direction:
    `scalar` (the paper) sigmoid(w . x_h + b), one value per source node; `vector` (the
    authors' code) sigmoid(Linear_DxD(x_h)), applied element-wise."""

    def __init__(self, num_modalities: int, dim: int, gate: str):
        super().__init__()
        self.pairs = [(h, m) for m in range(num_modalities) for h in range(num_modalities) if h != m]
        self.gates = nn.ModuleList([nn.Linear(dim, 1 if gate == "scalar" else dim) for _ in self.pairs])

    def linear(self, h: int, m: int) -> nn.Linear:
        """The gate parameters of pair h -> m."""
        return self.gates[self.pairs.index((h, m))]

    def forward(self, x: Tensor) -> Tensor:
        """Eq. 3-4 messages [N, M, D] of source nodes x [N, M, D]."""
        num = x.shape[1]
        mixed = [x[:, m] for m in range(num)]
        for (h, m), lin in zip(self.pairs, self.gates):
            mixed[m] = mixed[m] + torch.sigmoid(lin(x[:, h])) * x[:, h]
        return torch.stack(mixed, 1) / num


def soft_direction(rel: Relation, src: Tensor, dst: Tensor, gates: SoftGates) -> Attention:
    """Eq. 3-6: gated node messages, re-attention against the destination, aggregation."""
    agg, weights = attend(rel, gates(src), dst)
    return Attention(normalize(agg), weights)


class EgoLayer(nn.Module):
    """Layer 0 on both directions: `fusion` ego (with `mode` hard or soft) or gm; hard
    mode holds the affinity against eps by `threshold` (absolute or relative)."""

    def __init__(self, fusion: str, mode: str, eps: float, gate: str, num_modalities: int, dim: int, threshold: str = "absolute"):
        super().__init__()
        self.fusion, self.mode, self.eps, self.threshold = fusion, mode, eps, threshold
        self.soft = fusion == "ego" and mode == "soft"
        if self.soft:
            self.gates = nn.ModuleDict({"to_users": SoftGates(num_modalities, dim, gate), "to_items": SoftGates(num_modalities, dim, gate)})

    def direction(self, rel: Relation, src: Tensor, dst: Tensor, side: str, logits: Tensor | None = None) -> Attention:
        """One direction; `side` names the destination ('to_users' or 'to_items');
        `logits` <src_j, dst_v> if known (hard and GM)."""
        if self.fusion == "gm":
            return merge_direction(rel, src, dst, logits)
        if self.soft:
            return soft_direction(rel, src, dst, self.gates[side])
        return hard_direction(rel, src, dst, self.eps, logits, self.threshold)

    def forward(self, to_users: Relation, to_items: Relation, users: Tensor, items: Tensor) -> tuple[Attention, Attention]:
        logits = None if self.soft else layer_logits(to_items, users, items)  # soft: per-direction messages
        return self.direction(to_users, items, users, "to_users", logits), self.direction(to_items, users, items, "to_items", logits)
