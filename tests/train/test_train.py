"""Training on synthetic-tiny: the loss falls, early stopping keeps the best validation
epoch and reports its test figures, runs are reproducible, and resuming an interrupted
run ends exactly like an uninterrupted one."""

import csv
import json

import numpy as np
import pytest
import torch

from ego_dgl.evaluate import evaluate
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options, train
from ego_dgl.train.checkpoint import load_checkpoint
from ego_dgl.train.loading import evaluate_run, load_run

pytestmark = pytest.mark.usefixtures("one_thread")

TIMING = ("seconds", "t_sample", "t_forward", "t_backward", "t_optim", "t_eval")



def configs(**given):
    _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu", **given})
    return model_cfg, train_cfg


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_loss_decreases_and_history_is_recorded(tiny, tmp_path):
    model_cfg, train_cfg = configs(epochs=5, patience=50)
    result = train(tiny, model_cfg, train_cfg, tmp_path / "run", progress=False)
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 5 and losses[-1] < 0.8 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[2]["loss"]) == pytest.approx(losses[2])
    # EGO-hard: the fused fraction per modality and direction, a fraction of edges
    fused = [k for k in rows[0] if k.startswith("fused/")]
    assert sorted(fused) == sorted(f"fused/{m}/{d}" for m in tiny.modalities for d in ("item->user", "user->item"))
    assert all(0.0 <= float(r[k]) <= 1.0 for r in rows for k in fused)
    for key in ("valid/recall@10", "valid/ndcg@20", "t_sample", "t_forward", "t_backward", "t_optim", "t_eval", "bpr", "reg"):
        assert key in rows[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["fingerprint"] == tiny.fingerprint()
    assert config["model"]["layers_mm"] == model_cfg.layers_mm and config["train"]["lr"] == train_cfg.lr
    assert config["device"] == "cpu" and config["backend"] in ("dgl", "torch", "fused") and config["protocol"] == "full"
    assert {"torch", "dgl", "numpy", "ego_dgl"} <= set(config["versions"])


def test_early_stopping_keeps_the_best_validation_epoch(tiny, tmp_path):
    model_cfg, train_cfg = configs(epochs=60, patience=8)
    result = train(tiny, model_cfg, train_cfg, tmp_path / "run", progress=False)
    recalls = [row["valid/recall@10"] for row in result.history]
    assert result.epochs_run < 60, "expected early stopping on this overfitting setup"
    assert result.best_epoch == int(np.argmax(recalls)) + 1 > 1  # first epoch with the maximum
    assert result.epochs_run == result.best_epoch + 8
    best_row = result.history[result.best_epoch - 1]
    assert all(result.valid[k] == best_row[f"valid/{k}"] for k in result.valid if k != "users")
    # test figures come from the best epoch's parameters (best.pt), not the last epoch's
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["train_state"]["epoch"] == result.best_epoch
    model = build_model(tiny, model_cfg, torch.device("cpu"))
    model.load_state_dict(best["model"])
    model.eval()
    tables = model.final_tables()
    assert evaluate(tables.users, tables.items, tiny, "test") == result.test
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "last.pt")["model"])
    tables = model.final_tables()
    assert evaluate(tables.users, tables.items, tiny, "valid")["recall@10"] == recalls[-1] != recalls[result.best_epoch - 1]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch and metrics["test"] == result.test and metrics["stopped_early"]


def test_same_seed_same_metrics_other_seed_differs(tiny, tmp_path):
    model_cfg, train_cfg = configs(epochs=3, patience=50)
    a = train(tiny, model_cfg, train_cfg, tmp_path / "a", progress=False)
    b = train(tiny, model_cfg, train_cfg, tmp_path / "b", progress=False)
    assert without_timing(a.history) == without_timing(b.history)
    assert a.test == b.test and a.valid == b.valid
    model_cfg, train_cfg = configs(epochs=3, patience=50, seed=1)
    c = train(tiny, model_cfg, train_cfg, tmp_path / "c", progress=False)
    assert c.history[0]["loss"] != a.history[0]["loss"]


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tiny, tmp_path):
    model_cfg, train_cfg = configs(mode="soft", epochs=6, patience=50)
    full = train(tiny, model_cfg, train_cfg, tmp_path / "full", progress=False)

    def stop_after_three(record):
        if record["epoch"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny, model_cfg, train_cfg, tmp_path / "cut", progress=False, on_epoch=stop_after_three)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["epoch"] == 3
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(tiny, model_cfg, train_cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed.best_epoch == full.best_epoch and resumed.epochs_run == 6
    assert resumed.test == full.test and resumed.valid == full.valid
    assert without_timing(resumed.history) == without_timing(full.history)
    full_json = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text()) == full_json
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["resumed"][0]["at_epoch"] == 3


def test_legacy_protocol_picks_the_epoch_by_test_recall(tiny, tmp_path):
    model_cfg, train_cfg = configs(epochs=6, patience=50, protocol="legacy")
    result = train(tiny, model_cfg, train_cfg, tmp_path / "run", progress=False)
    test_recalls = [row["test/recall@10"] for row in result.history]
    assert result.best_epoch == int(np.argmax(test_recalls)) + 1
    assert result.test["recall@10"] == max(test_recalls)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["protocol"] == "legacy" and "LEGACY" in metrics["protocol_label"]
    assert metrics["selection"] == "test recall@10"
    # `egodgl eval` logic recomputes the same figures from best.pt
    run = load_run(tmp_path / "run", "cpu")
    assert evaluate_run(run) == {"valid": result.valid, "test": result.test}
    full = evaluate_run(run, ("test",), protocol="full")["test"]
    assert full["ndcg@10"] <= result.test["ndcg@10"]  # legacy's ideal DCG is never larger
