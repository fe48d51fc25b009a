"""MMGCN against a dense, loop-by-loop float64 reference of its equations on
synthetic-tiny, plus its options, word-bag text and bad configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options

pytestmark = pytest.mark.usefixtures("one_thread")





def reference(model, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1-6 and the modality sum (Eq. 8), node by node, modality by modality."""
    cfg = model.cfg
    P = ds.num_users
    of_user, of_item = neighbours(ds.train, ds.num_users, ds.num_items)
    nbrs = {v: ([P + i for i in of_user[v]] if v < P else of_item[v - P]) for v in range(P + ds.num_items)}
    reps = []
    for k, m in enumerate(ds.modalities):
        lin = model.item_features.proj[k]
        raw = torch.as_tensor(np.asarray(ds.features[m]), dtype=torch.float64)
        x = [F.normalize(model.preferences.tables[k][u], dim=0) for u in range(P)]
        x += [F.normalize(F.leaky_relu(lin.weight @ raw[i] + lin.bias), dim=0) for i in range(ds.num_items)]
        for layer in model.layers:
            W, W1, b1, W2, b2 = layer.conv.weight[k], layer.linear.weight[k], layer.linear.bias[k], layer.merge.weight[k], layer.merge.bias[k]
            new = []
            for v in range(len(x)):
                messages = [x[j] @ W for j in nbrs[v]]
                total = sum(messages) if messages else torch.zeros(W.shape[1], dtype=torch.float64)
                h = F.leaky_relu(total / max(len(messages), 1) if cfg.aggregation == "mean" else total)
                x_hat = F.leaky_relu(x[v] @ W1 + b1) + (model.ids[v] if cfg.has_id else 0)
                if cfg.combine == "concat":
                    new.append(F.leaky_relu(torch.cat([h, x_hat]) @ W2 + b2))
                else:
                    new.append(F.leaky_relu(h @ W2 + b2 + x_hat))
            x = new
        reps.append(torch.stack(x))
    rep = sum(reps)
    return rep[:P], rep[P:]


@pytest.mark.parametrize(
    "given",
    [{}, {"layers": 1, "aggregation": "sum", "combine": "add"}, {"layers": 3, "combine": "add", "has_id": False}, {"layers": 3,
        "aggregation": "sum"}],
)
def test_mmgcn_matches_the_reference(tiny, given):
    model = float64_model(tiny, "mmgcn", **{"latent_dim": 12, **given})
    ref_u, ref_i = reference(model, tiny)
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, model.cfg.dim)
    assert torch.allclose(tables.users, ref_u, atol=1e-6) and torch.allclose(tables.items, ref_i, atol=1e-6)


def test_defaults_are_the_authors():
    _, cfg, _, _ = resolve_options({"dataset": "ml100k", "model": "mmgcn"})
    assert (cfg.layers, cfg.aggregation, cfg.combine, cfg.has_id, cfg.dim, cfg.latent_dim) == (2, "mean", "concat", True, 64, 128)


@pytest.mark.parametrize(
    "given, message",
    [({"layers": 0}, "--layers must be >= 1"), ({"aggregation": "max"}, "aggregation='max' is not one of"), ({"combine": "mul"},
        "combine='mul' is not one of")],
)
def test_bad_options_are_refused(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options({"dataset": "synthetic-tiny", "model": "mmgcn", **given})
