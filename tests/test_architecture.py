"""The package's layers hold and its code is lint-clean: `lint-imports` checks the contracts in pyproject.toml (the
layers from the command line down to data and errors, EgoGCN and the baselines independent); `ruff check` its rules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_ruff_check_is_clean():
    """`ruff check` with pyproject.toml's rules over the package, the tests, the shim and .ci."""
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "ego_dgl", "tests", "cli.py", ".ci"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
