"""The field's models and `--protocol mmrec` end to end on a folder in MMRec's exact
layout (enoche/MMRec's dataset loader: <name>.inter with userID, itemID, rating,
timestamp and x_label 0/1/2 tab-separated; image_feat.npy 4096-d and text_feat.npy
384-d, rows by itemID), written here with plain numpy: train, eval, --resume, compare
(with --tune on validation) and a sweep, and the run records saying what the protocol did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import rows, run

from ego_dgl.evaluate import MMREC_KS
from ego_dgl.model.registry import MODELS, config_fields
from ego_dgl.train import resolve_options
from ego_dgl.train.defaults import MMREC_OVERALL, TrainConfig

FIELD = ("vbpr", "lattice", "freedom")
USERS, ITEMS = 30, 48

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def baby(tmp_path_factory) -> Path:
    """An MMRec 'baby' folder: every user has 6-9 items, x_label 0 for all but the last
    two (1, then 2); the last item appears only in a test row (no training interaction:
    MMRec's loader crashes on such items, ego-dgl keeps them)."""
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("mmrec") / "baby"
    folder.mkdir()
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(USERS):
        items = rng.choice(ITEMS - 1, size=int(rng.integers(6, 10)), replace=False)
        labels = [0] * (len(items) - 2) + [1, 2]
        lines += [f"{u}\t{i}\t5\t{1400000000 + k}\t{x}" for k, (i, x) in enumerate(zip(items, labels))]
    lines.append(f"0\t{ITEMS - 1}\t4\t1500000000\t2")
    (folder / "baby.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "image_feat.npy", rng.random((ITEMS, 4096), dtype=np.float32))
    np.save(folder / "text_feat.npy", rng.standard_normal((ITEMS, 384)).astype(np.float32))
    return folder


def test_mmrec_defaults_name_real_options():
    train_keys = set(TrainConfig.__dataclass_fields__)
    for name in MODELS:
        cfg = MODELS[name].config_type()
        assert set(cfg.mmrec_defaults) <= set(config_fields(name)) | train_keys, name
    assert set(MMREC_OVERALL) <= train_keys | {"dim"}


def test_the_protocol_sets_mmrecs_training_and_each_models_defaults():
    _, cfg, train, _ = resolve_options({"dataset": "synthetic-tiny", "model": "lattice", "protocol": "mmrec"})
    assert (train.ks, train.patience, train.batch_size, train.epochs) == (MMREC_KS, 20, 2048, 1000)
    assert (train.lr, train.reg, cfg.dim) == (5e-4, 1e-4, 64)  # LATTICE's, over MMRec's overall lr 1e-3
    _, cfg, train, _ = resolve_options({"dataset": "synthetic-tiny", "model": "freedom", "protocol": "mmrec", "lr": 0.01})
    assert (train.lr, cfg.dropout) == (0.01, 0.8)  # what the user gives wins
    _, _, full, _ = resolve_options({"dataset": "synthetic-tiny", "model": "freedom"})
    assert full.ks == (5, 10, 20) and full.lr != 1e-3  # the other protocols keep the dataset's profile


@pytest.mark.parametrize("name", FIELD)
def test_train_eval_and_resume_each_model_on_the_mmrec_folder(baby, tmp_path, name):
    out = tmp_path / "out"
    result = run("train", "--model", name, "--dataset", baby, "--protocol", "mmrec", "--epochs", 2, "--batch-size", 64,
                 "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = (out / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["selection"] == "valid recall@20" and metrics["protocol"] == "mmrec"
    assert {f"recall@{k}" for k in MMREC_KS} <= set(metrics["test"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model_name"] == name and config["train"]["ks"] == list(MMREC_KS)
    assert "mmrec" in run_dir.name
    history = rows(run_dir / "history.csv")
    best = max(history, key=lambda r: float(r["valid/recall@20"]))
    assert metrics["best_epoch"] == int(best["epoch"])  # picked by validation recall@20
    shown = run("eval", run_dir, "--json")
    assert shown.exit_code == 0 and "recall@50" in json.loads(shown.output)["test"]
    resumed = run("train", "--resume", run_dir, "--epochs", 3)
    assert resumed.exit_code == 0, resumed.output
    assert len(rows(run_dir / "history.csv")) == 3


def test_compare_and_tune_under_the_mmrec_protocol(baby, tmp_path):
    args = ["compare", "--dataset", baby, "--models", "pop,vbpr,lattice,freedom,egogcn-hard", "--seeds", 2, "--epochs", 2,
            "--batch-size", 64, "--protocol", "mmrec", "--tune", "dropout=0.8,0.9", "--device", "cpu", "--out", tmp_path]
    result = run(*args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "baby"
    table = (folder / "table.md").read_text()
    assert "R@50" in table and "R@5 " in table and "validation recall@20" in table
    tuning = rows(folder / "tuning.csv")
    assert {r["name"] for r in tuning} == {"freedom"} and len(tuning) == 2
    chosen = max(tuning, key=lambda r: float(r["valid/recall@20"]))
    assert [r["chosen"] for r in tuning if r is chosen] == ["1"]
    summary = {r["name"]: r for r in rows(folder / "summary.csv")}
    assert set(summary) == {"pop", "vbpr", "lattice", "freedom", "egogcn-hard"} and "recall@50_mean" in summary["vbpr"]
    assert {r["metric"] for r in rows(folder / "paired.csv")} >= {"recall@5", "recall@50"}


def test_a_sweep_runs_under_the_mmrec_protocol(baby, tmp_path):
    result = run("sweep-eps", "--dataset", baby, "--values", "0.4", "--epochs", 1, "--batch-size", 64, "--protocol", "mmrec",
                 "--device", "cpu", "--name", "e", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (cell,) = rows(tmp_path / "sweeps" / "e" / "cells.csv")
    assert "test/recall@50" in cell


def test_the_bench_times_the_field():
    from ego_dgl.study.bench import SUITES

    assert {"vbpr", "lattice", "freedom"} <= {c.model for c in SUITES["models"]}
    assert [(c.dataset, c.model, c.batches) for c in SUITES["knn"]] == [("synthetic-tiktok", "freedom", 3), ("synthetic-tiktok", "lattice", 3)]
