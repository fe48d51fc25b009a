"""The `fused` backend: EgoGCN's attention as one C++ sweep per destination (CPU only).

The dgl and torch backends run an attention (Eq. 5-8) as separate passes over the
per-edge values: SDDMM dot products, a softmax, an SpMM sum, and permutations of the
values between the CSR orders of the two directions. Here one kernel
(`csrc/fused_attention.cpp`) does, per destination node and for every modality at once,
the dot products, the softmax and the weighted sum while the sources' rows are in cache;
its backward is one sweep per destination as well (two passes over its in-edges while
their rows are in cache), each thread adding source gradients into a table of its own that
are summed at the end (one table's memory per extra thread). Per-edge values stay in the
relations' edge order: the CSR order only maps positions to edge ids, and no per-edge
tensor is permuted.

EGO-hard runs as two fused sweeps (`hard_attention`): Eq. 1's softmax, then the
re-attention and sum over a table that holds each source's own features and its fused
mean, each (edge, modality) pair reading the row it sends. Every other primitive (the
ID branch's sums, soft gates, the soft-pruning affinities of soft mode) is the torch
backend's.

The kernels are a torch C++ extension, compiled with ninja on first use (about a minute)
and cached by torch (`$TORCH_EXTENSIONS_DIR`, default ~/.cache/torch_extensions);
`./install.sh` builds them once. Without a compiler the backend is unavailable and
`resolve_backend` falls back with one warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from ego_dgl.errors import EgoDGLWarning
from ego_dgl.graph.backends import TorchRelation
from ego_dgl.graph.sparse import SparseRelation

SOURCE = Path(__file__).with_name("csrc") / "fused_attention.cpp"


@cache
def _build() -> ModuleType | str:
    """The compiled extension (built on first call, then loaded from torch's cache), or
    why it cannot be built here."""
    try:
        from torch.utils.cpp_extension import load

        return load(
            name="ego_dgl_fused_attention",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp", "-lmvec"],
        )
    except Exception as err:  # no compiler, no ninja, a failed build: the caller falls back
        return f"{type(err).__name__}: {err}"


@cache
def _warn(why: str) -> None:
    warnings.warn(f"the fused backend's C++ kernels could not be built ({why})", EgoDGLWarning, stacklevel=3)


def kernels() -> ModuleType | None:
    """The compiled extension, or None with one warning saying why it cannot be built."""
    built = _build()
    if isinstance(built, str):
        _warn(built)
        return None
    return built


def available(device: torch.device, quiet: bool = False) -> bool:
    """Whether the fused kernels run on `device` (the CPU, once they built); `quiet` checks
    without the warning (`auto`'s choice, which falls back silently)."""
    return device.type == "cpu" and (not isinstance(_build(), str) if quiet else kernels() is not None)


@dataclass(frozen=True)
class Layout:
    """A relation's edges in CSR order by destination: row offsets, each position's
    source and its edge id (per-edge values stay in the relation's edge order)."""

    indptr: Tensor
    col: Tensor
    eid: Tensor

    @classmethod
    def of(cls, src: Tensor, dst: Tensor, num_dst: int) -> Layout:
        return cls(*_csr(dst, src, num_dst))


def _csr(rows: Tensor, cols: Tensor, num_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """Row offsets, the columns in row order, and each position's edge id."""
    order = torch.argsort(rows, stable=True)
    indptr = torch.zeros(num_rows + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return indptr, cols[order].contiguous(), order


class _Attend(torch.autograd.Function):
    """(out [Nd, C, D], weights [E, C]): weights = per-destination softmax of
    <table[src_e, sel[e, c]], dst[v, c]>, out their weighted sum of the same rows (empty
    when not `aggregate`). `sel` empty: channel c reads channel c."""

    @staticmethod
    def forward(ctx, table: Tensor, dst: Tensor, sel: Tensor, layout: Layout, aggregate: bool) -> tuple[Tensor, Tensor]:
        out, weights = kernels().attend_forward(table, dst, sel, layout.indptr, layout.col, layout.eid, aggregate)
        ctx.save_for_backward(table, dst, sel, weights)
        ctx.layout, ctx.aggregate = layout, aggregate
        ctx.set_materialize_grads(False)
        return out, weights

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, grad_w: Tensor | None):
        table, dst, sel, weights = ctx.saved_tensors
        need_table, need_dst = ctx.needs_input_grad[:2]
        if grad_out is None and grad_w is None or not (need_table or need_dst):
            return None, None, None, None, None
        empty = weights.new_empty(0)
        grad_out = grad_out.contiguous() if ctx.aggregate and grad_out is not None else empty
        grad_w = empty if grad_w is None else grad_w.contiguous()
        lay: Layout = ctx.layout
        grad_table, grad_dst = kernels().attend_backward(
            grad_out, grad_w, table, dst, sel, weights, lay.indptr, lay.col, lay.eid, need_table, need_dst
        )
        return (grad_table if need_table else None), (grad_dst if need_dst else None), None, None, None


class FusedRelation(TorchRelation):
    """The torch backend's primitives, plus the fused attention over the same edges."""

    def __init__(self, sparse_rel: SparseRelation):
        super().__init__(sparse_rel)
        self.layout = Layout.of(self.src, self.dst, self.num_dst)

    def attend(self, msg: Tensor, dst: Tensor, sel: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Softmax over each destination's in-edges of <msg_j, x_v> and the weighted sum of
        msg_j: ([N_dst, M, D], weights [E, M]). With `sel` [E, M], pair (e, m) reads
        msg's channel sel[e, m] instead of m. [N, D] features (node alignment's graph)
        run as one channel."""
        if msg.dim() == 2:
            out, weights = self.attend(msg.unsqueeze(1), dst.unsqueeze(1), sel)
            return out.squeeze(1), weights.squeeze(1)
        return _Attend.apply(msg.contiguous(), dst.contiguous(), _selection(sel), self.layout, True)

    def attention_weights(self, src: Tensor, dst: Tensor) -> Tensor:
        """The softmax of <src_j, dst_v> over each destination's in-edges, [E, M]: the
        attention without its sum (Eq. 1's affinity)."""
        return _Attend.apply(src.contiguous(), dst.contiguous(), _selection(None), self.layout, False)[1]


def _selection(sel: Tensor | None) -> Tensor:
    """The kernel's channel selection: sel [E, M] as int64, or a 1-d empty tensor for
    'channel m reads m'."""
    return torch.empty(0, dtype=torch.long) if sel is None else sel.long().contiguous()


def hard_attention(rel: FusedRelation, src: Tensor, dst: Tensor, passed_of) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EGO-hard (Eq. 1, 2, 5) in two fused sweeps: the affinity s, the pairs that pass
    (`passed_of(s)`, [E, M] bool), then the re-attention and sum where a passing pair
    sends its source's fused mean (channel M of the table) and the others their own
    feature. Returns (sum [N_dst, M, D], weights, affinity, passed)."""
    s = rel.attention_weights(src, dst)
    passed = passed_of(s)
    channels = src.shape[1]
    table = torch.cat([src, src.mean(1, keepdim=True)], 1)
    sel = torch.where(passed, channels, torch.arange(channels))
    agg, weights = rel.attend(table, dst, sel)
    return agg, weights, s, passed
