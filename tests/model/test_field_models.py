"""VBPR, LATTICE and FREEDOM against loop-by-loop float64 references of their equations
(as their module docstrings write them) on synthetic-tiny: forward pass and loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ego_dgl.model.field.freedom import degree_sensitive_keep
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options

BATCH = (torch.tensor([0, 3, 7]), torch.tensor([1, 2, 5]), torch.tensor([4, 6, 9]))


def float64_model(ds, name: str, **given):
    """The model with its options over synthetic-tiny's profile, seeded, in float64."""
    _, cfg, _, _ = resolve_options({"dataset": ds.name, "model": name, "seed": 0, **given})
    torch.manual_seed(0)
    return build_model(ds, cfg).double()


def raw_features(ds) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(ds.features[m], dtype=np.float64)) for m in ds.modalities]


def edges(ds) -> list[tuple[int, int]]:
    return sorted({(int(u), int(i)) for u, i in ds.train})


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def knn_dense(x: torch.Tensor, k: int, weighted: bool) -> list[list[float]]:
    """S[i][j] = cosine (or 1) for the k most similar j of each i, else 0, item by item."""
    q = len(x)
    s = [[0.0] * q for _ in range(q)]
    for i in range(q):
        sims = [cosine(x[i], x[j]) for j in range(q)]
        for j in sorted(range(q), key=lambda j: -sims[j])[:k]:
            s[i][j] = sims[j] if weighted else 1.0
    return s


def sym_norm(s: list[list[float]]) -> list[list[float]]:
    """D^-1/2 S D^-1/2 with D the row sums."""
    d = [sum(row) for row in s]
    return [[s[i][j] / math.sqrt(d[i] * d[j]) if s[i][j] else 0.0 for j in range(len(s))] for i in range(len(s))]


def apply(a: list[list[float]], x: torch.Tensor) -> torch.Tensor:
    return torch.stack([sum((a[i][j] * x[j] for j in range(len(a)) if a[i][j]), torch.zeros(x.shape[1], dtype=x.dtype)) for i in range(len(a))])


def bpr(diffs: list[float]) -> float:
    return float(np.mean([math.log1p(math.exp(-d)) for d in diffs]))


def batch_diffs(users, items) -> list[float]:
    u, p, n = BATCH
    return [float((users[a] @ items[b] - users[a] @ items[c]).detach()) for a, b, c in zip(u, p, n)]


# VBPR


def test_vbpr_scores_and_loss_match_the_reference(tiny):
    model = float64_model(tiny, "vbpr", dim=8)
    content = torch.cat(raw_features(tiny), 1)
    W, b = model.project.weight, model.project.bias
    ref_items = torch.stack([torch.cat([model.items[i], W @ content[i] + b]) for i in range(tiny.num_items)])
    t = model.final_tables()
    assert torch.allclose(t.items, ref_items, atol=1e-10) and torch.equal(t.users, model.users.detach())
    loss, parts = model.loss(*BATCH, 0.1)
    u, p, n = BATCH
    norms = t.users[u].norm() + ref_items[p].norm() + ref_items[n].norm()
    expected = bpr(batch_diffs(t.users, ref_items)) + 0.1 * float(norms.detach()) / 3
    assert parts["bpr"].item() == pytest.approx(bpr(batch_diffs(t.users, ref_items)), abs=1e-10)
    assert loss.item() == pytest.approx(expected, abs=1e-10)


# FREEDOM


def sym_bipartite(ds, kept: list[tuple[int, int]]) -> tuple[list[list[float]], int]:
    """D^-1/2 A D^-1/2 of the (P + Q)-node graph of the given edges, pair by pair."""
    p, n = ds.num_users, ds.num_users + ds.num_items
    du, di = [0] * ds.num_users, [0] * ds.num_items
    for u, i in kept:
        du[u] += 1
        di[i] += 1
    a = [[0.0] * n for _ in range(n)]
    for u, i in kept:
        a[u][p + i] = a[p + i][u] = 1 / math.sqrt(du[u] * di[i])
    return a, p


def lightgcn_mean(a, x: torch.Tensor, layers: int) -> torch.Tensor:
    out = [x]
    for _ in range(layers):
        out.append(apply(a, out[-1]))
    return sum(out) / (layers + 1)


def freedom_reference(model, ds, kept) -> tuple[torch.Tensor, torch.Tensor]:
    k, shares = model.cfg.knn_k, {"visual": 0.1, "acoustic": 0.45, "textual": 0.45}
    graphs = [sym_norm(knn_dense(x, k, weighted=False)) for x in raw_features(ds)]
    q = ds.num_items
    mixed = [[sum(shares[m] * g[i][j] for m, g in zip(ds.modalities, graphs)) for j in range(q)] for i in range(q)]
    ids = model.ids.detach()
    h = apply(mixed, ids[ds.num_users :])
    a, p = sym_bipartite(ds, kept)
    out = lightgcn_mean(a, ids, model.cfg.layers)
    return out[:p], out[p:] + h


def test_freedom_evaluates_on_the_full_graph_as_the_reference(tiny):
    model = float64_model(tiny, "freedom", dim=8)
    with torch.no_grad():
        model.ids.normal_()
    ref_u, ref_i = freedom_reference(model, tiny, edges(tiny))
    t = model.final_tables()
    assert torch.allclose(t.users, ref_u, atol=1e-9) and torch.allclose(t.items, ref_i, atol=1e-9)


def test_freedom_trains_on_its_pruned_graph_and_loss_matches(tiny):
    model = float64_model(tiny, "freedom", dim=8, dropout=0.5)
    model.start_epoch(1, np.random.default_rng(3))
    g = model.pruned
    rows = torch.repeat_interleave(torch.arange(len(g.crow) - 1), g.crow.diff())
    kept = sorted((int(r), int(c) - tiny.num_users) for r, c in zip(rows, g.col) if r < tiny.num_users)
    assert len(kept) == int(len(edges(tiny)) * 0.5) and set(kept) <= set(edges(tiny))
    ref_u, ref_i = freedom_reference(model, tiny, kept)
    t = model.propagate()
    assert torch.allclose(t.users, ref_u, atol=1e-9) and torch.allclose(t.items, ref_i, atol=1e-9)
    loss, parts = model.loss(*BATCH, 0.3)
    content = 0.0
    for proj, x in zip(model.project, model.raw):
        feats = torch.stack([proj.weight @ x[i] + proj.bias for i in range(tiny.num_items)])
        content += bpr(batch_diffs(ref_u, feats))
    assert parts["bpr"].item() == pytest.approx(bpr(batch_diffs(ref_u, ref_i)), abs=1e-9)
    assert loss.item() == pytest.approx(bpr(batch_diffs(ref_u, ref_i)) + 0.3 * content, abs=1e-9)


def test_degree_sensitive_pruning_draws_edges_by_inverse_sqrt_degree():
    users, items = torch.tensor([0, 0, 0, 1, 2]), torch.tensor([0, 1, 2, 0, 3])
    weight = 1 / np.sqrt(np.array([3 * 2, 3 * 1, 3 * 1, 1 * 2, 1 * 1], dtype=float))
    rng = np.random.default_rng(0)
    first = np.bincount([int(degree_sensitive_keep(users, items, 3, 4, 1, rng)[0]) for _ in range(20000)], minlength=5)
    assert np.allclose(first / 20000, weight / weight.sum(), atol=0.015)
    assert sorted(degree_sensitive_keep(users, items, 3, 4, 5, rng).tolist()) == [0, 1, 2, 3, 4]


def test_freedom_without_dropout_trains_on_the_full_graph_and_draws_nothing(tiny):
    model = float64_model(tiny, "freedom", dim=8, dropout=0.0)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    model.start_epoch(1, rng)
    assert model.pruned is None and rng.bit_generator.state == state


# LATTICE


def row_self_bipartite(ds) -> tuple[list[list[float]], int]:
    """D^-1 (A + I) of the user-item graph, node by node."""
    p, n = ds.num_users, ds.num_users + ds.num_items
    a = [[0.0] * n for _ in range(n)]
    for u, i in edges(ds):
        a[u][p + i] = a[p + i][u] = 1.0
    for v in range(n):
        a[v][v] = 1.0
        d = sum(a[v])
        a[v] = [w / d for w in a[v]]
    return a, p


def lattice_reference(model, ds) -> tuple[torch.Tensor, torch.Tensor]:
    k, lam, q = model.cfg.knn_k, model.cfg.lam, ds.num_items
    alpha = torch.softmax(model.modal_logits.detach(), 0).tolist()
    initial = [sym_norm(knn_dense(x, k, weighted=True)) for x in raw_features(ds)]
    projected = [torch.stack([proj.weight @ x[i] + proj.bias for i in range(q)]).detach() for proj, x in zip(model.project, model.raw)]
    learned = [knn_dense(x, k, weighted=True) for x in projected]
    mixed = sym_norm([[sum(a * s[i][j] for a, s in zip(alpha, learned)) for j in range(q)] for i in range(q)])
    graph = [[(1 - lam) * mixed[i][j] + lam * sum(a * g[i][j] for a, g in zip(alpha, initial)) for j in range(q)] for i in range(q)]
    ids = model.ids.detach()
    h = apply(graph, ids[ds.num_users :])
    a, p = row_self_bipartite(ds)
    out = lightgcn_mean(a, ids, model.cfg.layers)
    return out[:p], out[p:] + h / h.norm(dim=1, keepdim=True)


def test_lattice_matches_the_reference_and_its_loss(tiny):
    model = float64_model(tiny, "lattice", dim=8, feat_dim=6, knn_k=5)
    with torch.no_grad():
        model.modal_logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    ref_u, ref_i = lattice_reference(model, tiny)
    t = model.final_tables()
    assert torch.allclose(t.users, ref_u, atol=1e-9) and torch.allclose(t.items, ref_i, atol=1e-6)
    model.train()
    model.start_epoch(1, np.random.default_rng(0))
    loss, _ = model.loss(*BATCH, 0.2)
    u, pos, neg = BATCH
    squares = ref_u[u].pow(2).sum() + ref_i[pos].pow(2).sum() + ref_i[neg].pow(2).sum()
    assert loss.item() == pytest.approx(bpr(batch_diffs(ref_u, ref_i)) + 0.2 * float(squares) / 6, abs=1e-6)


def test_lattice_learns_its_graph_at_an_epochs_first_batch_only(tiny):
    model = float64_model(tiny, "lattice", dim=8, feat_dim=6, knn_k=5)
    model.train()
    model.start_epoch(1, np.random.default_rng(0))
    first, _ = model.loss(*BATCH, 0.0)
    first.backward()
    assert model.modal_logits.grad is not None and model.project[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    second, _ = model.loss(*BATCH, 0.0)
    second.backward()
    assert model.modal_logits.grad is None  # the epoch's graph is reused, detached
