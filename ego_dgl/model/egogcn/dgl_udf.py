"""`--backend dgl-udf`: layer 0 (Eq. 1-6, GM) and the routing layers (Eq. 7-8) written as
DGL message passing, the way DGL's own examples are: edge functions over `edges.src`,
`edges.dst` and `edges.data` with `apply_edges`, `edge_softmax`, and `update_all` with
DGL's built-in message and reduce functions.

The graph is the structure heterograph (user -clicks-> item, item -clicked_by-> user).
Node data carry every modality at once, [N, M, D], as DGL's GAT example carries its
attention heads: per-edge scalars are [E, M, 1] and every softmax runs per modality. Each
direction of a layer runs on its relation graph, `g[CLICKED_BY]` (items -> users) and
`g[CLICKS]` (users -> items).

This is the textbook version and a third, independent check of the other two backends
(tests compare them in float64): it builds per-edge [E, M, D] messages in hard mode, and
DGL 2.1's CPU `u_mul_e`/`sum` kernel is slower than the CSR kernels of `sparse`, so it is
never chosen by `--backend auto`. The soft gates depend only on the source node, so they
run once per node (`apply_nodes`), not per edge. The parameters are EgoLayer's (the soft
gates), so checkpoints move freely between backends. NA and the ID branch keep using the
dgl backend's primitives (`backends.DGLRelation`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ego_dgl._dgl import dgl, edge_softmax, fn
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER
from ego_dgl.model.egogcn.ego_fusion import Attention, EgoLayer, SoftGates
from ego_dgl.model.layers.features import normalize

EdgeFunction = Callable[[object], dict[str, Tensor]]


def bipartite_graph(users: Tensor, items: Tensor, num_users: int, num_items: int) -> dgl.DGLGraph:
    """The structure heterograph of interactions (users[k], items[k]) on their device;
    edge k of both relations is interaction k, as in the other backends."""
    return dgl.heterograph(
        {CLICKS: (users, items), CLICKED_BY: (items, users)},
        num_nodes_dict={USER: num_users, ITEM: num_items},
    )


def attend(g: dgl.DGLGraph) -> Tensor:
    """Softmax over each destination's incoming edges of edata['e'] (written by the
    caller), kept in edata['a'] and returned as [E, M]."""
    g.edata["a"] = edge_softmax(g, g.edata["e"])
    return g.edata["a"].squeeze(-1)


def affinity(g: dgl.DGLGraph) -> Tensor:
    """Eq. 1: s_jv,m = softmax over j in N(v) of <x_j,m, x_v,m>, [E, M]."""
    g.apply_edges(fn.u_dot_v("x", "x", "e"))
    return attend(g)


def aggregate_sources(g: dgl.DGLGraph, feature: str) -> Tensor:
    """sum over j in N(v) of a_jv * srcdata[feature]_j: a node message, weighted per edge."""
    g.update_all(fn.u_mul_e(feature, "a", "m"), fn.sum("m", "h"))
    return g.dstdata["h"]


def hard_messages(eps: float, threshold: str) -> EdgeFunction:
    """The edge function of Eq. 2: along edge (j -> v), modality m carries the fused mean
    of j's modalities where Eq. 1's affinity s_jv,m passed `eps`, else x_j,m; the message
    depends on the edge, not only on the source (edge-wise modulation). Under the
    "relative" threshold (an extension) s_jv,m * |N(v)| is held against eps."""

    def message(edges) -> dict[str, Tensor]:
        own = edges.src["x"]  # [E, M, D]
        s = edges.data["s"].detach()  # [E, M, 1]; the threshold is not differentiated
        if threshold == "relative":
            s = s * edges.dst["degree"].view(-1, 1, 1)
        passed = s > eps
        return {"msg": torch.where(passed, own.mean(1, keepdim=True), own), "fused": passed.to(own.dtype)}

    return message


def reattention_logits(edges) -> dict[str, Tensor]:
    """Eq. 5's logits: <message of edge (j -> v), x_v> per modality, [E, M, 1]."""
    return {"e": (edges.data["msg"] * edges.dst["x"]).sum(-1, keepdim=True)}


def weighted_messages(edges) -> dict[str, Tensor]:
    """Eq. 6's terms: each edge's message scaled by its re-attention weight."""
    return {"msg": edges.data["a"] * edges.data["msg"]}


def hard_direction(g: dgl.DGLGraph, eps: float, threshold: str = "absolute") -> Attention:
    """Eq. 1, 2, 5, 6 on one relation graph whose srcdata/dstdata['x'] are set."""
    s = affinity(g)
    g.edata["s"] = g.edata["a"]
    if threshold == "relative":
        g.dstdata["degree"] = g.in_degrees().to(s.dtype)
    g.apply_edges(hard_messages(eps, threshold))
    g.apply_edges(reattention_logits)
    weights = attend(g)
    g.apply_edges(weighted_messages)
    g.update_all(fn.copy_e("msg", "m"), fn.sum("m", "h"))
    return Attention(normalize(g.dstdata["h"]), weights, affinity=s, fused=g.edata["fused"].squeeze(-1))


def soft_direction(g: dgl.DGLGraph, gates: SoftGates, source: str) -> Attention:
    """Eq. 3-6: the gated messages of the `source` node type (Eq. 3-4, a node function:
    the gates read the source only), re-attention against the destination, aggregation."""
    g.apply_nodes(lambda nodes: {"msg": gates(nodes.data["x"])}, ntype=source)
    g.apply_edges(fn.u_dot_v("msg", "x", "e"))
    weights = attend(g)
    return Attention(normalize(aggregate_sources(g, "msg")), weights)


def merge_direction(g: dgl.DGLGraph) -> Attention:
    """GM: attention aggregation of the unmodulated features; its weights are Eq. 1's."""
    weights = affinity(g)
    return Attention(normalize(aggregate_sources(g, "x")), weights, affinity=weights)


def direction(rel: dgl.DGLGraph, layer: EgoLayer, side: str, src: Tensor, dst: Tensor) -> Attention:
    """Layer 0 on one relation graph (`side` names the destination: to_users / to_items)."""
    with rel.local_scope():
        rel.srcdata["x"], rel.dstdata["x"] = src, dst
        if layer.fusion == "gm":
            return merge_direction(rel)
        if layer.soft:
            return soft_direction(rel, layer.gates[side], rel.srctypes[0])
        return hard_direction(rel, layer.eps, layer.threshold)


def ego_layer(g: dgl.DGLGraph, layer: EgoLayer, users: Tensor, items: Tensor) -> tuple[Attention, Attention]:
    """Layer 0 on both directions of the structure heterograph with `layer`'s options and
    parameters: (items -> users, users -> items), as EgoLayer returns them."""
    return direction(g[CLICKED_BY], layer, "to_users", items, users), direction(g[CLICKS], layer, "to_items", users, items)


def route(rel: dgl.DGLGraph, src: Tensor, dst: Tensor) -> Tensor:
    """One routing step (Eq. 7-8) for the destinations of `rel`:
    normalize(x_v + sum over j of softmax_j(<x_j, x_v>) x_j)."""
    with rel.local_scope():
        rel.srcdata["x"], rel.dstdata["x"] = src, dst
        affinity(rel)
        return normalize(dst + aggregate_sources(rel, "x"))


def routing_layers(g: dgl.DGLGraph, users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """`layers` routing steps, users and items updated together from layer k."""
    for _ in range(layers):
        users, items = route(g[CLICKED_BY], items, users), route(g[CLICKS], users, items)
    return users, items
