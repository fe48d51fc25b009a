"""EgoGCN: the multimodal branch (layer 0 + routing, or NA) and the ID branch, concatenated
[id, modality_1, ..., modality_M] for inner-product scores (docs/egogcn.md, Eq. 1-14)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError, EgoDGLWarning
from ego_dgl.graph import inference
from ego_dgl.graph.allocator import keep_freed_memory
from ego_dgl.graph.backends import (
    Relation,
    interaction_edges,
    primitives,
    resolve_backend,
)
from ego_dgl.graph.blocks import (
    SampledBatch,
    block_relations,
    edge_ids,
    input_ids,
    sampled_share,
)
from ego_dgl.graph.heterograph import (
    CLICKED_BY,
    CLICKS,
    ITEM,
    USER,
    lightgcn_weights,
    structure_graph,
)
from ego_dgl.model.base import Recommender, Tables, inner
from ego_dgl.model.egogcn import dgl_udf
from ego_dgl.model.egogcn.config import ModelConfig
from ego_dgl.model.egogcn.ego_fusion import Attention, EgoLayer
from ego_dgl.model.egogcn.node_alignment import NodeAlignment
from ego_dgl.model.layers.attention import DIRECTIONS, shared_logits
from ego_dgl.model.layers.cold import content_or_none, keep_rows
from ego_dgl.model.layers.features import ItemFeatures, UserPreferences
from ego_dgl.model.layers.id_branch import (
    IdTable,
    lightgcn,
    pruning_weights,
    soft_pruning_weights,
)
from ego_dgl.model.layers.loss import bpr, regulariser
from ego_dgl.model.layers.routing import route, routing_layers


class EgoGCN(Recommender):
    """EgoGCN and its variants (cfg.fusion, cfg.branches, cfg.id_weights) on one dataset.

    Graph indices are buffers, so `model.to(device)` moves them; the backend (`model.backend`)
    is resolved for the device the model is on, and its graph views are cached per device.
    Sampled training (`sampled_loss`) runs the same layers over DGL blocks (`blocks`).
    """

    supports_sampling = True

    def __init__(self, ds: Dataset, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        keep_freed_memory()  # each step reallocates the same large tensors (allocator.py)
        self.modalities = list(ds.modalities)
        self.num_users, self.num_items = ds.num_users, ds.num_items
        self.use_id = cfg.branches in ("id+mm", "id")
        self.use_mm = cfg.branches in ("id+mm", "mm")
        # A cold item (layers/cold.py): a zero ID row, and its layer-0 features as its
        # multimodal output, since every multimodal layer only aggregates neighbours and an
        # item without edges would come out as the zero vector (the paper is silent on it).
        self.cold_start = content_or_none(self.use_mm)
        cold = torch.from_numpy(~ds.warm_mask()).view(-1, 1, 1) if ds.has_cold_items else None
        self.register_buffer("cold", cold, persistent=False)
        if self.use_mm and not self.modalities:
            raise ConfigError(f"dataset {ds.name!r} has no modality; use --branches id")
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        users, items = self.to_items.src, self.to_items.dst
        self._udf_graph = g  # moved to the model's device on first use (dgl-udf)
        self._structure = g  # stays on the CPU: layer-wise inference builds its chunks' blocks from it
        if self.use_mm:
            M = len(self.modalities)
            self.item_features = ItemFeatures(ds, cfg.dim, cfg.word_dim)
            self.preferences = UserPreferences(ds.num_users, M, cfg.dim)
            if M == 1 and cfg.fusion == "ego":
                warnings.warn(
                    f"dataset {ds.name!r} has one modality, so EGO fusion is the identity: "
                    "--mode hard, --mode soft and --fusion gm train the same model",
                    EgoDGLWarning,
                    stacklevel=2,
                )
            if cfg.fusion == "na":
                self.node_alignment = NodeAlignment(ds.num_users, ds.num_items, users, items, M)
            else:
                self.layer0 = EgoLayer(cfg.fusion, cfg.mode, cfg.eps, cfg.gate, M, cfg.dim, cfg.threshold)
        self.soft_pruning = self.use_id and self.use_mm and cfg.id_weights == "soft-pruning"
        if self.use_id:
            self.ids = IdTable(ds.num_users, ds.num_items, cfg.dim, keep_rows(ds, ds.num_users))
            self.register_buffer("id_norm", lightgcn_weights(g), persistent=False)
            self.register_buffer("user_degrees", g.in_degrees(etype=CLICKED_BY), persistent=False)
            self.register_buffer("item_degrees", g.in_degrees(etype=CLICKS), persistent=False)

    @property
    def backend(self) -> str:
        """'dgl', 'dgl-udf', 'torch' or 'fused': the backend that runs on the model's current device."""
        return resolve_backend(self.cfg.backend, self.device, self.table_bytes())[0]

    @property
    def backend_note(self) -> str | None:
        """One sentence when `auto` fell back to torch on the current device, else None."""
        return resolve_backend(self.cfg.backend, self.device, self.table_bytes())[1]

    def table_bytes(self) -> int:
        """The largest node table an attention of the multimodal branch reads, in bytes
        (NA's graph holds users and items together): `auto`'s size for the fused backend."""
        rows = self.num_users + self.num_items if self.cfg.fusion == "na" else max(self.num_users, self.num_items)
        width = self.cfg.dim * max(1, len(self.modalities))
        return rows * width * next(self.parameters(), torch.empty(0)).element_size()

    def relations(self) -> tuple[Relation, Relation]:
        """The item->user and user->item relations for the current backend and device."""
        backend = primitives(self.backend)
        return self.to_users.relation(backend), self.to_items.relation(backend)

    def udf_graph(self) -> dgl.DGLGraph:
        """dgl-udf: the structure heterograph on the model's current device."""
        if self._udf_graph.device != self.device:
            self._udf_graph = self._udf_graph.to(self.device)
        return self._udf_graph

    def input_tables(self) -> Tables:
        """Layer-0 representations, concatenated as `propagate`'s: the normalised ID table
        and the multimodal inputs (user preferences, projected item features)."""
        user_parts, item_parts = [], []
        if self.use_id:
            e_users, e_items = self.ids()
            user_parts.append(e_users)
            item_parts.append(e_items)
        if self.use_mm:
            users0, items0 = self.inputs()
            user_parts.append(users0.flatten(1))
            item_parts.append(items0.flatten(1))
        return Tables(torch.cat(user_parts, 1), torch.cat(item_parts, 1))

    def inputs(self) -> tuple[Tensor, Tensor]:
        """Layer-0 multimodal inputs: normalised user preferences [P, M, D] and projected
        item features [Q, M, D]."""
        return self.preferences(), self.item_features()

    def propagate(self) -> Tables:
        """Run both branches over the whole graph and concatenate their outputs."""
        user_parts, item_parts, stats = self._parts()
        return Tables(torch.cat(user_parts, 1), torch.cat(item_parts, 1), stats)

    def _parts(self) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        """Both branches over the whole graph: the user and item tables in concatenation
        order ([id, modality_1 ... modality_M] flattened), and the propagation stats."""
        to_users, to_items = self.relations()
        user_parts, item_parts, stats = [], [], {}
        weights = (self.id_norm, self.id_norm) if self.use_id else None
        if self.use_mm:
            users0, items0 = self.inputs()
            users, items, att = self._multimodal(to_users, to_items, users0, items0)
            items = self.with_cold_content(items, items0)
            if att is not None:
                stats = self._fused_stats(fused_shares(att))
            if self.soft_pruning:
                weights = soft_pruning_weights(*self._affinities(to_users, to_items, users0, items0, att))
            user_parts.append(users.flatten(1))
            item_parts.append(items.flatten(1))
        if self.use_id:
            e_users, e_items = lightgcn(to_users, to_items, *self.ids(), *weights, self.cfg.layers_id)
            user_parts.insert(0, e_users)
            item_parts.insert(0, e_items)
        return user_parts, item_parts, stats

    def _multimodal(self, to_users: Relation, to_items: Relation, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor, tuple[Attention,
        Attention] | None]:
        """K multimodal layers; also layer 0's attention record (None for NA)."""
        if self.cfg.fusion == "na":
            return (*self.node_alignment(primitives(self.backend), users, items, self.cfg.layers_mm), None)
        att = self.first_layer(users, items, to_users, to_items)
        if self.backend == "dgl-udf":
            users, items = dgl_udf.routing_layers(self.udf_graph(), att[0].out, att[1].out, self.cfg.layers_mm - 1)
        else:
            users, items = routing_layers(to_users, to_items, att[0].out, att[1].out, self.cfg.layers_mm - 1)
        return users, items, att

    def first_layer(self, users: Tensor, items: Tensor, to_users: Relation | None = None, to_items: Relation | None = None) -> tuple[Attention,
        Attention]:
        """Layer 0 (EGO or GM) on both directions with the current backend: the
        (item->user, user->item) records; the relations are the current ones if not given."""
        if self.backend == "dgl-udf":
            return dgl_udf.ego_layer(self.udf_graph(), self.layer0, users, items)
        if to_users is None or to_items is None:
            to_users, to_items = self.relations()
        return self.layer0(to_users, to_items, users, items)

    def _affinities(self, to_users: Relation, to_items: Relation, users0: Tensor, items0: Tensor, att: tuple[Attention,
        Attention] | None) -> tuple[Tensor, Tensor]:
        """Eq. 1 per direction, reused from layer 0 where it computed them."""
        if att is not None and att[0].affinity is not None:
            return att[0].affinity, att[1].affinity
        logits = shared_logits(to_items, users0, items0)
        return to_users.softmax(logits), to_items.softmax(logits)

    def _fused_stats(self, shares: Sequence[Tensor | None]) -> dict[str, Tensor]:
        """Hard mode: the fraction of edges carrying the fused message [M] of each direction
        (DIRECTIONS order; None where nothing fuses by design), per modality and direction."""
        stats = {}
        for direction, share in zip(DIRECTIONS, shares):
            if share is not None:
                stats.update({f"fused/{m}/{direction}": share[k] for k, m in enumerate(self.modalities)})
        return stats

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The raw ID rows of the batch's users and items and the raw preference rows of
        its users (docs/egogcn.md, "Prediction, loss and regulariser", Eq. 14 [impl])."""
        raw_users, raw_items = [], []
        if self.use_id:
            raw_users.append(self.ids.user_rows(users))
            raw_items.append(self.ids.item_rows(items))
        if self.use_mm:
            raw_users += self.preferences.raw_rows(users)
        return raw_users, raw_items

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Recommender.loss, but only the batch's rows are concatenated: the full tables
        never are, and their gradients stay contiguous per part."""
        user_parts, item_parts, stats = self._parts()
        items = torch.cat([pos, neg])
        return self._batch_loss(user_parts, item_parts, stats, users, items, users, items, reg)

    def _batch_loss(
        self, user_parts: list[Tensor], item_parts: list[Tensor], stats: dict[str, Tensor],
        user_index: Tensor, item_index: Tensor, users: Tensor, items: Tensor, reg: float,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR over the rows `user_index` and `item_index` (positives, then negatives) of the
        parts, plus reg times the regulariser of the raw rows of `users` and `items`."""
        user_rows = torch.cat([p[user_index] for p in user_parts], 1)
        item_rows = torch.cat([p[item_index] for p in item_parts], 1)
        n = len(user_index)
        bpr_term = bpr(inner(user_rows, item_rows[:n]), inner(user_rows, item_rows[n:]))
        reg_term = reg * regulariser(*self.reg_rows(users, items))
        return bpr_term + reg_term, {"bpr": bpr_term.detach(), "reg": reg_term.detach(), **stats}

    def sampling_layers(self) -> int:
        """Blocks per sampled batch: the deeper branch's layer count. Node alignment has
        no block form (it aligns over the whole graph)."""
        if self.use_mm and self.cfg.fusion == "na":
            raise ConfigError("--sampler neighbor does not support --fusion na (node alignment runs over the whole graph); use --sampler full")
        return max(self.cfg.layers_mm if self.use_mm else 0, self.cfg.layers_id if self.use_id else 0)

    def sampled_loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float, batch: SampledBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """`loss` with both branches propagated over the batch's blocks only: each layer
        runs on its block's (sampled) in-edges; the regulariser is the full path's."""
        user_parts, item_parts, stats = self._block_parts(batch.blocks)
        return self._batch_loss(user_parts, item_parts, stats, batch.users, batch.items, users, torch.cat([pos, neg]), reg)

    def _block_parts(self, blocks: list[dgl.DGLGraph]) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        """`_parts` over blocks: the seed users' and items' rows of each part. A branch of
        k layers runs on the last k blocks; node features of a block's sources are a
        prefix of the first block's (blocks.py)."""
        rels = [block_relations(b, primitives(self.backend), self.device) for b in blocks]
        first_mm = len(blocks) - self.cfg.layers_mm if self.use_mm else len(blocks)
        first_id = len(blocks) - self.cfg.layers_id if self.use_id else len(blocks)
        user_parts, item_parts, stats = [], [], {}
        if self.use_id:
            weights = [self._lightgcn_weights(b) for b in blocks[first_id:]]
        if self.use_mm:
            outer = blocks[min(first_mm, first_id) if self.soft_pruning else first_mm]
            users0, items0 = self.inputs()
            users0, items0 = users0[input_ids(outer, USER, self.device)], items0[input_ids(outer, ITEM, self.device)]
            users, items, att = self._multimodal_blocks(blocks[first_mm:], rels[first_mm:], users0, items0)
            stats = self._fused_stats(fused_shares(att))
            if self.soft_pruning:
                weights = [self._block_affinities(b, rel, users0, items0) for b, rel in zip(blocks[first_id:], rels[first_id:])]
            user_parts.append(users.flatten(1))
            item_parts.append(items.flatten(1))
        if self.use_id:
            e_users, e_items = self._lightgcn_blocks(blocks[first_id:], rels[first_id:], weights)
            user_parts.insert(0, e_users)
            item_parts.insert(0, e_items)
        return user_parts, item_parts, stats

    def _multimodal_blocks(self, blocks: list[dgl.DGLGraph], rels: list[tuple[Relation, Relation]], users: Tensor,
        items: Tensor) -> tuple[Tensor, Tensor, tuple[Attention, Attention]]:
        """Layer 0 on the first block, routing on the others: the seeds' [n, M, D] outputs
        and layer 0's attention record. Each direction computes its own logits (a block's
        two edge types sample different interactions)."""
        b, (to_users, to_items) = blocks[0], rels[0]
        users, items = users[: b.num_src_nodes(USER)], items[: b.num_src_nodes(ITEM)]
        att = (
            self.layer0.direction(to_users, items, users[: b.num_dst_nodes(USER)], "to_users"),
            self.layer0.direction(to_items, users, items[: b.num_dst_nodes(ITEM)], "to_items"),
        )
        users, items = att[0].out, att[1].out
        for b, (to_users, to_items) in zip(blocks[1:], rels[1:]):
            users, items = route(to_users, items, users[: b.num_dst_nodes(USER)]), route(to_items, users, items[: b.num_dst_nodes(ITEM)])
        return users, items, att

    def _lightgcn_weights(self, block: dgl.DGLGraph) -> tuple[Tensor, Tensor]:
        """A block's LightGCN weights per direction: the full graph's, scaled by the
        destination's full over sampled in-degree (1 with every neighbour taken)."""
        dtype = self.id_norm.dtype
        return tuple(
            self.id_norm[edge_ids(block, etype, self.device)] * sampled_share(block, etype, degrees, dtype)
            for etype, degrees in ((CLICKED_BY, self.user_degrees), (CLICKS, self.item_degrees))
        )

    def _block_affinities(self, block: dgl.DGLGraph, rels: tuple[Relation, Relation], users0: Tensor, items0: Tensor) -> tuple[Tensor, Tensor]:
        """Soft-pruning weights of a block: Eq. 1's softmax over its in-edges per direction."""
        to_users, to_items = rels
        users, items = users0[: block.num_src_nodes(USER)], items0[: block.num_src_nodes(ITEM)]
        return soft_pruning_weights(
            to_users.softmax(to_users.edge_dot(items, users[: block.num_dst_nodes(USER)])),
            to_items.softmax(to_items.edge_dot(users, items[: block.num_dst_nodes(ITEM)])),
        )

    def _lightgcn_blocks(self, blocks: list[dgl.DGLGraph], rels: list[tuple[Relation, Relation]], weights: list[tuple[Tensor,
        Tensor]]) -> tuple[Tensor, Tensor]:
        """The ID branch (Eq. 10-11) over blocks: the seeds' sum of layers 0..L."""
        e_users, e_items = self.ids()
        users, items = e_users[input_ids(blocks[0], USER, self.device)], e_items[input_ids(blocks[0], ITEM, self.device)]
        n_users, n_items = blocks[-1].num_dst_nodes(USER), blocks[-1].num_dst_nodes(ITEM)
        out_u, out_i = users[:n_users], items[:n_items]
        for (to_users, to_items), (w_users, w_items) in zip(rels, weights):
            users, items = to_users.aggregate(items, w_users), to_items.aggregate(users, w_items)
            out_u, out_i = out_u + users[:n_users], out_i + items[:n_items]
        return out_u, out_i

    def with_cold_content(self, items: Tensor, items0: Tensor) -> Tensor:
        """The multimodal item outputs [Q, M, D] with cold items' rows set to their layer-0
        features (unchanged without cold items)."""
        return items if self.cold is None else torch.where(self.cold, items0, items)

    def check_layerwise(self) -> None:
        """Node alignment has no layer-wise form (it aligns over the whole graph); cold
        items' content fallback exists for whole-graph propagation only."""
        if self.cold is not None:
            raise ConfigError("--eval-chunk is not built for datasets with cold items; drop --eval-chunk")
        if self.use_mm and self.cfg.fusion == "na":
            raise ConfigError("--eval-chunk does not support --fusion na (node alignment runs over the whole graph); drop --eval-chunk")

    @torch.no_grad()
    def layerwise_tables(self, chunk_size: int) -> Tables:
        """`final_tables` layer by layer over chunks of `chunk_size` destination nodes
        (inference.py): the same tables and stats, one layer's tables held at a time."""
        self.check_layerwise()
        run = partial(inference.layer, self._structure, chunk_size, primitives(self.backend), self.device)
        user_parts, item_parts, stats = [], [], {}
        weights = {CLICKED_BY: self.id_norm, CLICKS: self.id_norm} if self.use_id else {}
        if self.use_mm:
            x, stats, pruning = self._first_layer_chunks(run, dict(zip((USER, ITEM), self.inputs())))
            weights = pruning or weights
            for _ in range(self.cfg.layers_mm - 1):
                x = run(x, lambda chunk, src, dst: route(chunk.rel, src, dst))
            user_parts.append(x[USER].flatten(1))
            item_parts.append(x[ITEM].flatten(1))
        if self.use_id:
            x = total = dict(zip((USER, ITEM), self.ids()))
            for _ in range(self.cfg.layers_id):
                x = run(x, lambda chunk, src, dst: chunk.rel.aggregate(src, weights[chunk.etype][chunk.edges]))
                total = {ntype: total[ntype] + x[ntype] for ntype in total}
            user_parts.insert(0, total[USER])
            item_parts.insert(0, total[ITEM])
        return Tables(torch.cat(user_parts, 1), torch.cat(item_parts, 1), stats)

    def _first_layer_chunks(self, run: Callable, inputs: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], dict | None]:
        """Layer 0 in chunks: its output tables, the fused shares (hard mode) and, with soft
        pruning, the ID weights of every edge per edge type (None without)."""
        fused: dict[tuple, Tensor] = {}
        pruning = {etype: torch.empty_like(self.id_norm) for etype in (CLICKED_BY, CLICKS)} if self.soft_pruning else None

        def step(chunk: inference.Chunk, src: Tensor, dst: Tensor) -> Tensor:
            att = self.layer0.direction(chunk.rel, src, dst, SIDES[chunk.ntype])
            if att.fused is not None:
                fused[chunk.etype] = fused.get(chunk.etype, 0) + att.fused.sum(0)
            if pruning is not None:
                affinity = att.affinity if att.affinity is not None else chunk.rel.softmax(chunk.rel.edge_dot(src, dst))
                pruning[chunk.etype][chunk.edges] = pruning_weights(affinity)
            return att.out

        out = run(inputs, step)
        edges = self.to_users.num_edges
        shares = [fused[etype] / edges if etype in fused else None for etype in (CLICKED_BY, CLICKS)]
        return out, self._fused_stats(shares), pruning


SIDES = {USER: "to_users", ITEM: "to_items"}  # layer 0's name for the direction into each node type


def fused_shares(att: tuple[Attention, Attention]) -> list[Tensor | None]:
    """Per direction, the fraction of edges carrying the fused message [M] (None where
    layer 0 does not fuse)."""
    return [None if a.fused is None else a.fused.detach().mean(0) for a in att]
