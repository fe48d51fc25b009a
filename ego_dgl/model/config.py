"""The base of every model's config: a dataclass of the model's options with their
defaults, the registry name, a short label for run ids, and a check of its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self


@dataclass
class RecommenderConfig:
    """Every model's config extends this: fields are the model's options (with the
    paper's or the model's defaults), `name` is its registry name."""

    name: ClassVar[str] = ""

    def label(self) -> str:
        """Short name used in run ids (a variant may say more, e.g. EgoGCN's 'soft')."""
        return self.name

    def validate(self) -> Self:
        """Raise ConfigError naming the first bad option; return the config."""
        return self
