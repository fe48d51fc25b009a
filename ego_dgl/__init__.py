"""ego-dgl: EgoGCN multimodal graph recommendation on DGL heterographs."""

__version__ = "0.1.0"
