"""BM3, MGCN and LGMRec through the trainer and the CLI: an interrupted run resumed equals
the uninterrupted one (their dropout and Gumbel draws come from the checkpointed torch
generator), MMRec's declared defaults and grids are valid ego-dgl options, and datasets
they cannot take are refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import run

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import build_model, config_type
from ego_dgl.train import resolve_options, train

pytestmark = pytest.mark.usefixtures("one_thread")

FIELD = ("bm3", "mgcn", "lgmrec")
TIMING = ("seconds", "t_sample", "t_forward", "t_backward", "t_optim", "t_eval")


class Interrupt(Exception):
    pass


def stop_at_epoch_two(record) -> None:
    """An interruption after the second epoch's checkpoint."""
    if record["epoch"] == 2:
        raise Interrupt


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.parametrize("name", FIELD)
def test_resume_after_interruption_matches_uninterrupted_run(name, tmp_path):
    tiny = load_dataset("synthetic-tiny")
    _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "model": name, "device": "cpu", "epochs": 4, "patience": 50, "dim": 8})
    full = train(tiny, model_cfg, train_cfg, tmp_path / "full", progress=False)
    with pytest.raises(Interrupt):
        train(tiny, model_cfg, train_cfg, tmp_path / "cut", progress=False, on_epoch=stop_at_epoch_two)
    resumed = train(tiny, model_cfg, train_cfg, tmp_path / "cut", resume=True, progress=False)
    assert without_timing(resumed.history) == without_timing(full.history)
    assert resumed.valid == full.valid and resumed.test == full.test


@pytest.mark.parametrize("name", FIELD)
def test_mmrec_defaults_and_grid_are_valid_options(name):
    cls = config_type(name)
    defaults, grid = cls.mmrec_defaults, cls.mmrec_grid
    _, cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "model": name, **defaults})
    assert (train_cfg.lr, train_cfg.reg, train_cfg.batch_size) == (defaults["lr"], defaults["reg"], defaults["batch_size"])
    assert all(getattr(cfg, k) == v for k, v in defaults.items() if k not in ("lr", "reg", "batch_size"))
    for key, values in grid.items():
        assert key in defaults and defaults[key] == values[0]  # the defaults are the grid's first values
        for value in values:
            resolve_options({"dataset": "synthetic-tiny", "model": name, **defaults, key: value})


def test_word_bags_and_missing_modalities_are_refused(grcn_folder, tmp_path):
    result = run("train", "--model", "mgcn", "--dataset", grcn_folder, "--epochs", 1, "--device", "cpu", "--out", tmp_path)
    assert result.exit_code == 2 and "--model mgcn reads dense item features" in result.stderr and "is a word bag" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    bare = dataclasses.replace(load_dataset("synthetic-tiny"), features={})
    _, cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "model": "bm3"})
    with pytest.raises(ConfigError, match="--model bm3 reads item features, and dataset"):
        build_model(bare, cfg)


@pytest.mark.parametrize("name, params", [("bm3", []), ("mgcn", ["--param", "knn_k=3"]), ("lgmrec", [])])
def test_train_and_eval_on_an_mmrec_layout_folder(mmrec_folder, tmp_path, name, params):
    result = run("train", "--model", name, "--dataset", mmrec_folder, "--epochs", 2, "--device", "cpu", "--out", tmp_path, *params)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    again = run("eval", run_dir, "--device", "cpu", "--json")
    assert again.exit_code == 0 and '"recall@10"' in again.output


def test_bm3_learns_well_above_a_random_ranking(tmp_path):
    """BM3 stays below popularity on synthetic-x0.2 (test_models.BELOW_POPULARITY), but
    its validation recall@10 goes well past a random ranking's expected 10 / (unseen items)."""
    small = load_dataset("synthetic-x0.2")
    given = {"dataset": small.name, "model": "bm3", "device": "cpu", "epochs": 4, "patience": 4, "lr": 5e-3}
    _, cfg, train_cfg, _ = resolve_options(given)
    result = train(small, cfg, train_cfg, tmp_path / "run", progress=False)
    seen = np.bincount(small.train[:, 0], minlength=small.num_users)
    users = np.unique(small.valid[:, 0])
    random_recall = np.mean(np.minimum(1.0, 10 / (small.num_items - seen[users])))
    assert result.valid["recall@10"] > 1.5 * random_recall, (result.valid["recall@10"], random_recall)
