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
    # option -> value under `--protocol mmrec` (MMRec's configs/model/<Model>.yaml): model
    # or training options, over MMRec's overall.yaml and under what the user gives
    mmrec_defaults: ClassVar[dict[str, Any]] = {}

    def label(self) -> str:
        """Short name used in run ids (a variant may say more, e.g. EgoGCN's 'soft')."""
        return self.name

    def validate(self) -> Self:
        """Raise ConfigError naming the first bad option; return the config."""
        return self
