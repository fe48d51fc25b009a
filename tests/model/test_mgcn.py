"""MGCN against a loop-by-loop float64 reference of its equations (purifier, user-item
and kNN item-item views, attention fuser, BPR, regulariser, InfoNCE) on synthetic-tiny,
and bad options."""

from __future__ import annotations

import math

import pytest
import torch
from mmrec_reference import (
    content,
    cos,
    float64_model,
    knn_graph,
    layer_mean,
    linear,
    neighbours,
)

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic-tiny")


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


def modality_view(model, ds, k: int, m: str) -> torch.Tensor:
    """Steps 1 and 3 for modality m: purified items on the kNN graph, users from items."""
    cfg = model.cfg
    x = content(ds, m)
    items = torch.stack([model.items.detach()[i] * sigmoid(linear(model.purify[k][0], linear(model.project[k], x[i]))) for i in range(ds.num_items)])
    graph = knn_graph(x, cfg.knn_k)
    for _ in range(cfg.item_layers):
        items = torch.stack([sum(w * items[b] for b, w in graph[a]) for a in range(ds.num_items)])
    of_user, of_item = neighbours(ds)
    users = torch.stack([
        sum((items[i] / math.sqrt(len(of_user[u]) * len(of_item[i])) for i in of_user[u]), torch.zeros(cfg.dim, dtype=torch.float64))
        for u in range(ds.num_users)
    ])
    return torch.cat([users, items])


def reference(model, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_id, E_mm) over users then items, node by node (steps 2-4)."""
    cfg = model.cfg
    id_u, id_i = layer_mean(ds, model.users.detach(), model.items.detach(), cfg.ui_layers)
    e_id = torch.cat([id_u, id_i])
    views = [modality_view(model, ds, k, m) for k, m in enumerate(ds.modalities)]
    q1, q2 = model.query[0], model.query[2]
    e_mm = []
    for n in range(len(e_id)):
        logits = torch.stack([q2.weight.detach()[0] @ torch.tanh(linear(q1, v[n])) for v in views])
        a = torch.exp(logits) / torch.exp(logits).sum()
        common = sum(a[k] * v[n] for k, v in enumerate(views))
        specific = sum(sigmoid(linear(model.prefer[k][0], e_id[n])) * (v[n] - common) for k, v in enumerate(views))
        e_mm.append((common + specific) / (len(views) + 1))
    return e_id, torch.stack(e_mm)


@pytest.mark.parametrize("given", [{}, {"ui_layers": 1, "item_layers": 2, "knn_k": 4}])
def test_tables_match_the_reference(tiny, given):
    model = float64_model(tiny, "mgcn", dim=8, **given)
    e_id, e_mm = reference(model, tiny)
    tables = model.final_tables()
    final = e_id + e_mm
    assert torch.allclose(tables.users, final[: tiny.num_users], atol=1e-8)
    assert torch.allclose(tables.items, final[tiny.num_users :], atol=1e-8)


def info_nce(a: list[torch.Tensor], b: list[torch.Tensor], t: float) -> float:
    """Mean over k of -log(exp(cos(a_k, b_k) / t) / sum_j exp(cos(a_k, b_j) / t))."""
    terms = [-math.log(math.exp(cos(a[k], b[k]) / t) / sum(math.exp(cos(a[k], b[j]) / t) for j in range(len(b)))) for k in range(len(a))]
    return sum(terms) / len(terms)


def test_loss_matches_the_reference(tiny):
    model = float64_model(tiny, "mgcn", dim=8, cl_weight=0.5, temperature=0.3)
    users, pos, neg = torch.tensor([0, 3, 3, 7]), torch.tensor([1, 2, 5, 1]), torch.tensor([4, 6, 8, 10])
    e_id, e_mm = reference(model, tiny)
    final = e_id + e_mm
    P, B = tiny.num_users, len(users)
    u, p, n = final[users], final[P + pos], final[P + neg]
    bpr = sum(-math.log(1 / (1 + math.exp(-float(u[k] @ p[k] - u[k] @ n[k])))) for k in range(B)) / B
    reg = 1e-3 * sum(float(r @ r) for r in [*u, *p, *n]) / (2 * B)
    cl = info_nce(list(e_mm[P + pos]), list(e_id[P + pos]), 0.3) + info_nce(list(e_mm[users]), list(e_id[users]), 0.3)
    loss, parts = model.loss(users, pos, neg, 1e-3)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-8)
    assert parts["reg"].item() == pytest.approx(reg, abs=1e-8)
    assert parts["cl"].item() == pytest.approx(cl, abs=1e-8)
    assert loss.item() == pytest.approx(bpr + reg + 0.5 * cl, abs=1e-8)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"knn_k": 0}, "knn_k must be positive"),
        ({"item_layers": -1}, "item_layers"),
        ({"temperature": 0.0}, "temperature > 0"),
        ({"knn_k": 500}, "knn_k=500 exceeds the 80 items"),
    ],
)
def test_bad_options_are_refused(tiny, given, message):
    with pytest.raises(ConfigError, match=message):
        float64_model(tiny, "mgcn", **given)
