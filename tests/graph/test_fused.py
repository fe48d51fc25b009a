"""The fused backend's kernels (ego_dgl/graph/fused.py) against the torch primitives, their
gradients by gradcheck, and how `--backend fused` resolves or falls back. The models'
equality with the fused backend is in the reference, behaviour, sampling and layer-wise
tests, which run it beside the other backends."""

from __future__ import annotations

import pytest
import torch

from ego_dgl.errors import EgoDGLWarning
from ego_dgl.graph import fused
from ego_dgl.graph.backends import TorchRelation, resolve_backend
from ego_dgl.graph.sparse import SparseRelation
from ego_dgl.model.layers.attention import attend

pytestmark = pytest.mark.skipif(fused.kernels() is None, reason="the fused kernels cannot be built here")


def relations(num_src: int = 7, num_dst: int = 6, edges: int = 30, seed: int = 0) -> tuple[fused.FusedRelation, TorchRelation]:
    """The fused and torch relations of one random bipartite graph whose last destination
    has no in-edge."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (edges,), generator=g)
    dst = torch.randint(0, num_dst - 1, (edges,), generator=g)
    return fused.FusedRelation(SparseRelation(src, dst, num_src, num_dst)), TorchRelation(SparseRelation(src, dst, num_src, num_dst))


def features(n: int, channels: int = 3, dim: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, channels, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_attend_equals_the_torch_primitives_forward_and_backward():
    rel, reference = relations()
    src, dst = features(7).requires_grad_(), features(6, seed=2).requires_grad_()
    out, weights = rel.attend(src, dst)
    ref_out, ref_weights = attend(reference, src, dst)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(weights, ref_weights, rtol=0, atol=1e-12)
    assert out[5].abs().sum() == 0  # no in-edge: an empty sum
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum() + weights.sum() * 0.5, (src, dst))
    ref_grads = torch.autograd.grad((ref_out * probe).sum() + ref_weights.sum() * 0.5, (src, dst))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_table_gradients_summed_over_threads_equal_the_torch_primitives(threads):
    """Each thread adds its destinations' source gradients into its own table; with more
    destinations than one parallel task takes, the threads' tables must sum to the same
    gradient as one thread and as the torch primitives."""
    rel, reference = relations(num_src=40, num_dst=300, edges=3000, seed=7)
    table = features(40, channels=4, seed=8).requires_grad_()
    dst = features(300, seed=9).requires_grad_()
    sel = torch.randint(0, 4, (3000, 3), generator=torch.Generator().manual_seed(10))
    probe = torch.randn(300, 3, 5, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, _ = rel.attend(table, dst, sel)
        got = torch.autograd.grad((out * probe).sum(), (table, dst))
    finally:
        torch.set_num_threads(before)
    rows = table[reference.src.unsqueeze(1), sel]
    weights = reference.softmax((rows * dst[reference.dst]).sum(-1))
    want_out = torch.zeros_like(dst).index_add(0, reference.dst, weights.unsqueeze(-1) * rows)
    want = torch.autograd.grad((want_out * probe).sum(), (table, dst))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


def test_a_selection_reads_the_chosen_channel_of_the_table():
    rel, reference = relations(seed=3)
    table = features(7, channels=4, seed=4)
    dst = features(6, seed=5)
    sel = torch.randint(0, 4, (rel.src.shape[0], 3), generator=torch.Generator().manual_seed(6))
    out, weights = rel.attend(table, dst, sel)
    rows = table[rel.src.unsqueeze(1), sel]  # [E, 3, D] the rows each pair reads
    logits = (rows * dst[rel.dst]).sum(-1)
    want_weights = reference.softmax(logits)
    want_out = torch.zeros_like(dst).index_add_(0, rel.dst, want_weights.unsqueeze(-1) * rows)
    torch.testing.assert_close(weights, want_weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("aggregate", [True, False], ids=["attend", "weights-only"])
@pytest.mark.parametrize("selected", [False, True], ids=["own-channel", "selected"])
def test_gradcheck_of_the_fused_attention(aggregate, selected):
    rel, _ = relations(num_src=5, num_dst=4, edges=14, seed=7)
    table = features(5, channels=3, dim=4, seed=8).requires_grad_()
    dst = features(4, channels=2, dim=4, seed=9).requires_grad_()
    if selected:
        sel = torch.randint(0, 3, (14, 2), generator=torch.Generator().manual_seed(10))
    else:
        table = table.detach()[:, :2].contiguous().requires_grad_()
        sel = None

    def run(t: torch.Tensor, d: torch.Tensor):
        out, weights = fused._Attend.apply(t, d, fused._selection(sel), rel.layout, aggregate)
        return (out, weights) if aggregate else weights

    assert torch.autograd.gradcheck(run, (table, dst), eps=1e-6, atol=1e-8)


def test_backend_fused_resolves_on_the_cpu_and_falls_back_elsewhere(monkeypatch):
    assert resolve_backend("fused", "cpu") == ("fused", None)
    backend, note = resolve_backend("fused", "meta")  # neither fused nor the installed DGL runs there
    assert backend == "torch" and "CPU only" in note and "torch" in note
    monkeypatch.setattr(fused, "kernels", lambda: None)  # as without a compiler
    backend, note = resolve_backend("fused", "cpu")
    assert backend == "dgl" and "could not be built" in note


def test_a_failed_build_warns_once_and_gives_none(monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    def fail(**_):
        raise OSError("no compiler")

    monkeypatch.setattr(cpp_extension, "load", fail)
    fused._build.cache_clear()
    fused._warn.cache_clear()
    try:
        with pytest.warns(EgoDGLWarning, match="could not be built.*no compiler") as caught:
            assert fused.kernels() is None
            assert fused.kernels() is None
        assert len(caught) == 1
    finally:
        fused._build.cache_clear()
        fused._warn.cache_clear()
