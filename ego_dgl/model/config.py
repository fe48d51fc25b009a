"""The base of every model's config: a dataclass of the model's options with their
defaults, the registry name, a short label for run ids, and a check of its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Footprint:
    """What the memory estimate before training (`train/budget.py`) needs of a model."""

    dim: int  # D, the width of its tables
    word_dim: int  # W, the width of a learned word table (word-bag modalities)
    content: bool  # whether it reads the item features
    layers_mm: int  # K, layers over multimodal representations
    layers_id: int  # L, layers over ID representations


@dataclass
class RecommenderConfig:
    """Every model's config extends this: fields are the model's options (with the
    paper's or the model's defaults), `name` is its registry name."""

    name: ClassVar[str] = ""
    # option -> value under `--protocol mmrec` (MMRec's configs/model/<Model>.yaml): model
    # or training options, over MMRec's overall.yaml and under what the user gives
    mmrec_defaults: ClassVar[dict[str, Any]] = {}

    def label(self) -> str:
        """Short name used in run ids (a variant may say more, e.g. EgoGCN's 'soft')."""
        return self.name

    def ignored_options(self) -> dict[str, str]:
        """The options this config, as set, would silently ignore, each with the line that
        says why: `train` refuses them when given explicitly, `compare --tune` leaves them
        out. None by default; a model with variants (EgoGCN's modes) names its own."""
        return {}

    def footprint(self) -> Footprint | None:
        """The widths and depths the memory estimate counts, read from the options most
        models share (`dim`, `word_dim`, `content`, `layers` for both K and L); None for a
        model without a `dim` (popularity), which needs nothing worth counting."""
        dim = getattr(self, "dim", 0)
        if not dim:
            return None
        layers = getattr(self, "layers", 1)
        return Footprint(dim, getattr(self, "word_dim", 0), getattr(self, "content", True), layers, layers)

    def search_space(self) -> dict[str, dict[str, Any]]:
        """What `egodgl tune` searches, option -> {low, high[, log]} or {choices}: the
        learning rate and the regulariser's weight for every model (log-uniform over the
        decades around the paper's 2e-4 and 1e-4; the ranges are this project's choice);
        a model adds its own knobs to these."""
        return {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True}}

    def validate(self) -> Self:
        """Raise ConfigError naming the first bad option; return the config."""
        return self
