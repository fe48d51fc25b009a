"""The study cell engine (ego_dgl/study/cells.py): one name check for sweeps and compare,
the cap on planned cells, cells planned once, and the --jobs workers stopping when the
study's process is stopped by Ctrl-C or SIGTERM (resumable) or killed outright."""

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import children, group_members, left_after_kill, run, start_in_session

from ego_dgl.errors import ConfigError
from ego_dgl.study.cells import MAX_CELLS, Planner, study_folder
from ego_dgl.study.sweeps import eps_cells


@pytest.mark.parametrize("name", ["a/b", "../x", "/tmp/x", "..", ".", "", "[bold]x", "x y", "-x", "a" * 101])
def test_a_study_name_must_be_a_plain_slug(tmp_path, name):
    with pytest.raises(ConfigError, match="must be a plain folder name"):
        study_folder(tmp_path, "compare", name, "default")


def test_slugs_and_the_default_make_the_folder(tmp_path):
    assert study_folder(tmp_path, "sweeps", "run-2.b_c", "eps-x") == tmp_path / "sweeps" / "run-2.b_c"
    assert study_folder(tmp_path, "compare", None, "ml100k") == tmp_path / "compare" / "ml100k"


@pytest.mark.parametrize("command", [["compare", "--models", "pop"], ["sweep-eps", "--values", "0.3"]])
def test_sweeps_and_compare_refuse_a_path_as_name_and_write_nothing(tmp_path, command):
    result = run(*command, "--dataset", "synthetic-tiny", "--epochs", 1, "--out", tmp_path, "--name", "../escape")
    assert result.exit_code == 2 and "must be a plain folder name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["compare", "--models", "pop,lightgcn"], ["sweep-eps", "--values", "0.3,0.4"],
                                     ["sweep-layers", "--fusions", "ego"]])
def test_a_huge_number_of_cells_is_refused_in_one_line(tmp_path, command):
    result = run(*command, "--dataset", "synthetic-tiny", "--seeds", 100_000_000, "--out", tmp_path)
    assert result.exit_code == 2 and f"at most {MAX_CELLS:,}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_the_planner_resolves_each_cell_once_and_carries_it(monkeypatch):
    import ego_dgl.study.cells as cells_module

    calls = []
    real = cells_module.resolve_options
    monkeypatch.setattr(cells_module, "resolve_options", lambda given: calls.append(given) or real(given))
    planner = Planner({"dataset": "synthetic-tiny", "epochs": 2})
    cells = eps_cells([0.3, 0.5], 2, 2, [0, 1])
    planned = planner.plan(cells + cells[:1])
    again = planner.plan(cells)
    assert len(calls) == 4 and [p.key for p in planned] == [c.key for c in cells + cells[:1]]
    assert [p.model.eps for p in again] == [0.3, 0.3, 0.5, 0.5] and all(p.train.epochs == 2 for p in again)


def start_compare(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`egodgl compare --jobs 2` of four endless cells, once two cells have a checkpoint."""
    cells = tmp_path / "compare" / "synthetic-tiny" / "cells"
    proc = start_in_session(["compare", "--dataset", "synthetic-tiny", "--models", "lightgcn,gm,na,pop", "--seeds", "1", "--jobs", "2",
                             "--epochs", "100000", "--patience", "100000", "--device", "cpu", "--out", tmp_path], cells, "*/last.pt")
    return proc, cells


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_with_jobs_2_starts_no_new_cell_and_stops_the_workers(tmp_path, signum):
    """SIGINT (Ctrl-C) or SIGTERM to the compare process alone: the two running cells stop
    at once (no metrics, a checkpoint to resume from), the other two never start, exit code 2."""
    proc, cells = start_compare(tmp_path)
    try:
        assert len(list(cells.glob("*/last.pt"))) == 2, "two cells did not start"
        proc.send_signal(signum)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2 and "interrupted" in output and "Traceback" not in output, output
    assert sorted(p.name for p in cells.iterdir()) == ["gm-s0", "lightgcn-s0"]
    assert not list(cells.glob("*/metrics.json")) and not (cells.parent / "cells.csv").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_stop_by_themselves_when_the_study_process_is_killed(tmp_path):
    proc, cells = start_compare(tmp_path)
    try:
        assert len(list(cells.glob("*/last.pt"))) == 2, "two cells did not start"
        assert len(group_members(proc.pid)) >= 3  # the study, the forkserver, two workers
        assert left_after_kill(proc) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list(cells.glob("*/metrics.json"))  # nothing recorded: both cells resume from last.pt


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_worker_killed_mid_cell_ends_the_study_with_one_line_and_no_orphan(tmp_path):
    """SIGKILL of one worker (what the out-of-memory killer sends): the study says so in one
    line and exits 2 instead of a BrokenProcessPool traceback, and stops the other worker."""
    proc, cells = start_compare(tmp_path)
    try:
        assert len(list(cells.glob("*/last.pt"))) == 2, "two cells did not start"
        workers = [w for server in children(proc.pid) for w in children(server)]  # forked by the forkserver
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        out = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 2, out
        assert "Traceback" not in out and out.strip().splitlines()[-1].startswith("error: a worker process died"), out
        assert left_after_kill(proc, wait_s=30) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list(cells.glob("*/metrics.json"))
