"""BPR-MF against a loop-by-loop float64 reference of Rendle et al.'s model and criterion
on synthetic-tiny."""

from __future__ import annotations

import math

import pytest
import torch

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synthetic-tiny")


def float64_bpr(ds, **given):
    _, cfg, _, _ = resolve_options({"dataset": ds.name, "model": "bpr", **given})
    torch.manual_seed(0)
    return build_model(ds, cfg, "cpu").double()


def test_scores_are_inner_products_of_the_factor_rows(tiny):
    model = float64_bpr(tiny, dim=8)
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, 8) and tables.items.shape == (tiny.num_items, 8)
    for u in (0, 5):
        for i in (1, 7):
            x_ui = sum(model.users[u, f].item() * model.items[i, f].item() for f in range(8))
            assert model.score(tables, torch.tensor([u]), torch.tensor([i])).item() == pytest.approx(x_ui, abs=1e-12)


def test_loss_is_bpr_opt_with_the_l2_term_of_the_batch_rows(tiny):
    model = float64_bpr(tiny, dim=4)
    users, pos, neg = [0, 3, 3], [1, 2, 6], [4, 5, 0]
    loss, parts = model.loss(torch.tensor(users), torch.tensor(pos), torch.tensor(neg), 0.05)
    w, h = model.users.detach(), model.items.detach()
    bpr = 0.0
    for u, i, j in zip(users, pos, neg):
        x_uij = sum(w[u, f].item() * (h[i, f].item() - h[j, f].item()) for f in range(4))
        bpr -= math.log(1.0 / (1.0 + math.exp(-x_uij)))
    bpr /= len(users)
    sq_users = sum(w[u, f].item() ** 2 for u in users for f in range(4)) / (len(users) * 4)
    rows = pos + neg
    sq_items = sum(h[i, f].item() ** 2 for i in rows for f in range(4)) / (len(rows) * 4)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-12)
    assert loss.item() == pytest.approx(bpr + 0.05 * (sq_users + sq_items), abs=1e-12)


def test_a_gradient_step_raises_the_positive_over_the_negative(tiny):
    model = float64_bpr(tiny, dim=4)
    u, i, j = torch.tensor([2]), torch.tensor([3]), torch.tensor([9])
    before = model.score(model.propagate(), u, i) - model.score(model.propagate(), u, j)
    loss, _ = model.loss(u, i, j, 0.0)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
    after = model.score(model.propagate(), u, i) - model.score(model.propagate(), u, j)
    assert after.item() > before.item()


def test_a_bad_factor_count_is_one_clear_error(tiny):
    with pytest.raises(ConfigError, match="--dim"):
        float64_bpr(tiny, dim=0)
