"""The NA (node alignment) variant: one graph whose nodes are (user|item, modality) pairs.

Node (user u, modality m) is numbered u*M + m and node (item i, modality m) (P + i)*M + m,
so the [P + Q, M, D] layout of the bipartite branch reshapes to NA's [(P + Q) M, D] without
copies. Each node is linked, in both directions, to its interactions in the same modality
and to the other modalities of the same user or item.

Layers, chosen to match GM so that the two variants differ only in the graph:
- layer 0: x(1) = normalize(sum over neighbours j of softmax_j(<x_j, x>) x_j), no
  modulation, no residual (GM's layer 0 over NA's neighbourhoods);
- layers 1..K-1: routing (Eq. 7-8) over all neighbours.
The softmax of a node runs over all its neighbours together, interactions and sibling
modalities alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ego_dgl.graph.backends import Edges
from ego_dgl.model.layers.attention import attend
from ego_dgl.model.layers.features import normalize
from ego_dgl.model.layers.routing import route

NA_ETYPE = ("node", "linked", "node")


def na_edges(num_users: int, num_items: int, users: Tensor, items: Tensor, num_modalities: int) -> tuple[Tensor, Tensor]:
    """Source and destination indices of the NA graph for interactions (users[k], items[k])."""
    M = num_modalities
    m = torch.arange(M)
    u = (users.view(-1, 1) * M + m).reshape(-1)
    i = ((items.view(-1, 1) + num_users) * M + m).reshape(-1)
    h_idx, m_idx = (t.reshape(-1) for t in torch.meshgrid(m, m, indexing="ij"))
    off = h_idx != m_idx
    entity = torch.arange(num_users + num_items).view(-1, 1) * M
    sib_src = (entity + h_idx[off]).reshape(-1)
    sib_dst = (entity + m_idx[off]).reshape(-1)
    return torch.cat([i, u, sib_src]), torch.cat([u, i, sib_dst])


class NodeAlignment(nn.Module):
    """K layers of the NA variant over its graph (see the module docstring)."""

    def __init__(self, num_users: int, num_items: int, users: Tensor, items: Tensor, num_modalities: int):
        super().__init__()
        n = (num_users + num_items) * num_modalities
        self.num_users = num_users
        self.edges = Edges(*na_edges(num_users, num_items, users, items, num_modalities), n, n, NA_ETYPE)

    def forward(self, backend: str, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
        """users [P, M, D], items [Q, M, D] at layer 0's input -> both after `layers` layers."""
        rel = self.edges.relation(backend)
        shape = (-1,) + tuple(users.shape[1:])
        x = torch.cat([users, items]).reshape(-1, users.shape[-1])
        x = normalize(attend(rel, x, x)[0])
        for _ in range(layers - 1):
            x = route(rel, x, x)
        x = x.reshape(shape)
        return x[: self.num_users], x[self.num_users :]
