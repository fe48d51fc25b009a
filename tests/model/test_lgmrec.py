"""LGMRec against a loop-by-loop float64 reference of its equations (collaborative and
modality graph embeddings, hyperedge assignments, hypergraph layers, BPR, hypergraph
contrast, regulariser) on synthetic-tiny at evaluation (no Gumbel noise, no dropout);
the noise and dropout of training; bad options."""

from __future__ import annotations

import math

import pytest
import torch
from mmrec_reference import (
    content,
    cos,
    float64_model,
    layer_mean,
    neighbours,
    propagate_once,
)

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
T = 0.2  # the Gumbel softmax's and the contrast's temperature


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic-tiny")


def unit(x: torch.Tensor) -> torch.Tensor:
    """x / |x|; a zero row (an item without training interactions) stays zero."""
    return x / x.norm() if x.norm() > 0 else x


def soft(row: torch.Tensor) -> torch.Tensor:
    """softmax(row / T), entry by entry."""
    e = [math.exp(float(v) / T) for v in row]
    return torch.tensor([v / sum(e) for v in e], dtype=torch.float64)


def reference(model, ds) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(final [P + Q, D], each modality's global [P + Q, D]), node by node (steps 1-5)."""
    cfg = model.cfg
    P, Q = ds.num_users, ds.num_items
    of_user, _ = neighbours(ds)
    c_u, c_i = layer_mean(ds, model.users.detach(), model.items.detach(), cfg.ui_layers)
    local = torch.cat([c_u, c_i])
    globals_ = []
    for k, m in enumerate(ds.modalities):
        x = content(ds, m)
        proj, hyper = model.project[k].detach(), model.hyper[k].detach()
        f_i = torch.stack([x[i] @ proj for i in range(Q)])
        f_u = torch.stack([sum(f_i[i] for i in of_user[u]) / len(of_user[u]) for u in range(P)])
        for _ in range(cfg.mm_layers):
            f_u, f_i = propagate_once(ds, f_u, f_i)
        mge = torch.cat([f_u, f_i])
        local = local + torch.stack([unit(row) for row in mge])
        h_i = torch.stack([x[i] @ hyper for i in range(Q)])
        a_i = torch.stack([soft(h_i[i]) for i in range(Q)])
        a_u = torch.stack([soft(sum(h_i[i] for i in of_user[u])) for u in range(P)])
        latent = torch.stack([sum(a_i[i, h] * c_i[i] for i in range(Q)) for h in range(cfg.hyperedges)])
        for _ in range(cfg.hyper_layers - 1):
            g_i = torch.stack([sum(a_i[i, h] * latent[h] for h in range(cfg.hyperedges)) for i in range(Q)])
            latent = torch.stack([sum(a_i[i, h] * g_i[i] for i in range(Q)) for h in range(cfg.hyperedges)])
        g_u = torch.stack([sum(a_u[u, h] * latent[h] for h in range(cfg.hyperedges)) for u in range(P)])
        g_i = torch.stack([sum(a_i[i, h] * latent[h] for h in range(cfg.hyperedges)) for i in range(Q)])
        globals_.append(torch.cat([g_u, g_i]))
    total = sum(globals_)
    return local + cfg.alpha * torch.stack([unit(row) for row in total]), globals_


@pytest.mark.parametrize("given", [{}, {"ui_layers": 1, "mm_layers": 1, "hyper_layers": 2, "hyperedges": 3, "alpha": 0.7}])
def test_tables_match_the_reference(tiny, given):
    model = float64_model(tiny, "lgmrec", dim=8, **given).eval()
    final, _ = reference(model, tiny)
    tables = model.final_tables()
    assert torch.allclose(tables.users, final[: tiny.num_users], atol=1e-8)
    assert torch.allclose(tables.items, final[tiny.num_users :], atol=1e-8)


def contrast(anchors, positives, candidates) -> float:
    """Sum over k of -log(exp(cos(a_k, b_k) / T) / sum_j exp(cos(a_k, c_j) / T))."""
    return sum(
        -math.log(math.exp(cos(a, b) / T) / sum(math.exp(cos(a, c) / T) for c in candidates))
        for a, b in zip(anchors, positives)
    )


def test_loss_matches_the_reference(tiny):
    model = float64_model(tiny, "lgmrec", dim=8, cl_weight=0.01).eval()
    users, pos, neg = torch.tensor([0, 3, 3, 7]), torch.tensor([1, 2, 5, 1]), torch.tensor([4, 6, 8, 10])
    final, globals_ = reference(model, tiny)
    P, B = tiny.num_users, len(users)
    u, p, n = final[users], final[P + pos], final[P + neg]
    bpr = sum(-math.log(1 / (1 + math.exp(-float(u[k] @ p[k] - u[k] @ n[k])))) for k in range(B)) / B
    cl = 0.0
    for a in range(len(globals_)):
        for b in range(a + 1, len(globals_)):
            cl += contrast(globals_[a][users], globals_[b][users], globals_[b][:P])
            cl += contrast(globals_[a][P + pos], globals_[b][P + pos], globals_[b][P:])
    reg = 1e-3 * (float(u.pow(2).sum().sqrt()) + float(p.pow(2).sum().sqrt()) + float(n.pow(2).sum().sqrt())) / B
    loss, parts = model.loss(users, pos, neg, 1e-3)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-7)
    assert parts["cl"].item() == pytest.approx(cl, abs=1e-7)
    assert parts["reg"].item() == pytest.approx(reg, abs=1e-8)
    assert loss.item() == pytest.approx(bpr + 0.01 * cl + reg, abs=1e-7)


def test_gumbel_noise_and_dropout_act_in_training_only(tiny):
    model = float64_model(tiny, "lgmrec", dim=8, keep_rate=1.0)
    logits = torch.randn(50, 4, dtype=torch.float64)
    model.eval()
    assert torch.equal(model.final_tables().items, model.final_tables().items)
    assert torch.allclose(model.assignments(logits), torch.softmax(logits / T, 1))
    model.train()
    noisy = model.assignments(logits)
    assert torch.allclose(noisy.sum(1), torch.ones(50, dtype=torch.float64)) and not torch.allclose(noisy, torch.softmax(logits / T, 1))
    model.cfg.keep_rate = 0.5
    dropped = model.assignments(logits)
    assert 0.3 < (dropped == 0).double().mean() < 0.7 and torch.allclose(dropped.sum(1).mean(), torch.tensor(1.0, dtype=torch.float64), atol=0.3)


@pytest.mark.parametrize(
    "given, message",
    [({"hyper_layers": 0}, "hyper_layers must be positive"), ({"keep_rate": 0.0}, "keep_rate must lie"), ({"alpha": -1.0}, "alpha and cl_weight")],
)
def test_bad_options_are_refused(tiny, given, message):
    with pytest.raises(ConfigError, match=message):
        float64_model(tiny, "lgmrec", **given)
