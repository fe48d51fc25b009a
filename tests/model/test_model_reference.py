"""EgoGCN against a dense reference written here loop by loop from docs/egogcn.md's equations
(Eq. 1-14), on a hand-built graph of 5 users, 6 items and 3 modalities, in float64, for
every graph backend. The reference shares no code with the model: it reads only the
model's parameters and the raw dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import neighbours

from ego_dgl.data import Dataset
from ego_dgl.model.egogcn import EgoGCN, ModelConfig

TOL = dict(rtol=0, atol=1e-6)
BACKENDS = ["dgl", "dgl-udf", "torch", "fused"]
PAIRS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 3), (2, 1), (2, 2), (2, 4), (2, 5), (3, 3), (3, 5), (4, 0), (4, 4), (4, 5), (4, 2)]
P, Q, DIM = 5, 6, 8


@pytest.fixture(scope="module")
def hand() -> Dataset:
    rng = np.random.default_rng(7)
    feats = {"v": rng.normal(size=(Q, 7)), "a": rng.normal(size=(Q, 4)), "t": rng.normal(size=(Q, 5))}
    train = np.array(PAIRS, dtype=np.int64)
    return Dataset("hand", P, Q, train, train[:2], train[:2], {m: f.astype(np.float32) for m, f in feats.items()})


def build(ds: Dataset, backend: str, **kw) -> EgoGCN:
    torch.manual_seed(3)
    return EgoGCN(ds, ModelConfig(dim=DIM, backend=backend, **kw)).double()


# ---------------------------------------------------------------- the dense reference
# Node features are lists (one entry per node) of lists (one per modality) of 1-d vectors.


def unit(v: torch.Tensor) -> torch.Tensor:
    n = torch.sqrt(sum(a * a for a in v))
    return v / torch.clamp(n, min=1e-12)


def softmax(values: list[torch.Tensor]) -> list[torch.Tensor]:
    top = max(float(v.detach()) for v in values)  # a constant shift, also under autograd
    e = [torch.exp(v - top) for v in values]
    total = sum(e)
    return [x / total for x in e]



def ref_item_features(model: EgoGCN, ds: Dataset) -> list[list[torch.Tensor]]:
    """i_m(0) = normalize(leaky_relu(W_m x + b_m)), one item and modality at a time."""
    out = []
    for i in range(Q):
        row = []
        for k, m in enumerate(ds.modalities):
            lin = model.item_features.proj[k]
            h = lin.weight @ torch.tensor(ds.features[m][i], dtype=torch.float64) + lin.bias
            row.append(unit(torch.stack([a if a > 0 else 0.01 * a for a in h])))
        out.append(row)
    return out


def ref_user_prefs(model: EgoGCN) -> list[list[torch.Tensor]]:
    return [[unit(t[u]) for t in model.preferences.tables] for u in range(P)]


def ref_affinity(src, dst, nbrs: dict[int, list[int]], M: int) -> dict[tuple[int, int, int], torch.Tensor]:
    """Eq. 1: s[(j, v, m)] = softmax over j in N(v) of <src_j,m, dst_v,m>."""
    s = {}
    for v, js in nbrs.items():
        for m in range(M):
            for j, w in zip(js, softmax([torch.dot(src[j][m], dst[v][m]) for j in js])):
                s[(j, v, m)] = w
    return s


def ref_aggregate(messages, dst, nbrs, M):
    """Eq. 5-6: re-attention over each destination's messages and normalised weighted sum."""
    out, weights = [], {}
    for v in range(len(dst)):
        js = nbrs[v]
        row = []
        for m in range(M):
            if not js:
                row.append(torch.zeros(DIM, dtype=torch.float64))
                continue
            ws = softmax([torch.dot(messages[(j, v, m)], dst[v][m]) for j in js])
            weights.update({(j, v, m): w for j, w in zip(js, ws)})
            row.append(unit(sum(w * messages[(j, v, m)] for j, w in zip(js, ws))))
        out.append(row)
    return out, weights


def ref_hard_messages(src, s, eps, M, nbrs, threshold="absolute"):
    """Eq. 2: the fused mean over modalities where the affinity passes eps, else the own
    feature; `relative` (the extension): where the affinity times |N(v)| passes eps."""
    msgs, fused = {}, {}
    for (j, v, m), w in s.items():
        scale = len(nbrs[v]) if threshold == "relative" else 1
        fused[(j, v, m)] = float(w.detach()) * scale > eps
        msgs[(j, v, m)] = sum(src[j]) / M if fused[(j, v, m)] else src[j][m]
    return msgs, fused


def ref_gate(lin: torch.nn.Linear, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Eq. 3: sigmoid(w . x_h + b), scalar; or sigmoid(W x_h + b) element-wise."""
    if kind == "scalar":
        return torch.sigmoid(torch.dot(lin.weight[0], x) + lin.bias[0])
    return torch.sigmoid(lin.weight @ x + lin.bias)


def ref_soft_node_messages(src, gates, kind, M):
    """Eq. 4: (x_m + sum over h != m of g^{h->m}(x_h) * x_h) / |M|, per source node."""
    return [[(x[m] + sum(ref_gate(gates.linear(h, m), x[h], kind) * x[h] for h in range(M) if h != m)) / M for m in range(M)] for x in src]


def ref_route(src, dst, nbrs, M):
    """Eq. 7-8: normalize(x + sum softmax_j(<x_j, x>) x_j)."""
    out = []
    for v in range(len(dst)):
        js = nbrs[v]
        row = []
        for m in range(M):
            acc = dst[v][m].clone()
            if js:
                ws = softmax([torch.dot(src[j][m], dst[v][m]) for j in js])
                acc = acc + sum(w * src[j][m] for j, w in zip(js, ws))
            row.append(unit(acc))
        out.append(row)
    return out


def ref_lightgcn(table, w_to_user, w_to_item, layers):
    """Eq. 10-11 on the normalised ID table; output = sum of layers 0..L."""
    e_u = [unit(table[u]) for u in range(P)]
    e_i = [unit(table[P + i]) for i in range(Q)]
    out_u, out_i = list(e_u), list(e_i)
    for _ in range(layers):
        nu = [sum((w_to_user[(i, u)] * e_i[i] for (i, uu) in w_to_user if uu == u), torch.zeros(DIM, dtype=torch.float64)) for u in range(P)]
        ni = [sum((w_to_item[(u, i)] * e_u[u] for (u, ii) in w_to_item if ii == i), torch.zeros(DIM, dtype=torch.float64)) for i in range(Q)]
        e_u, e_i = nu, ni
        out_u = [a + b for a, b in zip(out_u, e_u)]
        out_i = [a + b for a, b in zip(out_i, e_i)]
    return out_u, out_i


def ref_layer0(model, cfg, users0, items0, M):
    """Layer 0 in both directions: returns the outputs and the per-direction records."""
    of_user, of_item = neighbours(PAIRS, P, Q)
    records = {}
    outs = []
    for name, src, dst, nbrs, side in (("to_users", items0, users0, of_user, "to_users"), ("to_items", users0, items0, of_item, "to_items")):
        s = ref_affinity(src, dst, nbrs, M)
        fused = None
        if cfg.fusion == "gm":
            msgs = {(j, v, m): src[j][m] for (j, v, m) in s}
        elif cfg.mode == "hard":
            msgs, fused = ref_hard_messages(src, s, cfg.eps, M, nbrs, cfg.threshold)
        else:
            node = ref_soft_node_messages(src, model.layer0.gates[side], cfg.gate, M)
            msgs = {(j, v, m): node[j][m] for (j, v, m) in s}
        out, weights = ref_aggregate(msgs, dst, nbrs, M)
        records[name] = dict(affinity=s, fused=fused, weights=weights, messages=msgs)
        outs.append(out)
    return outs[0], outs[1], records


def ref_na(users0, items0, layers, M):
    """NA: nodes (user|item, m); neighbours: same-modality interactions and the other
    modalities of the same user/item; GM's layer 0, then routing, over all neighbours."""
    x = {("u", u, m): users0[u][m] for u in range(P) for m in range(M)}
    x.update({("i", i, m): items0[i][m] for i in range(Q) for m in range(M)})
    nbrs = {key: [] for key in x}
    for u, i in PAIRS:
        for m in range(M):
            nbrs[("u", u, m)].append(("i", i, m))
            nbrs[("i", i, m)].append(("u", u, m))
    for kind, n, m in list(x):
        nbrs[(kind, n, m)] += [(kind, n, h) for h in range(M) if h != m]
    for layer in range(layers):
        new = {}
        for key, js in nbrs.items():
            ws = softmax([torch.dot(x[j], x[key]) for j in js])
            agg = sum(w * x[j] for j, w in zip(js, ws))
            new[key] = unit(agg if layer == 0 else x[key] + agg)
        x = new
    return [[x[("u", u, m)] for m in range(M)] for u in range(P)], [[x[("i", i, m)] for m in range(M)] for i in range(Q)]


def ref_tables(model: EgoGCN, ds: Dataset, cfg: ModelConfig):
    """Eq. 12-13's concatenated [id, modality_1, ..., modality_M] tables."""
    M = len(ds.modalities)
    user_rows = [[] for _ in range(P)]
    item_rows = [[] for _ in range(Q)]
    of_user, of_item = neighbours(PAIRS, P, Q)
    records = None
    if cfg.branches != "id":
        users0, items0 = ref_user_prefs(model), ref_item_features(model, ds)
        if cfg.fusion == "na":
            users, items = ref_na(users0, items0, cfg.layers_mm, M)
        else:
            users, items, records = ref_layer0(model, cfg, users0, items0, M)
            for _ in range(cfg.layers_mm - 1):
                users, items = ref_route(items, users, of_user, M), ref_route(users, items, of_item, M)
        for u in range(P):
            user_rows[u] += users[u]
        for i in range(Q):
            item_rows[i] += items[i]
    if cfg.branches != "mm":
        if cfg.id_weights == "soft-pruning":
            s_u = ref_affinity(items0, users0, of_user, M)
            s_i = ref_affinity(users0, items0, of_item, M)
            w_u = {(i, u): sum(s_u[(i, u, m)] for m in range(M)) / M for u, i in PAIRS}
            w_i = {(u, i): sum(s_i[(u, i, m)] for m in range(M)) / M for u, i in PAIRS}
        else:
            w_u = {(i, u): 1 / math.sqrt(len(of_user[u]) * len(of_item[i])) for u, i in PAIRS}
            w_i = {(u, i): w_u[(i, u)] for u, i in PAIRS}
        e_u, e_i = ref_lightgcn(model.ids.table, w_u, w_i, cfg.layers_id)
        for u in range(P):
            user_rows[u].insert(0, e_u[u])
        for i in range(Q):
            item_rows[i].insert(0, e_i[i])
    users = torch.stack([torch.cat(r) for r in user_rows])
    items = torch.stack([torch.cat(r) for r in item_rows])
    return users, items, records


def ref_loss(model: EgoGCN, users_t, items_t, batch, reg: float, cfg: ModelConfig) -> torch.Tensor:
    """Eq. 14: mean -log sigmoid(y_ui - y_uj) + lambda * (mean over the batch's (user, item)
    rows, positives and negatives, of e_u^2 + e_i^2, plus per modality mean u_m(0)[u]^2)."""
    terms = []
    for u, i, j in batch:
        y_ui = torch.dot(users_t[u], items_t[i])
        y_uj = torch.dot(users_t[u], items_t[j])
        terms.append(-torch.log(torch.sigmoid(y_ui - y_uj)))
    loss = sum(terms) / len(batch)
    penalty = 0.0
    if cfg.branches != "mm":
        rows = [(u, i) for u, i, _ in batch] + [(u, j) for u, _, j in batch]
        t = model.ids.table
        penalty += sum(t[u, d] ** 2 + t[P + i, d] ** 2 for u, i in rows for d in range(DIM)) / (len(rows) * DIM)
    if cfg.branches != "id":
        for table in model.preferences.tables:
            penalty += sum(table[u, d] ** 2 for u, _, _ in batch for d in range(DIM)) / (len(batch) * DIM)
    return loss + reg * penalty


# ---------------------------------------------------------------- the comparisons


def edge_list(model: EgoGCN) -> list[tuple[int, int]]:
    """(user, item) of the model's edge k."""
    return list(zip(model.to_items.src.tolist(), model.to_items.dst.tolist()))


def per_edge(values: dict, edges, key, M) -> torch.Tensor:
    """The reference's per-(edge, modality) values in the model's edge order, [E, M]."""
    return torch.tensor([[float(values[key(u, i, m)]) for m in range(M)] for u, i in edges], dtype=torch.float64)


def as_tensor(rows) -> torch.Tensor:
    return torch.stack([torch.stack(r) for r in rows])


@pytest.fixture(autouse=True)
def no_grad_reference():
    """The reference reads parameters as plain numbers; comparisons need no autograd."""
    with torch.no_grad():
        yield


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer0_inputs_match_projection_and_preferences(hand, backend):
    model = build(hand, backend)
    users0, items0 = model.inputs()
    torch.testing.assert_close(items0, as_tensor(ref_item_features(model, hand)), **TOL)
    torch.testing.assert_close(users0, as_tensor(ref_user_prefs(model)), **TOL)


LAYER0 = [
    dict(mode="hard", eps=0.4),
    dict(mode="hard", eps=1.3, threshold="relative"),
    dict(mode="soft", gate="scalar"),
    dict(mode="soft", gate="vector"),
    dict(fusion="gm"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", LAYER0, ids=["hard", "hard-relative", "soft-scalar", "soft-vector", "gm"])
def test_layer0_affinity_messages_reattention_output(hand, backend, kw):
    cfg = ModelConfig(dim=DIM, **kw)
    model = build(hand, backend, **kw)
    M = len(hand.modalities)
    ref_users, ref_items, records = ref_layer0(model, cfg, ref_user_prefs(model), ref_item_features(model, hand), M)
    users0, items0 = model.inputs()
    att_u, att_i = model.first_layer(users0, items0)
    torch.testing.assert_close(att_u.out, as_tensor(ref_users), **TOL)
    torch.testing.assert_close(att_i.out, as_tensor(ref_items), **TOL)
    edges = edge_list(model)
    for att, name, key in ((att_u, "to_users", lambda u, i, m: (i, u, m)), (att_i, "to_items", lambda u, i, m: (u, i, m))):
        rec = records[name]
        torch.testing.assert_close(att.weights, per_edge(rec["weights"], edges, key, M), **TOL)
        if att.affinity is not None:
            torch.testing.assert_close(att.affinity, per_edge(rec["affinity"], edges, key, M), **TOL)
        if kw.get("mode") == "hard" and "fusion" not in kw:
            want_f = per_edge(rec["fused"], edges, key, M)
            assert torch.equal(att.fused, want_f)
            assert 0 < want_f.sum() < want_f.numel(), "eps must fuse some edges and not others"
        if kw.get("mode") == "soft":
            side = "to_users" if name == "to_users" else "to_items"
            src = items0 if name == "to_users" else users0
            node = model.layer0.gates[side](src)
            for (j, _v, m), msg in rec["messages"].items():
                torch.testing.assert_close(node[j, m], msg, **TOL)


PROPAGATE = [
    dict(mode="hard", eps=0.4, layers_mm=3, layers_id=2),
    dict(mode="hard", eps=1.3, threshold="relative", layers_mm=2, layers_id=2),
    dict(mode="soft", gate="scalar", layers_mm=2, layers_id=1),
    dict(mode="soft", gate="vector", layers_mm=2, layers_id=3),
    dict(fusion="gm", layers_mm=3, layers_id=2),
    dict(fusion="na", layers_mm=3, layers_id=1),
    dict(mode="hard", eps=0.4, id_weights="soft-pruning", layers_mm=2, layers_id=2),
    dict(mode="soft", id_weights="soft-pruning", layers_mm=1, layers_id=2),
    dict(fusion="na", id_weights="soft-pruning", layers_mm=2, layers_id=2),
    dict(branches="id", layers_id=3),
    dict(branches="mm", layers_mm=4),
]
PROPAGATE_IDS = ["hard", "hard-relative", "soft-scalar", "soft-vector", "gm", "na", "hard-soft-pruning", "soft-soft-pruning", "na-soft-pruning",
    "id-only", "mm-only"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", PROPAGATE, ids=PROPAGATE_IDS)
def test_tables_scores_and_loss(hand, backend, kw):
    cfg = ModelConfig(dim=DIM, **kw)
    model = build(hand, backend, **kw)
    want_u, want_i, _ = ref_tables(model, hand, cfg)
    tables = model.propagate()
    torch.testing.assert_close(tables.users, want_u, **TOL)
    torch.testing.assert_close(tables.items, want_i, **TOL)
    batch = [(0, 1, 3), (2, 4, 0), (4, 5, 1), (1, 3, 2)]
    users, pos, neg = (torch.tensor(c) for c in zip(*batch))
    want_scores = torch.stack([torch.dot(want_u[u], want_i[i]) for u, i, _ in batch])
    torch.testing.assert_close(model.score(tables, users, pos), want_scores, **TOL)
    loss, logs = model.loss(users, pos, neg, reg=0.05)
    torch.testing.assert_close(loss, ref_loss(model, want_u, want_i, batch, 0.05, cfg), **TOL)
    torch.testing.assert_close(logs["bpr"] + logs["reg"], loss.detach(), **TOL)
    final = model.final_tables()
    torch.testing.assert_close(final.users, want_u, **TOL)
    assert final.users.shape == (P, DIM * ((cfg.branches != "mm") + len(hand.modalities) * (cfg.branches != "id")))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold, eps", [("absolute", 0.4), ("relative", 1.3)])
def test_fused_stats_are_the_fraction_of_edges_passing_eps(hand, backend, threshold, eps):
    cfg = ModelConfig(dim=DIM, eps=eps, threshold=threshold)
    model = build(hand, backend, eps=eps, threshold=threshold)
    M = len(hand.modalities)
    _, _, records = ref_layer0(model, cfg, ref_user_prefs(model), ref_item_features(model, hand), M)
    stats = model.propagate().stats
    assert set(stats) == {f"fused/{m}/{d}" for m in hand.modalities for d in ("item->user", "user->item")}
    for name, direction in (("to_users", "item->user"), ("to_items", "user->item")):
        fused = records[name]["fused"]
        for k, m in enumerate(hand.modalities):
            share = sum(f for (j, v, mm), f in fused.items() if mm == k) / len(PAIRS)
            assert float(stats[f"fused/{m}/{direction}"]) == pytest.approx(share)


FUSED_SHARES = [
    ("absolute", 1.01, "none"), ("absolute", 0.4, "some"), ("absolute", -0.01, "all"),
    ("relative", 5.01, "none"), ("relative", 1.3, "some"), ("relative", -0.01, "all"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold, eps, share", FUSED_SHARES, ids=[f"{t}-{s}-fused" for t, _, s in FUSED_SHARES])
def test_hard_layer0_gradients_whether_no_some_or_every_edge_fuses(hand, backend, threshold, eps, share):
    """Hard layer 0 treats fused pairs apart from the rest (and skips them when none
    passed eps): its outputs and parameter gradients match the reference's in all cases,
    with the paper's absolute threshold and the relative one (the extension)."""
    cfg = ModelConfig(dim=DIM, eps=eps, threshold=threshold)
    model = build(hand, backend, eps=eps, threshold=threshold)
    M = len(hand.modalities)
    params = list(model.preferences.tables) + [q for lin in model.item_features.proj for q in lin.parameters()]
    probe = torch.Generator().manual_seed(1)
    r_u, r_i = torch.randn(P, M, DIM, generator=probe, dtype=torch.float64), torch.randn(Q, M, DIM, generator=probe, dtype=torch.float64)
    with torch.enable_grad():
        ref_u, ref_i, records = ref_layer0(model, cfg, ref_user_prefs(model), ref_item_features(model, hand), M)
        ref_u, ref_i = as_tensor(ref_u), as_tensor(ref_i)
        want = torch.autograd.grad((ref_u * r_u).sum() + (ref_i * r_i).sum(), params)
        att_u, att_i = model.first_layer(*model.inputs())
        got = torch.autograd.grad((att_u.out * r_u).sum() + (att_i.out * r_i).sum(), params)
    fused = [f for rec in records.values() for f in rec["fused"].values()]
    assert {"none": not any(fused), "some": 0 < sum(fused) < len(fused), "all": all(fused)}[share]
    torch.testing.assert_close(att_u.out, ref_u, **TOL)
    torch.testing.assert_close(att_i.out, ref_i, **TOL)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
