"""Layers 1..K-1 of the multimodal branch: parameter-free routing (Eq. 7-8).

x(k+1) = normalize(x(k) + sum over neighbours j of softmax_j(<x_j(k), x(k)>) x_j(k)),
for users (neighbours: items) and items (neighbours: users) at once, both from layer k.
"""

from __future__ import annotations

from torch import Tensor

from ego_dgl.model.backends import Relation
from ego_dgl.model.ego_fusion import attend
from ego_dgl.model.features import normalize


def route(rel: Relation, src: Tensor, dst: Tensor) -> Tensor:
    """One routing step for the destination side of `rel` (Eq. 7-8)."""
    return normalize(dst + attend(rel, src, dst)[0])


def routing_layers(to_users: Relation, to_items: Relation, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """`layers` routing steps over the bipartite graph, users and items updated together."""
    for _ in range(layers):
        users, items = route(to_users, items, users), route(to_items, users, items)
    return users, items
