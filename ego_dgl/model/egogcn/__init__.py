"""EgoGCN (Chen et al. MM 2022): its config, layer-0 EGO fusion, node alignment, the
routing layers' use, the DGL-UDF reference backend; equations in docs/egogcn.md."""

from ego_dgl.model.egogcn.config import CHOICES, ModelConfig
from ego_dgl.model.egogcn.model import EgoGCN

__all__ = ["CHOICES", "EgoGCN", "ModelConfig"]
