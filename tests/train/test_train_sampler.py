"""Negative sampling: never a training item, uniform over the others, reproducible, and
epochs that cover every training pair once."""

import numpy as np
import pytest

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import DataError
from ego_dgl.train.sampler import NegativeSampler


def make_ds(num_users, num_items, train):
    train = np.asarray(train, dtype=np.int64).reshape(-1, 2)
    empty = np.zeros((0, 2), dtype=np.int64)
    return Dataset("s", num_users, num_items, train, empty, empty, {"v": np.zeros((num_items, 1), np.float32)})


def test_negatives_avoid_training_items_and_are_uniform():
    # user 0 knows items 0..7 of 10, so only 8 and 9 are allowed; user 1 knows item 3
    ds = make_ds(2, 10, [[0, i] for i in range(8)] + [[1, 3]])
    sampler = NegativeSampler(ds)
    users = np.array([0] * 20_000 + [1] * 45_000)
    neg = sampler.negatives(users, np.random.default_rng(0))
    known = {(int(u), int(i)) for u, i in ds.train}
    assert not any((int(u), int(i)) in known for u, i in zip(users, neg))
    counts0 = np.bincount(neg[users == 0], minlength=10)
    assert counts0[:8].sum() == 0
    assert abs(counts0[8] / 20_000 - 0.5) < 0.02
    counts1 = np.bincount(neg[users == 1], minlength=10)
    assert counts1[3] == 0
    # 9 allowed items, 5000 expected draws each
    assert np.all(np.abs(np.delete(counts1, 3) / 45_000 - 1 / 9) < 0.01)


def test_is_known_matches_a_set_lookup():
    rng = np.random.default_rng(3)
    pairs = np.unique(np.stack([rng.integers(0, 20, 300), rng.integers(0, 30, 300)], 1), axis=0)
    sampler = NegativeSampler(make_ds(20, 30, pairs))
    users, items = rng.integers(0, 20, 2000), rng.integers(0, 30, 2000)
    expected = np.array([(u, i) in {tuple(p) for p in pairs.tolist()} for u, i in zip(users.tolist(), items.tolist())])
    assert np.array_equal(sampler.is_known(users, items), expected)


def test_epoch_covers_every_pair_once_and_is_reproducible():
    rng = np.random.default_rng(1)
    pairs = np.unique(np.stack([rng.integers(0, 15, 200), rng.integers(0, 25, 200)], 1), axis=0)
    sampler = NegativeSampler(make_ds(15, 25, pairs))
    a = sampler.epoch(np.random.default_rng(7))
    b = sampler.epoch(np.random.default_rng(7))
    c = sampler.epoch(np.random.default_rng(8))
    got = np.stack([a.users, a.pos], 1)
    assert np.array_equal(np.unique(got, axis=0), pairs) and len(got) == len(pairs)
    assert not np.array_equal(got, pairs)  # shuffled
    assert np.array_equal(a.neg, b.neg) and np.array_equal(a.users, b.users)
    assert not np.array_equal(a.users, c.users)
    batches = NegativeSampler.batches(a, 64)
    n = sampler.num_batches(64)
    assert n == -(-len(pairs) // 64) and len(batches) == n
    assert [len(x.users) for x in batches] == [64] * (n - 1) + [len(pairs) - 64 * (n - 1)]
    assert np.array_equal(np.concatenate([x.neg for x in batches]), a.neg)


def test_user_with_every_item_is_a_data_error():
    with pytest.raises(DataError, match="user 1 interacted with every item"):
        NegativeSampler(make_ds(2, 3, [[0, 0], [1, 0], [1, 1], [1, 2]]))
