"""LGMRec (Guo, Li, Ma, Zhang, Zhang, Chen, "LGMRec: Local and Global Graph Learning for
Multimodal Recommendation", AAAI 2024): local embeddings from the user-item graph (ID and
per-modality) plus global embeddings from a hypergraph of learned hyperedges per modality.

With ID tables E_u, E_i, frozen features X_m and modalities m = 1..M:
1. Collaborative graph embedding (CGE): E_c = LightGCN layer mean over layers
   0..`ui_layers` of (E_u, E_i).
2. Modality graph embedding (MGE): items F_i,m = X_m W_m (no bias); users start as the
   mean of their items, F_u,m = (1/|N_u|) sum over i in N(u) of F_i,m; then `mm_layers`
   normalised propagations, keeping the last: E_m = A^`mm_layers` [F_u,m; F_i,m].
   Local embedding E_l = E_c + sum over m of normalize(E_m) (rows L2-normalised).
3. Hyperedges per modality: item-hyperedge logits H_i,m = X_m V_m ([Q, `hyperedges`]),
   user logits H_u,m = sum over i in N(u) of H_i,m; both become soft assignments by a
   Gumbel softmax over the hyperedges at temperature 0.2, and dropout (1 - `keep_rate`).
4. Global hypergraph embedding (GHE), `hyper_layers` times from the CGE items E_c,i:
   L = H_i,m^T G_i; G_i <- H_i,m L; G_u = H_u,m L. E_g = sum over m of [G_u,m; G_i,m].
5. Final E = E_l + alpha normalize(E_g); score <e_u, e_i>.
6. Loss: BPR + cl_weight (sum over modality pairs m < n of the hypergraph contrast of the
   batch's users and of its positive items) + reg (||e_u|| + ||e_p|| + ||e_n||) / B, with
   Frobenius norms of the batch's final rows (B pairs). The contrast of anchors a against
   all rows c of the other modality, positives b the same node's:
   sum over the batch k of -log(exp(cos(a_k, b_k) / t) / sum_j exp(cos(a_k, c_j) / t)), t = 0.2.

Choices where the paper is silent follow MMRec (src/models/lgmrec.py, configs/model/
LGMRec.yaml: its Baby values; Sports uses keep_rate 0.4, alpha 0.6; Clothing 2 hypergraph
layers, 64 hyperedges, keep_rate 0.2, alpha 0.2): xavier-uniform tables and projections,
frozen features, t = 0.2. Ours:
- MMRec draws Gumbel noise at evaluation too; here noise and dropout act only in
  training and evaluation uses softmax(H / t), so a checkpoint always ranks the same way;
- MMRec has two modalities (image anchors, text candidates); for M modalities every pair
  m < n contributes, m's embeddings anchoring, n's the candidates; with one modality there
  is no contrast.
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
from ego_dgl.model.field.graphs import xavier_uniform
from ego_dgl.model.field.mmrec_parts import GraphContentModel
from ego_dgl.model.layers.loss import bpr

TEMPERATURE = 0.2  # of the Gumbel softmax and of the contrast (MMRec's tau)


@dataclass
class LGMRecConfig(RecommenderConfig):
    """LGMRec's options; defaults are MMRec's (Baby) values (module docstring)."""

    name: ClassVar[str] = "lgmrec"
    # MMRec's values as ego-dgl options (embedding_size = feat_embed_dim, n_ui_layers,
    # n_mm_layers, n_hyper_layer, hyper_num, keep_rate, alpha, cl_weight, reg_weight,
    # learning_rate, train_batch_size); its config lists each as a one-value grid
    mmrec_defaults: ClassVar[dict[str, Any]] = {
        "dim": 64, "ui_layers": 2, "mm_layers": 2, "hyper_layers": 1, "hyperedges": 4, "keep_rate": 0.5,
        "alpha": 0.3, "cl_weight": 1e-4, "reg": 1e-6, "lr": 1e-3, "batch_size": 2048,
    }
    mmrec_grid: ClassVar[dict[str, list[Any]]] = {
        "ui_layers": [2], "mm_layers": [2], "hyper_layers": [1], "hyperedges": [4], "keep_rate": [0.5],
        "alpha": [0.3], "cl_weight": [1e-4], "reg": [1e-6],
    }

    dim: int = 64  # width of the ID embeddings and of the modality projections
    ui_layers: int = 2  # LightGCN layers of the collaborative embedding
    mm_layers: int = 2  # propagations of the modality embeddings
    hyper_layers: int = 1  # hypergraph layers
    hyperedges: int = 4  # learned hyperedges per modality
    keep_rate: float = 0.5  # 1 - dropout of the hyperedge assignments
    alpha: float = 0.3  # weight of the global (hypergraph) embedding
    cl_weight: float = 1e-4  # weight of the hypergraph contrast

    def validate(self) -> LGMRecConfig:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.hyperedges < 1 or self.hyper_layers < 1:
            raise ConfigError(f"--dim, hyperedges and hyper_layers must be positive, got {self.dim}, {self.hyperedges}, {self.hyper_layers}")
        if self.ui_layers < 0 or self.mm_layers < 0:
            raise ConfigError(f"ui_layers and mm_layers must be >= 0, got {self.ui_layers}, {self.mm_layers}")
        if not 0 < self.keep_rate <= 1:
            raise ConfigError(f"keep_rate must lie in (0, 1], got {self.keep_rate}")
        if not self.alpha >= 0 or not self.cl_weight >= 0:
            raise ConfigError(f"alpha and cl_weight must be >= 0, got {self.alpha}, {self.cl_weight}")
        return self


def hypergraph(assign_items: Tensor, assign_users: Tensor, items: Tensor, layers: int) -> tuple[Tensor, Tensor]:
    """Step 4: (G_u, G_i) after `layers` rounds through the hyperedges."""
    latent = assign_items.T @ items
    for _ in range(layers - 1):
        latent = assign_items.T @ (assign_items @ latent)
    return assign_users @ latent, assign_items @ latent


def contrast(anchors: Tensor, others: Tensor, rows: Tensor) -> Tensor:
    """Step 6's sum over the batch's `rows` of -log softmax over every row of `others` at
    the same row: anchors[r] against others[r]. A row repeated in the batch has the same
    term, so each distinct row is computed once and counted as often as it occurs."""
    distinct, counts = rows.unique(return_counts=True)
    a = F.normalize(anchors[distinct], dim=1)
    candidates = F.normalize(others, dim=1)
    pos = (a * candidates[distinct]).sum(1) / TEMPERATURE
    return ((torch.logsumexp(a @ candidates.T / TEMPERATURE, dim=1) - pos) * counts).sum()


class LGMRec(GraphContentModel):
    """Local (CGE + MGE) and global (hypergraph) embeddings, summed."""

    # the modality embeddings (MGE) and the hypergraph read the item's features
    cold_start = "content"

    def __init__(self, ds: Dataset, cfg: LGMRecConfig):
        super().__init__(ds, cfg, trainable_content=False, user_sums=("mean", "ones"))
        self.project = nn.ParameterList([xavier_uniform(width, cfg.dim) for width in self.content.dims])
        self.hyper = nn.ParameterList([xavier_uniform(width, cfg.hyperedges) for width in self.content.dims])

    def assignments(self, logits: Tensor) -> Tensor:
        """Soft hyperedge assignments of `logits` [N, H] (step 3): Gumbel softmax and
        dropout while training, softmax(logits / t) at evaluation."""
        if not self.training:
            return torch.softmax(logits / TEMPERATURE, dim=1)
        soft = F.gumbel_softmax(logits, tau=TEMPERATURE, hard=False, dim=1)
        return F.dropout(soft, 1 - self.cfg.keep_rate, training=True)

    def embeddings(self) -> tuple[Tensor, list[Tensor]]:
        """The final [P + Q, D] table and each modality's global [P + Q, D] (steps 1-5)."""
        cfg = self.cfg
        local = self.id_layer_mean(cfg.ui_layers)
        c_i = local[self.num_users :]
        globals_ = []
        for proj, hyper, x in zip(self.project, self.hyper, self.content()):
            f_i = x @ proj
            modal = torch.cat([self.user_sums["mean"].mm(f_i), f_i])
            for _ in range(cfg.mm_layers):
                modal = self.graph.mm(modal)
            local = local + F.normalize(modal, dim=1)
            h_i = x @ hyper
            h_u = self.user_sums["ones"].mm(h_i)
            g_u, g_i = hypergraph(self.assignments(h_i), self.assignments(h_u), c_i, cfg.hyper_layers)
            globals_.append(torch.cat([g_u, g_i]))
        return local + cfg.alpha * F.normalize(sum(globals_), dim=1), globals_

    def propagate(self) -> Tables:
        return self.split(self.embeddings()[0])

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 6: BPR, the hypergraph contrast of every modality pair, the regulariser."""
        final, globals_ = self.embeddings()
        u, p, n = self.batch_rows(final, users, pos, neg)
        bpr_term = bpr(inner(u, p), inner(u, n))
        cl = bpr_term.new_zeros(())
        P = self.num_users
        for m in range(len(globals_)):
            for other in globals_[m + 1 :]:
                cl = cl + contrast(globals_[m][:P], other[:P], users) + contrast(globals_[m][P:], other[P:], pos)
        reg_term = reg * (u.norm() + p.norm() + n.norm()) / len(users)
        total = bpr_term + self.cfg.cl_weight * cl + reg_term
        return total, {"bpr": bpr_term.detach(), "cl": cl.detach(), "reg": reg_term.detach()}
