"""What the model is: every architectural option of EgoGCN and its variants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ego_dgl.errors import ConfigError
from ego_dgl.model.config import Footprint, RecommenderConfig

CHOICES = {
    "mode": ("hard", "soft"),
    "threshold": ("absolute", "relative"),
    "gate": ("scalar", "vector"),
    "fusion": ("ego", "gm", "na"),
    "branches": ("id+mm", "id", "mm"),
    "id_weights": ("lightgcn", "soft-pruning"),
    "backend": ("auto", "dgl", "dgl-udf", "torch", "fused"),
}


FUSION_ONLY = ("mode", "eps", "threshold", "gate")  # options that only mean something for EGO fusion


@dataclass
class ModelConfig(RecommenderConfig):
    """EgoGCN's architecture (docs/egogcn.md). Defaults are the paper's; `eps` and the layer
    counts are per dataset in the paper and set by the training defaults."""

    name: ClassVar[str] = "egogcn"

    dim: int = 64  # D for every table
    mode: str = "hard"  # EGO fusion kind (Eq. 2 or Eq. 3-4)
    eps: float = 0.4  # hard-mode importance threshold; > 1 fuses no edge (= GM), < 0 fuses every edge
    # hard mode: "absolute" (the paper's: s > eps) or "relative" (an extension, not the
    # paper's: s * |N(v)| > eps, the weight against the uniform share 1/|N(v)|)
    threshold: str = "absolute"
    gate: str = "scalar"  # soft-mode gate: the paper's scalar or the authors' vector
    layers_mm: int = 2  # K, multimodal layers including the EGO layer 0
    layers_id: int = 2  # L, LightGCN layers of the ID branch
    fusion: str = "ego"  # ego | gm (graph merge: no modulation) | na (node alignment)
    branches: str = "id+mm"  # which representations are concatenated for scoring
    id_weights: str = "lightgcn"  # ID-branch edge weights
    backend: str = "auto"  # graph backend: dgl, dgl-udf, torch, fused (CPU), or auto (dgl unless it cannot run on the device)
    word_dim: int = 128  # width of the learned word table for word-bag text modalities

    def label(self) -> str:
        """Short name of the variant, used in run ids: hard, soft, gm, na, id, mm-hard..."""
        if self.branches == "id":
            return "id"
        label = self.mode if self.fusion == "ego" else self.fusion
        return f"mm-{label}" if self.branches == "mm" else label

    def search_space(self) -> dict[str, dict[str, Any]]:
        """lr, reg and, where hard EGO fusion is in use, its threshold eps (the paper's
        Fig. 3 range, 0.3-0.7, widened to 0.2-0.8)."""
        space = super().search_space()
        if self.fusion == "ego" and self.mode == "hard" and self.branches != "id":
            space["eps"] = {"low": 0.2, "high": 0.8}
        return space

    def ignored_options(self) -> dict[str, str]:
        """The EgoGCN options this variant ignores: the soft gate's in hard mode, the hard
        threshold's in soft mode, every fusion option without EGO fusion or the multimodal branch."""
        ignored: dict[str, str] = {}
        if self.mode != "soft":
            ignored["gate"] = "--gate applies to the soft EGO gate only; add --mode soft or drop --gate"
        else:
            ignored["eps"] = "--eps is the hard-mode threshold; drop it with --mode soft"
            ignored["threshold"] = "--threshold says how the hard-mode threshold applies; drop it with --mode soft"
        for key in FUSION_ONLY:
            if self.fusion != "ego":
                ignored.setdefault(key, f"--{key} configures EGO fusion; it has no effect with --fusion {self.fusion}")
            elif self.branches == "id":
                ignored.setdefault(key, f"--{key} configures the multimodal branch; it has no effect with --branches id")
        return ignored

    def footprint(self) -> Footprint:
        """K and L are EgoGCN's own; the ID-only variant reads no content."""
        return Footprint(self.dim, self.word_dim, self.branches != "id", self.layers_mm, self.layers_id)

    def validate(self) -> ModelConfig:
        """Raise ConfigError naming the first bad or incompatible option."""
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"--{key.replace('_', '-')} {value!r} is not one of: {', '.join(allowed)}")
        if not math.isfinite(self.eps):
            raise ConfigError(f"--eps must be a finite number, got {self.eps}")
        if self.dim < 1 or self.word_dim < 1:
            raise ConfigError("--dim must be a positive integer")
        if self.layers_mm < 1:
            raise ConfigError("--layers-mm (K) counts the EGO layer and must be >= 1")
        if self.layers_id < 0:
            raise ConfigError("--layers-id (L) must be >= 0")
        if self.id_weights == "soft-pruning" and self.branches == "id":
            raise ConfigError("--id-weights soft-pruning takes its weights from the multimodal branch; it cannot be used with --branches id")
        return self
