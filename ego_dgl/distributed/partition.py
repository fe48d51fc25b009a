"""`egodgl data partition`: the user/item training graph cut into DistDGL partitions.

The partitions hold the structure only (both edge types of `graphs.structure_graph`, every
edge a training edge). Node features are
not partitioned: every trainer loads the dataset anyway (the model keeps its embedding
tables and feature projections as ordinary parameters, and evaluation ranks the full
catalogue), so it reads the features from the dataset, whose fingerprint must match the
one recorded here.

DGL renumbers nodes and edges per partition; the original ids of every new id are kept in
`orig_ids.npz` so that the trainers translate sampled blocks back to the dataset's ids.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ego_dgl._dgl import dgl
from ego_dgl.data.dataset import Dataset
from ego_dgl.data.files import FORMAT, META, atomic_folder, list_written_files
from ego_dgl.errors import ConfigError, DataError
from ego_dgl.graph.heterograph import structure_graph
from ego_dgl.runs import slug
from ego_dgl.untrusted import Field, check_record, read_json

METHODS = ("metis", "random")
ORIG_IDS = "orig_ids.npz"
KIND = "partitions"
PARTITION_FIELDS = {"kind": Field(str), "name": Field(str), "dataset": Field(str), "fingerprint": Field(str),
                    "parts": Field(int, low=1)}


def type_key(kind: str, name: str | tuple[str, str, str]) -> str:
    """The key of a node or edge type's id array in orig_ids.npz, e.g. 'edge:user:clicks:item'."""
    return f"{kind}:{':'.join(name) if isinstance(name, tuple) else name}"


def partition_dataset(ds: Dataset, source: str, out: Path, parts: int, method: str, overwrite: bool = False) -> Path:
    """Partition `ds`'s training graph into `parts` parts with `method` under the new folder
    `out` (atomically; an existing folder only with `overwrite` and only if ego-dgl wrote
    it); the partition config file, OUT/<name>.json."""
    if parts < 1:
        raise ConfigError(f"--parts must be a positive integer, got {parts}")
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not one of: {', '.join(METHODS)}")
    if parts > ds.num_users + ds.num_items:
        raise ConfigError(f"--parts {parts} is more than the {ds.num_users + ds.num_items:,} nodes of {ds.name}; "
                          "use at most one partition per node (usually one per machine)")
    g = structure_graph(ds)
    name = slug(ds.name)
    out = Path(out)
    with atomic_folder(out, overwrite, KIND) as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # DGL prints its progress
            nodes, edges = dgl.distributed.partition_graph(
                g, name, parts, str(tmp), num_hops=1, part_method=method, balance_edges=method == "metis", return_mapping=True
            )
        ids = {type_key("node", t): v.numpy() for t, v in nodes.items()}
        ids |= {type_key("edge", g.to_canonical_etype(t)): v.numpy() for t, v in edges.items()}
        np.savez(tmp / ORIG_IDS, **ids)
        meta = {"format": FORMAT, "kind": KIND, "name": name, "dataset": source, "fingerprint": ds.fingerprint(),
                "parts": parts, "method": method}
        (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        list_written_files(tmp)
    return out / f"{name}.json"


@dataclass(frozen=True)
class Partitions:
    """A partition folder as `train --dist` reads it."""

    config: Path  # OUT/<name>.json, DGL's partition config
    graph_name: str
    dataset: str  # how the partitioned dataset is loaded (a name or an absolute folder)
    fingerprint: str
    parts: int

    def original_ids(self) -> dict[str, torch.Tensor]:
        """The original id of every new (partition-ordered) id, per type key."""
        with np.load(self.config.parent / ORIG_IDS, allow_pickle=False) as f:
            return {k: torch.from_numpy(f[k]) for k in f.files}

    def check_dataset(self, ds: Dataset) -> None:
        """Refuse a dataset other than the one that was partitioned."""
        if ds.fingerprint() != self.fingerprint:
            raise DataError(f"{self.config} partitions dataset {self.dataset!r} (fingerprint {self.fingerprint}), "
                            f"not this one ({ds.fingerprint()}); train on that dataset or partition this one")


def read_partitions(config: str | Path) -> Partitions:
    """The partition folder whose DGL config file is `config`, checked to be one
    `egodgl data partition` wrote."""
    config = Path(config)
    meta_path = config.parent / META
    hint = "make one with: egodgl data partition DATASET OUT --parts N"
    if not config.is_file():
        raise ConfigError(f"--dist {config}: no such partition config file; {hint}")
    if not meta_path.is_file():
        raise DataError(f"--dist {config}: not a partition folder written by egodgl data partition (no {META}); {hint}")
    meta = check_record(read_json(meta_path, hint=hint), PARTITION_FIELDS, str(meta_path), hint=hint, extra_ok=True)
    dgl_conf = check_record(read_json(config, hint=hint), {"graph_name": Field(str)}, str(config), hint=hint, extra_ok=True)
    if meta["kind"] != KIND or dgl_conf["graph_name"] != meta["name"]:
        raise DataError(f"--dist {config}: not a partition folder written by egodgl data partition; {hint}")
    return Partitions(config.resolve(), meta["name"], meta["dataset"], meta["fingerprint"], meta["parts"])
