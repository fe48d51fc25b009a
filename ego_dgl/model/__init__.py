"""The models (SPEC.md for EgoGCN; one module per baseline), their shared interface
(`base`), their registry, and the graph backends."""

from ego_dgl.model.backends import resolve_backend
from ego_dgl.model.base import Recommender, Tables
from ego_dgl.model.config import CHOICES, ModelConfig
from ego_dgl.model.egogcn import EgoGCN
from ego_dgl.model.registry import MODELS, PRESETS, build_model, model_name, resolve_model

__all__ = [
    "CHOICES", "EgoGCN", "MODELS", "ModelConfig", "PRESETS", "Recommender", "Tables",
    "build_model", "model_name", "resolve_model", "resolve_backend",
]
