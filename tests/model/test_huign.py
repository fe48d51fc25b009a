"""HUIGN baseline against a dense, loop-by-loop float64 reference of its equations on
synthetic-tiny: the co-interacted item graph, intra-level aggregation, the soft
assignments to the next level's intent nodes, the intent graphs S^T A S, the items'
intent distributions over all levels, and the loss with its entropy and independence
terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import float64_model, neighbours

from ego_dgl.errors import ConfigError
from ego_dgl.train import resolve_options


def co_interacted(ds, links: int) -> dict[int, list[int]]:
    """Each item's `links` items sharing most users with it (ties: lower index first)."""
    _, of_item = neighbours(ds.train, ds.num_users, ds.num_items)
    users = {i: set(us) for i, us in of_item.items()}
    out = {}
    for i in range(ds.num_items):
        shared = [(len(users[i] & users[j]), j) for j in range(ds.num_items) if j != i and users[i] & users[j]]
        out[i] = [j for _, j in sorted(shared, key=lambda t: (-t[0], t[1]))[:links]]
    return out


def softmax(v: torch.Tensor) -> torch.Tensor:
    e = torch.tensor([math.exp(float(a)) for a in v], dtype=v.dtype)
    return e / e.sum()


@torch.no_grad()
def hierarchy(model, ds, aggregate: bool = True):
    """Per modality: the items' distributions per level, and every level's S (lists)."""
    cfg = model.cfg
    x = model.features()  # i_m(0), EgoGCN's layer-0 inputs (tested there)
    graph = co_interacted(ds, cfg.links)
    memberships, assignments = [], []
    for m in range(x.shape[1]):
        conv, assign = model.conv[0][m], model.assign[0][m]
        s = []
        for i in range(ds.num_items):
            if aggregate:
                h = sum((x[j, m] @ conv for j in graph[i]), torch.zeros(cfg.dim, dtype=x.dtype)) / max(1, len(graph[i]))
            else:
                h = x[i, m] @ conv
            s.append(softmax(F.leaky_relu(h) @ assign))
        s = torch.stack(s)
        levels, level_s = [s], [s]
        adj = torch.zeros(s.shape[1], s.shape[1], dtype=x.dtype)
        for i in range(ds.num_items):
            for j in graph[i]:
                adj += torch.outer(s[i], s[j])
        for level in range(1, len(model.conv)):
            protos, conv, assign = model.assign[level - 1][m].T, model.conv[level][m], model.assign[level][m]
            rows = []
            for a in range(protos.shape[0]):
                if aggregate:
                    h = sum(adj[a, b] * (protos[b] @ conv) for b in range(protos.shape[0])) / max(1.0, float(adj[a].sum()))
                else:
                    h = protos[a] @ conv
                rows.append(softmax(F.leaky_relu(h) @ assign))
            s = torch.stack(rows)
            nxt = torch.zeros(s.shape[1], s.shape[1], dtype=x.dtype)
            for a in range(s.shape[0]):
                for b in range(s.shape[0]):
                    nxt += adj[a, b] * torch.outer(s[a], s[b])
            adj = nxt
            prev = levels[-1]
            levels.append(torch.stack([sum(prev[i, a] * s[a] for a in range(s.shape[0])) for i in range(ds.num_items)]))
            level_s.append(s)
        memberships.append(torch.cat(levels, 1))
        assignments.append(level_s)
    return torch.cat(memberships, 1), assignments


def reference_tables(model, ds, aggregate: bool = True):
    items, _ = hierarchy(model, ds, aggregate)
    users = model.preferences.detach()
    if model.cfg.ids:
        return torch.cat([model.user_ids.detach(), users], 1), torch.cat([model.item_ids.detach(), items], 1)
    return users, items


@pytest.mark.parametrize("options", [{}, {"intents": "8,4,2", "links": 3}, {"intents": "5", "ids": False}, {"intents": "6,6,3,1", "links": 1}])
def test_huign_matches_the_reference(tiny, options):
    model = float64_model(tiny, "huign", **options)
    ref_u, ref_i = reference_tables(model, tiny)
    tables = model.final_tables()
    assert tables.users.shape == ref_u.shape and tables.items.shape == ref_i.shape
    assert torch.allclose(tables.users, ref_u, atol=1e-6) and torch.allclose(tables.items, ref_i, atol=1e-6)


def test_input_tables_are_the_intents_without_aggregation(tiny):
    model = float64_model(tiny, "huign", intents="8,4,2")
    ref_u, ref_i = reference_tables(model, tiny, aggregate=False)
    inputs = model.input_tables()
    assert torch.allclose(inputs.users, ref_u, atol=1e-6) and torch.allclose(inputs.items, ref_i, atol=1e-6)
    assert not torch.allclose(inputs.items, model.final_tables().items, atol=1e-3)


def test_loss_is_bpr_plus_reg_times_rows_entropy_and_independence(tiny):
    model = float64_model(tiny, "huign", intents="8,4,2", links=3)
    users, pos, neg, reg = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([4, 5]), 0.01
    loss, parts = model.loss(users, pos, neg, reg)
    with torch.no_grad():
        eu, ei = reference_tables(model, tiny)
        _, assignments = hierarchy(model, tiny)
        diffs = [float(eu[u] @ ei[p] - eu[u] @ ei[n]) for u, p, n in zip(users, pos, neg)]
        bpr = sum(-math.log(1 / (1 + math.exp(-d))) for d in diffs) / len(diffs)
        rows = model.user_ids[users].pow(2).mean() + model.preferences[users].pow(2).mean() + model.item_ids[torch.cat([pos, neg])].pow(2).mean()
        entropy = 0.0
        for level_s in assignments:
            for s in level_s:
                entropy += sum(-sum(float(p) * math.log(float(p) + 1e-15) for p in row) for row in s) / s.shape[0]
        independence = 0.0
        for level in model.assign:
            for protos in level:
                c = protos.shape[1]
                gram = [[float(protos[:, a] @ protos[:, b]) - (a == b) for b in range(c)] for a in range(c)]
                independence += math.sqrt(sum(v * v for row in gram for v in row)) / (c * c)
    assert parts["bpr"].item() == pytest.approx(bpr, abs=1e-9)
    assert parts["entropy"].item() == pytest.approx(reg * entropy, abs=1e-9)
    assert parts["independence"].item() == pytest.approx(reg * independence, abs=1e-9)
    assert loss.item() == pytest.approx(bpr + reg * (rows.item() + entropy + independence), abs=1e-9)


def test_co_interacted_graph_keeps_the_most_shared_items(tiny):
    model = float64_model(tiny, "huign", links=4)
    graph = co_interacted(tiny, 4)
    src, dst = model.items_graph.src.tolist(), model.items_graph.dst.tolist()
    assert sorted(zip(dst, src)) == sorted((i, j) for i, js in graph.items() for j in js)
    assert all(len(js) <= 4 for js in graph.values()) and any(len(js) == 4 for js in graph.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [({"intents": "32,x"}, "positive integers separated by commas"), ({"intents": "4,0"}, "positive integers"), ({"links": 0}, "links must be >= 1")],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve_options({"dataset": "synthetic-tiny", "model": "huign", **options})
