"""The in-memory dataset every reader returns and every later stage consumes."""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ego_dgl.errors import DataError, EgoDGLWarning
from ego_dgl.system import available_memory, gib

SPLITS = ("train", "valid", "test")
MODALITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
    def from_pairs(num_rows: int, rows: np.ndarray, cols: np.ndarray) -> CSR:
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=num_rows)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return CSR(indptr, cols[order].astype(np.int64))


@dataclass
class Dataset:
    """Users, items, train/valid/test interactions (0-based [n, 2] int64 arrays of
    (user, item)), and an ordered mapping modality name -> item features.

    `feature_masks[m]` marks which items have modality m; a modality without a mask
    covers every item. `item_titles` is optional display text for recommendations;
    `user_ids` and `item_ids`, when known, are the raw ids behind the dense ones.
    `sources` maps a split or modality name to the file it came from, so that errors
    can name the file to fix. `cold_items`, when set, lists the items a cold-start
    variant kept out of training (data/variants.py), sorted; evaluation reports them apart.
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
    user_ids: list[str] | None = None
    item_ids: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    cold_items: np.ndarray | None = None

    @property
    def has_cold_items(self) -> bool:
        return self.cold_items is not None and len(self.cold_items) > 0

    def warm_mask(self) -> np.ndarray:
        """Boolean [num_items]: False for the declared cold items, True for every other."""
        warm = np.ones(self.num_items, dtype=bool)
        if self.has_cold_items:
            warm[self.cold_items] = False
        return warm

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
        if self.has_cold_items:  # only then, so datasets without cold items keep their fingerprints
            h.update(b"cold" + np.ascontiguousarray(self.cold_items, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def where(self, part: str) -> str:
        """The file a split or modality came from, or a description when built in memory."""
        return self.sources.get(part, f"{self.name} ({part})")

    def validate(self) -> Dataset:
        """Check every invariant later stages rely on and raise a one-line DataError
        naming the file and the fix; returns the dataset with canonical dtypes and
        duplicate interactions dropped (with a warning that counts them)."""
        if self.num_users <= 0 or self.num_items <= 0:
            raise DataError(
                f"{self.where('train')}: found {self.num_users} users and {self.num_items} items; "
                "a dataset needs at least one of each"
            )
        _check_id_space(self.num_users, self.num_items, self.where("train"))
        splits = {s: _checked_pairs(self.split(s), self.where(s), s, self.num_users, self.num_items) for s in SPLITS}
        if not self.features:
            raise DataError(f"{self.where('train')}: no item features found; add at least one modality")
        features = {m: self._checked_features(m, f) for m, f in self.features.items()}
        masks = {m: self._checked_mask(m, k) for m, k in self.feature_masks.items()}
        if self.item_titles is not None and len(self.item_titles) != self.num_items:
            raise DataError(
                f"{self.where('titles')}: {len(self.item_titles)} item titles for {self.num_items} items; "
                "give one title per item"
            )
        for kind, ids, n in (("user", self.user_ids, self.num_users), ("item", self.item_ids, self.num_items)):
            if ids is not None and len(ids) != n:
                raise DataError(f"{self.where(kind + '_ids')}: {len(ids)} raw {kind} ids for {n} {kind}s; give one per {kind}")
        splits, dropped = _drop_duplicates(splits, self.num_items)
        for s, pairs in splits.items():
            if len(pairs) == 0:
                raise DataError(
                    f"{self.where(s)}: the {s} split is empty; every split needs interactions "
                    "(re-split the data, e.g. 8:1:1 per user)"
                )
        _check_users_have_training(splits, self.num_users, self.where("train"))
        _check_cold_items(self.cold_items, splits["train"], self.num_items, self.where("cold_items"))
        if dropped:  # only once every check passed: a refused dataset gets its one error line, no warning before it
            warnings.warn(
                f"{self.name}: dropped {dropped} duplicate interactions "
                "(the same user and item more than once; kept the first, in train, valid, test order)",
                EgoDGLWarning,
                stacklevel=2,
            )
        return replace(self, train=splits["train"], valid=splits["valid"], test=splits["test"],
                       features=features, feature_masks=masks)

    def _checked_features(self, m: str, f: Features) -> Features:
        if not isinstance(m, str) or not MODALITY_NAME.fullmatch(m):
            raise DataError(
                f"{self.where(m)}: modality name {m!r} is not usable; use letters, digits, '_', '-' or '.'"
            )
        where = self.where(m)
        if isinstance(f, WordBag):
            return _checked_wordbag(f, where, self.num_items)
        f = np.asarray(f)
        if f.ndim == 2 and f.shape[1] == 0:
            raise DataError(f"{where}: the feature matrix has no columns; give each item at least one feature value")
        if f.ndim != 2 or f.shape[0] != self.num_items:
            raise DataError(
                f"{where}: features of shape {tuple(f.shape)} for {self.num_items} items; "
                f"give one row per item ({self.num_items} rows, in item-id order)"
            )
        if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
            raise DataError(f"{where}: features have dtype {f.dtype}; save them as a float array")
        f = np.ascontiguousarray(f, dtype=np.float32)
        finite = np.isfinite(f).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{where}: {len(bad)} item rows contain NaN or inf (first: item {bad[0]}); "
                "replace them, e.g. with zeros plus a feature mask marking those items as missing"
            )
        return f

    def _checked_mask(self, m: str, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        if m not in self.features:
            raise DataError(f"{self.where(m)}: a mask is given for {m!r}, which has no features; drop the mask")
        if mask.shape != (self.num_items,) or mask.dtype != bool:
            raise DataError(
                f"{self.where(m)}: the mask of {m!r} has shape {mask.shape} and dtype {mask.dtype}; "
                f"it must be a boolean vector of {self.num_items} entries"
            )
        return mask

    def summary(self) -> dict:
        """Counts, density and per-modality dims and coverage, JSON-ready."""
        n = {s: int(len(self.split(s))) for s in SPLITS}
        total = sum(n.values())
        return {
            "name": self.name,
            "users": int(self.num_users),
            "items": int(self.num_items),
            "interactions": total,
            "splits": n,
            "density": total / (self.num_users * self.num_items),
            "modalities": [
                {
                    "name": m,
                    "kind": "word-bag" if isinstance(f, WordBag) else "dense",
                    "dim": self.modality_dims()[m],
                    "items_with": int(self.mask(m).sum()),
                    "coverage": float(self.mask(m).mean()),
                }
                for m, f in self.features.items()
            ],
            "fingerprint": self.fingerprint(),
        } | ({"cold_items": len(self.cold_items)} if self.has_cold_items else {})


BYTES_PER_ID = 64  # per user and item: degrees, CSR pointers, masks and graph indices, a few int64 arrays each


def _check_id_space(num_users: int, num_items: int, where: str) -> None:
    """Refuse id ranges whose per-id arrays cannot fit in memory (or whose (user, item)
    keys overflow int64) before anything of that size is allocated."""
    need, free = (num_users + num_items) * BYTES_PER_ID, available_memory()
    if num_users * num_items >= 2**63 or (free is not None and need > free):
        kind, top = ("user", num_users) if num_users >= num_items else ("item", num_items)
        raise DataError(
            f"{where}: {kind} ids go up to {top - 1:,}, so the per-id tables alone need about {gib(need)}"
            f"{f' (free: {gib(free)})' if free is not None else ''}; renumber the {kind}s 0..n-1"
        )


def _checked_pairs(pairs: np.ndarray, where: str, split: str, num_users: int, num_items: int) -> np.ndarray:
    """An int64 [n, 2] copy of a split with every id in range, or a DataError."""
    pairs = np.asarray(pairs)
    if pairs.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DataError(f"{where}: the {split} split has shape {pairs.shape}; it must be [n, 2] (user, item) rows")
    if not np.issubdtype(pairs.dtype, np.integer):
        if not np.issubdtype(pairs.dtype, np.floating) or not np.all(np.mod(pairs, 1) == 0):
            raise DataError(f"{where}: the {split} split holds non-integer ids; ids must be whole numbers")
    pairs = pairs.astype(np.int64)
    for col, kind, limit in ((0, "user", num_users), (1, "item", num_items)):
        ids = pairs[:, col]
        bad = (ids < 0) | (ids >= limit)
        if bad.any():
            raise DataError(
                f"{where}: {int(bad.sum())} {split} rows have {kind} ids outside 0..{limit - 1} "
                f"(first: {ids[bad][0]}); ids must be 0-based and below the number of {kind}s ({limit})"
            )
    return pairs


def _checked_wordbag(f: WordBag, where: str, num_items: int) -> WordBag:
    items, words = np.asarray(f.items), np.asarray(f.words)
    if items.ndim != 1 or items.shape != words.shape or not (
        np.issubdtype(items.dtype, np.integer) and np.issubdtype(words.dtype, np.integer)
    ):
        raise DataError(f"{where}: word ids must be a 2 x N integer array of (item, word) pairs")
    if len(items) and (items.min() < 0 or items.max() >= num_items):
        raise DataError(f"{where}: word-bag item ids must lie in 0..{num_items - 1}; found {items.min()}..{items.max()}")
    if f.num_words <= 0 or (len(words) and (words.min() < 0 or words.max() >= f.num_words)):
        raise DataError(f"{where}: word ids must lie in 0..{f.num_words - 1} (the vocabulary size is {f.num_words})")
    return WordBag(items.astype(np.int64), words.astype(np.int64), int(f.num_words))


def _drop_duplicates(splits: dict[str, np.ndarray], num_items: int) -> tuple[dict[str, np.ndarray], int]:
    """Keeps the first occurrence of each (user, item) in train, valid, test order, so a
    pair repeated in a held-out split never leaks its training twin into evaluation; the
    splits and how many pairs were dropped."""
    sizes = [len(splits[s]) for s in SPLITS]
    pairs = np.concatenate([splits[s] for s in SPLITS])
    _, first = np.unique(pairs[:, 0] * num_items + pairs[:, 1], return_index=True)
    if len(first) == len(pairs):
        return splits, 0
    keep = np.zeros(len(pairs), dtype=bool)
    keep[first] = True
    bounds = np.cumsum([0, *sizes])
    return {s: pairs[bounds[k] : bounds[k + 1]][keep[bounds[k] : bounds[k + 1]]] for k, s in enumerate(SPLITS)}, len(pairs) - len(first)


def _check_cold_items(cold: np.ndarray | None, train: np.ndarray, num_items: int, where: str) -> None:
    """Cold items must be item ids that have no training interaction."""
    if cold is None or not len(cold):
        return
    if cold.min() < 0 or cold.max() >= num_items:
        raise DataError(f"{where}: cold item ids must lie in 0..{num_items - 1}; rebuild the dataset")
    trained = np.intersect1d(cold, train[:, 1])
    if len(trained):
        raise DataError(f"{where}: {len(trained)} items listed as cold have training interactions "
                        f"(first: item {trained[0]}); rebuild the dataset")


def _check_users_have_training(splits: dict[str, np.ndarray], num_users: int, where: str) -> None:
    has_train = np.zeros(num_users, dtype=bool)
    has_train[splits["train"][:, 0]] = True
    held = np.unique(np.concatenate([splits["valid"][:, 0], splits["test"][:, 0]]))
    cold = held[~has_train[held]]
    if len(cold):
        raise DataError(
            f"{where}: {len(cold)} users have interactions only in valid/test (first: user {cold[0]}); "
            "give each user at least one training interaction or drop those users"
        )
