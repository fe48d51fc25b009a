"""Sparse kernels of both backends: aggregation and per-edge dot products as CSR
matrix operations.

A relation over C channels (modalities) is one sparse matrix with a row per (destination,
channel) and a column per (source, channel), so [N, C, D] node features reshape to
[N * C, D] without copies. Aggregation is the sparse-dense product with the per-edge,
per-channel weights as values (SpMM); per-edge dot products are the product of the two
feature matrices sampled at the pattern (SDDMM, `torch.sparse.sampled_addmm`). Neither
builds per-edge [E, C, D] messages. The SpMM runs as `F.embedding_bag` (sum mode with
per-sample weights) over the CSR columns and row offsets: the same sums, on CPU 4.5x
faster than `torch.sparse.mm(..., "sum")` and 7x faster than the MKL product at Tiktok
size (identical results), and it runs on CUDA as well. Backward passes are again SpMM
and SDDMM. Patterns are built once per channel count and cached.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# torch flags its CSR layout as beta on every construction; the kernels used here are
# covered by the dense-reference tests, so the notice would only be noise to users.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass(frozen=True)
class CsrPattern:
    """CSR structure of a [rows, cols] matrix whose k-th stored value is flat[perm[k]] of
    the per-edge, per-channel weights [E, C] flattened."""

    crow: Tensor
    col: Tensor
    perm: Tensor
    inverse: Tensor  # stored value k of entry flat[j] is at inverse[j]
    shape: tuple[int, int]

    def mm(self, weights: Tensor, x: Tensor) -> Tensor:
        """The matrix with per-edge, per-channel `weights` [E, C] as values, times x [cols, D]."""
        values = weights.reshape(-1).index_select(0, self.perm)
        # Detached: as a kernel inside autograd Functions it needs no graph, and a table
        # that requires grad makes embedding_bag also build its backward's index maps.
        return F.embedding_bag(self.col, x.detach(), self.crow, mode="sum", per_sample_weights=values.detach(), include_last_offset=True)

    def sample(self, rows: Tensor, cols: Tensor) -> Tensor:
        """(rows @ cols.T) at the pattern, back in [E * C] edge-major order."""
        ones = rows.new_ones(self.perm.shape[0])
        pattern = torch.sparse_csr_tensor(self.crow, self.col, ones, size=self.shape, check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, rows, cols.T, beta=0.0).values().index_select(0, self.inverse)


def csr_pattern(rows: Tensor, cols: Tensor, num_rows: int, num_cols: int, channels: int) -> CsrPattern:
    """The CSR pattern of edges rows[e] <- cols[e], replicated over `channels` channels:
    entry (e, c) sits at row rows[e] * C + c, column cols[e] * C + c."""
    c = torch.arange(channels, device=rows.device)
    flat_rows = (rows.view(-1, 1) * channels + c).reshape(-1)
    flat_cols = (cols.view(-1, 1) * channels + c).reshape(-1)
    perm = torch.argsort(flat_rows, stable=True)
    inverse = torch.empty_like(perm).index_copy_(0, perm, torch.arange(perm.shape[0], device=rows.device))
    counts = torch.bincount(flat_rows, minlength=num_rows * channels)
    crow = torch.zeros(num_rows * channels + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    return CsrPattern(crow, flat_cols[perm].contiguous(), perm, inverse, (num_rows * channels, num_cols * channels))


class SparseRelation:
    """CSR patterns of one relation (src -> dst), forward and transposed, per channel count."""

    def __init__(self, src: Tensor, dst: Tensor, num_src: int, num_dst: int):
        self.src, self.dst, self.num_src, self.num_dst = src, dst, num_src, num_dst
        self._patterns: dict[tuple[int, bool], CsrPattern] = {}

    def pattern(self, channels: int, transposed: bool = False) -> CsrPattern:
        key = (channels, transposed)
        if key not in self._patterns:
            if transposed:
                self._patterns[key] = csr_pattern(self.src, self.dst, self.num_src, self.num_dst, channels)
            else:
                self._patterns[key] = csr_pattern(self.dst, self.src, self.num_dst, self.num_src, channels)
        return self._patterns[key]

    def spmm(self, weights: Tensor, x: Tensor, transposed: bool = False) -> Tensor:
        """sum over edges of weights[e, c] * x[endpoint, c]: [N_out, C, D] from x [N_in, C, D]."""
        channels, dim = x.shape[1], x.shape[2]
        return self.pattern(channels, transposed).mm(weights, x.reshape(-1, dim)).view(-1, channels, dim)

    def edge_dot(self, x_src: Tensor, x_dst: Tensor) -> Tensor:
        """<x_src[src_e, c], x_dst[dst_e, c]> per edge and channel, [E, C]."""
        channels, dim = x_src.shape[1], x_src.shape[2]
        values = self.pattern(channels).sample(x_dst.reshape(-1, dim), x_src.reshape(-1, dim))
        return values.view(-1, channels)


def csr_relation(crow: Tensor, col: Tensor, num_cols: int) -> SparseRelation:
    """The relation col -> row of a CSR matrix's entries, its one-channel forward pattern the CSR arrays
    themselves (no sort; only the transposed pattern needs one)."""
    num_rows = crow.shape[0] - 1
    rows = torch.repeat_interleave(torch.arange(num_rows, device=crow.device), crow.diff())
    rel = SparseRelation(col, rows, num_cols, num_rows)
    identity = torch.arange(col.shape[0], device=col.device)
    rel._patterns[(1, False)] = CsrPattern(crow, col, identity, identity, (num_rows, num_cols))
    return rel


class _Aggregate(torch.autograd.Function):
    """out[v, c] = sum over edges e = (j -> v) of w[e, c] * x[j, c]."""

    @staticmethod
    def forward(ctx, weights: Tensor, x: Tensor, rel: SparseRelation) -> Tensor:
        ctx.save_for_backward(weights, x)
        ctx.rel = rel
        return rel.spmm(weights, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weights, x = ctx.saved_tensors
        rel: SparseRelation = ctx.rel
        grad = grad.contiguous()
        grad_w = rel.edge_dot(x, grad) if ctx.needs_input_grad[0] else None
        grad_x = rel.spmm(weights, grad, transposed=True) if ctx.needs_input_grad[1] else None
        return grad_w, grad_x, None


class _EdgeDot(torch.autograd.Function):
    """a[e, c] = <x_src[j, c], x_dst[v, c]> for every edge e = (j -> v): SDDMM forward,
    SpMM backward."""

    @staticmethod
    def forward(ctx, x_src: Tensor, x_dst: Tensor, rel: SparseRelation) -> Tensor:
        ctx.save_for_backward(x_src, x_dst)
        ctx.rel = rel
        return rel.edge_dot(x_src, x_dst)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_src, x_dst = ctx.saved_tensors
        rel: SparseRelation = ctx.rel
        grad = grad.contiguous()
        grad_src = rel.spmm(grad, x_dst, transposed=True) if ctx.needs_input_grad[0] else None
        grad_dst = rel.spmm(grad, x_src) if ctx.needs_input_grad[1] else None
        return grad_src, grad_dst, None


def aggregate(rel: SparseRelation, x: Tensor, weights: Tensor) -> Tensor:
    """Weighted neighbour sum with channels: x [N_src, C, D], weights [E, C] -> [N_dst, C, D]."""
    return _Aggregate.apply(weights.contiguous(), x.contiguous(), rel)


def edge_dot(rel: SparseRelation, x_src: Tensor, x_dst: Tensor) -> Tensor:
    """Per-edge dot products with channels: x_src [N_src, C, D], x_dst [N_dst, C, D] -> [E, C]."""
    return _EdgeDot.apply(x_src.contiguous(), x_dst.contiguous(), rel)
