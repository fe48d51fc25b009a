"""Attention over each destination's incoming edges, for all modalities at once: the
softmax-weighted sum that EgoGCN's Eq. 5-6, its GM variant, the routing layers (Eq. 7-8)
and GRCN's routing share, and the per-interaction logits both directions reuse."""

from __future__ import annotations

from torch import Tensor

from ego_dgl.graph.backends import Relation
from ego_dgl.graph.fused import FusedRelation

# the two directions of a user-item layer, in the order models list them
DIRECTIONS = ("item->user", "user->item")


def attend(rel: Relation, msg: Tensor, dst: Tensor, logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax over each destination's incoming edges of <msg_j, x_v>, and the weighted sum
    of msg_j: the attention shared by Eq. 5-6, GM and routing (Eq. 7-8). `logits` are the
    <msg_j, x_v> when the caller has them (see `shared_logits`); the fused backend
    computes them inside its one sweep."""
    if isinstance(rel, FusedRelation):
        return rel.attend(msg, dst)
    weights = rel.softmax(rel.edge_dot(msg, dst) if logits is None else logits)
    return rel.aggregate(msg, weights), weights


def shared_logits(to_items: Relation, users: Tensor, items: Tensor) -> Tensor:
    """<x_u, x_i> per interaction and modality, [E, M]: the logits of both directions
    whenever both send unmodulated features, because the two relations list the same
    interactions in the same order (edge k of both is one interaction). Computing them
    once also halves the backward's SpMMs: both directions' gradients arrive summed."""
    return to_items.edge_dot(users, items)


def layer_logits(to_items: Relation, users: Tensor, items: Tensor) -> Tensor | None:
    """`shared_logits` for a layer's attention, or None with the fused backend, whose
    sweeps compute the logits as they go (cheaper than reading them back per edge)."""
    return None if isinstance(to_items, FusedRelation) else shared_logits(to_items, users, items)
