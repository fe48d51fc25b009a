"""EgoGCN (SPEC.md): the model, its configuration and the graph backends."""

from ego_dgl.model.backends import resolve_backend
from ego_dgl.model.config import CHOICES, ModelConfig
from ego_dgl.model.egogcn import EgoGCN, Tables

__all__ = ["CHOICES", "EgoGCN", "ModelConfig", "Tables", "resolve_backend"]
