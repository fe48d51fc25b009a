"""Data-parallel training (`train --procs N`, or the same ranks under torchrun): two CPU
processes with gloo and DDP on synthetic-tiny stay in sync (every rank ends with the same
parameters), cover the epoch between them, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ego_dgl.cli import main
from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options, train
from ego_dgl.train.parallel import (
    LAUNCH_VARIABLES,
    Rank,
    free_port,
    join_group,
    launched_rank,
    shard_batches,
    steps_per_epoch,
)
from ego_dgl.train.progress import EpochProgress
from ego_dgl.train.sampler import Batch
from ego_dgl.train.trainer import Trainer, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def test_shards_cover_the_epoch_once_in_equal_steps():
    n = 1001
    epoch = Batch(np.arange(n), np.arange(n) + 10_000, np.arange(n) + 20_000)
    shards = [shard_batches(epoch, Rank(r, 3), 64) for r in range(3)]
    assert {len(s) for s in shards} == {steps_per_epoch(n, Rank(0, 3), 64)}
    users = np.concatenate([b.users for s in shards for b in s])
    assert sorted(users.tolist()) == list(range(n))
    assert all(np.array_equal(b.pos, b.users + 10_000) for s in shards for b in s)


def _rank(rank: int, port: int, folder: str, sampler: str) -> None:
    """One rank of the sync test: two epochs through the Trainer, then its parameters saved."""
    torch.set_num_threads(1)
    place = Rank(rank, 2)
    ds = load_dataset("synthetic-tiny")
    _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu", "procs": 2, "sampler": sampler})
    join_group(place, port, torch.device("cpu"))
    trainer = Trainer(ds, model_cfg, train_cfg, Path(folder) / f"rank{rank}", place)
    with EpochProgress("off", 2, 0, 1, 1) as bar:
        for _ in range(2):
            trainer.run_epoch(bar)
    torch.save(trainer.model.state_dict(), Path(folder) / f"params.{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("sampler", ["full", "neighbor"])
def test_ranks_hold_identical_parameters_after_training(tmp_path, sampler):
    for r in range(2):
        (tmp_path / f"rank{r}").mkdir()
    torch.multiprocessing.spawn(_rank, (free_port(), str(tmp_path), sampler), nprocs=2)
    ranks = [torch.load(tmp_path / f"params.{r}.pt") for r in range(2)]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert not any((tmp_path / "rank1").iterdir()), "only rank 0 writes"
    initial = initial_parameters(ranks[0].keys())
    assert not torch.equal(ranks[0]["ids.table"], initial["ids.table"]), "the ranks trained"


def initial_parameters(names) -> dict[str, torch.Tensor]:
    ds = load_dataset("synthetic-tiny")
    _, model_cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu"})
    seed_everything(0)
    return build_model(ds, model_cfg, torch.device("cpu")).state_dict()


def test_train_with_two_procs_writes_the_run_once(tmp_path):
    ds = load_dataset("synthetic-tiny")
    _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu", "epochs": 2, "procs": 2})
    result = train(ds, model_cfg, train_cfg, tmp_path / "run", progress=False)
    assert result.epochs_run == 2 and 0 <= result.valid["recall@10"] <= 1
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.json", "history.csv", "metrics.json", "best.pt", "last.pt"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["procs"] == 2
    with open(tmp_path / "run" / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 3  # the header and one line per epoch, once


def test_a_rank_error_is_one_project_error(tmp_path):
    ds = load_dataset("synthetic-tiny")
    _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu", "procs": 2, "sampler": "neighbor", "model": "na"})
    with pytest.raises(ConfigError, match="--fusion na"):
        train(ds, model_cfg, train_cfg, tmp_path / "run", progress=False)


# ---------------------------------------------------------------- under torchrun


def cli_run(*args: str, out: Path, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`egodgl train` on synthetic-tiny for 2 epochs in a fresh interpreter (one thread),
    optionally under a launcher."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, *launcher, "-m", "ego_dgl.cli", "train", "--dataset", "synthetic-tiny", "--device", "cpu", "--epochs", "2",
           "--out", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def only_run(out: Path) -> Path:
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def test_torchrun_trains_like_procs_and_writes_the_run_once(tmp_path):
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    launched = cli_run(out=tmp_path / "torchrun", launcher=torchrun)
    assert launched.returncode == 0, launched.stderr
    assert launched.stdout.count("run folder:") == 1, "rank 0 alone reports"
    spawned = cli_run("--procs", "2", out=tmp_path / "procs")
    assert spawned.returncode == 0, spawned.stderr
    run_dir = only_run(tmp_path / "torchrun")
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "history.csv", "metrics.json", "best.pt", "last.pt"}
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (run_dir, only_run(tmp_path / "procs"))]
    assert metrics[0]["valid"] == metrics[1]["valid"] and metrics[0]["test"] == metrics[1]["test"]


def test_procs_under_torchrun_is_one_line(tmp_path):
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        result = CliRunner().invoke(main, ["train", "--dataset", "synthetic-tiny", "--procs", "2", "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--procs 2 spawns its own processes" in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "1"}, "sets RANK but not WORLD_SIZE"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, "does not lie in"),
        ({"RANK": "a", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, "must be integers"),
    ],
)
def test_a_broken_launcher_environment_is_a_config_error(env, message):
    with pytest.raises(ConfigError, match=message):
        launched_rank(1, env)
    assert launched_rank(1, {}) is None
    assert launched_rank(1, {**dict.fromkeys(LAUNCH_VARIABLES, "1"), "RANK": "0"}) == Rank(0, 1, 1)
