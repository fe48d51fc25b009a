"""BM3 (Zhou, Zhou, Zhang, Liu, Miao, "Bootstrap Latent Representations for Multi-modal
Recommendation", WWW 2023): self-supervised, no negative sampling. Online views are
bootstrapped against dropout-perturbed, gradient-stopped target views of the same rows.

1. Encoder: LightGCN over the ID embeddings e_u, e_i (`layers`), layer mean;
   h_u = mean_l e(l)_u, h_i = mean_l e(l)_i + e_i (the item's ID embedding added back).
   Content: h_i,m = W_m x_i,m + b_m per modality m.
2. Online view: a shared linear predictor, h~ = W_p h + b_p; target view:
   h. = sg(dropout(h)) (`dropout`; sg stops gradients).
3. Loss over the batch's positive pairs (u, i); the trainer's negatives are ignored:
   L_rec = C(h~_u, h._i) + C(h._u, h~_i), with C(a, b) = 1 - cos(a, b) averaged over the batch;
   L_align = sum over m of C(h~_i,m, h._i) (inter-modality alignment);
   L_mask = sum over m of C(h~_i,m, h._i,m) (intra-modality masked reconstruction);
   L = L_rec + cl_weight (L_align + L_mask) + reg (||H_u|| + ||H_i||) / Q,
   the last term MMRec's EmbLoss: Frobenius norms of the whole h tables over the item count.
4. Score <h~_u, h~_i>: the predictor's outputs are the final tables.

Choices where the paper is silent follow MMRec (src/models/bm3.py, configs/model/BM3.yaml):
xavier-uniform ID tables, xavier-normal projections and predictor, the content tables
fine-tuned (MMRec loads them as trainable embeddings), cl_weight 2.0. Ours:
- each pair draws its own dropout mask (MMRec drops the whole table once per batch, so a
  user twice in a batch shares one mask); at evaluation nothing is dropped;
- an item lacking modality m (ego-dgl datasets may have gaps; MMRec's have none) is left
  out of that modality's L_align and L_mask means.
Defaults are MMRec's, the first value of each grid it searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.base import Tables
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.field.mmrec_parts import GraphContentModel, projection


@dataclass
class BM3Config(RecommenderConfig):
    """BM3's options; defaults are MMRec's (module docstring)."""

    name: ClassVar[str] = "bm3"
    # MMRec's values, as ego-dgl options (embedding_size, n_layers, dropout, cl_weight,
    # reg_weight, learning_rate, train_batch_size); a grid's first value where it searches
    mmrec_defaults: ClassVar[dict[str, Any]] = {"dim": 64, "layers": 1, "dropout": 0.3, "cl_weight": 2.0, "reg": 0.1, "lr": 1e-3, "batch_size": 2048}
    mmrec_grid: ClassVar[dict[str, list[Any]]] = {"layers": [1, 2], "dropout": [0.3, 0.5], "reg": [0.1, 0.01]}

    dim: int = 64  # width of the ID embeddings, the content projections and the predictor
    layers: int = 1  # LightGCN layers of the encoder
    dropout: float = 0.3  # dropout probability of the target views
    cl_weight: float = 2.0  # weight of the alignment and reconstruction losses

    def validate(self) -> BM3Config:
        """Raise ConfigError naming the first bad option."""
        if self.dim < 1 or self.layers < 0:
            raise ConfigError(f"--dim must be positive and layers >= 0, got dim={self.dim}, layers={self.layers}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.cl_weight >= 0:
            raise ConfigError(f"cl_weight must be >= 0, got {self.cl_weight}")
        return self


def cosine_loss(online: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """C = 1 - cos(online, target) per row, averaged (weighted by `weights` [B] if given);
    the target is detached."""
    loss = 1 - F.cosine_similarity(online, target.detach(), dim=-1)
    if weights is None:
        return loss.mean()
    return (loss * weights).sum() / weights.sum().clamp(min=1)


class BM3(GraphContentModel):
    """LightGCN encoder, a shared predictor, and bootstrapped cosine losses (no negatives)."""

    # items are scored by their ID representations alone (content enters only the losses)
    cold_start = "none"

    def __init__(self, ds: Dataset, cfg: BM3Config):
        super().__init__(ds, cfg, trainable_content=True)
        self.project = nn.ModuleList([projection(width, cfg.dim) for width in self.content.dims])
        self.predictor = projection(cfg.dim, cfg.dim)
        self.num_items = ds.num_items

    def encode(self) -> tuple[Tensor, Tensor]:
        """h_u [P, D] and h_i [Q, D] (step 1)."""
        mean = self.id_layer_mean(self.cfg.layers)
        return mean[: self.num_users], mean[self.num_users :] + self.item_ids()

    def propagate(self) -> Tables:
        users, items = self.encode()
        return Tables(self.predictor(users), self.predictor(items))

    def target(self, x: Tensor) -> Tensor:
        """The target view h. = sg(dropout(x)) (dropout only while training)."""
        return F.dropout(x.detach(), self.cfg.dropout, self.training)

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """L of step 3 over the pairs (users, pos); `neg` is not used."""
        h_u, h_i = self.encode()
        rows_u, rows_i = h_u[users], h_i[pos]
        target_i = self.target(rows_i)
        rec = cosine_loss(self.predictor(rows_u), target_i) + cosine_loss(self.predictor(rows_i), self.target(rows_u))
        align = mask = rec.new_zeros(())
        available = self.content.available[pos].to(rec.dtype)
        for k, (proj, content) in enumerate(zip(self.project, self.content())):
            h_m = proj(content[pos])
            online = self.predictor(h_m)
            align = align + cosine_loss(online, target_i, available[:, k])
            mask = mask + cosine_loss(online, self.target(h_m), available[:, k])
        reg_term = reg * (h_u.norm() + h_i.norm()) / self.num_items
        total = rec + self.cfg.cl_weight * (align + mask) + reg_term
        return total, {"rec": rec.detach(), "align": align.detach(), "mask": mask.detach(), "reg": reg_term.detach()}
