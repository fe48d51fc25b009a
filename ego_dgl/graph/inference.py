"""Exact layer-wise inference in chunks (`--eval-chunk N`), in the manner of DGL's
GraphSAGE example's `inference`: one layer at a time over every node, each layer computed
for chunks of N destination nodes over their full in-neighbourhoods (a one-layer
full-neighbour block), and the layer's whole output tables stored before the next layer
starts. The peak then holds one layer's tables and one chunk's block, never every
layer's per-edge tensors of a whole-graph propagation.

Each chunk's block is a block of sampled training (`blocks.py`) with every in-edge taken,
so the layers run the same code over it and the outputs equal the whole-graph ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ego_dgl._dgl import dgl
from ego_dgl.graph.backends import Relation
from ego_dgl.graph.blocks import block_relation, edge_ids, input_ids
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER

INTO = {USER: CLICKED_BY, ITEM: CLICKS}  # the edge type into each node type


@dataclass
class Chunk:
    """Destination nodes of one type with their full in-neighbourhood, on the model's device."""

    ntype: str  # the destinations' type (user or item)
    dst: Tensor  # [n] global ids of the destinations
    src: Tensor  # [n_src] global ids of the block's source nodes (the other type)
    rel: Relation  # the relation source -> destination, in block-local indices
    edges: Tensor  # [E_chunk] global ids of the relation's edges, in its edge order

    @property
    def etype(self) -> tuple[str, str, str]:
        return INTO[self.ntype]


def chunks(graph: dgl.DGLGraph, ntype: str, size: int, backend: str, device: torch.device) -> Iterator[Chunk]:
    """The nodes of `ntype` in id order, `size` at a time, each chunk with the one-layer
    full-neighbour block DGL's MultiLayerFullNeighborSampler builds around it."""
    sampler = dgl.dataloading.MultiLayerFullNeighborSampler(1)
    etype = INTO[ntype]
    for ids in torch.arange(graph.num_nodes(ntype)).split(size):
        _, _, (block,) = sampler.sample_blocks(graph, {ntype: ids})
        yield Chunk(ntype, ids.to(device), input_ids(block, etype[0], device), block_relation(block, etype, backend, device), edge_ids(block,
            etype, device))


Step = Callable[[Chunk, Tensor, Tensor], Tensor]


def layer(graph: dgl.DGLGraph, size: int, backend: str, device: torch.device, tables: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
    """One layer over every user and item: per chunk, `step(chunk, source rows, destination
    rows)` of `tables` (by node type) gives the destinations' outputs, written into the
    layer's output tables."""
    out: dict[str, Tensor] = {}
    for ntype in (USER, ITEM):
        table = None
        for chunk in chunks(graph, ntype, size, backend, device):
            rows = step(chunk, tables[chunk.etype[0]][chunk.src], tables[ntype][chunk.dst])
            if table is None:
                table = rows.new_empty((graph.num_nodes(ntype),) + tuple(rows.shape[1:]))
            table[chunk.dst] = rows
        out[ntype] = table
    return out
