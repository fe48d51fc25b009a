"""EgoGCN: the multimodal branch (layer 0 + routing, or NA) and the ID branch, concatenated
[id, modality_1, ..., modality_M] for inner-product scores (SPEC.md, Eq. 1-14)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError, EgoDGLWarning
from ego_dgl.graphs import lightgcn_weights, structure_graph
from ego_dgl.model.allocator import keep_freed_memory
from ego_dgl.model import dgl_udf
from ego_dgl.model.backends import Relation, interaction_edges, primitives, resolve_backend
from ego_dgl.model.base import Recommender, Tables, inner
from ego_dgl.model.config import ModelConfig
from ego_dgl.model.ego_fusion import DIRECTIONS, Attention, EgoLayer, shared_logits
from ego_dgl.model.features import ItemFeatures, UserPreferences
from ego_dgl.model.id_branch import IdTable, lightgcn, soft_pruning_weights
from ego_dgl.model.loss import bpr, regulariser
from ego_dgl.model.node_alignment import NodeAlignment
from ego_dgl.model.routing import routing_layers


class EgoGCN(Recommender):
    """EgoGCN and its variants (cfg.fusion, cfg.branches, cfg.id_weights) on one dataset.

    Graph indices are buffers, so `model.to(device)` moves them; the backend (`model.backend`)
    is resolved for the device the model is on, and its graph views are cached per device.
    """

    def __init__(self, ds: Dataset, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        keep_freed_memory()  # each step reallocates the same large tensors (allocator.py)
        self.modalities = list(ds.modalities)
        self.num_users, self.num_items = ds.num_users, ds.num_items
        self.use_id = cfg.branches in ("id+mm", "id")
        self.use_mm = cfg.branches in ("id+mm", "mm")
        if self.use_mm and not self.modalities:
            raise ConfigError(f"dataset {ds.name!r} has no modality; use --branches id")
        g = structure_graph(ds)
        self.to_users, self.to_items = interaction_edges(g)
        users, items = self.to_items.src, self.to_items.dst
        self._udf_graph = g  # moved to the model's device on first use (dgl-udf)
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
            self.ids = IdTable(ds.num_users, ds.num_items, cfg.dim)
            self.register_buffer("id_norm", lightgcn_weights(g), persistent=False)

    @property
    def backend(self) -> str:
        """'dgl', 'dgl-udf' or 'torch': the backend that runs on the model's current device."""
        return resolve_backend(self.cfg.backend, self.device)[0]

    @property
    def backend_note(self) -> str | None:
        """One sentence when `auto` fell back to torch on the current device, else None."""
        return resolve_backend(self.cfg.backend, self.device)[1]

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
            if att is not None:
                stats = self._fused_stats(att)
            if self.soft_pruning:
                weights = soft_pruning_weights(*self._affinities(to_users, to_items, users0, items0, att))
            user_parts.append(users.flatten(1))
            item_parts.append(items.flatten(1))
        if self.use_id:
            e_users, e_items = lightgcn(to_users, to_items, *self.ids(), *weights, self.cfg.layers_id)
            user_parts.insert(0, e_users)
            item_parts.insert(0, e_items)
        return user_parts, item_parts, stats

    def _multimodal(self, to_users: Relation, to_items: Relation, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor, tuple[Attention, Attention] | None]:
        """K multimodal layers; also layer 0's attention record (None for NA)."""
        if self.cfg.fusion == "na":
            return (*self.node_alignment(primitives(self.backend), users, items, self.cfg.layers_mm), None)
        att = self.first_layer(users, items, to_users, to_items)
        if self.backend == "dgl-udf":
            users, items = dgl_udf.routing_layers(self.udf_graph(), att[0].out, att[1].out, self.cfg.layers_mm - 1)
        else:
            users, items = routing_layers(to_users, to_items, att[0].out, att[1].out, self.cfg.layers_mm - 1)
        return users, items, att

    def first_layer(self, users: Tensor, items: Tensor, to_users: Relation | None = None, to_items: Relation | None = None) -> tuple[Attention, Attention]:
        """Layer 0 (EGO or GM) on both directions with the current backend: the
        (item->user, user->item) records; the relations are the current ones if not given."""
        if self.backend == "dgl-udf":
            return dgl_udf.ego_layer(self.udf_graph(), self.layer0, users, items)
        if to_users is None or to_items is None:
            to_users, to_items = self.relations()
        return self.layer0(to_users, to_items, users, items)

    def _affinities(self, to_users: Relation, to_items: Relation, users0: Tensor, items0: Tensor, att: tuple[Attention, Attention] | None) -> tuple[Tensor, Tensor]:
        """Eq. 1 per direction, reused from layer 0 where it computed them."""
        if att is not None and att[0].affinity is not None:
            return att[0].affinity, att[1].affinity
        logits = shared_logits(to_items, users0, items0)
        return to_users.softmax(logits), to_items.softmax(logits)

    def _fused_stats(self, att: tuple[Attention, Attention]) -> dict[str, Tensor]:
        """Hard mode: the fraction of edges carrying the fused message, per modality and direction."""
        stats = {}
        for direction, a in zip(DIRECTIONS, att):
            if a.fused is not None:
                share = a.fused.detach().mean(0)
                stats.update({f"fused/{m}/{direction}": share[k] for k, m in enumerate(self.modalities)})
        return stats

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The raw ID rows of the batch's users and items and the raw preference rows of
        its users (SPEC.md, Eq. 14 [impl])."""
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
        user_rows = torch.cat([p[users] for p in user_parts], 1)
        item_rows = torch.cat([p[items] for p in item_parts], 1)
        bpr_term = bpr(inner(user_rows, item_rows[: len(pos)]), inner(user_rows, item_rows[len(pos) :]))
        reg_term = reg * regulariser(*self.reg_rows(users, items))
        return bpr_term + reg_term, {"bpr": bpr_term.detach(), "reg": reg_term.detach(), **stats}
