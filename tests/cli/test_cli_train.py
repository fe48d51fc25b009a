"""`egodgl train`, `eval` and `recommend` on synthetic-tiny through Click's test runner."""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import run

pytestmark = pytest.mark.usefixtures("one_thread")


def only_run(out: Path) -> Path:
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def one_error_line(result, fragment):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 4, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    return out, only_run(out), result


def test_train_writes_the_run_folder_and_prints_the_table(trained):
    out, run_dir, result = trained
    assert run_dir.name.endswith("-synthetic-tiny-hard")
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "history.csv", "metrics.json", "best.pt", "last.pt"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"best epoch {metrics['best_epoch']} of 4" in result.stdout
    assert f"{metrics['test']['recall@10']:.4f}" in result.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"]["source"] == "synthetic-tiny" and config["train"]["epochs"] == 4
    assert config["profile"] == "synthetic-tiny" and config["model"]["eps"] == 0.2


def test_eval_reproduces_training_figures(trained):
    out, run_dir, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    by_dir = run("eval", run_dir, "--json", "--device", "cpu")
    latest = run("eval", "--out", out, "--json")  # without RUN_DIR: the most recent run
    assert by_dir.exit_code == 0 and latest.exit_code == 0, by_dir.output + latest.output
    for res in (by_dir, latest):
        payload = json.loads(res.stdout)
        assert payload["valid"] == metrics["valid"] and payload["test"] == metrics["test"]
        assert payload["epoch"] == metrics["best_epoch"] and payload["protocol"] == "full"
    only = json.loads(run("eval", run_dir, "--json", "--split", "test", "--k", 3, "--protocol", "legacy").stdout)
    assert set(only) == {"run", "epoch", "protocol", "protocol_label", "test"} and "LEGACY" in only["protocol_label"]
    assert set(only["test"]) == {"precision@3", "recall@3", "ndcg@3", "hit@3", "users"}
    table = run("eval", run_dir)
    assert f"{metrics['valid']['ndcg@20']:.4f}" in table.stdout


def test_recommend_lists_unseen_items(trained):
    _, run_dir, _ = trained
    from ego_dgl.data import load_dataset

    ds = load_dataset("synthetic-tiny")
    result = run("recommend", run_dir, "--user", 5, "--k", 7, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    items = [r["item"] for r in rows]
    assert [r["rank"] for r in rows] == list(range(1, 8)) and len(set(items)) == 7
    assert not set(items) & set(ds.train_csr.row(5).tolist())
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:]))
    held = {int(i) for u, i in ds.valid if u == 5} | {int(i) for u, i in ds.test if u == 5}
    assert all((r["held_out"] != "") == (r["item"] in held) for r in rows)
    assert "top 7 for user 5" in run("recommend", run_dir, "--user", 5, "--k", 7).stdout
    one_error_line(run("recommend", run_dir, "--user", 999), "--user 999 is out of range")


def test_resume_continues_to_the_same_result(tmp_path):
    args = ("--dataset", "synthetic-tiny", "--mode", "soft", "--device", "cpu", "--seed", 3)
    assert run("train", *args, "--epochs", 4, "--out", tmp_path / "a").exit_code == 0
    assert run("train", *args, "--epochs", 2, "--out", tmp_path / "b").exit_code == 0
    resumed = run("train", "--resume", only_run(tmp_path / "b"), "--epochs", 4)
    assert resumed.exit_code == 0, resumed.output
    a = json.loads((only_run(tmp_path / "a") / "metrics.json").read_text())
    b = json.loads((only_run(tmp_path / "b") / "metrics.json").read_text())
    assert a == b
    one_error_line(run("train", "--resume", only_run(tmp_path / "b"), "--epochs", 4), "already finished at epoch 4")
    one_error_line(run("train", "--resume", only_run(tmp_path / "b"), "--lr", 0.1), "drop --lr")


def test_config_file_and_command_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('dataset = "synthetic-tiny"\nepochs = 5\nfusion = "gm"\ndevice = "cpu"\n')
    result = run("train", "--config", config, "--epochs", 1, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    assert run_dir.name.endswith("-gm") and saved["model"]["fusion"] == "gm" and saved["train"]["epochs"] == 1
    config.write_text('dataset = "synthetic-tiny"\nlayer = 2\n')
    one_error_line(run("train", "--config", config, "--out", tmp_path), "unknown key 'layer'")
    config.write_text('dataset = "synthetic-tiny"\nlayers = 2\n')  # a baseline's option
    one_error_line(run("train", "--config", config, "--out", tmp_path), "--layers is not an option of --model egogcn")


def test_errors_are_one_line_and_leave_nothing_behind(tmp_path):
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--gate", "vector", "--out", tmp_path), "--gate applies to the soft")
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--mode", "soft", "--eps", 0.5, "--out", tmp_path), "--eps is the hard-mode")
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--mode", "soft", "--threshold", "relative", "--out", tmp_path), "--threshold says")
    one_error_line(run("train", "--dataset", "nope", "--out", tmp_path), "unknown dataset 'nope'")
    if not torch.cuda.is_available():
        one_error_line(run("train", "--dataset", "synthetic-tiny", "--device", "cuda", "--out", tmp_path), "no CUDA device")
    assert not (tmp_path / "runs").exists() or not os.listdir(tmp_path / "runs")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(run("eval", empty), "has no config.json")
    (empty / "config.json").write_text("{}")
    one_error_line(run("eval", empty), "has no checkpoint best.pt")
    one_error_line(run("train", "--resume", empty), "has no checkpoint last.pt")
    one_error_line(run("eval", "--out", tmp_path / "nothing"), "no runs under")


def test_recommend_shows_titles_when_the_dataset_has_them(trained):
    from ego_dgl.data import load_dataset
    from ego_dgl.serve.recommend import recommend
    from ego_dgl.train.loading import load_run

    run_obj = load_run(trained[1], "cpu")
    titles = load_dataset("synthetic-tiny")
    titles.item_titles = [f"film {i}" for i in range(titles.num_items)]
    run_obj.ds = titles
    rows = recommend(run_obj, 0, 3)
    assert [r["title"] for r in rows] == [f"film {r['item']}" for r in rows]


@pytest.mark.parametrize("options,label", [
    (["--mode", "soft", "--gate", "vector"], "soft"),
    (["--fusion", "gm"], "gm"),
    (["--fusion", "na"], "na"),
    (["--branches", "id"], "id"),
    (["--branches", "mm"], "mm-hard"),
    (["--id-weights", "soft-pruning", "--backend", "torch"], "hard"),
    (["--threshold", "relative", "--eps", "1.5"], "hard"),
])
def test_every_variant_trains(tmp_path, options, label):
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", *options, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path)
    assert run_dir.name.endswith(f"-synthetic-tiny-{label}")
    config = json.loads((run_dir / "config.json").read_text())
    given = dict(zip(options[::2], options[1::2]))
    for flag, value in given.items():
        assert str(config["model"][flag[2:].replace("-", "_")]) == value
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 2 and ("fused/" in history[0]) == (label in ("hard", "mm-hard"))


def test_help_shows_the_defaults_the_configs_hold(monkeypatch):
    """`--help` reads each training option's default from the configs (TrainConfig, the
    paper's per-dataset profiles, the model configs) when it is shown, not from the CLI."""
    import re

    from ego_dgl.train import defaults

    def shown(text: str, option: str) -> str:
        block = re.search(rf"--{option} \w+(.*?)(?=\n  --|\Z)", text, flags=re.S).group(1)
        return " ".join(block.split())

    text = run("train", "--help").output
    assert shown(text, "patience").endswith(f"[default: {defaults.TrainConfig.patience}]")
    assert shown(text, "eps").endswith("[default: per dataset, 0.4 Movielens, 0.6 Tiktok]")
    assert shown(text, "layers").endswith("[default: per model]") and shown(text, "gate").endswith("[default: scalar]")
    monkeypatch.setitem(defaults.PROFILES, "tiktok", {**defaults.PROFILES["tiktok"], "eps": 0.7})
    assert shown(run("train", "--help").output, "eps").endswith("[default: per dataset, 0.4 Movielens, 0.7 Tiktok]")
