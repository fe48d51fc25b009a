"""Layer-0 inputs of the multimodal branch: projected item features and user preferences.

Item features (docs/egogcn.md, "Inputs"): i_m(0) = normalize(leaky_relu(W_m X_m + b_m)) per modality. A
word-bag text modality (Tiktok) has no fixed X_m: a learned word table is averaged over
each item's words and then projected like any other modality.

Items lacking a modality (Dataset.mask(m) false, or a word bag without words) must not
inject zeros as if they were features. Their slot for modality m is filled with:
- the mean of the item's own available modalities' projected features, re-normalised;
- for an item with no modality at all, the mean of modality m over the items that have it,
  re-normalised (the "average item" of that modality).
Both fills follow the parameters, so they stay consistent as training moves the projections.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset, WordBag
from ego_dgl.errors import ConfigError, DataError

_NORM_EPS = 1e-12  # F.normalize's floor on the norm: zero rows stay zero


class _Normalize(torch.autograd.Function):
    """x / max(||x||, eps) over the last axis, as F.normalize computes it, with a backward
    in three passes over x's shape instead of autograd's eight through norm, clamp and a
    broadcast division: the gradient is (g - y <g, y>) / ||x||, or g / eps where the
    floor applies."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        floored = norm <= _NORM_EPS
        denom = norm.clamp_min_(_NORM_EPS)
        y = x / denom
        ctx.save_for_backward(y, denom, floored)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        y, denom, floored = ctx.saved_tensors
        # einsum runs the row dot products as one batched matmul: 6x faster than vecdot.
        dot = torch.einsum("...d,...d->...", grad, y).unsqueeze(-1).masked_fill_(floored, 0)
        return torch.addcmul(grad, y, dot, value=-1).div_(denom)


def normalize(x: Tensor) -> Tensor:
    """L2 row normalisation over the last axis (docs/egogcn.md [impl]); zero rows stay zero."""
    return _Normalize.apply(x)


def require_modalities(ds: Dataset, why: str, fix: str) -> int:
    """How many modalities `ds` has; a ConfigError saying `why` the model needs one and
    the `fix` when it has none."""
    if not ds.modalities:
        raise ConfigError(f"dataset {ds.name!r} has no modality, and {why}; {fix}")
    return len(ds.modalities)


def xavier_table(rows: int, dim: int) -> nn.Parameter:
    """A trainable [rows, dim] table, xavier-normal initialised."""
    return nn.Parameter(nn.init.xavier_normal_(torch.empty(rows, dim)))


def fill_missing(x: Tensor, available: Tensor) -> Tensor:
    """Replace the unavailable slots of x [Q, M, D] (available: bool [Q, M]) by the item's
    mean available feature, or, for items with none, by the modality's mean over the items
    that have it; both re-normalised."""
    a = available.unsqueeze(-1).to(x.dtype)
    kept = x * a
    own = normalize(kept.sum(1) / a.sum(1).clamp(min=1))  # [Q, D]
    modality = normalize(kept.sum(0) / a.sum(0).clamp(min=1))  # [M, D]
    has_any = available.any(1).view(-1, 1, 1)
    fill = torch.where(has_any, own.unsqueeze(1), modality.unsqueeze(0))
    return torch.where(available.unsqueeze(-1), x, fill)


class WordBagEncoder(nn.Module):
    """Per-item mean of a learned word table (word_dim wide) over the item's words."""

    def __init__(self, bag: WordBag, num_items: int, word_dim: int):
        super().__init__()
        order = np.argsort(bag.items, kind="stable")
        counts = np.bincount(bag.items, minlength=num_items)
        self.register_buffer("words", torch.from_numpy(bag.words[order].astype(np.int64)), persistent=False)
        self.register_buffer("offsets", torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)), persistent=False)
        self.has_words = counts > 0
        self.table = xavier_table(bag.num_words, word_dim)

    def forward(self) -> Tensor:
        return F.embedding_bag(self.words, self.table, self.offsets, mode="mean")


class ItemFeatures(nn.Module):
    """All modalities' projected item features i_m(0) as one [Q, M, D] tensor, in dataset
    order, with missing modalities filled as the module docstring says."""

    def __init__(self, ds: Dataset, dim: int, word_dim: int):
        super().__init__()
        self.bags = nn.ModuleDict()
        self.proj = nn.ModuleList()
        available = []
        for k, m in enumerate(ds.modalities):
            feats, mask = ds.features[m], ds.mask(m).astype(bool)
            if isinstance(feats, WordBag):
                encoder = WordBagEncoder(feats, ds.num_items, word_dim)
                mask = mask & encoder.has_words
                self.bags[str(k)] = encoder
                width = word_dim
            else:
                # Rows of items lacking the modality are zeroed so that NaN or junk there
                # cannot leak into gradients through the (discarded) projection.
                dense = np.where(mask[:, None], np.asarray(feats, dtype=np.float32), 0.0).astype(np.float32)
                self.register_buffer(f"x{k}", torch.from_numpy(dense), persistent=False)
                width = dense.shape[1]
            if not mask.any():
                raise DataError(f"modality {m!r} covers no item; drop it from the dataset or provide its features")
            available.append(mask)
            self.proj.append(nn.Linear(width, dim))
        self.register_buffer("available", torch.from_numpy(np.stack(available, 1)), persistent=False)
        self.complete = bool(self.available.all())

    def forward(self) -> Tensor:
        # Row-wise normalisation commutes with stacking; once over [Q, M, D] is one
        # contiguous pass instead of M strided ones in the backward.
        x = normalize(torch.stack([F.leaky_relu(proj(self._raw(k))) for k, proj in enumerate(self.proj)], 1))
        return x if self.complete else fill_missing(x, self.available)

    def _raw(self, k: int) -> Tensor:
        return self.bags[str(k)]() if str(k) in self.bags else getattr(self, f"x{k}")


class UserPreferences(nn.Module):
    """Trainable user preference tables u_m(0), one raw [P, D] table per modality; used
    normalised, regularised raw."""

    def __init__(self, num_users: int, num_modalities: int, dim: int):
        super().__init__()
        self.tables = nn.ParameterList([xavier_table(num_users, dim) for _ in range(num_modalities)])

    def forward(self) -> Tensor:
        return normalize(torch.stack(list(self.tables), 1))

    def raw_rows(self, users: Tensor) -> list[Tensor]:
        return [t[users] for t in self.tables]
