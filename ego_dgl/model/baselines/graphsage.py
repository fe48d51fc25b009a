"""GraphSAGE (Hamilton, Ying and Leskovec, "Inductive Representation Learning on Large
Graphs", NeurIPS 2017) on the user/item heterograph, with early-fused multimodal inputs
(`early_fusion`), as DGL's own `dgl.nn.SAGEConv`, one per edge type in a
`dgl.nn.HeteroGraphConv` (`hetero_conv`).

h(0) = the early-fusion inputs x_u, x_i; layer k = 1..K (Algorithm 1, lines 4-7), for a
user u (items alike, with their own weights: one SAGEConv per edge type):
  h_N(u) = AGGREGATE_k({h(k-1)_i : i in N(u)}),
  h(k)_u = ReLU(W_self h(k-1)_u + W_neigh h_N(u) + b)   (= σ(W · CONCAT(h(k-1)_u, h_N(u))) + b),
  h(k)_u = h(k)_u / ||h(k)_u||_2;
final z_u = h(K)_u (the last layer's output), score <z_u, z_i>; BPR with the regulariser
on the batch's raw ID rows. With K = 0 the inputs are the output.

[impl] `output` (default `linear`): the last layer is left linear and unnormalised, so
scores are unbounded inner products as BPR needs; `paper` applies ReLU and L2
normalisation after the last layer too (Algorithm 1 as written), which bounds every score
to [0, 1] and, measured on ml100k (seed 0, lr 1e-3, 20 epochs), kept validation R@10
at 0.09 (below popularity, 0.13) against 0.20 for `linear`; normalising the linear last
layer (the authors' TensorFlow code) gave 0.12. Earlier layers follow the paper.

Aggregators (`aggregator`, SAGEConv's): mean (default; h_N = the neighbours' mean), gcn
(W_neigh (h_u + sum of h_i) / (|N(u)| + 1), with no W_self), pool (max over the neighbours
of ReLU(W_pool h_i + b_pool)). The paper's LSTM aggregator is not offered: it needs a
random neighbour order and runs DGL's slow degree-bucketed reducer.
Choices: the full neighbourhood instead of the paper's sampled one (the graphs here are
small enough); σ = ReLU, the paper's experiments' nonlinearity; SAGEConv's bias b (the
authors' code has an optional bias, off by default; DGL's default keeps it); a node with no
training neighbour gets h_N = 0. The paper's σ and normalisation follow every layer but
the last, which by default (`output=linear`, above) stays linear and unnormalised;
`output=paper` applies them after the last layer too. The authors' TensorFlow code leaves
the last layer linear and L2-normalises only the final output. MMGCN's code (weiyinwei/MMGCN,
Movielens/MMGraphSAGE.py) builds its "GraphSAGE" baseline as a GCN-style layer with self
loops on one user+item graph, L2-normalised then LeakyReLU after every layer; we keep
DGL's SAGEConv, the paper's layer, with a separate transform for the node itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor
from torch.nn import functional as F

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS
from ego_dgl.model.layers.early_fusion import BaselineConfig
from ego_dgl.model.layers.features import normalize
from ego_dgl.model.layers.hetero_conv import HeteroConvRecommender

AGGREGATORS = ("mean", "gcn", "pool")
OUTPUTS = ("linear", "paper")


@dataclass
class GraphSAGEConfig(BaselineConfig):
    """GraphSAGE: the paper's K = 2 layers and the mean aggregator."""

    name: ClassVar[str] = "graphsage"
    aggregator: str = "mean"  # mean | gcn | pool
    output: str = "linear"  # linear (last layer unnormalised) | paper (ReLU + L2 after it too)

    def validate(self) -> GraphSAGEConfig:
        super().validate()
        if self.aggregator not in AGGREGATORS:
            raise ConfigError(f"--param aggregator={self.aggregator!r} is not one of: {', '.join(AGGREGATORS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"--param output={self.output!r} is not one of: {', '.join(OUTPUTS)}")
        return self

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and GraphSAGE's aggregator (the paper's three)."""
        return {**super().search_space(), "aggregator": {"choices": ["mean", "gcn", "pool"]}}


class GraphSAGE(HeteroConvRecommender):
    """K SAGEConv layers per edge type; ReLU then L2 normalisation after each (but the
    last, with output=linear)."""

    def __init__(self, ds: Dataset, cfg: GraphSAGEConfig):
        convs = [
            dgl.nn.HeteroGraphConv({etype[1]: dgl.nn.SAGEConv(cfg.dim, cfg.dim, cfg.aggregator) for etype in (CLICKS, CLICKED_BY)})
            for _ in range(cfg.layers)
        ]
        super().__init__(ds, cfg, convs)
        self.linear_output = cfg.output == "linear"

    def after_layer(self, k: int, h: Tensor) -> Tensor:
        if self.linear_output and k == len(self.convs) - 1:
            return h
        return normalize(F.relu(h))
