"""The trainer side of `train --dist`: DistDGL's graph service, sampled blocks on the
partitioned graph, and each trainer's share of the training edges.

Every trainer joins the graph servers (`dgl.distributed.initialize`, which in a server
process serves a partition and never returns), opens the `DistGraph`, takes its share of
the user->item training edges (`trainer_edges`) and samples each batch's blocks on the
DistGraph with DGL's NeighborSampler. DistDGL numbers nodes and edges by
partition; seeds are translated to those ids and the blocks' ids back to the dataset's
(partition.py keeps the map), so the model's block layers run unchanged. The dense
parameters are synced by DDP (gloo) like --procs. The embedding tables stay ordinary
nn.Parameters synced by DDP, right at this scale; at catalogue scale they would become
`dgl.distributed.DistEmbedding` tables trained with `SparseAdam`. Evaluation ranks the
full catalogue on every trainer from the dataset itself (exact), and rank 0 writes the run.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ego_dgl._dgl import dgl
from ego_dgl.distributed.partition import Partitions, type_key
from ego_dgl.errors import ConfigError
from ego_dgl.graph.blocks import BlockSampler
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER
from ego_dgl.train.parallel import Rank, steps_per_epoch
from ego_dgl.train.sampler import Batch, NegativeSampler

ETYPES = (CLICKS, CLICKED_BY)
# Set by `egodgl dist-launch`: every partition's servers run on this one host. DGL's servers
# share their partition with co-located trainers through shared memory named after the
# graph, so two partitions on one host would overwrite each other's; here the servers keep
# their partition private and the trainers reach every partition through the servers.
ONE_HOST = "EGODGL_DIST_ONE_HOST"


def connect(parts: Partitions) -> Any:
    """Join the graph servers listed in $DGL_IP_CONFIG and open the partitioned graph. In
    a process the launcher started as a server (DGL_ROLE=server) this serves a partition
    until the trainers finish and then exits the process."""
    ip_config = os.environ.get("DGL_IP_CONFIG")
    if not ip_config:
        raise ConfigError(f"--dist needs its graph servers: start the run with egodgl dist-launch --parts-config {parts.config} "
                          "--trainers N -- train ... (one machine) or DGL's tools/launch.py (a cluster)")
    one_host = os.environ.get(ONE_HOST) == "1"
    if one_host and os.environ.get("DGL_ROLE") == "server":
        serve_privately()
    dgl.distributed.initialize(ip_config)
    book = dgl.distributed.load_partition_book(str(parts.config), 0)[0] if one_host else None
    return dgl.distributed.DistGraph(parts.graph_name, gpb=book, part_config=str(parts.config))


def serve_privately() -> None:
    """What `dgl.distributed.initialize` does in a server process (from the same DGL_*
    variables), with the partition kept out of shared memory (ONE_HOST); exits."""
    env = os.environ
    dgl.distributed.rpc.reset()
    server = dgl.distributed.DistGraphServer(
        int(env["DGL_SERVER_ID"]), env["DGL_IP_CONFIG"], int(env["DGL_NUM_SERVER"]), int(env["DGL_NUM_CLIENT"]),
        env["DGL_CONF_PATH"], disable_shared_mem=True, graph_format=env.get("DGL_GRAPH_FORMAT", "csc").split(","),
    )
    server.start()
    sys.exit()


@dataclass(frozen=True)
class IdMaps:
    """Partition ids to the dataset's and back: per node type both ways, per edge type
    partition id -> original edge id."""

    nodes: dict[str, Tensor]
    new_nodes: dict[str, Tensor]
    edges: dict[tuple[str, str, str], Tensor]

    @classmethod
    def of(cls, parts: Partitions) -> IdMaps:
        orig = parts.original_ids()
        nodes = {t: orig[type_key("node", t)] for t in (USER, ITEM)}
        new_nodes = {t: torch.empty_like(v).scatter_(0, v, torch.arange(len(v))) for t, v in nodes.items()}
        return cls(nodes, new_nodes, {e: orig[type_key("edge", e)] for e in ETYPES})

    def restore(self, block: dgl.DGLGraph) -> dgl.DGLGraph:
        """`block` with its node and edge ids (NID, EID) turned into the dataset's."""
        for t in (USER, ITEM):
            block.srcnodes[t].data[dgl.NID] = self.nodes[t][block.srcnodes[t].data[dgl.NID]]
            block.dstnodes[t].data[dgl.NID] = self.nodes[t][block.dstnodes[t].data[dgl.NID]]
        for e in ETYPES:
            block.edges[e].data[dgl.EID] = self.edges[e][block.edges[e].data[dgl.EID]]
        return block


def trainer_edges(book: Any, etype: tuple[str, str, str], rank: int, trainers: int) -> Tensor:
    """The edges of `etype` (partition ids) that trainer `rank` trains on: those its
    partition owns, dealt round-robin among the partition's trainers. Trainers go to
    partitions in consecutive blocks, as launchers number them machine by machine.
    (dgl.distributed.edge_split picks the partition by the machine a trainer runs on, so
    on one machine every trainer would get the first partition's edges.)"""
    per_part = trainers // book.num_partitions()
    return book.partid2eids(rank // per_part, etype)[rank % per_part :: per_part]


class DistBlockSampler(BlockSampler):
    """BlockSampler on the DistGraph: seeds in the dataset's ids in, blocks in the
    dataset's ids out."""

    def __init__(self, graph: Any, fanouts: list[int], ids: IdMaps):
        super().__init__(graph, fanouts)
        self.ids = ids

    def blocks_around(self, seeds: dict[str, Tensor]) -> list[dgl.DGLGraph]:
        new = {t: self.ids.new_nodes[t][s] for t, s in seeds.items()}
        return [self.ids.restore(b) for b in super().blocks_around(new)]


@dataclass
class DistTraining:
    """What one trainer of `train --dist` holds: the DistGraph, the id maps, its share of
    the training pairs and the steps per epoch every trainer takes (the longest share's)."""

    graph: Any
    ids: IdMaps
    pairs: np.ndarray  # [n, 2] (user, item), this trainer's share
    longest: int  # the most pairs any trainer holds

    @classmethod
    def of(cls, graph: Any, parts: Partitions, all_pairs: np.ndarray, place: Rank) -> DistTraining:
        """Trainer `place`'s share of `all_pairs` (the structure graph's edges, in edge-id order)."""
        if place.world % parts.parts:
            raise ConfigError(f"{place.world} trainer(s) for {parts.parts} partitions: start a multiple of the partitions")
        ids = IdMaps.of(parts)
        book = graph.get_partition_book()
        shares = [trainer_edges(book, CLICKS, r, place.world) for r in range(place.world)]
        return cls(graph, ids, all_pairs[ids.edges[CLICKS][shares[place.rank]].numpy()], max(len(s) for s in shares))

    def block_sampler(self, fanouts: list[int]) -> DistBlockSampler:
        return DistBlockSampler(self.graph, fanouts, self.ids)

    def steps(self, batch_size: int) -> int:
        """Batches per epoch on every trainer: what the longest share needs."""
        return steps_per_epoch(self.longest, Rank(), batch_size)

    def batches(self, sampler: NegativeSampler, rng: np.random.Generator, place: Rank, batch_size: int) -> list[Batch]:
        """This trainer's batches of an epoch: its pairs shuffled, each with a fresh negative,
        cut into as many batches as every trainer takes (those of the longest share). The
        shared generator gives one draw per epoch (so it stays the same on every rank); the
        rank seeds its own from it."""
        own = np.random.default_rng([int(rng.integers(2**63)), place.rank])
        pairs = self.pairs[own.permutation(len(self.pairs))]
        epoch = Batch(pairs[:, 0], pairs[:, 1], sampler.negatives(pairs[:, 0], own))
        count = self.steps(batch_size)
        parts = [np.array_split(a, count) for a in (epoch.users, epoch.pos, epoch.neg)]
        return [Batch(u, p, n) for u, p, n in zip(*parts)]
