"""`train --compile`: the training step under torch.compile trains the same model as the
eager step, and the paths it is not built for are refused in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import rows, run

from ego_dgl.data import load_dataset
from ego_dgl.errors import ConfigError
from ego_dgl.model.registry import build_model
from ego_dgl.train import resolve_options, train
from ego_dgl.train.parallel import Rank, objective


def test_compiled_step_trains_the_eager_model(tmp_path):
    """Three epochs of EgoGCN-hard (one batch each: one compilation) under inductor give
    the eager run's losses, fused shares and validation figures."""
    ds = load_dataset("synthetic-tiny")
    histories = {}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for mode in ("off", "default"):
        options = {"dataset": "synthetic-tiny", "device": "cpu", "backend": "torch", "epochs": 3, "batch_size": 1024, "compile": mode}
        _, model_cfg, train_cfg, _ = resolve_options(options)
        train(ds, model_cfg, train_cfg, tmp_path / mode, progress=False)
        histories[mode] = [{k: float(v) for k, v in row.items()} for row in rows(tmp_path / mode / "history.csv")]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "the compiled run traced graphs"
    eager, compiled = histories["off"], histories["default"]
    assert len(eager) == len(compiled) == 3
    for a, b in zip(eager, compiled):
        for key in a:
            if key.startswith(("loss", "bpr", "reg", "fused", "valid/")):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert eager[0]["loss"] != eager[-1]["loss"], "the runs trained"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"compile": "max"}, "--compile 'max' is not one of: off, default, reduce-overhead"),
        ({"compile": "default", "sampler": "neighbor"}, "--compile is built for full-graph training in one process"),
        ({"compile": "default", "procs": 2}, "--compile is built for full-graph training in one process"),
    ],
)
def test_compile_refuses_what_it_is_not_built_for(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_options({"dataset": "synthetic-tiny", **options})[2].validate()


def test_compile_refuses_a_launchers_ranks():
    """Under torchrun --procs stays 1, so the refusal of several processes sits where the
    world size is known: the objective would otherwise skip DDP's gradient averaging."""
    ds = load_dataset("synthetic-tiny")
    _, model_cfg, _, _ = resolve_options({"dataset": "synthetic-tiny", "device": "cpu"})
    model = build_model(ds, model_cfg)
    with pytest.raises(ConfigError, match="--compile is built for training in one process, but this is rank 1 of 2"):
        objective(model, Rank(1, 2), "default")


def test_compile_on_the_command_line_is_one_line(tmp_path):
    result = run("train", "--dataset", "synthetic-tiny", "--compile", "fast", "--out", tmp_path)
    assert result.exit_code == 2 and "--compile 'fast' is not one of" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()
