"""Full-ranking evaluation: hand-checked metrics, sklearn's NDCG, masking, chunking and
the legacy protocol's deviations."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import auto_chunk_size, evaluate, top_items


def make_ds(num_users, num_items, train, valid, test):
    arr = lambda p: np.asarray(p, dtype=np.int64).reshape(-1, 2)  # noqa: E731
    feats = {"v": np.zeros((num_items, 2), dtype=np.float32)}
    return Dataset("hand", num_users, num_items, arr(train), arr(valid), arr(test), feats)


def score_tables(scores):
    """Tables whose inner products are exactly `scores`: users = scores, items = identity."""
    s = torch.tensor(scores, dtype=torch.float32)
    return s, torch.eye(s.shape[1])


# user 0: train {0}, valid {1}, test {2, 4}; user 1: train {3}, valid {0}, test {5}
HAND = make_ds(2, 6, [[0, 0], [1, 3]], [[0, 1], [1, 0]], [[0, 2], [0, 4], [1, 5]])
HAND_SCORES = [[10, 9, 8, 7, 1, 6], [5, 4, 3, 9, 2, 1]]


def test_hand_ranking_metrics():
    # test ranking after masking train + valid: user 0 -> 2, 3, 5, 4; user 1 -> 1, 2, 4, 5
    m = evaluate(*score_tables(HAND_SCORES), HAND, "test", ks=(1, 3, 5))
    d = [1 / math.log2(r + 2) for r in range(5)]
    assert m["users"] == 2
    assert m["precision@1"] == pytest.approx((1 + 0) / 2)
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@1"] == pytest.approx((1 + 0) / 2)
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0) / 2)
    # user 0: one hit at rank 1 of two held-out items -> ideal over 2 positions
    assert m["ndcg@3"] == pytest.approx((d[0] / (d[0] + d[1]) + 0) / 2)
    # at 5: user 0 hits ranks 1 and 4; user 1 hits rank 4 (item 5)
    assert m["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert m["recall@5"] == pytest.approx((1 + 1) / 2)
    assert m["ndcg@5"] == pytest.approx(((d[0] + d[3]) / (d[0] + d[1]) + d[3] / d[0]) / 2)
    assert m["hit@5"] == pytest.approx(1.0)


def test_valid_split_masks_train_only():
    # valid ranking masks only train: user 0 -> 1, 2, 3, 5, 4 (hit at rank 1);
    # user 1 -> 0, 1, 2, 4, 5 (hit at rank 1)
    m = evaluate(*score_tables(HAND_SCORES), HAND, "valid", ks=(1,))
    assert m["precision@1"] == pytest.approx(1.0)
    known_test = top_items(*score_tables(HAND_SCORES), np.array([0, 1]), HAND.known_csr("test"), 6)
    known_valid = top_items(*score_tables(HAND_SCORES), np.array([0, 1]), HAND.known_csr("valid"), 6)
    # masked items rank last (-inf) and never before a scored item
    assert known_valid[0, :5].tolist() == [1, 2, 3, 5, 4] and known_valid[0, 5].item() == 0
    assert known_test[0, :4].tolist() == [2, 3, 5, 4] and set(known_test[0, 4:].tolist()) == {0, 1}
    assert known_test[1, :4].tolist() == [1, 2, 4, 5] and set(known_test[1, 4:].tolist()) == {0, 3}


def test_users_without_heldout_items_are_not_averaged():
    ds = make_ds(3, 6, [[0, 0], [1, 3], [2, 1]], [[0, 1], [1, 0]], [[0, 2], [0, 4], [1, 5]])
    scores = HAND_SCORES + [[0, 0, 0, 0, 0, 9]]
    m = evaluate(*score_tables(scores), ds, "test", ks=(3,))
    assert m["users"] == 2
    assert m["precision@3"] == pytest.approx((1 / 3) / 2)


def reference_metrics(scores, ds, split, k):
    """Loop-by-loop metrics: rank each user's unmasked items by score with argsort."""
    known = {(int(u), int(i)) for u, i in ds.train}
    if split == "test":
        known |= {(int(u), int(i)) for u, i in ds.valid}
    held = {}
    for u, i in ds.split(split):
        held.setdefault(int(u), set()).add(int(i))
    out = {"precision": [], "recall": [], "ndcg": [], "hit": []}
    for u, items in sorted(held.items()):
        candidates = [i for i in range(ds.num_items) if (u, i) not in known]
        ranked = sorted(candidates, key=lambda i: -scores[u][i])[:k]
        rel = [1.0 if i in items else 0.0 for i in ranked]
        dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel))
        idcg = sum(1 / math.log2(p + 2) for p in range(min(len(items), k)))
        out["precision"].append(sum(rel) / k)
        out["recall"].append(sum(rel) / len(items))
        out["ndcg"].append(dcg / idcg)
        out["hit"].append(float(sum(rel) > 0))
    return {key: float(np.mean(v)) for key, v in out.items()}


def random_ds(seed=0, num_users=30, num_items=40):
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        items = rng.permutation(num_items)[: rng.integers(4, 15)]
        splits["train"] += [[u, i] for i in items[:-3]]
        splits["valid"] += [[u, items[-3]]]
        if u % 5:  # every fifth user has no test item
            splits["test"] += [[u, i] for i in items[-2:]]
    return make_ds(num_users, num_items, splits["train"], splits["valid"], splits["test"]), rng


@pytest.mark.parametrize("split", ["valid", "test"])
def test_random_scores_match_reference_and_sklearn(split):
    ds, rng = random_ds()
    user, item = torch.randn(ds.num_users, 8, generator=torch.Generator().manual_seed(1)), torch.randn(ds.num_items, 8)
    scores = (user @ item.T).numpy()
    ks = (5, 10, 20)
    m = evaluate(user, item, ds, split, ks=ks)
    chunked = evaluate(user, item, ds, split, ks=ks, chunk_size=7)
    assert chunked == pytest.approx(m, rel=1e-12)
    for k in ks:
        ref = reference_metrics(scores, ds, split, k)
        for name in ("precision", "recall", "ndcg", "hit"):
            assert m[f"{name}@{k}"] == pytest.approx(ref[name], rel=1e-6), (name, k)
    # sklearn: relevance = held-out indicator; known items pushed far below every score
    known = ds.known_csr(split)
    y_score = scores.copy()
    y_true = np.zeros_like(scores)
    for u, i in ds.split(split):
        y_true[u, i] = 1
    for u in range(ds.num_users):
        y_score[u, known.row(u)] = scores.min() - 1e3
    users = np.flatnonzero(y_true.sum(1) > 0)
    for k in ks:
        assert m[f"ndcg@{k}"] == pytest.approx(ndcg_score(y_true[users], y_score[users], k=k), rel=1e-6)


def test_legacy_mask_value_lets_known_items_outrank_negative_scores():
    # user 0: train {0}, test {1}; every unmasked score is negative, so the known item,
    # scored 1e-5 by the legacy evaluator, takes the first place and pushes the hit down
    ds = make_ds(1, 4, [[0, 0]], [], [[0, 1]])
    scores = [[-0.1, -0.2, -0.3, -0.4]]
    full = evaluate(*score_tables(scores), ds, "test", ks=(1, 2))
    legacy = evaluate(*score_tables(scores), ds, "test", ks=(1, 2), protocol="legacy")
    assert full["precision@1"] == 1.0
    assert legacy["precision@1"] == 0.0
    assert legacy["recall@2"] == 1.0
    # hit at rank 2 of 2; legacy ideal DCG over min(hits=1, K) = 1 position
    assert legacy["ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_legacy_ideal_dcg_over_hits():
    m_full = evaluate(*score_tables(HAND_SCORES), HAND, "test", ks=(3,))
    m_legacy = evaluate(*score_tables(HAND_SCORES), HAND, "test", ks=(3,), protocol="legacy")
    # user 0 has one hit at rank 1: ideal over min(1, 3) = 1 position -> NDCG 1 (full: 1/(1 + 1/log2 3))
    assert m_legacy["ndcg@3"] == pytest.approx((1 + 0) / 2)
    assert m_full["ndcg@3"] < m_legacy["ndcg@3"]
    for key in ("precision@3", "recall@3", "hit@3"):
        assert m_legacy[key] == m_full[key]


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="protocol"):
        evaluate(*score_tables(HAND_SCORES), HAND, "test", protocol="authors")
    with pytest.raises(ConfigError, match="--k"):
        evaluate(*score_tables(HAND_SCORES), HAND, "test", ks=(0,))


def test_chunk_size_follows_memory_and_item_count():
    cpu = torch.device("cpu")
    small, large = auto_chunk_size(100, cpu), auto_chunk_size(76_085, cpu)
    assert small >= large >= 1
    # a chunk of the Tiktok item count stays within the 1 GiB cap
    assert large * 76_085 * 12 <= 1 << 30
