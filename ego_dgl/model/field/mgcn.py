"""MGCN (Yu, Li, Zhang, Zhang, Jiang, Wang, "Multi-View Graph Convolutional Network for
Multimedia Recommendation", ACM MM 2023): modality features purified by the item's
behaviour (ID) embedding, propagated on item-item kNN views, fused by attention into a
common and modality-specific parts, added to a LightGCN user-item view.

With ID tables E_u, E_i and modalities m = 1..M:
1. Behaviour-guided purifier: E~_i,m = E_i * sigmoid(W_g,m (W_m X_m + b_m) + b_g,m).
2. User-item view: E_id = LightGCN layer mean over layers 0..`ui_layers` of (E_u, E_i).
3. Item-item view per modality: E^_i,m = S_m^`item_layers` E~_i,m, with S_m the fixed kNN
   graph (`knn_k`, cosine of the raw features, D^-1/2 A D^-1/2); users aggregate their
   items, E^_u,m = sum over i in N(u) of E^_i,m / sqrt(|N_u| |N_i|).
4. Behaviour-aware fuser, per node: a_m = softmax over m of q^T tanh(W_a E^_m + b_a);
   common E_c = sum_m a_m E^_m; specific E_s,m = E^_m - E_c, gated by the node's
   behaviour: P_m = sigmoid(W_p,m E_id + b_p,m);
   E_mm = (E_c + sum_m P_m * E_s,m) / (M + 1).
5. Final E = E_id + E_mm; score <e_u, e_i>.
6. Loss: BPR + reg (|e_u|^2 + |e_p|^2 + |e_n|^2) / (2 B) on the final rows of the batch
   (B pairs) + cl_weight (InfoNCE(E_mm, E_id) over the batch's positive items + the same
   over its users), InfoNCE(a, b) = mean_k -log(exp(cos(a_k, b_k) / t) / sum_j exp(cos(a_k, b_j) / t))
   with the batch's rows as negatives and temperature t (`temperature`).

Choices where the paper is silent follow MMRec (src/models/mgcn.py, configs/model/MGCN.yaml):
xavier-uniform ID tables, torch's default init elsewhere, the raw features fine-tuned
(trainable embeddings in MMRec), the kNN graphs built once from the initial features,
the InfoNCE temperature 0.2 and the regulariser divided by the batch size. MMRec's
learning-rate decay (0.96 every 50 epochs) is not applied: the trainer keeps one rate.
MMRec writes M = 2 (image, text), dividing by 3; (M + 1) is that for any M.
Defaults are MMRec's, the first value of the grid it searches (cl_weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Tables, inner
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.field.graphs import FixedSparse, KnnSearchSpace, knn_matrix, knn_sym
from ego_dgl.model.field.mmrec_parts import GraphContentModel
from ego_dgl.model.layers.loss import bpr


@dataclass
class MGCNConfig(KnnSearchSpace, RecommenderConfig):
    """MGCN's options; defaults are MMRec's (module docstring)."""

    name: ClassVar[str] = "mgcn"
    # MMRec's values as ego-dgl options (embedding_size, n_ui_layers, n_layers, knn_k,
    # cl_loss, reg_weight, learning_rate, train_batch_size); the grid's first where it searches
    mmrec_defaults: ClassVar[dict[str, Any]] = {
        "dim": 64, "ui_layers": 2, "item_layers": 1, "knn_k": 10, "cl_weight": 0.001, "temperature": 0.2,
        "reg": 1e-4, "lr": 1e-3, "batch_size": 2048,
    }
    mmrec_grid: ClassVar[dict[str, list[Any]]] = {"cl_weight": [0.001, 0.01, 0.1]}

    dim: int = 64  # width of the ID embeddings and every view
    ui_layers: int = 2  # LightGCN layers of the user-item view
    item_layers: int = 1  # propagations on each item-item kNN view
    knn_k: int = 10  # neighbours per item in the kNN views
    cl_weight: float = 0.001  # weight of the contrastive (InfoNCE) loss
    temperature: float = 0.2  # InfoNCE temperature

    def validate(self) -> MGCNConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.knn_k < 1:
            raise ConfigError(f"--dim and knn_k must be positive, got dim={self.dim}, knn_k={self.knn_k}")
        if self.ui_layers < 0 or self.item_layers < 0:
            raise ConfigError(f"ui_layers and item_layers must be >= 0, got {self.ui_layers}, {self.item_layers}")
        if not self.cl_weight >= 0 or not self.temperature > 0:
            raise ConfigError(f"cl_weight must be >= 0 and temperature > 0, got {self.cl_weight}, {self.temperature}")
        return self


def gate(dim: int) -> nn.Sequential:
    """sigmoid(W x + b), D -> D."""
    return nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Mean over rows k of -log softmax_j(cos(a_k, b_j) / t) at j = k (step 6)."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    return -torch.diagonal(torch.log_softmax(logits, dim=1)).mean()


class MGCN(GraphContentModel):
    """Purified modality views on kNN item graphs, attention-fused onto a LightGCN view."""

    # the item-item views reach a cold item through its content neighbours
    cold_start = "content"

    def __init__(self, ds: Dataset, cfg: MGCNConfig):
        super().__init__(ds, cfg, trainable_content=True, user_sums=("norm",))
        if cfg.knn_k > ds.num_items:
            raise ConfigError(f"knn_k={cfg.knn_k} exceeds the {ds.num_items} items of {ds.name!r}; give --param knn_k={ds.num_items} or less")
        self.item_graphs = nn.ModuleList([FixedSparse(knn_matrix(*knn_sym(x, cfg.knn_k))) for x in self.content()])
        self.project = nn.ModuleList([nn.Linear(width, cfg.dim) for width in self.content.dims])
        self.purify = nn.ModuleList([gate(cfg.dim) for _ in self.content.dims])
        self.prefer = nn.ModuleList([gate(cfg.dim) for _ in self.content.dims])
        self.query = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.Tanh(), nn.Linear(cfg.dim, 1, bias=False))

    def views(self) -> tuple[Tensor, Tensor]:
        """E_id and E_mm over users then items, [P + Q, D] each (steps 2-4)."""
        e_id = self.id_layer_mean(self.cfg.ui_layers)
        modal = []
        for proj, purify, item_graph, content in zip(self.project, self.purify, self.item_graphs, self.content()):
            items = self.item_ids() * purify(proj(content))
            for _ in range(self.cfg.item_layers):
                items = item_graph.mm(items)
            modal.append(torch.cat([self.user_sums["norm"].mm(items), items]))
        stacked = torch.stack(modal, 1)  # [N, M, D]
        attention = torch.softmax(self.query(stacked).squeeze(-1), dim=1)  # [N, M]
        common = (attention.unsqueeze(-1) * stacked).sum(1)
        specific = sum(prefer(e_id) * (view - common) for prefer, view in zip(self.prefer, modal))
        return e_id, (common + specific) / (len(modal) + 1)

    def propagate(self) -> Tables:
        e_id, e_mm = self.views()
        return self.split(e_id + e_mm)

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 6: BPR, the regulariser of the final rows, and the two InfoNCE terms."""
        e_id, e_mm = self.views()
        u, p, n = self.batch_rows(e_id + e_mm, users, pos, neg)
        bpr_term = bpr(inner(u, p), inner(u, n))
        reg_term = reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(users))
        t = self.cfg.temperature
        items = self.num_users + pos
        cl = info_nce(e_mm[items], e_id[items], t) + info_nce(e_mm[users], e_id[users], t)
        total = bpr_term + reg_term + self.cfg.cl_weight * cl
        return total, {"bpr": bpr_term.detach(), "reg": reg_term.detach(), "cl": cl.detach()}
