"""Sampled mini-batches (`train --sampler neighbor`): DGL blocks around a batch's users and
items, built by DGL's multi-layer samplers on the user/item heterograph.

One block per propagation layer, both edge types in each; the last block's destination
nodes are the batch's distinct users and items (the seeds), and DGL lists every block's
destination nodes first among its source nodes, so each block's sources are a prefix of
the first block's (the input nodes). A fanout of -1 takes every in-edge: the blocks then
give exactly the full-graph outputs at the seeds. With smaller fanouts each destination's
softmax runs over its sampled in-edges only (the documented approximation).

Blocks stay on the CPU with the graph they are sampled from (the PyPI DGL has no CUDA);
the index tensors the layers use are moved to the model's device as they are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ego_dgl._dgl import dgl
from ego_dgl.errors import ConfigError
from ego_dgl.graph.backends import Relation, build_relation
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER
from ego_dgl.untrusted import MAX_COUNT

ALL = -1  # fanout taking every in-edge


def parse_fanouts(text: str, layers: int) -> list[int]:
    """Per-layer fanouts from '10,10' (one value serves every layer; -1 takes every
    neighbour); anything else is a ConfigError saying what to give."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--fanouts {text!r} must be comma-separated integers, e.g. 10,10 (-1 takes every neighbour)") from None
    if not values or any((v < 1 and v != ALL) or v > MAX_COUNT for v in values):
        raise ConfigError(f"--fanouts {text!r}: each fanout must be a positive integer or -1 (every neighbour), at most 2**63-1")
    if len(values) == 1:
        return values * layers
    if len(values) != layers:
        raise ConfigError(f"--fanouts {text!r} gives {len(values)} values for a model with {layers} layers; give {layers} or one")
    return values


@dataclass
class SampledBatch:
    """A batch's blocks (input side first) and where the batch's users and items sit among
    the last block's destination nodes."""

    blocks: list[dgl.DGLGraph]  # on the CPU
    users: Tensor  # [B] positions among the seed users, on the model's device
    items: Tensor  # [B_items] positions among the seed items, on the model's device


class BlockSampler:
    """Blocks of `len(fanouts)` layers on `graph` (the structure heterograph): DGL's
    MultiLayerFullNeighborSampler when every fanout is -1, else its NeighborSampler with
    the same fanout on both edge types of a layer."""

    def __init__(self, graph: dgl.DGLGraph, fanouts: list[int]):
        self.graph, self.fanouts = graph, fanouts
        if all(f == ALL for f in fanouts):
            self.sampler = dgl.dataloading.MultiLayerFullNeighborSampler(len(fanouts))
        else:
            self.sampler = dgl.dataloading.NeighborSampler([{CLICKS: f, CLICKED_BY: f} for f in fanouts])

    def sample(self, users: Tensor, items: Tensor, device: torch.device) -> SampledBatch:
        """Blocks around the distinct `users` and `items`; the batch's positions among
        them on `device`."""
        seed_users, user_pos = torch.unique(users.cpu(), return_inverse=True)
        seed_items, item_pos = torch.unique(items.cpu(), return_inverse=True)
        blocks = self.blocks_around({USER: seed_users, ITEM: seed_items})
        return SampledBatch(blocks, user_pos.to(device), item_pos.to(device))

    def blocks_around(self, seeds: dict[str, Tensor]) -> list[dgl.DGLGraph]:
        """The blocks whose last destination nodes are `seeds` (per node type, in order)."""
        return self.sampler.sample_blocks(self.graph, seeds)[2]


def block_relations(block: dgl.DGLGraph, backend: str, device: torch.device) -> tuple[Relation, Relation]:
    """The item->user and user->item relations of one block (local node indices) on
    `device`, for the backend's primitives: the same layer code as the full graph runs
    over them."""
    return block_relation(block, CLICKED_BY, backend, device), block_relation(block, CLICKS, backend, device)


def block_relation(block: dgl.DGLGraph, etype: tuple[str, str, str], backend: str, device: torch.device) -> Relation:
    """The relation of one edge type of a block (local node indices, block edge order) on `device`."""
    src, dst = block.edges(etype=etype, order="eid")
    stype, _, dtype = etype
    return build_relation(backend, src.to(device), dst.to(device), block.num_src_nodes(stype), block.num_dst_nodes(dtype), etype)


def input_ids(block: dgl.DGLGraph, ntype: str, device: torch.device) -> Tensor:
    """Global ids of a block's source nodes of `ntype`, on `device`."""
    return block.srcnodes[ntype].data[dgl.NID].to(device)


def edge_ids(block: dgl.DGLGraph, etype: tuple[str, str, str], device: torch.device) -> Tensor:
    """Global (parent graph) ids of a block's edges of `etype`, in block edge order, on `device`."""
    return block.edges[etype].data[dgl.EID].to(device)


def sampled_share(block: dgl.DGLGraph, etype: tuple[str, str, str], full_in_degrees: Tensor, dtype: torch.dtype) -> Tensor:
    """Per edge of `etype`, the destination's full in-degree over its in-degree in the block
    (1 where every in-edge was taken), on the degrees' device: the factor that makes a
    sampled neighbour sum an unbiased estimate of the full one."""
    device = full_in_degrees.device
    _, dst = block.edges(etype=etype, order="eid")
    sampled = block.in_degrees(etype=etype).to(device, dtype).clamp(min=1)
    full = full_in_degrees[block.dstnodes[etype[2]].data[dgl.NID].to(device)].to(dtype)
    return (full / sampled)[dst.to(device)]
