"""Datasets: the in-memory model, readers and writers of the field's layouts, built-ins."""

from ego_dgl.data.dataset import CSR, Dataset, WordBag
from ego_dgl.data.registry import KNOWN, datasets_root, load_dataset
from ego_dgl.data.split import split_per_user
from ego_dgl.data.synthetic import make_synthetic, make_synthetic_scaled

__all__ = [
    "CSR",
    "Dataset",
    "KNOWN",
    "WordBag",
    "datasets_root",
    "load_dataset",
    "make_synthetic",
    "make_synthetic_scaled",
    "split_per_user",
]
