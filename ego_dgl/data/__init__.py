"""Datasets: the in-memory model, readers and writers of the field's layouts, built-ins."""

from ego_dgl.data.dataset import CSR, Dataset, WordBag

__all__ = ["CSR", "Dataset", "WordBag"]
