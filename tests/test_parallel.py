"""Data-parallel training (`train --procs N`): two CPU processes with gloo and DDP on
synthetic-tiny stay in sync (every rank ends with the same parameters), cover the epoch
between them, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options, train
from ego_dgl.train.parallel import Rank, free_port, join_group, shard_batches, steps_per_epoch
from ego_dgl.train.progress import EpochProgress
from ego_dgl.train.sampler import Batch
from ego_dgl.train.trainer import Trainer, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")


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
