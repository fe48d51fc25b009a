"""GRCN against a dense, loop-by-loop float64 reference of its equations on
synthetic-tiny (routing, affinities, pruned weights, ID convolution, concatenation),
plus its options, word-bag text and bad configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options

pytestmark = pytest.mark.usefixtures("one_thread")





def softmax(logits: list[torch.Tensor]) -> list[torch.Tensor]:
    exps = [torch.exp(x) for x in logits]
    return [e / sum(exps) for e in exps]


def reference(model, ds) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Steps 1-5 of the module docstring, one user, item, edge and modality at a time;
    also the share of pruned item->user edges."""
    cfg = model.cfg
    P, Q, M = ds.num_users, ds.num_items, len(ds.modalities)
    of_user, of_item = neighbours(ds.train, ds.num_users, ds.num_items)
    users = [[F.normalize(model.preferences.tables[k][u], dim=0) for k in range(M)] for u in range(P)]
    items = []
    for i in range(Q):
        row = []
        for k, m in enumerate(ds.modalities):
            lin = model.item_features.proj[k]
            x = torch.as_tensor(np.asarray(ds.features[m][i]), dtype=torch.float64)
            row.append(F.normalize(F.leaky_relu(lin.weight @ x + lin.bias), dim=0))
        items.append(row)
    for _ in range(cfg.routing):
        new = []
        for u in range(P):
            row = []
            for k in range(M):
                s = softmax([users[u][k] @ items[i][k] for i in of_user[u]])
                row.append(F.normalize(users[u][k] + sum((w * items[i][k] for w, i in zip(s, of_user[u])), torch.zeros_like(users[u][k])), dim=0))
            new.append(row)
        users = new
    a_to_user, a_to_item = {}, {}  # (u, i) -> [M] affinities of each direction
    for u in range(P):
        for k in range(M):
            for w, i in zip(softmax([users[u][k] @ items[i][k] for i in of_user[u]]), of_user[u]):
                a_to_user.setdefault((u, i), [0.0] * M)[k] = w
    for i in range(Q):
        for k in range(M):
            for w, u in zip(softmax([users[u][k] @ items[i][k] for u in of_item[i]]), of_item[i]):
                a_to_item.setdefault((u, i), [0.0] * M)[k] = w

    def weight(affinity: list[torch.Tensor], source: int) -> torch.Tensor:
        if cfg.weight_mode == "mean":
            w = sum(affinity) / M
        elif cfg.weight_mode == "max":
            w = max(affinity)
        else:
            w = max(affinity[k] * model.confidence[source, k] for k in range(M))
        return torch.clamp(w, min=0) if cfg.pruning else w

    w_to_user = {(u, i): weight(a, P + i) for (u, i), a in a_to_user.items()}
    w_to_item = {(u, i): weight(a, u) for (u, i), a in a_to_item.items()}
    content_u = [torch.cat([users[u][k] + sum((a_to_user[u, i][k] * items[i][k] for i in of_user[u]),
        torch.zeros_like(users[u][k])) for k in range(M)]) for u in range(P)]
    content_i = [torch.cat([items[i][k] + sum((a_to_item[u, i][k] * users[u][k] for u in of_item[i]),
        torch.zeros_like(items[i][k])) for k in range(M)]) for i in range(Q)]
    e_u = [F.normalize(model.ids.table[u], dim=0) for u in range(P)]
    e_i = [F.normalize(model.ids.table[P + i], dim=0) for i in range(Q)]
    id_u, id_i = list(e_u), list(e_i)
    for _ in range(cfg.layers):
        e_u, e_i = (
            [sum((w_to_user[u, i] * e_i[i] for i in of_user[u]), torch.zeros_like(e_u[0])) for u in range(P)],
            [sum((w_to_item[u, i] * e_u[u] for u in of_item[i]), torch.zeros_like(e_i[0])) for i in range(Q)],
        )
        id_u = [a + b for a, b in zip(id_u, e_u)]
        id_i = [a + b for a, b in zip(id_i, e_i)]
    ref_u = torch.stack([torch.cat([id_u[u], content_u[u]]) for u in range(P)])
    ref_i = torch.stack([torch.cat([id_i[i], content_i[i]]) for i in range(Q)])
    pruned = np.mean([float(w <= 0) for w in w_to_user.values()])
    return ref_u, ref_i, pruned


@pytest.mark.parametrize(
    "given",
    [{}, {"routing": 0, "layers": 0}, {"routing": 1, "layers": 3, "weight_mode": "max", "pruning": False}, {"layers": 1, "weight_mode": "mean"}],
)
def test_grcn_matches_the_reference(tiny, given):
    model = float64_model(tiny, "grcn", **{"content_dim": 10, **given})
    ref_u, ref_i, pruned = reference(model, tiny)
    tables = model.final_tables()
    assert tables.users.shape == (tiny.num_users, model.cfg.dim + 3 * model.cfg.content_dim)
    assert torch.allclose(tables.users, ref_u, atol=1e-6) and torch.allclose(tables.items, ref_i, atol=1e-6)
    if model.cfg.pruning:
        assert tables.stats["pruned/item->user"].item() == pytest.approx(pruned)


def test_confidence_pruning_cuts_edges_and_stays_trainable(tiny):
    model = float64_model(tiny, "grcn", content_dim=10)
    tables = model.propagate()
    assert 0 < tables.stats["pruned/item->user"] < 1 and 0 < tables.stats["pruned/user->item"] < 1
    (tables.users.sum() + tables.items.sum()).backward()
    assert model.confidence.grad.abs().sum() > 0  # the surviving edges train the confidence


def test_defaults_are_the_authors():
    _, cfg, _, _ = resolve_options({"dataset": "ml100k", "model": "grcn"})
    assert (cfg.dim, cfg.content_dim, cfg.routing, cfg.layers, cfg.weight_mode, cfg.pruning) == (64, 64, 3, 2, "confid", True)


@pytest.mark.parametrize(
    "given, message",
    [({"routing": -1}, "routing must be >= 0"), ({"layers": -1}, "must be >= 0"), ({"weight_mode": "sum"}, "weight_mode='sum' is not one of")],
)
def test_bad_options_are_refused(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options({"dataset": "synthetic-tiny", "model": "grcn", **given})
