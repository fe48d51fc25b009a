"""Dataset variants for the cold-start and sparsity studies (issue 23), on built-in and
built datasets alike:

- cold items (`cold_split`): a seeded share of the interacted items has every
  interaction moved out of training into valid/test, split between them by the valid:test
  ratio, so no training structure (graph, normalisation, item-item graphs, negative
  sampler) ever sees them; the dataset lists them (`Dataset.cold_items`, the folder's
  `cold_items.txt`) so evaluation can report them apart;
- train fraction (`thin_train`): a seeded share of each user's training interactions is
  kept (at least one per user); valid and test are unchanged, so the same test measures
  models trained on less.

A built-in variant has a name, e.g. `ml100k-cold0.1`, `ml100k-train0.25`,
`ml100k-cold0.1-train0.5`, with `-seed<N>` for a seed other than 0 (`variant_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.split import _sorted
from ego_dgl.errors import DataError
from ego_dgl.untrusted import read_text

COLD_FILE = "cold_items.txt"
SHARE = r"[0-9.]+(?:e-[0-9]+)?"  # as variant_name writes a share: 0.25, or 1e-05 below 0.0001
VARIANT = re.compile(rf"(?P<base>.+?)(?:-cold(?P<cold>{SHARE}))?(?:-train(?P<train>{SHARE}))?(?:-seed(?P<seed>\d+))?")


@dataclass(frozen=True)
class Variant:
    """What a variant changes: the cold-item share (0: none), the kept share of training
    interactions (1: all) and the seed of both draws."""

    cold_items: float = 0.0
    train_fraction: float = 1.0
    seed: int = 0

    @property
    def is_identity(self) -> bool:
        return self.cold_items == 0 and self.train_fraction == 1

    def check(self) -> Variant:
        """Raise DataError naming the option out of range."""
        if not 0 <= self.cold_items < 1:
            raise DataError(f"--cold-items {self.cold_items:g}: give a share of the items in [0, 1), e.g. 0.1")
        if not 0 < self.train_fraction <= 1:
            raise DataError(f"--train-fraction {self.train_fraction:g}: give a share of the training interactions in (0, 1], e.g. 0.25")
        if self.seed < 0:
            raise DataError(f"--seed {self.seed}: give a non-negative seed")
        return self

    def card(self) -> dict:
        """How the dataset card records the variant."""
        return {"cold_items": self.cold_items, "train_fraction": self.train_fraction, "seed": self.seed}


def variant_name(base: str, variant: Variant) -> str:
    """The named built-in variant, e.g. ml100k-cold0.1-train0.5 (-seed<N> when N != 0)."""
    name = base
    if variant.cold_items:
        name += f"-cold{variant.cold_items:g}"
    if variant.train_fraction != 1:
        name += f"-train{variant.train_fraction:g}"
    return name + (f"-seed{variant.seed}" if variant.seed else "")


def parse_variant(name: str, bases: tuple[str, ...] | list[str]) -> tuple[str, Variant] | None:
    """(base, variant) when `name` is a variant of one of `bases`, else None."""
    m = VARIANT.fullmatch(name)
    if not m or m["base"] not in bases or not (m["cold"] or m["train"]):
        return None
    try:
        variant = Variant(float(m["cold"] or 0), float(m["train"] or 1), int(m["seed"] or 0))
    except ValueError:
        raise DataError(f"dataset {name!r}: the variant's numbers are not readable; e.g. {m['base']}-cold0.1-train0.5") from None
    if variant_name(m["base"], variant.check()) != name:
        raise DataError(f"dataset {name!r}: write the variant as {variant_name(m['base'], variant)!r}")
    return m["base"], variant


def cold_split(
    ds: Dataset, fraction: float, seed: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Dataset:
    """`ds` with round(fraction x interacted items) items, drawn with `seed`, made cold:
    every interaction of theirs goes to valid (probability r_valid / (r_valid + r_test))
    or test, none stays in training. A user left without training interactions is refused
    (lower the share), since nothing could be learnt about them."""
    if fraction == 0:
        return ds
    rng = np.random.default_rng(seed)
    pairs = {s: ds.split(s) for s in ("train", "valid", "test")}
    interacted = np.unique(np.concatenate([p[:, 1] for p in pairs.values()]))
    count = round(fraction * len(interacted))
    if count == 0:
        raise DataError(f"--cold-items {fraction:g} of {len(interacted)} items rounds to none; raise it")
    cold = np.sort(rng.choice(interacted, size=count, replace=False))
    is_cold = np.zeros(ds.num_items, dtype=bool)
    is_cold[cold] = True
    moved = np.concatenate([p[is_cold[p[:, 1]]] for p in pairs.values()])
    moved = moved[np.lexsort((moved[:, 1], moved[:, 0]))]
    _, r_valid, r_test = ratios
    to_valid = rng.random(len(moved)) < (r_valid / (r_valid + r_test) if r_valid + r_test > 0 else 0.5)
    train = pairs["train"][~is_cold[pairs["train"][:, 1]]]
    valid = _sorted(np.concatenate([pairs["valid"][~is_cold[pairs["valid"][:, 1]]], moved[to_valid]]))
    test = _sorted(np.concatenate([pairs["test"][~is_cold[pairs["test"][:, 1]]], moved[~to_valid]]))
    lost = np.setdiff1d(np.arange(ds.num_users), train[:, 0])
    if len(lost):
        raise DataError(f"--cold-items {fraction:g} leaves {len(lost)} users without a training interaction "
                        f"(first: user {lost[0]}); lower the share or pick another --seed")
    return replace(ds, train=train, valid=valid, test=test, cold_items=cold)


def thin_train(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """`ds` keeping, for each user with n training interactions, max(1, round(fraction x n))
    of them, drawn with `seed`; valid and test unchanged."""
    if fraction == 1:
        return ds
    rng = np.random.default_rng(seed)
    train = ds.train
    order = np.lexsort((rng.random(len(train)), train[:, 0]))  # each user's rows, shuffled
    shuffled = train[order]
    n = np.bincount(shuffled[:, 0], minlength=ds.num_users)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    rank = np.arange(len(shuffled)) - start[shuffled[:, 0]]
    keep = np.maximum(1, np.floor(n * fraction + 0.5).astype(np.int64))
    return replace(ds, train=_sorted(shuffled[rank < keep[shuffled[:, 0]]]))


def apply_variant(ds: Dataset, variant: Variant, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Dataset:
    """Cold items first (from the full training set), then the train fraction of what is left;
    the second draw uses seed + 1 so that the two choices are independent."""
    variant.check()
    ds = cold_split(ds, variant.cold_items, variant.seed, ratios)
    return thin_train(ds, variant.train_fraction, variant.seed + 1).validate()


def write_cold_items(folder: Path, ds: Dataset) -> None:
    """`cold_items.txt` (one dense item id per line) when the dataset has cold items."""
    if ds.cold_items is not None and len(ds.cold_items):
        (Path(folder) / COLD_FILE).write_text("".join(f"{i}\n" for i in ds.cold_items), encoding="utf-8")


def read_cold_items(folder: Path, ds: Dataset) -> Dataset:
    """`ds` with the cold items listed in the folder's cold_items.txt, if it has one."""
    path = Path(folder) / COLD_FILE
    if not path.is_file():
        return ds
    text = read_text(path, hint="rebuild the dataset").split()
    if not all(t.isascii() and t.isdigit() and len(t) <= 18 for t in text):  # '²' is a digit to isdigit; 19 digits overflow int64
        raise DataError(f"{path}: expected one dense item id (a whole number) per line; rebuild the dataset")
    return replace(ds, cold_items=np.unique(np.asarray(text, dtype=np.int64))).validate()

