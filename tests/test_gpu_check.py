""".ci/gpu-check with the CPU standing in for CUDA (--quick): its four steps pass, and a
device side that differs from the CPU's makes it fail at step 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu-check"


def gpu_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([str(SCRIPT), *args, "--out", str(tmp_path / "out")], env=environ, capture_output=True, text=True, timeout=900)


def test_quick_check_on_the_cpu_passes_all_four_steps(tmp_path):
    proc = gpu_check(tmp_path, "--device", "cpu", "--quick")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split(":")[0] for line in lines] == [f"ok step {n}" for n in (1, 2, 3, 4)], lines
    assert "backends dgl, dgl-udf, torch" in lines[0] and "equal the CPU's" in lines[0]
    assert "hard and soft" in lines[1]
    assert (tmp_path / "out" / "bench" / "synthetic-tiny.json").is_file()
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 2
    assert "chunks of at most" in lines[3]


def test_a_device_that_disagrees_with_the_cpu_fails_at_step_1(tmp_path):
    proc = gpu_check(tmp_path, "--device", "cpu", "--quick", EGODGL_GPU_CHECK_PERTURB="1")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("FAIL step 1: AssertionError:") and "users" in lines[0], lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [(["--bogus"], "unknown argument '--bogus'"), (["--wheels", "/nonexistent"], "is not a folder")])
def test_bad_arguments_say_what_is_wrong(tmp_path, args, message):
    proc = gpu_check(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr and not proc.stdout
