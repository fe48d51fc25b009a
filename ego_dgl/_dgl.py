"""The one place that imports DGL; every module takes `dgl` from here.

Two environment fixes must happen before DGL's first import:
- DGLBACKEND=pytorch, so DGL does not write a backend config into the home folder.
- `dgl.graphbolt` is replaced by an empty stub module. dgl 2.1.0 (the newest Linux
  wheel on PyPI) loads graphbolt on import, and graphbolt ships compiled libraries only
  for the torch versions DGL was built against; with a newer torch the import fails.
  ego-dgl uses no graphbolt API (heterographs, apply_edges, edge_softmax and update_all
  live in DGL's core), so a stub keeps the rest of DGL usable. The stub defines the one
  graphbolt name DistDGL's graph server reads without graphbolt enabled.
"""

import os
import sys
import types

os.environ.setdefault("DGLBACKEND", "pytorch")


class FusedCSCSamplingGraph:
    """Placeholder for graphbolt's graph class: DistDGL's server asks whether its
    partition is one (isinstance) before serving it; with graphbolt off, none ever is."""


if "dgl.graphbolt" not in sys.modules:
    _graphbolt = types.ModuleType("dgl.graphbolt")
    _graphbolt.FusedCSCSamplingGraph = FusedCSCSamplingGraph
    sys.modules["dgl.graphbolt"] = _graphbolt

import dgl  # noqa: E402
import dgl.function as fn  # noqa: E402
from dgl.nn.functional import edge_softmax  # noqa: E402

__all__ = ["dgl", "fn", "edge_softmax"]
