"""BPR training triples: shuffled (user, positive) pairs with one uniform negative each.

A negative is drawn uniformly among the items the user has no training interaction with;
on a dataset with cold items (data/variants.py) only among the warm ones, so that a cold
item's rows never receive a gradient.
Drawing is vectorised: all candidates are drawn at once, checked against the sorted
(user * num_items + item) keys of the training pairs with one `np.searchsorted`, and only
the collisions are drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import DataError


@dataclass(frozen=True)
class Batch:
    """One mini-batch of BPR triples (numpy int64 arrays of equal length)."""

    users: np.ndarray
    pos: np.ndarray
    neg: np.ndarray


class NegativeSampler:
    """Uniform negatives over each user's non-training items, and shuffled epochs."""

    def __init__(self, ds: Dataset):
        pairs = np.unique(np.asarray(ds.train, dtype=np.int64), axis=0)
        self.num_items = ds.num_items
        self.warm = np.flatnonzero(ds.warm_mask()) if ds.has_cold_items else None  # the negatives' pool
        self.pairs = pairs
        self.keys = pairs[:, 0] * ds.num_items + pairs[:, 1]  # sorted: unique sorts by user, item
        pool = ds.num_items if self.warm is None else len(self.warm)
        full = np.flatnonzero(np.bincount(pairs[:, 0], minlength=ds.num_users) >= pool)
        if len(full):
            raise DataError(
                f"user {int(full[0])} interacted with every item in training, so no negative item exists for BPR; "
                "remove such users from the dataset"
            )

    def is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bool per pair: whether (user, item) is a training interaction."""
        keys = users * self.num_items + items
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform non-training item per entry of `users`."""
        users = np.asarray(users, dtype=np.int64)
        items = self.draw(rng, len(users))
        redo = np.flatnonzero(self.is_known(users, items))
        while len(redo):
            items[redo] = self.draw(rng, len(redo))
            redo = redo[self.is_known(users[redo], items[redo])]
        return items

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` uniform items of the pool (every item, or the warm ones)."""
        if self.warm is None:
            return rng.integers(0, self.num_items, size=count, dtype=np.int64)
        return self.warm[rng.integers(0, len(self.warm), size=count, dtype=np.int64)]

    def epoch(self, rng: np.random.Generator) -> Batch:
        """Every training pair once, shuffled, each with a fresh negative."""
        order = rng.permutation(len(self.pairs))
        users, pos = self.pairs[order, 0], self.pairs[order, 1]
        return Batch(users, pos, self.negatives(users, rng))

    @staticmethod
    def batches(epoch: Batch, batch_size: int) -> list[Batch]:
        """Consecutive slices of an epoch (the last one may be shorter)."""
        n = len(epoch.users)
        return [
            Batch(epoch.users[s : s + batch_size], epoch.pos[s : s + batch_size], epoch.neg[s : s + batch_size])
            for s in range(0, n, batch_size)
        ]

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self.pairs) // batch_size)
