"""Graph primitives over one directed relation (source nodes -> destination nodes).

Every layer of EgoGCN is written with three primitives, so the message computations are
pure tensor functions shared by both backends:
- `edge_dot(src, dst)`: per-edge <src[u], dst[v]> over the last axis;
- `softmax(logits)`: softmax of per-edge logits over each destination's incoming edges;
- `aggregate(src, weights)`: per destination, the weighted sum of its sources' features.

Shapes: node features [N, *S, D], per-edge scalars [E, *S] (S is e.g. the modality axis,
so all modalities run in one call); a size-1 axis of S on the node side broadcasts.
None of the primitives builds per-edge [E, *S, D] messages.

- `DGLRelation`: the attention's softmax runs as DGL's edge_softmax on the relation's
  graph. The per-edge dot products and the weighted sum are the CSR kernels of `sparse`
  over the same edges, with identical results: DGL 2.1's CPU kernels measured slower,
  apply_edges(u_dot_v) 4x (80k edges x 3 modalities x 64; 14.6 against 3.7 ms, one
  thread, AMD EPYC Zen 3) and update_all(u_mul_e, sum), which its autograd also uses, 8x
  (ml100k) and 3x (Tiktok size).
- `TorchRelation`: plain torch only (scatter softmax, the `sparse` SDDMM and SpMM), so it
  runs wherever torch does (the PyPI DGL has no CUDA).

The third backend, `dgl-udf`, writes EgoGCN's multimodal layers as DGL message passing
(`dgl_udf.py`); its other graph computations use the dgl primitives here.
The fourth, `fused` (CPU only), adds to the torch primitives a fused attention, one C++
sweep per destination (`fused.py`); where it cannot run it falls back with a note.
"""

from __future__ import annotations

from functools import cache
from typing import Protocol

import torch
from torch import Tensor, nn

from ego_dgl._dgl import dgl, edge_softmax, fn
from ego_dgl.errors import ConfigError
from ego_dgl.graph import sparse
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER
from ego_dgl.graph.sparse import SparseRelation

BACKENDS = ("dgl", "dgl-udf", "torch", "fused")


class Relation(Protocol):
    """The three primitives over one directed relation, and its edges' endpoints."""

    src: Tensor  # [E] source node of each edge
    dst: Tensor  # [E] destination node of each edge

    def edge_dot(self, src: Tensor, dst: Tensor) -> Tensor: ...

    def softmax(self, logits: Tensor) -> Tensor: ...

    def aggregate(self, src: Tensor, weights: Tensor) -> Tensor: ...


class TorchRelation:
    """The primitives with plain torch operations on edge-index tensors: the softmax by
    scatter, aggregation and per-edge dot products by the CSR kernels of `sparse`."""

    def __init__(self, sparse_rel: SparseRelation):
        self.sparse = sparse_rel
        self.src, self.dst, self.num_dst = sparse_rel.src, sparse_rel.dst, sparse_rel.num_dst

    def edge_dot(self, src: Tensor, dst: Tensor) -> Tensor:
        (src, dst), restore = _channels(src, dst)
        return restore(sparse.edge_dot(self.sparse, src, dst), edge=True)

    def softmax(self, logits: Tensor) -> Tensor:
        return _ScatterSoftmax.apply(logits, self.dst, self.num_dst)

    def aggregate(self, src: Tensor, weights: Tensor) -> Tensor:
        (x,), restore = _channels(src, like=weights)
        return restore(sparse.aggregate(self.sparse, x, weights.flatten(1) if weights.dim() > 1 else weights[:, None]))


class DGLRelation(TorchRelation):
    """The torch primitives with DGL's edge_softmax on a one-edge-type DGL graph
    (bipartite or homogeneous) holding the same edges."""

    def __init__(self, graph: dgl.DGLGraph, sparse_rel: SparseRelation):
        super().__init__(sparse_rel)
        self.graph = graph

    def softmax(self, logits: Tensor) -> Tensor:
        return edge_softmax(self.graph, logits.unsqueeze(-1)).squeeze(-1)


class _ScatterSoftmax(torch.autograd.Function):
    """Softmax of per-edge logits [E, *S] over each destination's incoming edges, by
    scatter operations; the backward y (g - sum over the destination's edges of g y) takes
    three passes over [E, *S] instead of autograd's chain through exp and the division."""

    @staticmethod
    def forward(ctx, logits: Tensor, dst: Tensor, num_dst: int) -> Tensor:
        shape = (num_dst,) + tuple(logits.shape[1:])
        index = dst.view((-1,) + (1,) * (logits.dim() - 1)).expand_as(logits)
        # The shift only guards exp() against overflow; softmax is invariant to it.
        peak = logits.new_full(shape, float("-inf")).scatter_reduce_(0, index, logits, "amax", include_self=True)
        e = torch.exp(logits - peak.index_select(0, dst))
        total = logits.new_zeros(shape).index_add_(0, dst, e)
        y = e.div_(total.index_select(0, dst))
        ctx.save_for_backward(y)
        ctx.dst, ctx.shape = dst, shape
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        gy = grad * y
        per_dst = gy.new_zeros(ctx.shape).index_add_(0, ctx.dst, gy)
        return gy.sub_(per_dst.index_select(0, ctx.dst).mul_(y)), None, None


def _channels(*nodes: Tensor, like: Tensor | None = None):
    """Node features [N, *S, D] as [N, C, D] with one channel axis (broadcast size-1 axes
    to the widest), and a function that gives results back their [*, *S] shape."""
    shape = torch.broadcast_shapes(*(t.shape[1:-1] for t in nodes), *(() if like is None else (like.shape[1:],)))
    channels = 1
    for n in shape:
        channels *= n
    flat = tuple(t.expand(t.shape[:1] + shape + t.shape[-1:]).reshape(t.shape[0], channels, t.shape[-1]) for t in nodes)

    def restore(out: Tensor, edge: bool = False) -> Tensor:
        return out.reshape(out.shape[:1] + shape) if edge else out.reshape(out.shape[:1] + shape + out.shape[-1:])

    return flat, restore


class Edges(nn.Module):
    """One directed relation's edge indices, kept as buffers so `model.to(device)` moves
    them, and its backend views, built once per backend and device."""

    def __init__(self, src: Tensor, dst: Tensor, num_src: int, num_dst: int, etype: tuple[str, str, str]):
        super().__init__()
        self.register_buffer("src", src.long().contiguous(), persistent=False)
        self.register_buffer("dst", dst.long().contiguous(), persistent=False)
        self.num_src, self.num_dst, self.etype = num_src, num_dst, etype
        self._views: dict[str, tuple[Tensor, Relation]] = {}

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    def relation(self, backend: str) -> Relation:
        """The relation for `backend` on the buffers' current device (cached)."""
        cached = self._views.get(backend)
        if cached is not None and cached[0] is self.src:
            return cached[1]
        view = self._build(backend)
        self._views[backend] = (self.src, view)
        return view

    def _build(self, backend: str) -> Relation:
        return build_relation(backend, self.src, self.dst, self.num_src, self.num_dst, self.etype)


def build_relation(backend: str, src: Tensor, dst: Tensor, num_src: int, num_dst: int, etype: tuple[str, str, str]) -> Relation:
    """The relation of `backend` ('dgl', 'torch' or 'fused') over the edges src[k] -> dst[k]:
    a whole graph's (`Edges`) or one sampled block's (`ego_dgl.graph.blocks`)."""
    sparse_rel = SparseRelation(src, dst, num_src, num_dst)
    if backend == "torch":
        return TorchRelation(sparse_rel)
    if backend == "fused":
        from ego_dgl.graph.fused import FusedRelation  # fused.py builds on this module

        return FusedRelation(sparse_rel)
    stype, _, dtype = etype
    if stype == dtype:
        g = dgl.graph((src, dst), num_nodes=num_src)
    else:
        g = dgl.heterograph({etype: (src, dst)}, num_nodes_dict={stype: num_src, dtype: num_dst})
    g.create_formats_()
    return DGLRelation(g, sparse_rel)


@cache
def _dgl_runs_on(device: str) -> bool:
    """Whether the installed DGL runs a tiny graph computation on `device` (tried once)."""
    try:
        g = dgl.graph(([0], [0]), num_nodes=1, device=torch.device(device))
        with g.local_scope():
            g.ndata["x"] = torch.ones(1, 1, device=device)
            g.apply_edges(fn.u_dot_v("x", "x", "a"))
    except Exception:  # any failure means DGL is unusable there; the caller says so
        return False
    return True


def primitives(backend: str) -> str:
    """The backend whose Relation primitives `backend` uses (dgl-udf uses dgl's)."""
    return "dgl" if backend == "dgl-udf" else backend


# `auto` picks the fused backend on the CPU when the largest node table an attention reads
# is at most this size: measured faster than dgl up to 10 MB and slower from 20 MB
# (`egodgl bench --suite crossover`, synthetic-x1 to x32, 2 threads; its backward adds
# source gradients into per-thread tables, in random row order, from memory once they
# outgrow the caches)
FUSED_AUTO_BYTES = 8 << 20


def resolve_backend(requested: str, device: torch.device | str, table_bytes: int | None = None) -> tuple[str, str | None]:
    """The backend to run on `device` and, when `auto` fell back to torch, a one-sentence
    note saying why. `dgl` or `dgl-udf` on a device DGL cannot use is a ConfigError;
    `auto` never picks dgl-udf (slower, see dgl_udf.py), and picks fused on the CPU where
    its kernels built and the model's largest node table (`table_bytes`, if given) is at
    most FUSED_AUTO_BYTES."""
    device = torch.device(device)
    if requested == "torch":
        return "torch", None
    if requested not in ("auto", *BACKENDS):
        raise ConfigError(f"--backend {requested!r} is not one of: auto, {', '.join(BACKENDS)}")
    if requested == "fused":
        return _fused_or_fallback(device)
    if requested == "auto" and table_bytes is not None and table_bytes <= FUSED_AUTO_BYTES and _fused_runs_on(device):
        return "fused", None
    if _dgl_runs_on(str(device)):
        return ("dgl" if requested == "auto" else requested), None
    if requested != "auto":
        raise ConfigError(
            f"--backend {requested} cannot run on {device}: the installed DGL has no support for it "
            "(the PyPI DGL is CPU-only); use --backend torch or --backend auto"
        )
    return "torch", f"DGL cannot run on {device} (the installed DGL lacks support for it), so the torch backend is used."


def _fused_runs_on(device: torch.device) -> bool:
    """Whether the fused kernels run on `device`, checked without a warning."""
    from ego_dgl.graph import fused  # fused.py builds on this module

    return fused.available(device, quiet=True)


def _fused_or_fallback(device: torch.device) -> tuple[str, str | None]:
    """`fused` where its kernels run (the CPU, once built), else what `auto` picks
    without it, with a note saying why."""
    from ego_dgl.graph import fused  # fused.py builds on this module

    if fused.available(device):
        return "fused", None
    fallback = "dgl" if _dgl_runs_on(str(device)) else "torch"
    why = "runs on the CPU only" if device.type != "cpu" else "kernels could not be built here (see the warning)"
    return fallback, f"the fused backend {why}, so the {fallback} backend is used."


def interaction_edges(g: dgl.DGLGraph) -> tuple[Edges, Edges]:
    """The item->user and user->item relations of a structure graph's interactions (edge k
    of both is interaction k), as every graph model holds them."""
    users, items = g.edges(etype=CLICKS)
    num_users, num_items = g.num_nodes(USER), g.num_nodes(ITEM)
    return Edges(items, users, num_items, num_users, CLICKED_BY), Edges(users, items, num_users, num_items, CLICKS)
