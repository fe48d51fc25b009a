"""The DGL graphs against numpy and plain loops on a hand-built fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TEST, TEXT, TRAIN, VALID, VISUAL, WORDS

from ego_dgl.data import Dataset, WordBag
from ego_dgl.graph.heterograph import (
    CLICKED_BY,
    CLICKS,
    ITEM,
    USER,
    id_graph,
    lightgcn_weights,
    modality_graphs,
    structure_graph,
    unique_pairs,
)

DUPLICATED = np.vstack([TRAIN, TRAIN[[1, 4, 1]]])  # three repeated clicks


@pytest.fixture
def toy() -> Dataset:
    """Not validated on purpose: the graphs must drop duplicates themselves."""
    mask = np.array([True, True, False, True, True])
    return Dataset(
        "toy", 4, 5, DUPLICATED, VALID, TEST,
        {"visual": VISUAL, "text": TEXT, "words": WordBag(WORDS[0], WORDS[1], 6)},
        {"text": mask},
    )


def test_unique_pairs_sorted_and_distinct():
    pairs = unique_pairs(DUPLICATED)
    assert len(pairs) == len(TRAIN)
    assert pairs.tolist() == sorted(TRAIN.tolist())


def test_structure_graph_edges_and_degrees(toy):
    g = structure_graph(toy)
    pairs = np.unique(TRAIN, axis=0)
    assert g.num_nodes(USER) == 4 and g.num_nodes(ITEM) == 5
    assert g.num_edges(CLICKS) == g.num_edges(CLICKED_BY) == len(pairs) == 8
    assert np.array_equal(g.out_degrees(etype=CLICKS).numpy(), np.bincount(pairs[:, 0], minlength=4))
    assert np.array_equal(g.in_degrees(etype=CLICKS).numpy(), np.bincount(pairs[:, 1], minlength=5))
    assert np.array_equal(g.out_degrees(etype=CLICKED_BY).numpy(), np.bincount(pairs[:, 1], minlength=5))
    assert np.array_equal(g.in_degrees(etype=CLICKED_BY).numpy(), np.bincount(pairs[:, 0], minlength=4))
    u, i = g.edges(etype=CLICKS)
    i2, u2 = g.edges(etype=CLICKED_BY)
    assert torch.equal(u, u2) and torch.equal(i, i2)  # edge k is the same interaction both ways
    assert sorted(zip(u.tolist(), i.tolist())) == sorted(map(tuple, pairs.tolist()))


def test_modality_graphs_carry_features_and_masks(toy):
    graphs = modality_graphs(toy)
    assert list(graphs) == ["visual", "text", "words"]
    ref = structure_graph(toy)
    for m, g in graphs.items():
        assert g.num_edges(CLICKS) == 8
        assert torch.equal(g.edges(etype=CLICKS)[0], ref.edges(etype=CLICKS)[0])
        assert torch.equal(g.nodes[ITEM].data["has_feat"], torch.from_numpy(toy.mask(m)))
    assert np.array_equal(graphs["visual"].nodes[ITEM].data["feat"].numpy(), VISUAL)
    assert np.array_equal(graphs["text"].nodes[ITEM].data["feat"].numpy(), TEXT)
    assert graphs["text"].nodes[ITEM].data["has_feat"].tolist() == [True, True, False, True, True]
    assert "feat" not in graphs["words"].nodes[ITEM].data


def test_lightgcn_weights_against_a_loop(toy):
    g = structure_graph(toy)
    edges = sorted(set(map(tuple, TRAIN.tolist())))
    deg_u = {u: sum(1 for a, _ in edges if a == u) for u in range(4)}
    deg_i = {i: sum(1 for _, b in edges if b == i) for i in range(5)}
    u, i = g.edges(etype=CLICKS)
    expected = [1 / math.sqrt(deg_u[a] * deg_i[b]) for a, b in zip(u.tolist(), i.tolist())]
    assert np.allclose(lightgcn_weights(g).numpy(), expected, rtol=1e-6)


def test_id_graph_norm_is_the_symmetric_normalised_adjacency(toy):
    g = id_graph(toy)
    assert torch.equal(g.edges[CLICKS].data["norm"], g.edges[CLICKED_BY].data["norm"])
    adj = np.zeros((4, 5))
    adj[TRAIN[:, 0], TRAIN[:, 1]] = 1
    dense = adj / np.sqrt(adj.sum(1, keepdims=True)) / np.sqrt(np.maximum(adj.sum(0, keepdims=True), 1))
    got = np.zeros((4, 5))
    u, i = g.edges(etype=CLICKS)
    got[u.numpy(), i.numpy()] = g.edges[CLICKS].data["norm"].numpy()
    assert np.allclose(got, dense, rtol=1e-6)
