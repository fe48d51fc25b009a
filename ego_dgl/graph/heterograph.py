"""DGL graphs built from a dataset's training interactions.

All modalities share one edge structure: the user-facing object is one heterograph per
modality (features on the item nodes), while the model runs every modality at once over
the shared structure graph.
"""

from __future__ import annotations

import numpy as np
import torch

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset, WordBag

USER, ITEM = "user", "item"
CLICKS = (USER, "clicks", ITEM)  # user -> item
CLICKED_BY = (ITEM, "clicked_by", USER)  # item -> user


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct (user, item) rows, sorted by user then item."""
    return np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)


def interaction_graph(num_users: int, num_items: int, pairs: np.ndarray) -> dgl.DGLGraph:
    """Bipartite heterograph with user->item and item->user edges, duplicates removed.

    Edge k of both edge types is the same interaction, so per-edge tensors of the two
    directions line up.
    """
    pairs = unique_pairs(pairs)
    u = torch.from_numpy(pairs[:, 0])
    i = torch.from_numpy(pairs[:, 1])
    return dgl.heterograph(
        {CLICKS: (u, i), CLICKED_BY: (i, u)},
        num_nodes_dict={USER: num_users, ITEM: num_items},
    )


def structure_graph(ds: Dataset) -> dgl.DGLGraph:
    """The training graph shared by every modality and the ID branch."""
    return interaction_graph(ds.num_users, ds.num_items, ds.train)


def modality_graphs(ds: Dataset) -> dict[str, dgl.DGLGraph]:
    """One heterograph per modality over the training edges, item features in
    ndata['feat'] (word-bag modalities have no fixed features and carry none) and the
    coverage mask in ndata['has_feat']."""
    graphs = {}
    for m, feats in ds.features.items():
        g = structure_graph(ds)
        if not isinstance(feats, WordBag):
            g.nodes[ITEM].data["feat"] = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        g.nodes[ITEM].data["has_feat"] = torch.from_numpy(ds.mask(m))
        graphs[m] = g
    return graphs


def lightgcn_weights(g: dgl.DGLGraph) -> torch.Tensor:
    """Per-edge 1/sqrt(|N_u| |N_i|) (Eq. 10); the same value serves both edge types."""
    u, i = g.edges(etype=CLICKS)
    du = g.out_degrees(etype=CLICKS).float().clamp(min=1)
    di = g.in_degrees(etype=CLICKS).float().clamp(min=1)
    return (du[u] * di[i]).rsqrt()


def id_graph(ds: Dataset) -> dgl.DGLGraph:
    """The ID branch's graph: the structure graph with the LightGCN weight of every
    edge precomputed in edata['norm'] on both edge types."""
    g = structure_graph(ds)
    w = lightgcn_weights(g)
    g.edges[CLICKS].data["norm"] = w
    g.edges[CLICKED_BY].data["norm"] = w
    return g
