#!/usr/bin/env bash
# Sets up .venv with the pinned CPU stack, the package (editable) and the ml100k sources.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-cpu.txt
# recbole only carries the MovieLens-100K files we read; it is never imported, and its
# own dependencies are not needed.
.venv/bin/python -m pip install -q --no-deps recbole==1.2.1
# The fused backend's C++ kernels (ego_dgl/graph/csrc), compiled once into torch's
# extension cache; without a compiler the backend falls back to dgl with one warning.
.venv/bin/python -c "from ego_dgl.graph import fused; fused.kernels()" || echo "note: the fused backend's kernels were not built (see above); --backend fused falls back to dgl"
