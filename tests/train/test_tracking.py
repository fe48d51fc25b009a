"""--log tensorboard and --log mlflow, read back with TensorBoard's event reader and
MLflow's client: every epoch's scalars as the history recorded them, the options as
hyper-parameters, and the cells of compare named by their keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ego_dgl.errors import ConfigError
from ego_dgl.runs import read_csv
from ego_dgl.train import resolve_options
from ego_dgl.train.tracking import (
    mlflow_name,
    open_tracker,
    results_folder,
    scalar_name,
)
from ego_dgl.train.trainer import train
from tests.conftest import run


def train_logged(tiny, run_dir: Path, log: str, tag: str | None = None, **options) -> list[dict[str, str]]:
    _, cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "epochs": 2, "device": "cpu", "log": log, **options})
    train(tiny, cfg, train_cfg, run_dir, progress=False, tag=tag)
    return read_csv(run_dir / "history.csv")


def test_tensorboard_holds_every_epoch_scalar_and_the_options(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    history = train_logged(tiny, tmp_path / "run", "tensorboard", model="egogcn", eps=0.2)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/bpr", "train/reg", "valid/recall@10", "valid/ndcg@20", "seconds/epoch", "seconds/t_forward"} <= tags
    assert any(t.startswith("fused/") for t in tags)  # EGO-hard's fused shares
    for tag, column in (("valid/recall@10", "valid/recall@10"), ("train/loss", "loss"), ("seconds/t_eval", "t_eval")):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in history], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == pytest.approx(5e-3) and hparams["model_name"].string_value == "egogcn"
    assert hparams["eps"].number_value == pytest.approx(0.2)


def test_mlflow_run_holds_every_epoch_metric_and_the_options(tiny, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    history = train_logged(tiny, tmp_path / "run", "mlflow", tag="bpr-s0", model="bpr")
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("egodgl").experiment_id])
    assert found.info.run_name == "bpr-s0" and found.info.status == "FINISHED"
    assert found.data.params["lr"] == "0.005" and found.data.params["model_name"] == "bpr"
    logged = client.get_metric_history(found.info.run_id, "valid/recall_at_10")
    assert [m.step for m in logged] == [1, 2]
    assert [m.value for m in logged] == pytest.approx([float(r["valid/recall@10"]) for r in history], rel=1e-9)
    assert [m.value for m in client.get_metric_history(found.info.run_id, "train/loss")] == pytest.approx([float(r["loss"]) for r in history])


def test_the_default_mlflow_store_is_in_the_results_folder(tmp_path):
    assert results_folder(tmp_path / "res" / "runs" / "20260101-ml100k-hard") == (tmp_path / "res").resolve()
    assert results_folder(tmp_path / "res" / "compare" / "x" / "cells" / "lightgcn-s0") == (tmp_path / "res").resolve()
    assert results_folder(tmp_path / "res" / "tune" / "bpr-ml100k" / "trials" / "trial-0001") == (tmp_path / "res").resolve()


def test_names_of_the_scalars():
    assert scalar_name("loss") == "train/loss" and scalar_name("t_eval") == "seconds/t_eval" and scalar_name("seconds") == "seconds/epoch"
    assert scalar_name("valid/recall@10") == "valid/recall@10"
    assert mlflow_name("fused/visual/item->user") == "fused/visual/item_to_user" and mlflow_name("valid/recall@10") == "valid/recall_at_10"


def test_an_unknown_logger_or_a_missing_package_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--log 'wandb' is not one of: tensorboard, mlflow"):
        resolve_options({"dataset": "synthetic-tiny", "log": "wandb"})
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r"pip install 'ego-dgl\[mlflow\]'"):
        open_tracker("mlflow", tmp_path, "run", {})


def test_compare_logs_every_cell_named_by_its_key(tmp_path):
    result = run("compare", "--dataset", "synthetic-tiny", "--models", "bpr,pop", "--seeds", 1, "--epochs", 1, "--device", "cpu",
                 "--log", "tensorboard", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    cells = tmp_path / "compare" / "synthetic-tiny" / "cells"
    assert sorted(p.parent.name for p in cells.glob("*/tensorboard")) == ["bpr-s0", "pop-s0"]
