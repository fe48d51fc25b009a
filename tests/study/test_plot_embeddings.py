"""`egodgl plot-embeddings` (Fig. 5) on two tiny runs (EGO-hard and popularity, 2 epochs):
the PNG, the figures against a loop-by-loop recomputation from the tables, the seeded
user choice, and the one-line refusals."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ego_dgl.cli import main
from ego_dgl.data import load_dataset
from ego_dgl.study.embeddings import RunEmbedding, choose_users, widths_note
from ego_dgl.train import resolve_options, train
from ego_dgl.train.loading import load_run

PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two runs of synthetic-tiny: EgoGCN-hard and popularity, 2 epochs each."""
    ds = load_dataset("synthetic-tiny")
    folders = []
    for model in ("egogcn-hard", "pop"):
        _, model_cfg, train_cfg, _ = resolve_options({"dataset": "synthetic-tiny", "model": model, "epochs": 2, "device": "cpu"})
        folder = tmp_path_factory.mktemp("runs") / model
        train(ds, model_cfg, train_cfg, folder, progress=False, source={"source": "synthetic-tiny"})
        folders.append(folder)
    return folders


def run(*args):
    return CliRunner().invoke(main, ["plot-embeddings", *(str(a) for a in args), "--device", "cpu"], catch_exceptions=False)


def loop_means(users: np.ndarray, items: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    """Mean Euclidean and cosine distance over (user, item) pairs, one coordinate at a time."""
    eucl, cos = [], []
    for u, i in pairs:
        sq = dot = nu = ni = 0.0
        for d in range(users.shape[1]):
            a, b = float(users[u, d]), float(items[i, d])
            sq += (a - b) ** 2
            dot += a * b
            nu += a * a
            ni += b * b
        eucl.append(math.sqrt(sq))
        cos.append(1.0 - (dot / math.sqrt(nu * ni) if nu * ni > 0 else 0.0))
    return sum(eucl) / len(eucl), sum(cos) / len(cos)


def test_png_and_figures_match_a_recomputation(runs, tmp_path):
    out = tmp_path / "fig5.png"
    result = run(*runs, "--users", 4, "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000
    import matplotlib.image

    height, width = matplotlib.image.imread(out).shape[:2]
    assert 900 <= height <= 1100 and 900 <= width <= 1100  # two rows, two runs, 120 dpi
    saved = json.loads(out.with_suffix(".json").read_text())
    ds = load_dataset("synthetic-tiny")
    assert saved["dataset"]["fingerprint"] == ds.fingerprint() and saved["split"] == "test"
    assert len(saved["users"]) == 4 and saved["users"] == sorted(saved["users"])
    seen = {(int(u), int(i)) for u, i in np.concatenate([ds.train, ds.valid, ds.test])}
    test_pairs = {(int(u), int(i)) for u, i in ds.test}
    for user, held, rand in zip(saved["users"], saved["held_out"], saved["random"]):
        assert len(held) >= 3 and set(held) == {i for u, i in test_pairs if u == user}
        assert len(rand) == len(held) and not any((user, i) in seen for i in rand)
    assert [r["model"] for r in saved["runs"]] == ["egogcn (hard)", "pop"]
    for run_dir, figures in zip(runs, saved["runs"]):
        model = load_run(run_dir, "cpu").model
        with torch.no_grad():
            tables = {"before": model.input_tables(), "after": model.final_tables()}
        for stage, t in tables.items():
            users, items = t.users.double().numpy(), t.items.double().numpy()
            held = loop_means(users, items, [(u, i) for u, h in zip(saved["users"], saved["held_out"]) for i in h])
            rand = loop_means(users, items, [(u, i) for u, r in zip(saved["users"], saved["random"]) for i in r])
            got = figures[stage]
            assert got["width"] == users.shape[1]
            for k, metric in enumerate(("euclidean", "cosine")):
                assert got[metric]["held_out"] == pytest.approx(held[k], rel=1e-9, abs=1e-12)
                assert got[metric]["random"] == pytest.approx(rand[k], rel=1e-9, abs=1e-12)
                expected = held[k] / rand[k] if rand[k] > 0 else None
                assert got[metric]["ratio"] == (None if expected is None else pytest.approx(expected, rel=1e-9))
    # popularity learns nothing: the same tables before and after, so the same figures
    assert saved["runs"][1]["before"] == saved["runs"][1]["after"]
    assert saved["runs"][0]["before"] != saved["runs"][0]["after"]
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["stage"]) for r in rows] == [("egogcn (hard)", "before"), ("egogcn (hard)", "after"), ("pop", "before"), ("pop", "after")]
    assert float(rows[1]["euclidean_ratio"]) == pytest.approx(saved["runs"][0]["after"]["euclidean"]["ratio"])
    assert f"users {saved['users']}" in result.stdout and "written:" in result.stdout


def test_same_seed_same_users_and_same_output(runs, tmp_path):
    ds = load_dataset("synthetic-tiny")
    first = choose_users(ds, "test", 4, 3)
    assert choose_users(ds, "test", 4, 3) == first
    assert len({tuple(choose_users(ds, "test", 4, s).users) for s in range(6)}) > 1
    out = tmp_path / "a.png"
    assert run(*runs, "--users", 4, "--seed", 3, "--out", out).exit_code == 0
    before = out.with_suffix(".json").read_text()
    assert json.loads(before)["users"] == first.users
    again = run(*runs, "--users", 4, "--seed", 3, "--out", out, "--overwrite")
    assert again.exit_code == 0 and out.with_suffix(".json").read_text() == before


def test_mismatched_datasets_refused(runs, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(runs[1], other)
    config = json.loads((other / "config.json").read_text())
    config["dataset"]["fingerprint"] = "0123456789abcdef"
    (other / "config.json").write_text(json.dumps(config))
    out = tmp_path / "x.png"
    result = run(runs[0], other, "--users", 2, "--out", out)
    assert result.exit_code == 2 and "different datasets" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not list(tmp_path.glob("x.*"))


@pytest.mark.parametrize("args, message", [
    (["--users", 0], "--users must be at least 1"),
    (["--users", 8], "only 7 users have at least 3 test items"),
    (["--out", "fig.jpg"], "must name a .png file"),
])
def test_bad_options_one_line(runs, tmp_path, args, message):
    args = [str(tmp_path / a) if a == "fig.jpg" else a for a in args]
    result = run(*runs, *args, *([] if "--out" in args else ["--out", tmp_path / "x.png"]))
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_missing_run_and_existing_output_refused(runs, tmp_path):
    missing = run(runs[0], tmp_path / "nope", "--out", tmp_path / "x.png")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    mine = tmp_path / "mine.json"
    mine.write_text("{}")
    result = run(*runs, "--users", 2, "--out", tmp_path / "mine.png")
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.stderr
    assert mine.read_text() == "{}" and not (tmp_path / "mine.png").exists()


def test_widths_note_names_runs_whose_spaces_differ():
    def part(title, before, after):
        return RunEmbedding(Path(title), title, {"before": {"width": before}, "after": {"width": after}}, {})

    assert widths_note([part("a", 64, 64)]) is None
    note = widths_note([part("a", 64, 64), part("b", 192, 128)])
    assert "b 192 vs 128" in note and "a " not in note
