"""The synthetic generator: exact sizes, determinism, a real planted signal."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ego_dgl.data import (
    load_dataset,
    make_synthetic,
    make_synthetic_scaled,
    split_per_user,
)
from ego_dgl.data.split import held_out_counts
from ego_dgl.errors import ConfigError


def test_tiny_preset_sizes(tiny):
    s = tiny.summary()
    assert (s["users"], s["items"], s["interactions"]) == (60, 80, 900)
    assert [m["name"] for m in s["modalities"]] == ["visual", "acoustic", "textual"]
    assert all(tiny.features[m].dtype == np.float32 for m in tiny.modalities)
    all_pairs = np.concatenate([tiny.train, tiny.valid, tiny.test])
    assert len(np.unique(all_pairs, axis=0)) == 900
    assert (tiny.user_degree >= 1).all()


def test_deterministic_in_seed():
    a = make_synthetic(30, 40, 300, {"v": 4}, seed=3)
    b = make_synthetic(30, 40, 300, {"v": 4}, seed=3)
    c = make_synthetic(30, 40, 300, {"v": 4}, seed=4)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_split_is_8_1_1_per_user(tiny):
    total = np.bincount(np.concatenate([tiny.train, tiny.valid, tiny.test])[:, 0], minlength=60)
    valid, test = held_out_counts(total, (0.8, 0.1, 0.1))
    assert np.array_equal(np.bincount(tiny.valid[:, 0], minlength=60), valid)
    assert np.array_equal(np.bincount(tiny.test[:, 0], minlength=60), test)
    assert np.array_equal(valid, np.floor(total * 0.1 + 0.5))


def test_held_out_counts_keep_one_training_item():
    n = np.arange(0, 40)
    for ratios in [(0.8, 0.1, 0.1), (0.2, 0.4, 0.4), (0.0, 0.5, 0.5)]:
        valid, test = held_out_counts(n, ratios)
        assert (valid >= 0).all() and (test >= 0).all()
        assert (n[1:] - valid[1:] - test[1:] >= 1).all()
    valid, test = held_out_counts(np.array([1, 4, 5, 10, 25]), (0.8, 0.1, 0.1))
    assert valid.tolist() == [0, 0, 1, 1, 3] and test.tolist() == [0, 0, 1, 1, 3]


def test_split_depends_only_on_pair_set():
    rng = np.random.default_rng(0)
    pairs = np.unique(rng.integers(0, 20, (400, 2)), axis=0)
    a = split_per_user(pairs, 20, seed=1)
    b = split_per_user(pairs[::-1], 20, seed=1)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    joined = np.concatenate(a)
    assert len(joined) == len(pairs) and len(np.unique(joined, axis=0)) == len(pairs)


def test_features_reveal_tastes():
    """Ranking test items by a user's mean training-item features beats random by far."""
    ds = make_synthetic(200, 300, 6000, {"v": 32}, seed=0)
    x = ds.features["v"] / np.linalg.norm(ds.features["v"], axis=1, keepdims=True)
    profile = np.zeros((ds.num_users, x.shape[1]))
    np.add.at(profile, ds.train[:, 0], x[ds.train[:, 1]])
    scores = profile @ x.T
    scores[ds.train[:, 0], ds.train[:, 1]] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = sum(np.isin(ds.test[ds.test[:, 0] == u, 1], top[u]).sum() for u in range(ds.num_users))
    recall_like = hits / len(ds.test)
    assert recall_like > 3 * 10 / ds.num_items


def test_other_users_clicks_find_held_out_items_in_a_large_catalogue():
    """Item co-occurrence (score an item by how often it shares a user with the user's
    training items) finds a fifth of the test items among 10,000, with 10 clicks per user:
    clicks stay inside genres. Spread over the whole catalogue, as the generator drew
    them before genres, it found 0.3%."""
    ds = make_synthetic(2000, 10_000, 20_000, {"v": 4}, seed=0)
    x = sp.csr_matrix((np.ones(len(ds.train)), ds.train.T), shape=(ds.num_users, ds.num_items))
    scores = (x @ (x.T @ x)).toarray() + 1e-6 * np.asarray(x.sum(axis=0))  # ties: popularity
    known = np.concatenate([ds.train, ds.valid])
    scores[known[:, 0], known[:, 1]] = -np.inf
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    hit = (top[ds.test[:, 0]] == ds.test[:, 1:]).any(axis=1)
    per_user = np.bincount(ds.test[:, 0], hit, ds.num_users) / np.maximum(np.bincount(ds.test[:, 0], minlength=ds.num_users), 1)
    assert per_user[np.unique(ds.test[:, 0])].mean() > 0.1


def test_missing_modality_masks():
    ds = make_synthetic(30, 200, 300, {"v": 4, "t": 3}, missing={"t": 0.5}, seed=0).validate()
    mask = ds.mask("t")
    assert 0.3 < mask.mean() < 0.7 and ds.mask("v").all()
    assert not ds.features["t"][~mask].any()


def test_scaled_sizes():
    ds = make_synthetic_scaled(0.5)
    assert (ds.num_users, ds.num_items) == (472, 841)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 50_000
    assert load_dataset("synthetic-x0.5").fingerprint() == ds.fingerprint()


def test_impossible_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="do not fit"):
        make_synthetic(10, 4, 100, {"v": 2})
