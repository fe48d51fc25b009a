"""Layers 1..K-1 of the multimodal branch: parameter-free routing (Eq. 7-8).

x(k+1) = normalize(x(k) + sum over neighbours j of softmax_j(<x_j(k), x(k)>) x_j(k)),
for users (neighbours: items) and items (neighbours: users) at once, both from layer k.
"""

from __future__ import annotations

from torch import Tensor

from ego_dgl.graph.backends import Relation
from ego_dgl.model.layers.attention import attend, layer_logits
from ego_dgl.model.layers.features import normalize


def route(rel: Relation, src: Tensor, dst: Tensor, logits: Tensor | None = None) -> Tensor:
    """One routing step for the destination side of `rel` (Eq. 7-8); `logits` are
    <src_j, dst_v> per edge if known."""
    return normalize(dst + attend(rel, src, dst, logits)[0])


def routing_layers(to_users: Relation, to_items: Relation, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """`layers` routing steps over the bipartite graph, users and items updated together;
    both directions share one step's <x_u, x_i> logits."""
    for _ in range(layers):
        logits = layer_logits(to_items, users, items)
        users, items = route(to_users, items, users, logits), route(to_items, users, items, logits)
    return users, items
