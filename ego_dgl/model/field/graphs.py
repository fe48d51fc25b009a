"""Pieces the field's models share: sparse matrices by rows (RowSparse, FixedSparse) that
every graph of the six models is built as, applied by the package's SpMM kernel
(ego_dgl.graph.sparse); the user-item graph in MMRec's two normalisations, the item-item
kNN graphs as [Q, k] neighbour and weight tables, the loss on the batch's output rows,
and the dense raw item features these models read.

Every matrix here is sparse: memory grows with users + items + edges, and with items x k
for the kNN graphs (ego_dgl.graph.knn builds their neighbours in blocks of rows)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset, WordBag
from ego_dgl.errors import ConfigError
from ego_dgl.graph.knn import knn_indices, sym_normalise
from ego_dgl.graph.sparse import aggregate, csr_relation
from ego_dgl.model.base import Tables, inner
from ego_dgl.model.layers.loss import bpr

IMAGE_NAMES = ("image", "visual", "v")  # modality names taken as MMRec's image_feat.npy


class RowSparse:
    """A [rows, cols] sparse matrix by rows (CSR offsets `crow`, columns and values per entry); `mm(x)` is its
    product with a dense [cols, D] x by ego_dgl.graph.sparse's kernel, differentiable in x and the values."""

    def __init__(self, crow: Tensor, col: Tensor, value: Tensor, num_cols: int | None = None):
        self.crow, self.col, self.value = crow, col, value
        self.relation = csr_relation(crow, col, len(crow) - 1 if num_cols is None else num_cols)

    @staticmethod
    def from_edges(rows: Tensor, cols: Tensor, values: Tensor, num_rows: int, num_cols: int | None = None) -> RowSparse:
        """The matrix with values[e] at (rows[e], cols[e]); repeated entries add up."""
        order = torch.argsort(rows, stable=True)
        counts = torch.bincount(rows, minlength=num_rows)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return RowSparse(crow, cols[order], values[order], num_cols)

    def mm(self, x: Tensor) -> Tensor:
        return aggregate(self.relation, x.unsqueeze(1), self.value.to(x.dtype).unsqueeze(1)).squeeze(1)

    def detach(self) -> RowSparse:
        """The same matrix with its values detached (the kernel's patterns shared)."""
        out = copy.copy(self)
        out.value = self.value.detach()
        return out


class FixedSparse(nn.Module):
    """A RowSparse whose arrays are (non-persistent) buffers, so that it moves with the
    model: the graphs that carry no gradient."""

    def __init__(self, matrix: RowSparse):
        super().__init__()
        for key in ("crow", "col", "value"):
            self.register_buffer(key, getattr(matrix, key).detach(), persistent=False)
        self.num_cols = matrix.relation.num_src
        self.matrix: RowSparse | None = None  # over the current buffers, built at the first product

    def mm(self, x: Tensor) -> Tensor:
        if self.matrix is None or self.matrix.col is not self.col or self.matrix.value is not self.value:
            self.matrix = RowSparse(self.crow, self.col, self.value, self.num_cols)
        return self.matrix.mm(x)


def xavier_uniform(rows: int, cols: int) -> nn.Parameter:
    """A trainable [rows, cols] table, xavier-uniform initialised (MMRec's choice)."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols)))


def train_edges(ds: Dataset) -> tuple[Tensor, Tensor]:
    """(users, items) of the distinct training interactions."""
    pairs = np.unique(ds.train.reshape(-1, 2), axis=0)
    return torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())


def lightgcn_norm(users: Tensor, items: Tensor, num_users: int, num_items: int) -> Tensor:
    """LightGCN's 1 / sqrt(d_u d_i) per edge (u, i), degrees over the given edges, in float32 as `lightgcn_weights`;
    no degree is 0, so MMRec's 1e-7 floor on degrees is left out (a float32 rounding-level change)."""
    d_u = torch.bincount(users, minlength=num_users).float()
    d_i = torch.bincount(items, minlength=num_items).float()
    return (d_u[users] * d_i[items]).rsqrt()


def bipartite_sym(users: Tensor, items: Tensor, num_users: int, num_items: int) -> RowSparse:
    """D^-1/2 A D^-1/2 of the (P + Q)-node user-item graph, users first: the LightGCN graph of FREEDOM, BM3, MGCN
    and LGMRec (edge weights `lightgcn_norm`)."""
    w = lightgcn_norm(users, items, num_users, num_items)
    rows = torch.cat([users, items + num_users])
    cols = torch.cat([items + num_users, users])
    return RowSparse.from_edges(rows, cols, torch.cat([w, w]), num_users + num_items)


def bipartite_row_self(users: Tensor, items: Tensor, num_users: int, num_items: int) -> RowSparse:
    """D^-1 (A + I) of the user-item graph (MMRec's LATTICE, after NGCF's code): each node
    averages itself and its neighbours, D = degree + 1."""
    n = num_users + num_items
    nodes = torch.arange(n)
    rows = torch.cat([users, items + num_users, nodes])
    cols = torch.cat([items + num_users, users, nodes])
    degree = torch.bincount(rows, minlength=n).float()
    return RowSparse.from_edges(rows, cols, 1.0 / degree[rows], n)


def layer_mean(adj: RowSparse | FixedSparse, x: Tensor, layers: int) -> Tensor:
    """LightGCN's output: the mean of x, adj x, ..., adj^layers x (layer 0 included)."""
    out = [x]
    for _ in range(layers):
        out.append(adj.mm(out[-1]))
    return torch.stack(out).mean(0)


def dense_features(ds: Dataset, model: str) -> dict[str, Tensor]:
    """Each modality's raw [Q, F] float32 features (rows of items lacking it zero);
    a word-bag modality or none at all is a ConfigError: these models read fixed
    feature matrices, as MMRec's image_feat.npy and text_feat.npy."""
    if not ds.modalities:
        raise ConfigError(f"--model {model} reads item features, and dataset {ds.name!r} has none; use --model lightgcn")
    out = {}
    for m in ds.modalities:
        feats = ds.features[m]
        if isinstance(feats, WordBag):
            raise ConfigError(f"--model {model} reads dense item features; modality {m!r} is a word bag (use a dataset "
                              "with a <modality>_feat.npy matrix, e.g. built with `egodgl data build`)")
        mask = ds.mask(m).astype(bool)
        out[m] = torch.from_numpy(np.where(mask[:, None], np.asarray(feats, dtype=np.float32), 0.0).astype(np.float32))
    return out


def modality_shares(names: list[str], image_weight: float) -> list[float]:
    """Weights of the modalities in FREEDOM's mixed item graph: MMRec weighs image by
    `image_weight` and text by the rest; here a modality named like image (IMAGE_NAMES)
    gets `image_weight` and the others share the rest equally; without an image
    modality (or with only one modality) every modality weighs the same."""
    images = [k for k, m in enumerate(names) if m.lower() in IMAGE_NAMES]
    if not images or len(names) == 1:
        return [1.0 / len(names)] * len(names)
    image = images[0]
    rest = (1.0 - image_weight) / (len(names) - 1)
    return [image_weight if k == image else rest for k in range(len(names))]


def knn_cosine(features: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each item's k most cosine-similar items [Q, k] (blocked, no Q x Q matrix) and the
    similarities [Q, k], differentiable in `features` (the top-k choice is not)."""
    neighbours = knn_indices(features.detach(), k).to(features.device)
    unit = F.normalize(features, dim=1)
    return neighbours, (unit.unsqueeze(1) * unit[neighbours]).sum(-1)


def knn_sym(features: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The unweighted kNN graph of `features` normalised D^-1/2 S D^-1/2, as neighbours and values [Q, k]
    (FREEDOM's and MGCN's fixed item graphs)."""
    neighbours = knn_indices(features.detach(), k).to(features.device)
    return neighbours, sym_normalise(neighbours, torch.ones(neighbours.shape, device=features.device))


def knn_matrix(neighbours: Tensor, values: Tensor) -> RowSparse:
    """The [Q, Q] matrix with `values` [Q, K] at `neighbours` [Q, K] (row-major already)."""
    q, width = neighbours.shape
    crow = torch.arange(0, q * width + 1, width, device=neighbours.device)
    return RowSparse(crow, neighbours.reshape(-1), values.reshape(-1))


def output_rows_loss(
    t: Tables, users: Tensor, pos: Tensor, neg: Tensor, reg: float, penalty: Callable[[Tensor, Tensor, Tensor], Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """BPR on the batch's output rows plus reg * penalty(users, positives, negatives) of
    the same rows (MMRec's VBPR and LATTICE regularise what they score, not raw tables)."""
    u, p, n = t.users[users], t.items[pos], t.items[neg]
    bpr_term = bpr(inner(u, p), inner(u, n))
    reg_term = reg * penalty(u, p, n)
    return bpr_term + reg_term, {"bpr": bpr_term.detach(), "reg": reg_term.detach()}


class KnnSearchSpace:
    """Config mixin of the models with kNN item graphs (LATTICE, FREEDOM, MGCN): `egodgl
    tune` searches the neighbours per item (5-20; MMRec fixes 10) beside lr and reg."""

    def search_space(self) -> dict[str, dict[str, Any]]:
        return {**super().search_space(), "knn_k": {"low": 5, "high": 20}}
