"""The interface every model shares, so that the trainer, the evaluator, the sweeps and
`compare` never know which model they hold (in the manner of RecBole's
calculate_loss / predict / full_sort_predict):

- `propagate()`: the final user [P, D_total] and item [Q, D_total] tables, with autograd;
- `loss(users, pos, neg, reg)`: the training objective of one BPR batch and its logged parts;
- `final_tables()`: the tables for full ranking, without autograd; scores are inner
  products of their rows (`score`);
- `input_tables()`: the representations before propagation (for the embedding plots);
- `start_epoch(epoch, rng)`: called before each training epoch's batches are drawn, for
  models that change their graph per epoch (e.g. FREEDOM's edge pruning); by default
  nothing, and it draws from `rng` (the trainer's checkpointed generator) only when it acts;
- `sampled_loss(users, pos, neg, reg, batch)`: `loss` over sampled DGL blocks
  (`train --sampler neighbor`), for models with `supports_sampling` (EgoGCN);
- `layerwise_tables(chunk_size)`: `final_tables` computed layer by layer over chunks of
  nodes (`--eval-chunk`), for the models whose `check_layerwise` passes (EgoGCN).

A model is built as `Model(ds, cfg)` from its dataset and its config dataclass
(`ego_dgl.model.registry`). The default `loss` is BPR on the propagated tables plus
`reg` times the regulariser of the raw rows the model names in `reg_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ego_dgl.errors import ConfigError
from ego_dgl.model.layers.loss import bpr, regulariser

if TYPE_CHECKING:
    from ego_dgl.graph.blocks import SampledBatch


def inner(users: Tensor, items: Tensor) -> Tensor:
    """Row-wise inner products of matching user and item rows [B, D_total] -> [B]."""
    return (users * items).sum(-1)


@dataclass
class Tables:
    """Final user [P, D_total] and item [Q, D_total] representations, and detached 0-d
    statistics of the propagation (e.g. EGO-hard's f"fused/{modality}/{direction}")."""

    users: Tensor
    items: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


class Recommender(nn.Module):
    """Base class of every model: one small uniform interface (module docstring)."""

    trainable: ClassVar[bool] = True  # False: nothing to optimise (e.g. popularity); one epoch
    supports_sampling: ClassVar[bool] = False  # True: `sampling_layers` and `sampled_loss` exist
    # How an item never seen in training (a cold item) is scored: "content", "early-fused"
    # or "none" (cold metrics refused); see model/layers/cold.py. Models set it in
    # __init__ when it depends on their options.
    cold_start: str = "none"

    @property
    def device(self) -> torch.device:
        """The device of the model's buffers and parameters."""
        return next(self.buffers(), next(self.parameters(), torch.empty(0))).device

    @property
    def backend(self) -> str:
        """The graph backend in use on the current device ('dgl' or 'torch')."""
        return "torch"

    @property
    def backend_note(self) -> str | None:
        """One sentence when the requested backend could not be used, else None."""
        return None

    def propagate(self) -> Tables:
        raise NotImplementedError

    def start_epoch(self, epoch: int, rng: np.random.Generator) -> None:
        """Before epoch `epoch` (1-based) trains; the default does nothing."""

    def input_tables(self) -> Tables:
        """The representations before any propagation, concatenated like `propagate`'s."""
        raise NotImplementedError

    def reg_rows(self, users: Tensor, items: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The raw (trainable) rows of the batch's users and items that the regulariser
        penalises."""
        return [], []

    def regularise(self, users: list[Tensor], items: list[Tensor]) -> Tensor:
        """The regulariser of the `reg_rows`: by default each table's mean squared entry,
        summed (`loss.regulariser`); a model may follow its authors' convention instead."""
        return regulariser(users, items)

    def score(self, tables: Tables, users: Tensor, items: Tensor) -> Tensor:
        """Scores of the pairs (users[b], items[b]) under `tables`."""
        return inner(tables.users[users], tables.items[items])

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> tuple[Tensor, dict[str, Tensor]]:
        """BPR + reg * regulariser (Eq. 14) after one propagation; the logs hold the
        detached BPR term, the weighted regulariser term ("reg") and the propagation stats."""
        tables = self.propagate()
        items = torch.cat([pos, neg])
        user_rows, item_rows = tables.users[users], tables.items[items]
        bpr_term = bpr(inner(user_rows, item_rows[: len(pos)]), inner(user_rows, item_rows[len(pos) :]))
        raw_users, raw_items = self.reg_rows(users, items)
        reg_term = reg * self.regularise(raw_users, raw_items) if raw_users or raw_items else bpr_term.new_zeros(())
        return bpr_term + reg_term, {"bpr": bpr_term.detach(), "reg": reg_term.detach(), **tables.stats}

    def sampling_layers(self) -> int:
        """How many blocks a sampled batch needs (models with `supports_sampling`)."""
        raise NotImplementedError

    def sampled_loss(self, users: Tensor, pos: Tensor, neg: Tensor, reg: float, batch: SampledBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """`loss` with propagation over the sampled blocks of `batch` only."""
        raise NotImplementedError

    @torch.no_grad()
    def final_tables(self) -> Tables:
        """The propagated tables for full ranking, without autograd."""
        return self.propagate()

    def check_layerwise(self) -> None:
        """Raise ConfigError unless `layerwise_tables` runs for this model."""
        raise ConfigError("--eval-chunk (layer-wise inference) is built for EgoGCN and its variants only; drop it with this model")

    def layerwise_tables(self, chunk_size: int) -> Tables:
        """`final_tables` computed one layer at a time over chunks of `chunk_size` nodes."""
        self.check_layerwise()
        raise NotImplementedError
