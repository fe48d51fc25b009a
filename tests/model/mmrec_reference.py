"""Loop-by-loop float64 pieces shared by the reference tests of MMRec's models (BM3,
MGCN, LGMRec): a float64 model, the training neighbours, LightGCN and kNN graphs
computed one node and one edge at a time, and small dense helpers. Tolerances are 1e-8 to 1e-7:
the graphs' edge weights are computed in float32 before the model turns float64."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ego_dgl.data import Dataset
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options


def with_gaps(ds: Dataset) -> Dataset:
    """`ds` with its first modality missing for every third item."""
    mask = np.arange(ds.num_items) % 3 != 0
    return dataclasses.replace(ds, feature_masks={ds.modalities[0]: mask})


def float64_model(ds: Dataset, name: str, **given):
    """Model `name` on `ds` with synthetic-tiny's defaults and `given`, in float64, seed 0."""
    _, cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "model": name, **given})
    torch.manual_seed(0)
    return build_model(ds, cfg, "cpu").double()


def neighbours(ds: Dataset) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Each user's and each item's distinct training neighbours."""
    pairs = sorted({(int(u), int(i)) for u, i in ds.train})
    of_user = {u: [i for v, i in pairs if v == u] for u in range(ds.num_users)}
    return of_user, {i: [u for u, j in pairs if j == i] for i in range(ds.num_items)}


def content(ds: Dataset, m: str) -> torch.Tensor:
    """Modality m's raw features in float64, zero rows where the item lacks it."""
    x = torch.as_tensor(np.asarray(ds.features[m]), dtype=torch.float64).clone()
    x[~torch.from_numpy(ds.mask(m))] = 0
    return x


def propagate_once(ds: Dataset, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LightGCN step: each node's sum over neighbours of x_j / sqrt(|N_u| |N_i|)."""
    of_user, of_item = neighbours(ds)
    new_u, new_i = torch.zeros_like(users), torch.zeros_like(items)
    for u in range(ds.num_users):
        for i in of_user[u]:
            w = 1 / math.sqrt(len(of_user[u]) * len(of_item[i]))
            new_u[u] += w * items[i]
            new_i[i] += w * users[u]
    return new_u, new_i


def layer_mean(ds: Dataset, users: torch.Tensor, items: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LightGCN's mean of layers 0..layers."""
    all_u, all_i = [users], [items]
    for _ in range(layers):
        u, i = propagate_once(ds, all_u[-1], all_i[-1])
        all_u.append(u)
        all_i.append(i)
    return sum(all_u) / (layers + 1), sum(all_i) / (layers + 1)


def knn_graph(x: torch.Tensor, k: int) -> dict[int, list[tuple[int, float]]]:
    """Each item's k most cosine-similar items (dense similarities, a zero row similar to
    nothing), with the weight 1 / sqrt(deg_i deg_j) of the kNN adjacency's row sums."""
    norms = x.norm(dim=1)
    sims = torch.zeros(len(x), len(x), dtype=torch.float64)
    for a in range(len(x)):
        for b in range(len(x)):
            if norms[a] > 0 and norms[b] > 0:
                sims[a, b] = x[a] @ x[b] / (norms[a] * norms[b])
    top = {a: sims[a].topk(k).indices.tolist() for a in range(len(x))}
    degree = {a: len(top[a]) for a in top}
    return {a: [(b, 1 / math.sqrt(degree[a] * degree[b])) for b in top[a]] for a in top}


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors."""
    return (a @ b / (a.norm() * b.norm())).item()


def linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """W x + b for one vector (detached)."""
    return layer.weight.detach() @ x + layer.bias.detach()
