"""GAT baseline against a dense, loop-by-loop float64 reference of GATConv's attention on
synthetic-tiny (no DGL in the reference: the layers' own parameter tensors, Python loops
over each node's neighbours)."""

from __future__ import annotations

import pytest
import torch
from conftest import early_fusion_reference, float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.2 * x)


def gat_node(conv, own: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """[heads, width]: per head, sum over j of softmax_j(LeakyReLU(a_l·W h_j + a_r·W h_v)) W h_j,
    plus the residual (identity, or R h_v + b_R) and the bias."""
    heads, width = conv.attn_l.shape[1], conv.attn_l.shape[2]
    z_own = (conv.fc.weight @ own).view(heads, width)
    out = torch.zeros(heads, width, dtype=own.dtype)
    for h in range(heads):
        z = [(conv.fc.weight @ x).view(heads, width)[h] for x in others]
        logits = [leaky(conv.attn_l[0, h] @ zj + conv.attn_r[0, h] @ z_own[h]) for zj in z]
        if logits:
            alpha = torch.softmax(torch.stack(logits), 0)
            out[h] = sum(a * zj for a, zj in zip(alpha, z))
    if isinstance(conv.res_fc, torch.nn.Linear):
        return out + (conv.res_fc.weight @ own + conv.res_fc.bias).view(heads, width)
    if conv.res_fc is not None:
        out = out + own.view(heads, width)
    return out + conv.bias.view(heads, width)


def gat_layer(conv, own, other, own_nb, last: bool) -> torch.Tensor:
    rows = []
    for v in range(own.shape[0]):
        h = gat_node(conv, own[v], [other[j] for j in own_nb[v]])
        rows.append(h.mean(0) if last else torch.nn.functional.elu(h.flatten()))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "options",
    [dict(layers=0), dict(layers=1), dict(layers=3), dict(layers=2, heads=2), dict(layers=2, residual=False)],
)
def test_gat_matches_the_reference(tiny, options):
    model = float64_model(tiny, "gat", **options)
    users, items = early_fusion_reference(model, tiny)
    of_user, of_item = neighbours(tiny.train, tiny.num_users, tiny.num_items)
    for k, conv in enumerate(model.convs):
        last = k == len(model.convs) - 1
        to_items, to_users = conv.mods["clicks"], conv.mods["clicked_by"]
        users, items = gat_layer(to_users, users, items, of_user, last), gat_layer(to_items, items, users, of_item, last)
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, model.cfg.dim)
    assert torch.allclose(tables.users, users, atol=1e-6) and torch.allclose(tables.items, items, atol=1e-6)


def test_defaults_are_two_layers_one_head_with_the_residual(tiny):
    model = float64_model(tiny, "gat")
    assert len(model.convs) == 2 and model.cfg.heads == 1 and model.cfg.attn_dropout == 0.0
    assert all(conv.mods[e].res_fc is not None for conv in model.convs for e in ("clicks", "clicked_by"))


def test_attention_dropout_acts_in_training_only(tiny):
    model = float64_model(tiny, "gat", attn_dropout=0.5)
    model.eval()
    first = model.propagate().users
    assert torch.equal(first, model.propagate().users)
    model.train()
    assert not torch.allclose(model.propagate().users, first)


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(heads=0), "heads must be a positive"), (dict(heads=5, dim=32), "must be a multiple of"), (dict(attn_dropout=1.0),
        "attn_dropout must be in")],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options({"dataset": "synthetic-tiny", "model": "gat", **options})
