"""EgoGCN's properties: edge-wise messages, eps extremes, missing modalities, word bags,
one modality, backend agreement and gradients, backend resolution and devices, config
errors, and a training step for every mode and variant with every backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ego_dgl.data import Dataset, WordBag
from ego_dgl.errors import ConfigError, DataError, EgoDGLWarning
from ego_dgl.graph import backends as backends_module
from ego_dgl.graph import fused
from ego_dgl.graph.backends import resolve_backend
from ego_dgl.model.egogcn import EgoGCN, ModelConfig
from ego_dgl.model.egogcn.ego_fusion import merge_direction

BACKENDS = ["dgl", "dgl-udf", "torch", "fused"]
# u0 has item 0 only (its affinity is 1, so it is always fused); u1 has five items, so no
# affinity of its can exceed e / (e + 4 / e) < 0.65 (unit vectors: logits in [-1, 1]).
PAIRS = [(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 5), (3, 2), (3, 3), (3, 5)]
P, Q, DIM = 4, 6, 6


def small(features: dict | None = None, masks: dict | None = None) -> Dataset:
    rng = np.random.default_rng(11)
    if features is None:
        features = {m: rng.normal(size=(Q, w)).astype(np.float32) for m, w in (("v", 5), ("a", 3), ("t", 4))}
    train = np.array(PAIRS, dtype=np.int64)
    return Dataset("small", P, Q, train, train[:1], train[:1], features, masks or {})


def build(ds: Dataset, backend: str = "dgl", **kw) -> EgoGCN:
    torch.manual_seed(5)
    return EgoGCN(ds, ModelConfig(**{"dim": DIM, "backend": backend, **kw})).double()


def projected(model: EgoGCN, ds: Dataset, raw: dict[str, np.ndarray]) -> list[list[torch.Tensor]]:
    """normalize(leaky_relu(W x + b)) for every (item, modality), one at a time."""
    rows = []
    for i in range(Q):
        row = []
        for k, m in enumerate(ds.modalities):
            lin = model.item_features.proj[k]
            row.append(F.normalize(F.leaky_relu(lin.weight @ torch.as_tensor(raw[m][i], dtype=torch.float64) + lin.bias), dim=0))
        rows.append(row)
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_wise_the_same_item_sends_different_messages_to_two_users(backend):
    ds = small()
    model = build(ds, backend, eps=0.9)
    to_users, _ = model.relations()
    users0, items0 = model.inputs()
    att = model.first_layer(users0, items0)[0]
    edges = list(zip(model.to_users.dst.tolist(), model.to_users.src.tolist()))
    to_u0, to_u1 = edges.index((0, 0)), edges.index((1, 0))
    assert att.fused[to_u0].tolist() == [1.0] * 3  # item 0 -> user 0: the fused mean
    assert att.fused[to_u1].tolist() == [0.0] * 3  # item 0 -> user 1: its own features
    fused_msg = F.normalize(items0[0].mean(0), dim=0)
    for m in range(3):
        torch.testing.assert_close(att.out[0, m], fused_msg)  # u0's only neighbour, weight 1
        assert not torch.allclose(fused_msg, items0[0, m], atol=1e-3)
    torch.testing.assert_close(att.out[1], merge_direction(to_users, items0, users0).out[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_eps_above_one_makes_hard_equal_to_gm(backend):
    ds = small()
    hard, gm = build(ds, backend, eps=1.01, layers_mm=3), build(ds, backend, fusion="gm", layers_mm=3)
    gm.load_state_dict(hard.state_dict())
    t_hard, t_gm = hard.propagate(), gm.propagate()
    assert all(float(v) == 0.0 for v in t_hard.stats.values())
    torch.testing.assert_close(t_hard.users, t_gm.users, rtol=0, atol=1e-12)
    torch.testing.assert_close(t_hard.items, t_gm.items, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eps_below_zero_fuses_every_edge(backend):
    ds = small()
    model = build(ds, backend, eps=-0.01)
    to_users, to_items = model.relations()
    users0, items0 = model.inputs()
    att_u, att_i = model.first_layer(users0, items0)
    assert all(float(v) == 1.0 for v in model.propagate().stats.values())
    for att, rel, src, dst in ((att_u, to_users, items0, users0), (att_i, to_items, users0, items0)):
        assert bool((att.fused == 1).all())
        everyone_fused = merge_direction(rel, src.mean(1, keepdim=True).expand_as(src), dst)
        torch.testing.assert_close(att.out, everyone_fused.out, rtol=0, atol=1e-12)


def test_missing_modalities_are_filled_from_the_item_and_never_from_its_raw_row():
    rng = np.random.default_rng(2)
    raw = {m: rng.normal(size=(Q, w)).astype(np.float32) for m, w in (("v", 5), ("a", 3), ("t", 4))}
    masks = {"v": np.array([1, 1, 1, 0, 1, 1], bool), "a": np.array([1, 0, 1, 0, 1, 1], bool), "t": np.array([1, 1, 0, 0, 1, 1], bool)}
    features = {m: np.where(masks[m][:, None], x, np.nan).astype(np.float32) for m, x in raw.items()}
    ds = small(features, masks)  # item 1 lacks a, item 2 lacks t, item 3 lacks everything
    model = build(ds)
    items0 = model.inputs()[1]
    p = projected(model, ds, raw)
    avail = [[bool(masks[m][i]) for m in ds.modalities] for i in range(Q)]
    for i in range(Q):
        own = [p[i][k] for k in range(3) if avail[i][k]]
        for k in range(3):
            if avail[i][k]:
                want = p[i][k]
            elif own:
                want = F.normalize(sum(own) / len(own), dim=0)
            else:
                having = [p[j][k] for j in range(Q) if avail[j][k]]
                want = F.normalize(sum(having) / len(having), dim=0)
            torch.testing.assert_close(items0[i, k], want, rtol=0, atol=1e-10)
    loss, _ = model.loss(torch.tensor([0, 1, 3]), torch.tensor([0, 3, 5]), torch.tensor([1, 5, 4]), reg=1e-3)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(q.grad).all() for q in model.parameters())


def test_word_bag_text_is_a_learned_word_table_averaged_per_item():
    rng = np.random.default_rng(4)
    items = np.array([0, 0, 1, 2, 2, 2, 3, 5, 5, 0])
    words = np.array([1, 2, 0, 3, 3, 4, 2, 1, 0, 1])
    bag = WordBag(items, words, num_words=5)  # item 4 has no words: it lacks the modality
    ds = small({"v": rng.normal(size=(Q, 5)).astype(np.float32), "t": bag})
    model = build(ds, word_dim=7)
    table = model.item_features.bags["1"].table
    assert table.shape == (5, 7)
    items0 = model.inputs()[1]
    lin = model.item_features.proj[1]
    for i in range(Q):
        mine = [table[w] for it, w in zip(items, words) if it == i]
        if mine:
            want = F.normalize(F.leaky_relu(lin.weight @ (sum(mine) / len(mine)) + lin.bias), dim=0)
        else:
            want = items0[i, 0]  # filled from the item's only other modality
        torch.testing.assert_close(items0[i, 1], want, rtol=0, atol=1e-10)
    model.loss(torch.tensor([1]), torch.tensor([2]), torch.tensor([5]), reg=0.0)[0].backward()
    assert table.grad[[0, 1, 2, 3]].abs().sum(1).gt(0).all()  # every used word learns


@pytest.mark.filterwarnings("ignore::ego_dgl.errors.EgoDGLWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_modality_makes_fusion_the_identity(backend):
    ds = small({"v": np.random.default_rng(0).normal(size=(Q, 5)).astype(np.float32)})
    tables, state = [], None
    for kw in (dict(mode="hard", eps=0.3), dict(mode="soft"), dict(mode="soft", gate="vector"), dict(fusion="gm")):
        model = build(ds, backend, layers_mm=2, **kw)
        if state is None:
            state = model.state_dict()
        else:
            model.load_state_dict(state)
        tables.append(model.propagate())
    for t in tables[1:]:
        torch.testing.assert_close(t.users, tables[0].users, rtol=0, atol=1e-12)
        torch.testing.assert_close(t.items, tables[0].items, rtol=0, atol=1e-12)


def test_one_modality_is_said_once_for_ego_fusion_only():
    ds = small({"v": np.random.default_rng(0).normal(size=(Q, 5)).astype(np.float32)})
    with pytest.warns(EgoDGLWarning, match="one modality, so EGO fusion is the identity"):
        EgoGCN(ds, ModelConfig(dim=DIM, mode="soft"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EgoDGLWarning)
        EgoGCN(ds, ModelConfig(dim=DIM, fusion="gm"))
        EgoGCN(small(), ModelConfig(dim=DIM))


def random_dataset(seed: int = 0, users: int = 150, items: int = 200, edges: int = 3000) -> Dataset:
    rng = np.random.default_rng(seed)
    train = np.stack([rng.integers(0, users, edges), rng.integers(0, items, edges)], 1)
    feats = {"v": rng.normal(size=(items, 9)).astype(np.float32), "a": rng.normal(size=(items, 4)).astype(np.float32),
        "t": rng.normal(size=(items, 6)).astype(np.float32)}
    return Dataset("random", users, items, train, train[:3], train[:3], feats)


@pytest.mark.parametrize("layers_mm", [1, 2, 3])
@pytest.mark.parametrize(
    "kw",
    [
        dict(mode="hard", eps=0.1), dict(mode="soft", gate="scalar"), dict(mode="soft", gate="vector"), dict(fusion="gm"),
        dict(fusion="na"), dict(mode="hard", eps=0.1, id_weights="soft-pruning"),
    ],
    ids=["hard", "soft-scalar", "soft-vector", "gm", "na", "soft-pruning"],
)
def test_backends_agree_forward_and_gradients_on_a_random_graph(kw, layers_mm):
    ds = random_dataset()
    batch = [torch.as_tensor(c) for c in (ds.train[:64, 0], ds.train[:64, 1], ds.train[64:128, 1])]
    results = []
    for backend in BACKENDS:
        model = build(ds, backend, dim=16, layers_mm=layers_mm, layers_id=2, **kw)
        tables = model.propagate()
        loss, logs = model.loss(*batch, reg=1e-3)
        loss.backward()
        grads = {n: q.grad for n, q in model.named_parameters()}
        results.append((tables, loss, grads, logs))
    t0, l0, g0, logs0 = results[0]
    if kw.get("mode") == "hard":
        fused = [float(v) for k, v in logs0.items() if k.startswith("fused/")]
        assert 0 < sum(fused) < len(fused), "eps must fuse some edges and not others"
    for backend, (t1, l1, g1, logs1) in zip(BACKENDS[1:], results[1:]):
        torch.testing.assert_close(t0.users, t1.users, rtol=0, atol=1e-10, msg=backend)
        torch.testing.assert_close(t0.items, t1.items, rtol=0, atol=1e-10, msg=backend)
        torch.testing.assert_close(l0, l1, rtol=0, atol=1e-12, msg=backend)
        assert logs1.keys() == logs0.keys()
        for key in logs0:
            torch.testing.assert_close(logs0[key], logs1[key], rtol=0, atol=1e-12, msg=f"{backend} {key}")
        for name in g0:
            torch.testing.assert_close(g0[name], g1[name], rtol=0, atol=1e-10, msg=f"{backend} {name}")


class FirstLayer(torch.nn.Module):
    """A model's layer 0 as a module call, so functional_call can swap its parameters."""

    def __init__(self, model: EgoGCN):
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, items: torch.Tensor):
        return self.model.first_layer(users, items)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", [dict(mode="hard", eps=0.4), dict(mode="soft"), dict(mode="soft", gate="vector")], ids=["hard", "soft-scalar",
    "soft-vector"])
def test_gradcheck_through_the_fusion_layer(backend, kw):
    model = build(small(), backend, dim=3, **kw)
    users0, items0 = (x.detach().requires_grad_() for x in model.inputs())
    att = model.first_layer(users0, items0)
    if att[0].affinity is not None:  # the threshold must not flip under gradcheck's steps
        gaps = [(a.affinity - kw["eps"]).abs().min() for a in att]
        assert min(gaps) > 1e-3
        assert 0 < float(att[0].fused.sum()) < att[0].fused.numel()
    names = [f"model.layer0.{n}" for n, _ in model.layer0.named_parameters()]
    params = [q.detach().clone().requires_grad_() for q in model.layer0.parameters()]
    first = FirstLayer(model)

    def layer0(users, items, *values):
        out = torch.func.functional_call(first, dict(zip(names, values)), (users, items))
        return out[0].out, out[1].out

    assert torch.autograd.gradcheck(layer0, (users0, items0, *params), eps=1e-6, atol=1e-6)


def test_resolve_backend():
    assert resolve_backend("torch", torch.device("cpu")) == ("torch", None)
    assert resolve_backend("auto", "cpu") == ("dgl", None)
    assert resolve_backend("dgl", "cpu") == ("dgl", None)
    assert resolve_backend("dgl-udf", "cpu") == ("dgl-udf", None)
    backend, note = resolve_backend("auto", "meta")  # a device the installed DGL cannot use
    assert backend == "torch" and "meta" in note and "torch" in note and note.count(". ") == 0
    for requested in ("dgl", "dgl-udf"):
        with pytest.raises(ConfigError, match=f"--backend {requested} cannot run on meta.*--backend torch"):
            resolve_backend(requested, "meta")
    with pytest.raises(ConfigError, match="not one of"):
        resolve_backend("jax", "cpu")


def test_auto_picks_fused_for_small_tables_only(monkeypatch):
    if not fused.available(torch.device("cpu")):
        pytest.skip("the fused kernels cannot be built here")
    assert resolve_backend("auto", "cpu", 1 << 20) == ("fused", None)
    assert resolve_backend("auto", "cpu", backends_module.FUSED_AUTO_BYTES + 1) == ("dgl", None)
    assert resolve_backend("auto", "meta", 1 << 20)[0] == "torch"  # the kernels are CPU-only
    model = EgoGCN(small(), ModelConfig(dim=DIM, backend="auto"))
    assert model.table_bytes() == max(model.num_users, model.num_items) * len(model.modalities) * DIM * 4
    assert model.double().table_bytes() == 2 * model.float().table_bytes()
    monkeypatch.setattr(backends_module, "FUSED_AUTO_BYTES", model.table_bytes() - 1)
    assert model.backend == "dgl"
    monkeypatch.setattr(fused, "_build", lambda: "OSError: no compiler")  # as without a compiler
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto falls back to dgl without a warning
        assert resolve_backend("auto", "cpu", 1 << 20) == ("dgl", None)


def test_auto_falls_back_once_and_reports_a_note(monkeypatch):
    calls = []

    def probe(device: str) -> bool:
        calls.append(device)
        return False

    monkeypatch.setattr(backends_module, "_dgl_runs_on", probe)
    assert resolve_backend("auto", "cpu")[0] == "torch"
    assert calls == ["cpu"]


def test_to_device_moves_graphs_and_picks_the_backend_there():
    model = EgoGCN(small(), ModelConfig(dim=DIM, backend="auto", fusion="na", id_weights="soft-pruning"))
    assert (model.backend, model.backend_note) == ("fused" if fused.available(torch.device("cpu")) else "dgl", None)
    model.to("meta")
    assert model.backend == "torch" and "meta" in model.backend_note
    assert all(b.device.type == "meta" for b in model.buffers())


def test_state_dict_holds_parameters_only_and_final_tables_carry_no_graph():
    model = build(small(), "dgl", mode="soft")
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
    assert not model.final_tables().users.requires_grad


def test_dataset_and_config_errors():
    with pytest.raises(ConfigError, match="--branches id"):
        EgoGCN(small({}), ModelConfig())
    assert EgoGCN(small({}), ModelConfig(branches="id")).propagate().users.shape == (P, 64)
    with pytest.raises(DataError, match="covers no item"):
        EgoGCN(small(masks={"a": np.zeros(Q, bool)}), ModelConfig())
    with pytest.raises(ConfigError, match="--mode"):
        EgoGCN(small(), ModelConfig(mode="medium"))


VARIANTS = [
    dict(mode="hard"),
    dict(mode="soft", gate="scalar"),
    dict(mode="soft", gate="vector"),
    dict(fusion="gm"),
    dict(fusion="na"),
    dict(branches="id"),
    dict(branches="mm"),
    dict(id_weights="soft-pruning"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", VARIANTS, ids=["hard", "soft-scalar", "soft-vector", "gm", "na", "id", "mm", "soft-pruning"])
def test_training_steps_on_synthetic_tiny(tiny, backend, kw):
    torch.manual_seed(0)
    model = EgoGCN(tiny, ModelConfig(backend=backend, eps=0.1, layers_mm=3, layers_id=2, **kw))
    assert model.backend == backend
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(tiny.train), generator=gen)[:128]
    users, pos = (torch.as_tensor(tiny.train[rows.numpy(), c]) for c in (0, 1))
    neg = torch.randint(0, tiny.num_items, (128,), generator=gen)
    before = [q.detach().clone() for q in model.parameters()]
    losses = []
    for _ in range(3):
        optim.zero_grad()
        loss, logs = model.loss(users, pos, neg, reg=1e-4)
        loss.backward()
        if not losses:
            for name, q in model.named_parameters():
                assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0, name
        optim.step()
        losses.append(float(loss.detach()))
    assert {"bpr", "reg"} <= set(logs)
    assert losses[-1] < losses[0]
    assert all(not torch.equal(a, q) for a, q in zip(before, model.parameters()))


def test_freed_large_blocks_are_reused_without_page_faults():
    """After keep_freed_memory(), a freed 64 MB tensor's pages serve the next one: zeroing
    it again costs far fewer than the 16k minor page faults of fresh pages."""
    import resource
    import sys

    from ego_dgl.graph.allocator import keep_freed_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only")
    assert keep_freed_memory()
    faults = []
    for _ in range(4):  # 64 MB allocated, touched and freed; the first may land anywhere
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.zeros(1 << 24)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(faults[1:]) < 2000, faults
