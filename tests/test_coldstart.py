"""Issue 23: cold-item and train-fraction variants, cold items kept out of every training
structure, the models' cold-start declarations, warm/cold metrics against a loop-by-loop
reference, and accuracy by degree recombining to the overall metric."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import run

from ego_dgl.data import load_dataset
from ego_dgl.data.variants import (
    Variant,
    apply_variant,
    cold_split,
    parse_variant,
    thin_train,
    variant_name,
)
from ego_dgl.errors import DataError
from ego_dgl.evaluate import evaluate, evaluate_groups
from ego_dgl.graph.heterograph import CLICKS, lightgcn_weights, structure_graph
from ego_dgl.model.baselines.huign import co_interaction_edges
from ego_dgl.model.layers.cold import COLD_START
from ego_dgl.model.registry import (
    MODELS,
    PRESETS,
    build_model,
    config_type,
    resolve_model,
)
from ego_dgl.study.degree import by_item_degree, by_user_degree, rank_users
from ego_dgl.train.sampler import NegativeSampler


def pair_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in pairs}


@pytest.fixture
def cold(tiny):
    return apply_variant(tiny, Variant(cold_items=0.2, seed=3))


# --- the variants ---------------------------------------------------------------------------


def test_cold_items_have_every_interaction_held_out(tiny, cold):
    assert len(cold.cold_items) == round(0.2 * len(np.unique(np.concatenate([tiny.train, tiny.valid, tiny.test])[:, 1])))
    assert not np.isin(cold.train[:, 1], cold.cold_items).any()
    before = pair_set(np.concatenate([tiny.train, tiny.valid, tiny.test]))
    assert before == pair_set(np.concatenate([cold.train, cold.valid, cold.test]))  # nothing lost, nothing added
    held = np.concatenate([cold.valid, cold.test])
    assert set(np.unique(held[np.isin(held[:, 1], cold.cold_items)][:, 1])) == set(cold.cold_items)
    # warm pairs keep their split; cold pairs are shared by valid and test (8:1:1 -> half each)
    assert pair_set(cold.train) == pair_set(tiny.train[~np.isin(tiny.train[:, 1], cold.cold_items)])
    moved = [np.isin(cold.split(s)[:, 1], cold.cold_items).sum() for s in ("valid", "test")]
    assert min(moved) > 0.3 * sum(moved)
    again = apply_variant(tiny, Variant(cold_items=0.2, seed=3))
    assert np.array_equal(again.cold_items, cold.cold_items) and np.array_equal(again.valid, cold.valid)
    assert cold.fingerprint() != tiny.fingerprint()


def test_cold_share_that_strands_a_user_is_refused(tiny):
    with pytest.raises(DataError, match="users without a training interaction .*; lower the share"):
        cold_split(tiny, 0.95, 0)


def test_train_fraction_keeps_a_share_of_each_user_and_leaves_held_out_alone(tiny):
    thin = thin_train(tiny, 0.25, 1)
    n_before, n_after = np.bincount(tiny.train[:, 0]), np.bincount(thin.train[:, 0], minlength=tiny.num_users)
    assert np.array_equal(n_after, np.maximum(1, np.floor(n_before * 0.25 + 0.5)))
    assert pair_set(thin.train) <= pair_set(tiny.train)
    assert np.array_equal(thin.valid, tiny.valid) and np.array_equal(thin.test, tiny.test)
    assert not np.array_equal(thin_train(tiny, 0.25, 2).train, thin.train)  # seeded


def test_variant_names_round_trip_and_bad_ones_are_refused():
    v = Variant(0.1, 0.5, 2)
    assert variant_name("ml100k", v) == "ml100k-cold0.1-train0.5-seed2"
    assert parse_variant("ml100k-cold0.1-train0.5-seed2", ["ml100k"]) == ("ml100k", v)
    assert parse_variant("ml100k-train0.25", ["ml100k"]) == ("ml100k", Variant(0, 0.25, 0))
    assert parse_variant("ml100k", ["ml100k"]) is None and parse_variant("tiktok-cold0.1", ["ml100k"]) is None
    with pytest.raises(DataError, match="--train-fraction 0"):
        parse_variant("ml100k-train0", ["ml100k"])
    with pytest.raises(DataError, match="write the variant as 'ml100k-cold0.1'"):
        parse_variant("ml100k-cold0.10", ["ml100k"])


@pytest.mark.parametrize("variant", [Variant(0, 1e-5, 0), Variant(5e-5, 0.5, 3)])
def test_a_share_written_with_an_exponent_names_a_readable_variant(variant):
    """data prepare ml100k --train-fraction 0.00001 named the variant ml100k-train1e-05,
    which no reader took ("unknown dataset"; data info ml100k-train0.00001 said to write
    it as that unreadable name)."""
    name = variant_name("ml100k", variant)
    assert "e-05" in name and parse_variant(name, ["ml100k"]) == ("ml100k", variant)


def test_data_build_records_the_variant_and_the_folder_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    pairs = {(u, i) for u in range(30) for i in rng.choice(40, 8, replace=False)}
    (tmp_path / "inter.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{i}\n" for u, i in sorted(pairs)))
    items = sorted({i for _, i in pairs})
    np.save(tmp_path / "v.npy", rng.random((len(items), 4)).astype(np.float32))
    (tmp_path / "v.ids.txt").write_text("".join(f"i{i}\n" for i in items))
    out = tmp_path / "ds"
    result = run("data", "build", out, "--interactions", tmp_path / "inter.csv", "--embedding", f"v={tmp_path / 'v.npy'}",
                 "--cold-items", "0.1", "--train-fraction", "0.5", "--seed", "4")
    assert result.exit_code == 0, result.output
    ds = load_dataset(str(out))
    card = json.loads((out / "card.json").read_text())
    assert card["variant"] == {"cold_items": 0.1, "train_fraction": 0.5, "seed": 4, "cold_item_count": round(0.1 * len(items)),
                               "train_interactions": len(ds.train)}
    assert len(ds.cold_items) == round(0.1 * len(items)) and not np.isin(ds.train[:, 1], ds.cold_items).any()
    assert card["fingerprint"] == ds.fingerprint()
    bad = run("data", "build", tmp_path / "ds2", "--interactions", tmp_path / "inter.csv", "--embedding",
              f"v={tmp_path / 'v.npy'}", "--cold-items", "1.5")
    assert bad.exit_code == 2 and "--cold-items 1.5" in bad.stderr


# --- cold items never reach a training structure ----------------------------------------------


def test_cold_items_are_absent_from_graph_normalisation_item_graphs_and_negatives(cold):
    g = structure_graph(cold)
    _, dst = g.edges(etype=CLICKS)
    assert not np.isin(dst.numpy(), cold.cold_items).any()
    assert (g.in_degrees(etype=CLICKS)[torch.from_numpy(cold.cold_items)] == 0).all()
    assert len(lightgcn_weights(g)) == len(cold.train)  # one weight per training edge only
    src, dst = co_interaction_edges(cold, 10)
    assert not np.isin(np.concatenate([src, dst]), cold.cold_items).any()
    sampler = NegativeSampler(cold)
    rng = np.random.default_rng(0)
    negatives = np.concatenate([sampler.epoch(rng).neg for _ in range(20)])
    assert not np.isin(negatives, cold.cold_items).any()
    assert len(np.unique(negatives)) == cold.num_items - len(cold.cold_items)  # every warm item can be drawn


# --- the models' declarations -------------------------------------------------------------------


@pytest.mark.parametrize("name", [*MODELS, *PRESETS])
def test_every_model_declares_its_cold_start_and_honours_it(cold, name):
    model_name, options = resolve_model(name)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cold, config_type(model_name)(**options))
    assert model.cold_start in COLD_START
    items = model.final_tables().items[torch.from_numpy(cold.cold_items)]
    if model.cold_start == "none":
        # nothing but an untrained row could score them: the rows carry no content
        assert name in ("pop", "id-only", "bm3", "bpr")  # BM3 and BPR-MF score by ID representations only
    else:
        assert items.abs().sum(1).min() > 0  # every cold item gets a content representation
    if name == "id-only":
        assert items.abs().sum() == 0  # the zeroed ID rows, never the random init


def test_egogcn_scores_a_cold_item_by_its_content_alone(cold):
    """Changing a cold item's ID row changes nothing: the row is zeroed before use."""
    model = build_model(cold, config_type("egogcn")(fusion="gm"))
    item = int(cold.cold_items[0])
    before = model.final_tables().items[item].clone()
    with torch.no_grad():
        model.ids.table[cold.num_users + item] += 5.0
    assert torch.equal(model.final_tables().items[item], before)


# --- warm and cold metrics -------------------------------------------------------------------------


def reference_metrics(scores: np.ndarray, ds, split: str, k: int, candidates, counted) -> dict[str, float]:
    """Loop-by-loop recall and NDCG: each user's held-out items of `counted`, ranked among
    `candidates` minus the known items, in float64."""
    known = {(int(u), int(i)) for s in (["train"] if split == "valid" else ["train", "valid"]) for u, i in ds.split(s)}
    recall, ndcg, users = 0.0, 0.0, 0
    for u in range(ds.num_users):
        held = {int(i) for uu, i in ds.split(split) if uu == u and counted[i]}
        if not held:
            continue
        pool = [i for i in range(ds.num_items) if candidates[i] and (u, i) not in known]
        top = sorted(pool, key=lambda i: (-scores[u, i], i))[:k]
        hits = [1.0 if i in held else 0.0 for i in top]
        recall += sum(hits) / len(held)
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        ndcg += dcg / sum(1 / math.log2(r + 2) for r in range(min(len(held), k)))
        users += 1
    return {"recall": recall / users, "ndcg": ndcg / users, "users": users}


def test_warm_cold_and_cold_all_metrics_match_a_loop_reference(cold):
    rng = np.random.default_rng(1)
    users, items = torch.from_numpy(rng.normal(size=(cold.num_users, 8))), torch.from_numpy(rng.normal(size=(cold.num_items, 8)))
    scores = (users @ items.T).numpy()
    out = evaluate_groups(users.float(), items.float(), cold, "test", ks=(10,), cold_start="content")
    warm = cold.warm_mask()
    every = np.ones(cold.num_items, dtype=bool)
    for group, candidates, counted in (("warm", warm, warm), ("cold", ~warm, ~warm), ("cold-all", every, ~warm)):
        ref = reference_metrics(scores, cold, "test", 10, candidates, counted)
        assert out[f"{group}/users"] == ref["users"]
        assert out[f"{group}/recall@10"] == pytest.approx(ref["recall"], abs=1e-6)
        assert out[f"{group}/ndcg@10"] == pytest.approx(ref["ndcg"], abs=1e-6)
    refused = evaluate_groups(users.float(), items.float(), cold, "test", ks=(10,), cold_start="none")
    assert any(k.startswith("warm/") for k in refused) and not any(k.startswith("cold") for k in refused)


def test_datasets_without_cold_items_keep_their_metrics(tiny):
    users, items = torch.randn(tiny.num_users, 4), torch.randn(tiny.num_items, 4)
    assert evaluate_groups(users, items, tiny, "test", cold_start="content") == {}
    assert tiny.cold_items is None and NegativeSampler(tiny).warm is None


# --- accuracy by degree ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["full", "legacy"])
def test_degree_buckets_recombine_to_the_overall_metric(tiny, protocol):
    torch.manual_seed(0)
    users, items = torch.randn(tiny.num_users, 8), torch.randn(tiny.num_items, 8)
    ks = (5, 10)
    overall = evaluate(users, items, tiny, "test", ks, protocol)
    ranked = rank_users(users, items, tiny, "test", max(ks), protocol)
    by_user = by_user_degree(ranked, tiny, ks, 4, protocol)
    by_item = by_item_degree(ranked, tiny, ks, 4, protocol)
    assert len(by_user) > 1 and len(by_item) > 1
    assert sum(r["users"] for r in by_user) == overall["users"]
    assert sum(r["heldout_pairs"] for r in by_item) == len(tiny.test)
    for key in ("precision@5", "recall@10", "ndcg@10", "hit@10"):
        assert sum(r[key] * r["users"] for r in by_user) / overall["users"] == pytest.approx(overall[key])
    for key in ("precision@5", "recall@10", "ndcg@10"):
        assert sum(r[key] for r in by_item) == pytest.approx(overall[key])


# --- the study tables ------------------------------------------------------------------------------


def test_cold_table_marks_refused_models_and_averages_the_rest():
    from ego_dgl.study.groups import GROUP_METRICS, group_summary

    full = {f"test/{m}": 0.1 * (k + 1) for k, m in enumerate(GROUP_METRICS)}
    warm_only = {f"test/{m}": (0.5 if m.startswith("warm/") else "") for m in GROUP_METRICS}
    members = {"gm": [full, {k: v + 0.2 for k, v in full.items()}], "pop": [warm_only]}
    rows = {r["name"]: r for r in group_summary(["gm", "pop"], members)}
    assert rows["gm"]["cold/recall@10_mean"] == pytest.approx(full["test/cold/recall@10"] + 0.1)
    assert rows["gm"]["cold/recall@10_std"] == pytest.approx(np.std([0, 0.2], ddof=1))
    assert rows["pop"]["warm/recall@10_mean"] == 0.5 and rows["pop"]["cold-all/ndcg@10_mean"] == "refused"
    assert group_summary(["x"], {"x": [{"test/recall@10": 0.3}]}) == []  # no cold items: no table


def test_sparsity_rows_read_each_level_and_the_fused_shares_at_the_best_epoch(tmp_path):
    from ego_dgl.runs import write_csv, write_json
    from ego_dgl.study.sparsity import sparsity_rows

    folders = []
    for level, recall in (("ml100k-train0.25", 0.1), ("ml100k", 0.3)):
        folder = tmp_path / level
        (folder / "cells" / "hard-s0").mkdir(parents=True)
        write_json(folder / "compare.json", {"kind": "compare", "dataset": level})
        write_csv(folder / "cells.csv", [{"key": "hard-s0", "name": "egogcn-hard", "best_epoch": 2,
                                          "test/recall@10": recall, "test/ndcg@10": recall / 2}])
        write_csv(folder / "cells" / "hard-s0" / "history.csv", [
            {"epoch": e, "fused/a/item->user": 0.1 * e, "fused/b/item->user": 0.3 * e, "fused/a/user->item": 0.0} for e in (1, 2, 3)])
        folders.append(folder)
    rows = sparsity_rows(folders)
    assert [r["train_fraction"] for r in rows] == [0.25, 1.0]
    assert rows[0]["recall@10_mean"] == 0.1 and rows[1]["ndcg@10_mean"] == 0.15
    assert rows[0]["fused item->user"] == pytest.approx(0.4) and rows[0]["fused user->item"] == 0.0


def test_a_built_in_variant_is_prepared_once_by_name_and_reads_back(monkeypatch, datasets_root):
    from ego_dgl.data import registry
    from ego_dgl.data.build import Built
    from ego_dgl.data.synthetic import make_preset

    monkeypatch.setitem(registry.CACHED, "cached-tiny", ("cached-tiny/1", lambda s, root: Built(make_preset("synthetic-tiny"))))
    ds = load_dataset("cached-tiny-cold0.2-train0.5-seed3", progress=False)
    base = load_dataset("cached-tiny", progress=False)
    expected = apply_variant(base, Variant(0.2, 0.5, 3))
    assert np.array_equal(ds.cold_items, expected.cold_items) and np.array_equal(ds.train, expected.train)
    assert ds.name == "cached-tiny-cold0.2-train0.5-seed3" and ds.fingerprint() == load_dataset(ds.name, progress=False).fingerprint()
    result = run("data", "prepare", "cached-tiny", "--cold-items", "0.2", "--train-fraction", "0.5", "--seed", "3")
    assert result.exit_code == 0 and "egodgl train --dataset cached-tiny-cold0.2-train0.5-seed3" in result.output
    assert (datasets_root / "cached-tiny-cold0.2-train0.5-seed3" / "cold_items.txt").is_file()
