"""The models behind one interface (`base.Recommender`) and one list (`registry`): EgoGCN
in `egogcn/`, the comparison's models in `baselines/` (one module each, none importing
EgoGCN's), the pieces they share in `layers/`. Graph kernels live in `ego_dgl.graph`."""

from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.registry import (
    MODELS,
    PRESETS,
    build_model,
    model_name,
    resolve_model,
)

__all__ = ["MODELS", "PRESETS", "Recommender", "Tables", "build_model", "model_name", "resolve_model"]
