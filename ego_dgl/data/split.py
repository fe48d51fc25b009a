"""Per-user splits: random (every built-in dataset's) and temporal."""

from __future__ import annotations

import numpy as np

from ego_dgl.errors import DataError


def held_out_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(valid, test) counts for users with `n` interactions: each is n * ratio rounded
    half up, then trimmed (test first) so that every user keeps >= 1 training item.
    With 8:1:1 a user with 10 items gets 8/1/1, with 5 items 3/1/1, with 4 or fewer
    all in train."""
    _, r_valid, r_test = ratios
    valid = np.floor(n * r_valid + 0.5).astype(np.int64)
    test = np.floor(n * r_test + 0.5).astype(np.int64)
    over = np.maximum(valid + test - np.maximum(n - 1, 0), 0)
    cut_test = np.minimum(over, test)
    return valid - (over - cut_test), test - cut_test


def check_ratios(ratios: tuple[float, float, float]) -> None:
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-9:
        raise DataError(f"split ratios {ratios} must be three non-negative numbers summing to 1")


def split_per_user(
    pairs: np.ndarray, num_users: int, seed: int = 0, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomly split each user's distinct items into train/valid/test by `ratios`.

    Depends only on the set of pairs and the seed; each split comes out sorted by
    (user, item).
    """
    check_ratios(ratios)
    pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(pairs)), pairs[:, 0]))
    pairs = pairs[order]
    n = np.bincount(pairs[:, 0], minlength=num_users)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    rank = np.arange(len(pairs)) - start[pairs[:, 0]]
    return _assign(pairs, rank, n, ratios)


def split_temporal(
    pairs: np.ndarray, times: np.ndarray, num_users: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user by time: the last interactions go to test, the ones before them to valid
    (counts as held_out_counts gives them), the rest to train; ties keep file order.
    `pairs` must be distinct; each split comes out sorted by (user, item)."""
    check_ratios(ratios)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    order = np.lexsort((np.arange(len(pairs)), np.asarray(times), pairs[:, 0]))
    pairs = pairs[order]
    n = np.bincount(pairs[:, 0], minlength=num_users)
    end = np.cumsum(n)
    from_end = end[pairs[:, 0]] - 1 - np.arange(len(pairs))  # 0 = the user's latest
    return _assign(pairs, from_end, n, ratios)


def _assign(pairs: np.ndarray, position: np.ndarray, n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) by each interaction's `position` among its user's n[user]
    (0 = held out first): the first n_test to test, the next n_valid to valid, the rest to train."""
    n_valid, n_test = held_out_counts(n, ratios)
    users = pairs[:, 0]
    is_test = position < n_test[users]
    is_valid = ~is_test & (position < (n_test + n_valid)[users])
    is_train = ~(is_test | is_valid)
    return tuple(_sorted(pairs[m]) for m in (is_train, is_valid, is_test))


def _sorted(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
