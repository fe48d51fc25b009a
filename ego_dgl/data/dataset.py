"""The in-memory dataset every reader returns and every later stage consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ego_dgl.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class WordBag:
    """Text kept as (item, word id) pairs, Tiktok style: the model learns a word table
    and averages it per item, so no fixed feature matrix exists for this modality."""

    items: np.ndarray  # int64 [N], 0-based item ids
    words: np.ndarray  # int64 [N], 0-based word ids
    num_words: int

    @property
    def dim(self) -> int:
        """Vocabulary size, shown where other modalities show their feature width."""
        return self.num_words


Features = np.ndarray | WordBag


@dataclass(frozen=True)
class CSR:
    """Per-row neighbour lists: row r owns indices[indptr[r]:indptr[r + 1]] (sorted)."""

    indptr: np.ndarray
    indices: np.ndarray

    def row(self, r: int) -> np.ndarray:
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    @staticmethod
    def from_pairs(num_rows: int, rows: np.ndarray, cols: np.ndarray) -> "CSR":
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=num_rows)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return CSR(indptr, cols[order].astype(np.int64))


@dataclass
class Dataset:
    """Users, items, train/valid/test interactions (0-based [n, 2] int64 arrays of
    (user, item)), and an ordered mapping modality name -> item features.

    `feature_masks[m]` marks which items have modality m; a modality without a mask
    covers every item. `item_titles` is optional display text for recommendations.
    """

    name: str
    num_users: int
    num_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, Features]
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)
    item_titles: list[str] | None = None

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def mask(self, modality: str) -> np.ndarray:
        """Boolean [num_items]: which items carry this modality."""
        m = self.feature_masks.get(modality)
        return np.ones(self.num_items, dtype=bool) if m is None else m

    def modality_dims(self) -> dict[str, int]:
        return {m: (f.dim if isinstance(f, WordBag) else int(f.shape[1])) for m, f in self.features.items()}

    @cached_property
    def train_csr(self) -> CSR:
        """Each user's training items, sorted."""
        return CSR.from_pairs(self.num_users, self.train[:, 0], self.train[:, 1])

    def known_csr(self, split: str) -> CSR:
        """Items to mask when ranking `split`: train for valid; train + valid for test."""
        if split == "valid":
            return self.train_csr
        if split == "test":
            pairs = np.concatenate([self.train, self.valid])
            return CSR.from_pairs(self.num_users, pairs[:, 0], pairs[:, 1])
        raise DataError(f"cannot evaluate split {split!r}; use valid or test")

    @cached_property
    def user_degree(self) -> np.ndarray:
        return np.bincount(self.train[:, 0], minlength=self.num_users).astype(np.int64)

    @cached_property
    def item_degree(self) -> np.ndarray:
        return np.bincount(self.train[:, 1], minlength=self.num_items).astype(np.int64)

    def fingerprint(self) -> str:
        """Short content hash of splits and features, recorded with every run."""
        h = hashlib.sha256()
        h.update(np.asarray([self.num_users, self.num_items], dtype=np.int64).tobytes())
        for s in SPLITS:
            h.update(np.ascontiguousarray(self.split(s), dtype=np.int64).tobytes())
        for m, f in self.features.items():
            h.update(m.encode())
            if isinstance(f, WordBag):
                h.update(f.items.tobytes() + f.words.tobytes())
            else:
                h.update(np.ascontiguousarray(f, dtype=np.float32).tobytes())
            h.update(self.mask(m).tobytes())
        return h.hexdigest()[:16]
