from ego_dgl.model.config import CHOICES, ModelConfig

__all__ = ["CHOICES", "ModelConfig"]
