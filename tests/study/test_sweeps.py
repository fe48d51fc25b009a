"""`egodgl sweep-layers` and `sweep-eps` on synthetic-tiny: the grid, mean and std over
seeds, CSV and PNG, skipping finished cells, and resuming an interrupted cell."""

import json

import numpy as np
import pytest
from conftest import rows, run

from ego_dgl.data import load_dataset
from ego_dgl.study.cells import Planner
from ego_dgl.study.sweeps import eps_cells, run_sweep
from ego_dgl.train import resolve_options, train

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sweep_layers_grid_summary_plot_and_rerun(tmp_path):
    args = ["sweep-layers", "--dataset", "synthetic-tiny", "--fusions", "ego,gm,na", "--k-values", "1,3", "--l-values", "1",
            "--epochs", 2, "--device", "cpu", "--out", tmp_path]
    result = run(*args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "sweeps" / "layers-synthetic-tiny"
    cells = rows(folder / "cells.csv")
    # synthetic-tiny's defaults: K = 2 and L = 2 are held fixed
    expected = {f"{f}-K{k}-L{lv}-s0" for f in ("ego", "gm", "na") for k, lv in ((1, 2), (3, 2), (2, 1))}
    assert {c["key"] for c in cells} == expected and len(cells) == 9
    assert all(int(c["epochs_run"]) == 2 for c in cells)
    summary = rows(folder / "summary.csv")
    assert [(s["series"], s["fusion"], float(s["x"])) for s in summary] == [
        ("K", f, k) for f in ("ego", "gm", "na") for k in (1.0, 3.0)] + [("L", f, 1.0) for f in ("ego", "gm", "na")]
    assert (folder / "sweep-layers.png").read_bytes()[:8] == PNG
    assert json.loads((folder / "sweep.json").read_text())["epochs"] == 2
    assert "sweep folder" in result.stdout
    # rerun: nothing retrains; with a second seed only the new cells run
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/last.pt")}
    assert run(*args).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/last.pt")} == stamps
    assert run(*args, "--seeds", 2).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    cells = {c["key"]: c for c in rows(folder / "cells.csv")}
    assert len(cells) == 18
    summary = rows(folder / "summary.csv")
    first = summary[0]
    values = [float(cells[f"ego-K1-L2-s{s}"]["test/recall@10"]) for s in (0, 1)]
    assert int(first["seeds"]) == 2
    assert float(first["recall@10_mean"]) == pytest.approx(np.mean(values))
    assert float(first["recall@10_std"]) == pytest.approx(np.std(values, ddof=1))
    # different shared options in the same folder are refused
    other = run(*args[:-6], "--epochs", 3, "--device", "cpu", "--out", tmp_path)
    assert other.exit_code == 2 and "was made with epochs=2" in other.stderr


def test_sweep_eps_cli(tmp_path):
    result = run("sweep-eps", "--dataset", "synthetic-tiny", "--values", "0.1,0.5", "--epochs", 1, "--name", "e", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "sweeps" / "e"
    assert [float(s["x"]) for s in rows(folder / "summary.csv")] == [0.1, 0.5]
    config = json.loads(next(folder.glob("cells/ego-K2-L2-eps0.5-s0/config.json")).read_text())
    assert config["model"]["eps"] == 0.5 and config["model"]["mode"] == "hard"
    assert (folder / "sweep-eps.png").read_bytes()[:8] == PNG
    bad = run("sweep-eps", "--dataset", "synthetic-tiny", "--values", "0.1,abc", "--out", tmp_path)
    assert bad.exit_code == 2 and "comma-separated list of floats" in bad.stderr


class Interrupt(Exception):
    pass


def test_interrupted_cell_resumes_to_the_uninterrupted_result(tmp_path):
    ds = load_dataset("synthetic-tiny")
    shared = {"dataset": "synthetic-tiny", "epochs": 3, "device": "cpu"}
    cells = eps_cells([0.3], 2, 2, [0])
    straight = run_sweep(ds, "eps", Planner(shared).plan(cells), shared, tmp_path / "a")
    # an attempt cut short after one epoch, in the cell's folder of another sweep
    _, model_cfg, train_cfg, _ = resolve_options({**shared, **cells[0].options()})

    def stop(record):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(ds, model_cfg, train_cfg, tmp_path / "b" / "cells" / cells[0].key, progress=False, on_epoch=stop)
    resumed = run_sweep(ds, "eps", Planner(shared).plan(cells), shared, tmp_path / "b")
    assert resumed == straight
    config = json.loads((tmp_path / "b" / "cells" / cells[0].key / "config.json").read_text())
    assert config["resumed"][0]["at_epoch"] == 1
