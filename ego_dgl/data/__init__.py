"""Datasets: the in-memory model, readers and writers of the field's layouts, built-ins."""

from ego_dgl.data.dataset import CSR, Dataset, WordBag
from ego_dgl.data.grcn import read_grcn, write_grcn
from ego_dgl.data.mmrec import read_mmrec, write_mmrec
from ego_dgl.data.registry import (
    KNOWN,
    datasets_root,
    detect_layout,
    load_dataset,
    prepare,
    read_folder,
)
from ego_dgl.data.split import split_per_user
from ego_dgl.data.synthetic import make_synthetic, make_synthetic_scaled

__all__ = [
    "CSR",
    "Dataset",
    "KNOWN",
    "WordBag",
    "datasets_root",
    "detect_layout",
    "load_dataset",
    "make_synthetic",
    "make_synthetic_scaled",
    "prepare",
    "read_folder",
    "read_grcn",
    "read_mmrec",
    "split_per_user",
    "write_grcn",
    "write_mmrec",
]
