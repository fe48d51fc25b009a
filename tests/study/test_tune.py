"""`egodgl tune`: median pruning on a deterministic tiny study, a rerun that continues a
study after Ctrl-C (the interrupted trial resumed from its checkpoint to the result of an
uninterrupted one), best.toml training the same run through `train --config`, --jobs
workers that stop by themselves when the tune process is killed, the search spaces, and
refused options."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

import pytest

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError, EgoDGLError
from ego_dgl.model.registry import MODELS
from ego_dgl.runner import start_run
from ego_dgl.runs import read_csv
from ego_dgl.study.compare import parse_entry
from ego_dgl.study.tune import (
    launch_tune,
    open_study,
    optimise,
    plan_tune,
    suggest,
    summarise,
    tuned_entry,
)
from ego_dgl.train.config_file import load_config_file
from ego_dgl.train.trainer import Trainer
from tests.conftest import group_members, left_after_kill, run, start_in_session

TINY = {"dataset": "synthetic-tiny", "epochs": 3, "device": "cpu"}


def write_space(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def tune_opts(tmp_path: Path, **extra) -> dict:
    return {"model": "bpr", "given": dict(TINY), "trials": 1, "out": tmp_path, "startup": 1, "warmup": 1, **extra}


def states(folder: Path) -> list[str]:
    return [r["state"] for r in read_csv(folder / "trials.csv")]


def test_a_trial_behind_the_median_is_pruned_and_recorded(tiny, tmp_path):
    space = write_space(tmp_path / "space.toml", "[lr]\nlow = 1e-7\nhigh = 0.1\nlog = true\n")
    plan = plan_tune(tune_opts(tmp_path, model="lightgcn", given={**TINY, "epochs": 4}, space=space, warmup=2))
    study = open_study(plan)
    study.enqueue_trial({"lr": 0.05})  # learns: valid recall@10 0.258 at epoch 2, the median
    study.enqueue_trial({"lr": 1e-7})  # stays at its random start, 0.224: behind at epoch 2
    optimise(plan, tiny, 2, None, "off")
    summarise(plan, study)
    good, behind = read_csv(plan.folder / "trials.csv")
    assert (good["state"], behind["state"]) == ("complete", "pruned")
    assert behind["pruned_at"] == "2" and float(behind["valid/recall@10"]) < float(good["valid/recall@10"])
    pruned_run = Path(behind["run"])
    assert len(read_csv(pruned_run / "history.csv")) == 2 and not (pruned_run / "metrics.json").exists()
    assert len(read_csv(Path(good["run"]) / "history.csv")) == 4  # an ordinary, finished run folder
    assert (Path(good["run"]) / "metrics.json").exists() and (Path(good["run"]) / "config.json").exists()


def test_ctrl_c_then_a_rerun_continues_the_trial_and_more_trials_add_trials(tmp_path, monkeypatch):
    advance = Trainer.advance

    def interrupted(self, record, value):
        advance(self, record, value)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "advance", interrupted)
    with pytest.raises(EgoDGLError, match="rerun the same egodgl tune command"):
        launch_tune(tune_opts(tmp_path / "a"), progress=False)
    folder = tmp_path / "a" / "tune" / "bpr-synthetic-tiny"
    assert states(folder) == ["fail"] and (folder / "trials" / "trial-0000" / "last.pt").exists()
    monkeypatch.setattr(Trainer, "advance", advance)

    resumed = launch_tune(tune_opts(tmp_path / "a"), progress=False)
    assert resumed.states == {"fail": 1, "complete": 1}
    row = read_csv(folder / "trials.csv")[1]
    assert row["retry_of"] == "0" and row["run"] == str(folder / "trials" / "trial-0000")
    assert [r["epoch"] for r in read_csv(folder / "trials" / "trial-0000" / "history.csv")] == ["1", "2", "3"]
    uninterrupted = launch_tune(tune_opts(tmp_path / "b"), progress=False)
    assert resumed.best["_value"] == uninterrupted.best["_value"] and resumed.best["lr"] == uninterrupted.best["lr"]

    more = launch_tune(tune_opts(tmp_path / "a", trials=2), progress=False)
    assert more.states == {"fail": 1, "complete": 2}


def test_a_rerun_and_parallel_workers_draw_new_values(tmp_path):
    """The sampler's state is not stored: a rerun seeded as the first run was would draw
    the first trials' values again, and so would two workers seeded alike."""
    plan = plan_tune(tune_opts(tmp_path))
    first = launch_tune(tune_opts(tmp_path, trials=2), progress=False)
    rerun = launch_tune(tune_opts(tmp_path, trials=4), progress=False)
    values = [(r["lr"], r["reg"]) for r in read_csv(rerun.folder / "trials.csv")]
    assert first.states == {"complete": 2} and len(set(values)) == 4
    parallel = launch_tune(tune_opts(tmp_path / "p", trials=2, jobs=2, given={**TINY, "epochs": 1}, warmup=2), progress=False)
    a, b = ((r["lr"], r["reg"]) for r in read_csv(parallel.folder / "trials.csv"))
    assert a != b and plan.seed == 0


def test_a_study_carried_without_its_database_goes_on_as_the_database_would(tmp_path):
    """A fresh clone has trials.json but not study.db: the rebuilt study holds the same
    trials (values, states, per-epoch values for the pruner) and samples the same next
    trial as the study continued from its SQLite file."""
    first = launch_tune(tune_opts(tmp_path / "a", trials=2), progress=False)
    carried = Path(shutil.copytree(first.folder, tmp_path / "b" / "tune" / first.folder.name, ignore=shutil.ignore_patterns("study.db", "trials")))
    continued = launch_tune(tune_opts(tmp_path / "a", trials=3), progress=False)
    rebuilt = launch_tune(tune_opts(tmp_path / "b", trials=3), progress=False)
    assert rebuilt.states == continued.states == {"complete": 3}
    a, b = (read_csv(f / "trials.csv") for f in (continued.folder, carried))
    assert [(r["lr"], r["reg"], r["valid/recall@10"]) for r in a] == [(r["lr"], r["reg"], r["valid/recall@10"]) for r in b]
    again = open_study(plan_tune(tune_opts(tmp_path / "b", trials=3))).trials[:2]
    before = open_study(plan_tune(tune_opts(tmp_path / "a", trials=3))).trials[:2]
    assert [t.intermediate_values for t in again] == [t.intermediate_values for t in before] != [{}, {}]


def test_a_trial_left_running_by_a_killed_process_is_tried_again(tmp_path):
    plan = plan_tune(tune_opts(tmp_path))
    killed = open_study(plan).ask()  # a worker that died (kill -9) leaves its trial running
    lr = suggest(killed, plan.space)["lr"]
    result = launch_tune(tune_opts(tmp_path), progress=False)
    assert result.states == {"fail": 1, "complete": 1}
    retried = read_csv(result.folder / "trials.csv")[1]
    assert retried["retry_of"] == "0" and float(retried["lr"]) == lr


def test_best_config_trains_the_same_run_and_compare_takes_the_study(tmp_path):
    result = launch_tune(tune_opts(tmp_path, trials=2), progress=False)
    best = load_config_file(result.folder / "best.toml")
    assert best["model"] == "bpr" and best["lr"] == result.best["lr"] and "device" not in best
    again = start_run({**best, "device": "cpu", "out": str(tmp_path / "again")}, progress=False)
    assert again.valid["recall@10"] == result.best["_value"]
    entry = parse_entry(tuned_entry(result.folder))
    assert entry.model == "bpr" and dict(entry.overrides) == {"lr": best["lr"], "reg": best["reg"]}
    assert {"history.png", "importance.png"} <= {p.name for p in result.folder.iterdir()}


def test_jobs_2_workers_share_the_study(tmp_path):
    # warmup 2 > the one epoch: no trial can be pruned, whichever worker reports first
    result = launch_tune(tune_opts(tmp_path, trials=2, jobs=2, given={**TINY, "epochs": 1}, warmup=2), progress=False)
    assert result.states == {"complete": 2}
    assert len({r["run"] for r in read_csv(result.folder / "trials.csv")}) == 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_jobs_2_workers_stop_by_themselves_when_tune_is_killed(tmp_path):
    """SIGKILL to `egodgl tune --jobs 2` while its two endless trials train: the workers'
    watchdogs end them, nothing of the command is left running."""
    args = ["tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--trials", 2, "--jobs", 2, "--epochs", 100000,
            "--patience", 100000, "--device", "cpu", "--out", tmp_path]
    proc = start_in_session(args, tmp_path / "tune", "*/trials/*/last.pt")
    try:
        assert len(list((tmp_path / "tune").glob("*/trials/*/last.pt"))) == 2, "two trials did not start"
        assert len(group_members(proc.pid)) >= 3  # tune and its two workers
        assert left_after_kill(proc) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def space(model: str, **given) -> dict:
    return plan_tune({"model": model, "given": {"dataset": "synthetic-tiny", **given}}).space


def test_every_trainable_model_declares_lr_reg_and_its_own_knobs():
    for name in MODELS:
        if MODELS[name].model_type().trainable:
            assert {"lr", "reg"} <= set(space(name)), name
    assert space("ngcf")["dropout"] == {"low": 0.0, "high": 0.5, "log": False}
    assert space("grcn")["routing"] == {"low": 1, "high": 5, "log": False}
    assert space("gat")["heads"] == {"choices": [1, 2, 4]}
    assert "eps" in space("egogcn-hard") and "eps" not in space("egogcn-soft") and "eps" not in space("id-only")
    assert "lr" not in space("lightgcn", lr=0.01)  # a given option is fixed, not searched


def test_space_file_replaces_the_models(tmp_path):
    path = write_space(tmp_path / "space.yaml", "lr: {low: 0.001, high: 0.01, log: true}\nheads: {choices: [2, 4]}\n")
    assert space("gat", ) != plan_tune({"model": "gat", "given": {"dataset": "synthetic-tiny"}, "space": path}).space
    assert plan_tune({"model": "gat", "given": {"dataset": "synthetic-tiny"}, "space": path}).space == {
        "lr": {"low": 0.001, "high": 0.01, "log": True}, "heads": {"choices": [2, 4]},
    }


@pytest.mark.parametrize("text, message", [
    ("[dropout]\nlow = 0.0\nhigh = 0.5\n", "'dropout' is not an option --model bpr can search"),
    ("[lr]\nlow = 0.1\nhigh = 0.01\n", "lr needs low < high"),
    ("[lr]\nlow = 0.0\nhigh = 0.01\nlog = true\n", "low > 0 on a log scale"),
    ("[dim]\nlow = 8.5\nhigh = 64\n", "dim.low and .high must be int numbers"),
    ("[dim]\nchoices = []\n", "dim.choices must be a non-empty list of int values"),
    ("[lr]\nlow = 0.001\nhigh = 0.01\nstep = 2\n", "unknown field 'step'"),
    ("[seed]\nlow = 0\nhigh = 5\n", "'seed' is not an option --model bpr can search"),
    ('lr = 0.01\n', "lr must be a table with low and high"),
])
def test_a_bad_space_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        plan_tune(tune_opts(tmp_path, space=write_space(tmp_path / "space.toml", text)))


def test_refused_options(tmp_path):
    with pytest.raises(ConfigError, match="drop --protocol legacy"):
        plan_tune({"model": "bpr", "given": {**TINY, "protocol": "legacy"}})
    with pytest.raises(ConfigError, match="--trials must be a positive integer, got 0"):
        plan_tune(tune_opts(tmp_path, trials=0))
    with pytest.raises(ConfigError, match="learns nothing"):
        plan_tune({"model": "pop", "given": TINY})
    with pytest.raises(ConfigError, match="cannot also be fixed by --lr"):
        plan_tune(tune_opts(tmp_path, given={**TINY, "lr": 0.01}, space=write_space(tmp_path / "s.toml", "[lr]\nlow = 0.001\nhigh = 0.1\n")))


def test_a_rerun_with_other_options_is_refused_by_the_cli(tmp_path):
    args = ["tune", "--model", "bpr", "--dataset", "synthetic-tiny", "--device", "cpu", "--trials", 1, "--out", tmp_path]
    assert run(*args, "--epochs", 1).exit_code == 0
    refused = run(*args, "--epochs", 2)
    assert refused.exit_code == 2 and "--epochs 1 -> 2" in refused.output


@pytest.fixture
def tiny():
    return load_dataset("synthetic-tiny")
