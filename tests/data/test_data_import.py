"""Importing the package is silent and writes nothing outside the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_is_silent_and_writes_nothing(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DGLBACKEND", "PYTHONWARNINGS")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(home / ".cache"))
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import ego_dgl, ego_dgl.data, ego_dgl.graph.heterograph"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []
