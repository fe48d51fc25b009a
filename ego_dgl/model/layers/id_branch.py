"""The ID branch: LightGCN (Eq. 10-11) and its GRCN-style soft-pruning edge weights.

e(0) = normalize(ID table) [impl]; e(l+1)_v = sum over neighbours j of w_{j->v} e(l)_j;
output = sum of layers 0..L.
- lightgcn: w_{j->v} = 1/sqrt(|N_u| |N_i|), the same in both directions.
- soft-pruning: the weights come from the multimodal layer-0 affinities, per direction:
  w_{i->u} = mean over modalities m of s^m_{i->u} (Eq. 1's softmax over N(u)), and
  w_{u->i} = mean over m of s^m_{u->i} (softmax over N(i)). Each node's incoming weights
  then sum to 1, so edges the content deems unlikely are softly pruned. The weights stay
  differentiable, so the ID loss also trains the multimodal branch, as in GRCN.
"""

from __future__ import annotations

from torch import Tensor, nn

from ego_dgl.graph.backends import Relation
from ego_dgl.model.layers.cold import masked
from ego_dgl.model.layers.features import normalize, xavier_table


def pruning_weights(affinity: Tensor) -> Tensor:
    """Per-edge ID weights [E] of one direction: the modality mean of Eq. 1's [E, M]."""
    return affinity.mean(-1)


def soft_pruning_weights(affinity_to_users: Tensor, affinity_to_items: Tensor) -> tuple[Tensor, Tensor]:
    """Per-edge ID weights [E] for each direction (`pruning_weights`)."""
    return pruning_weights(affinity_to_users), pruning_weights(affinity_to_items)


def lightgcn(to_users: Relation, to_items: Relation, users: Tensor, items: Tensor, w_to_users: Tensor, w_to_items: Tensor,
    layers: int) -> tuple[Tensor, Tensor]:
    """Sum of layers 0..`layers` of weighted neighbour sums (Eq. 10-11)."""
    out_u, out_i = users, items
    for _ in range(layers):
        users, items = to_users.aggregate(items, w_to_users), to_items.aggregate(users, w_to_items)
        out_u, out_i = out_u + users, out_i + items
    return out_u, out_i


class IdTable(nn.Module):
    """The raw ID table [P + Q, D], users first; normalised before propagation, with the
    rows `keep` zeroes (cold items, layers/cold.py) set to zero."""

    def __init__(self, num_users: int, num_items: int, dim: int, keep: Tensor | None = None):
        super().__init__()
        self.num_users = num_users
        self.table = xavier_table(num_users + num_items, dim)
        self.register_buffer("keep", keep, persistent=False)

    def forward(self) -> tuple[Tensor, Tensor]:
        e = masked(normalize(self.table), self.keep)
        return e[: self.num_users], e[self.num_users :]

    def user_rows(self, users: Tensor) -> Tensor:
        return self.table[users]

    def item_rows(self, items: Tensor) -> Tensor:
        return self.table[items + self.num_users]
