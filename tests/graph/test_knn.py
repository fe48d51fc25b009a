"""The blocked kNN construction equals the dense one (cosine similarity, top-k per row)."""

import pytest
import torch

from ego_dgl.errors import ConfigError
from ego_dgl.graph.knn import knn_indices, sym_normalise


def dense_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The reference: the full items x items cosine matrix, then top-k per row."""
    sim = torch.zeros(len(x), len(x), dtype=torch.float64)
    for i in range(len(x)):
        for j in range(len(x)):
            ni, nj = x[i].norm(), x[j].norm()
            sim[i, j] = 0.0 if ni == 0 or nj == 0 else float(x[i] @ x[j]) / float(ni * nj)
    return sim


@pytest.mark.parametrize("block_rows", [1, 3, 7, 100])
def test_blocked_knn_equals_dense(block_rows):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    x[4] = 0.0  # an item without content
    sim = dense_knn(x, 4)
    got = knn_indices(x, 4, block_rows)
    assert got.shape == (23, 4)
    for i in range(23):
        picked = sim[i, got[i]]
        # the picked neighbours are the 4 largest similarities, in order (ties may swap ids)
        assert torch.allclose(picked, sim[i].sort(descending=True).values[:4], atol=1e-6)


def test_symmetric_normalisation():
    neighbours = torch.tensor([[0, 1], [1, 2], [2, 0]])
    w = sym_normalise(neighbours, torch.ones(3, 2))
    assert torch.allclose(w, torch.full((3, 2), 0.5))  # every row sum is 2: 1/sqrt(2*2)
    weighted = sym_normalise(neighbours, torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(weighted, torch.tensor([[0.25, 0.75], [0.5, 0.0], [0.0, 0.0]]))  # a zero row weighs 0


def test_k_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="1 <= k <= 3"):
        knn_indices(torch.ones(3, 2), 4)
