"""Generated datasets with planted structure, so that multimodal models have something
to find: users have latent tastes, items latent factors, every modality shows the item
factors through its own random linear map plus noise, items fall into genres by their
factors, and users click items of their taste's genre with probability rising with
taste-factor affinity (plus an item popularity bias)."""

from __future__ import annotations

import math

import numpy as np

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.split import split_per_user
from ego_dgl.errors import ConfigError
from ego_dgl.system import check_memory

ML100K_SIZE = (943, 1682, 100_000)  # users, items, interactions of the default real dataset
PRESETS = {
    "synthetic-tiny": dict(num_users=60, num_items=80, num_interactions=900,
                           dims={"visual": 16, "acoustic": 8, "textual": 12}),
    "synthetic-tiktok": dict(num_users=36_656, num_items=76_085, num_interactions=726_065,
                             dims={"visual": 128, "acoustic": 128, "textual": 128}),
}
SCALED_DIMS = {"visual": 128, "acoustic": 64, "textual": 96}
CHUNK = 1 << 20  # candidate (user, item) scores computed at a time
GENRE_SIZE = 500  # items per genre on average, at any catalogue size


def make_synthetic(
    num_users: int,
    num_items: int,
    num_interactions: int,
    dims: dict[str, int],
    seed: int = 0,
    noise: float = 1.0,
    latent_dim: int = 16,
    strength: float = 2.0,
    missing: dict[str, float] | None = None,
    name: str = "synthetic",
) -> Dataset:
    """A dataset with exactly `num_interactions` distinct interactions split 8:1:1 per
    user. `noise` is the feature noise's std relative to the signal's; `strength`
    scales taste-factor affinity against popularity; `missing[m]` is the fraction of
    items lacking modality m (zero row, mask false). Deterministic in `seed`."""
    _check_sizes(num_users, num_items, num_interactions, dims)
    check_memory(f"synthetic data of {num_users:,} users, {num_items:,} items and {num_interactions:,} interactions",
                 synthetic_bytes(num_users, num_items, num_interactions, dims, latent_dim), "use a smaller scale")
    rng = np.random.default_rng(seed)
    tastes = rng.standard_normal((num_users, latent_dim))
    factors = rng.standard_normal((num_items, latent_dim))
    popularity = rng.standard_normal(num_items)
    counts = _activity(num_users, num_items, num_interactions, rng)
    pairs = _sample_clicks(tastes, factors * (strength / math.sqrt(latent_dim)), popularity, counts, rng)
    train, valid, test = split_per_user(pairs, num_users, seed)
    features, masks = {}, {}
    for m, dim in dims.items():
        signal = factors @ (rng.standard_normal((latent_dim, dim)) / math.sqrt(latent_dim))
        x = (signal + noise * rng.standard_normal((num_items, dim))).astype(np.float32)
        share = (missing or {}).get(m, 0.0)
        if share > 0:
            masks[m] = rng.random(num_items) >= share
            x[~masks[m]] = 0.0
        features[m] = x
    return Dataset(name, num_users, num_items, train, valid, test, features, masks)


def make_synthetic_scaled(scale: float = 1.0, seed: int = 0) -> Dataset:
    """MovieLens-100K-sized data times `scale` (users, items and interactions alike, so
    the average degree stays put): benchmarks use 1, 2, 4, 8."""
    if not scale > 0:
        raise ConfigError(f"synthetic scale must be positive, got {scale}")
    users, items, clicks = (max(1, round(n * scale)) for n in ML100K_SIZE)
    name = "synthetic" if scale == 1 else f"synthetic-x{scale:g}"
    return make_synthetic(users, items, clicks, SCALED_DIMS, seed=seed, name=name)


def make_preset(name: str, seed: int = 0) -> Dataset:
    """One of PRESETS by name."""
    return make_synthetic(**PRESETS[name], seed=seed, name=name)


def synthetic_bytes(num_users: int, num_items: int, num_interactions: int, dims: dict[str, int], latent_dim: int) -> int:
    """A lower estimate of the generator's memory, checked before anything is drawn:
    float64 latent factors of users and items, float32 features, and per interaction its
    int64 pair and ten candidates' float64 keys."""
    return 8 * latent_dim * (num_users + num_items) + 4 * num_items * sum(dims.values()) + (16 + 80) * num_interactions


def _check_sizes(num_users: int, num_items: int, num_interactions: int, dims: dict[str, int]) -> None:
    if min(num_users, num_items) < 1 or not dims or min(dims.values()) < 1:
        raise ConfigError("synthetic data needs >= 1 user, >= 1 item and >= 1 modality with a positive dim")
    if not num_users <= num_interactions <= num_users * max(1, num_items // 2):
        raise ConfigError(
            f"{num_interactions} interactions do not fit {num_users} users x {num_items} items; "
            f"use between {num_users} and {num_users * max(1, num_items // 2)}"
        )


def _activity(num_users: int, num_items: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: >= min(5, total // users) each (so most users get valid
    and test items), long-tailed, at most half the items, summing to `total`."""
    floor = min(5, total // num_users)
    cap = max(floor, num_items // 2)
    weight = rng.lognormal(0.0, 0.8, num_users)
    counts = floor + rng.multinomial(total - floor * num_users, weight / weight.sum())
    while (over := int(np.maximum(counts - cap, 0).sum())) > 0:
        counts = np.minimum(counts, cap)
        free = counts < cap
        counts[free] += rng.multinomial(over, weight[free] / weight[free].sum())
    return counts


def _genre_windows(
    tastes: np.ndarray, factors: np.ndarray, cands: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Items ordered by genre (randomly within one) and where each user's window of
    candidates starts in that order. Genres are about num_items / GENRE_SIZE random
    directions of the latent space; an item joins the one its factors point to most, a
    user the one their taste does, and the window starts inside the user's genre so that
    at least half of it lies there when the genre is big enough. Without genres the
    candidates would be spread over the whole catalogue, and on a large one no model
    could find a user's held-out items (at Tiktok's size even the generator's own
    affinities reached test recall@10 0.0014)."""
    num_genres = max(1, round(len(factors) / GENRE_SIZE))
    directions = rng.standard_normal((num_genres, tastes.shape[1]))
    item_genre = np.argmax(factors @ directions.T, axis=1)
    user_genre = np.argmax(tastes @ directions.T, axis=1)
    order = np.lexsort((rng.random(len(factors)), item_genre))
    first = np.searchsorted(item_genre[order], np.arange(num_genres))
    room = np.maximum(np.bincount(item_genre, minlength=num_genres)[user_genre] - cands // 2, 1)
    return order, first[user_genre] + (rng.random(len(tastes)) * room).astype(np.int64)


def _sample_clicks(
    tastes: np.ndarray, factors: np.ndarray, popularity: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Each user u clicks counts[u] distinct items, drawn without replacement with
    probability proportional to exp(affinity + popularity) (Gumbel top-k) among ~10x
    as many distinct candidates: a window of their genre (see _genre_windows)."""
    num_users, num_items = len(tastes), len(factors)
    cands = np.minimum(num_items, 10 * counts)
    by_genre, offset = _genre_windows(tastes, factors, cands, rng)
    ends = np.cumsum(cands)
    out, lo = [], 0
    while lo < num_users:
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo - 1] + CHUNK if lo else CHUNK, side="right")))
        users = np.repeat(np.arange(lo, hi), cands[lo:hi])
        k = np.arange(len(users)) - np.repeat(np.cumsum(cands[lo:hi]) - cands[lo:hi], cands[lo:hi])
        items = by_genre[(offset[users] + k) % num_items]
        key = np.einsum("ij,ij->i", tastes[users], factors[items]) + popularity[items] + rng.gumbel(size=len(users))
        order = np.lexsort((-key, users))
        # users is sorted, so sorting keeps each user's block in place and position p
        # holds the user's k[p]-th best candidate
        chosen = order[k < counts[users]]
        out.append(np.stack([users[chosen], items[chosen]], axis=1))
        lo = hi
    return np.concatenate(out)
