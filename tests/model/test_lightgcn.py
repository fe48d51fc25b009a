"""LightGCN baseline against a dense, loop-by-loop float64 reference of its equations
(and of the early-fusion inputs) on synthetic-tiny."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import bpr_reference, early_fusion_reference, float64_model, neighbours


def test_early_fusion_inputs_match_the_reference(tiny):
    model = float64_model(tiny, "lightgcn")
    users, items = model.input_tables().users, model.input_tables().items
    ref_users, ref_items = early_fusion_reference(model, tiny)
    assert torch.allclose(users, ref_users, atol=1e-6) and torch.allclose(items, ref_items, atol=1e-6)


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_lightgcn_matches_the_reference(tiny, layers):
    model = float64_model(tiny, "lightgcn", layers=layers)
    x_users, x_items = early_fusion_reference(model, tiny)
    of_user, of_item = neighbours(tiny.train, tiny.num_users, tiny.num_items)
    users, items = [x_users], [x_items]
    for _ in range(layers):
        prev_u, prev_i = users[-1], items[-1]
        new_u = torch.zeros_like(prev_u)
        new_i = torch.zeros_like(prev_i)
        for u in range(tiny.num_users):
            for i in of_user[u]:
                new_u[u] += prev_i[i] / math.sqrt(len(of_user[u]) * len(of_item[i]))
        for i in range(tiny.num_items):
            for u in of_item[i]:
                new_i[i] += prev_u[u] / math.sqrt(len(of_user[u]) * len(of_item[i]))
        users.append(new_u)
        items.append(new_i)
    ref_u = sum(users) / (layers + 1)
    ref_i = sum(items) / (layers + 1)
    tables = model.final_tables()
    assert torch.allclose(tables.users, ref_u, atol=1e-6) and torch.allclose(tables.items, ref_i, atol=1e-6)


def test_loss_is_bpr_plus_the_regulariser_of_the_raw_rows(tiny):
    model = float64_model(tiny, "lightgcn")
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([4, 5])
    loss, parts = model.loss(users, pos, neg, 0.01)
    bpr = bpr_reference(model, users, pos, neg)
    # the authors' convention: every squared entry over the same 2·B (times D here), users and items alike
    rows = [model.inputs.users[u] for u in users] + [model.inputs.items[i] for i in torch.cat([pos, neg])]
    reg = sum(float(x) ** 2 for row in rows for x in row) / (2 * len(users) * model.cfg.dim)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-9)
    assert loss.item() == pytest.approx(bpr + 0.01 * reg, abs=1e-9)


def test_without_content_the_inputs_are_the_id_tables(tiny):
    model = float64_model(tiny, "lightgcn", content=False)
    t = model.input_tables()
    assert model.inputs.features is None and torch.equal(t.items, model.inputs.items)
    assert torch.equal(t.users, model.inputs.users)
