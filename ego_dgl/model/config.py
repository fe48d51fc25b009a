"""The base of every model's config: a dataclass of the model's options with their
defaults, the registry name, a short label for run ids, and a check of its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from typing_extensions import Self


@dataclass
class RecommenderConfig:
    """Every model's config extends this: fields are the model's options (with the
    paper's or the model's defaults), `name` is its registry name."""

    name: ClassVar[str] = ""

    def label(self) -> str:
        """Short name used in run ids (a variant may say more, e.g. EgoGCN's 'soft')."""
        return self.name

    def search_space(self) -> dict[str, dict[str, Any]]:
        """What `egodgl tune` searches, option -> {low, high[, log]} or {choices}: the
        learning rate and the regulariser's weight for every model (log-uniform over the
        decades around the paper's 2e-4 and 1e-4; the ranges are this project's choice);
        a model adds its own knobs to these."""
        return {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "reg": {"low": 1e-6, "high": 1e-2, "log": True}}

    def validate(self) -> Self:
        """Raise ConfigError naming the first bad option; return the config."""
        return self
