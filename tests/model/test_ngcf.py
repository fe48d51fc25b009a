"""NGCF baseline against a dense, loop-by-loop float64 reference of its equations (the
paper's Eq. 3-5 per node, with the authors' per-layer L2 normalisation) on synthetic-tiny."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import early_fusion_reference, float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.2 * x)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm() if x.norm() > 0 else x


def ngcf_layer(w1, w2, own, other, own_nb, other_nb):
    """e_v = LeakyReLU(W1 e_v + sum over j in N(v) of p_vj (W1 e_j + W2 (e_j ⊙ e_v))), node by node."""
    out = torch.zeros_like(own)
    for v in range(own.shape[0]):
        total = w1 @ own[v]
        for j in own_nb[v]:
            p = 1.0 / math.sqrt(len(own_nb[v]) * len(other_nb[j]))
            total = total + p * (w1 @ other[j] + w2 @ (other[j] * own[v]))
        out[v] = leaky(total)
    return out


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_ngcf_matches_the_reference(tiny, layers):
    model = float64_model(tiny, "ngcf", layers=layers, dropout=0.0)
    users, items = early_fusion_reference(model, tiny)
    of_user, of_item = neighbours(tiny.train, tiny.num_users, tiny.num_items)
    out_u, out_i = [users], [items]
    for layer in model.layers:
        w1, w2 = layer.w1.weight, layer.w2.weight
        users, items = ngcf_layer(w1, w2, users, items, of_user, of_item), ngcf_layer(w1, w2, items, users, of_item, of_user)
        out_u.append(torch.stack([unit(row) for row in users]))
        out_i.append(torch.stack([unit(row) for row in items]))
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, model.cfg.dim * (layers + 1))
    assert torch.allclose(tables.users, torch.cat(out_u, -1), atol=1e-6)
    assert torch.allclose(tables.items, torch.cat(out_i, -1), atol=1e-6)


def test_message_dropout_acts_in_training_only(tiny):
    model = float64_model(tiny, "ngcf")
    assert model.cfg.dropout == 0.1  # the authors' default
    model.eval()
    first, again = model.propagate().users, model.propagate().users
    assert torch.equal(first, again)
    model.train()
    torch.manual_seed(1)
    dropped = model.propagate().users
    width = model.cfg.dim
    assert torch.equal(dropped[:, :width], first[:, :width])  # the inputs are not dropped
    assert not torch.allclose(dropped[:, width:], first[:, width:])


def test_the_regulariser_takes_the_raw_id_rows(tiny):
    model = float64_model(tiny, "ngcf")
    users, items = torch.tensor([0, 3]), torch.tensor([1, 2])
    raw_users, raw_items = model.reg_rows(users, items)
    assert torch.equal(raw_users[0], model.inputs.users[users]) and torch.equal(raw_items[0], model.inputs.items[items])


def test_bad_dropout_is_refused():
    with pytest.raises(ConfigError, match="dropout must be in"):
        resolve_options({"dataset": "synthetic-tiny", "model": "ngcf", "dropout": 1.0})
