"""The benchmark: its measurements add up, projections scale, ratios are computed right,
and the command writes a report that the next run compares against."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ego_dgl.cli import main
from ego_dgl.study.bench import (
    PHASES,
    SUITES,
    Case,
    measure,
    model_shapes,
    project,
    ratios,
    report_path,
    runnable,
)


@pytest.fixture(scope="module")
def whole_epoch():
    return measure(Case("synthetic-tiny", "torch", "hard"), repeats=2)


def test_whole_epoch_figures_add_up(whole_epoch, tiny):
    r = whole_epoch
    assert r["batches_per_epoch"] == -(-r["train_edges"] // r["batch_size"])
    assert r["batches_timed"] == r["batches_per_epoch"] and not r["projected"]
    assert all(r[p] >= 0 for p in PHASES) and r["t_forward"] > 0 and r["t_backward"] > 0
    # the median epoch is one of the repetitions, so it cannot be below the sum of the phase medians' minimum
    assert r["epoch_s"] > r["t_forward"] and r["epoch_s"] > r["t_backward"]
    assert r["batches_per_s"] == pytest.approx(r["batches_per_epoch"] / r["epoch_s"])
    assert r["shares"] == pytest.approx({p: r[p] / r["epoch_s"] for p in PHASES})
    assert r["eval_s"] > 0 and 0 < r["eval_users"] <= 60
    assert r["data"] == tiny.fingerprint()
    assert r["peak_rss_mb"] > 50 and r["peak_cuda_mb"] is None and r["backend"] == "torch"


def test_a_partial_epoch_is_projected_to_the_whole():
    r = measure(Case("synthetic-tiny", "torch", "hard", batches=1), repeats=1)
    assert r["projected"] and r["batches_timed"] == 1 and r["batches_per_epoch"] > 1
    assert r["t_forward"] > 0 and r["epoch_s"] == pytest.approx(sum(r[p] for p in PHASES))
    # the first batch counts once as timed (per-epoch work such as LATTICE's graph rebuild
    # lands there), every other batch at the mean of the other timed ones; the epoch's
    # sampling counts once
    first = {"t_forward": 2.0, "t_sample": 0.25, "t_step": 1.0}
    others = [{"t_forward": 0.5, "t_sample": 0.25, "t_step": 1.0}, {"t_forward": 0.25, "t_sample": 0.25, "t_step": 1.0}]
    got = project([first, *others], total=7, sampling=0.1)
    assert got == pytest.approx({"t_forward": 2.0 + 6 * 0.375, "t_sample": 0.25 + 6 * 0.25 + 0.1, "t_step": 7.0})
    # one timed batch stands for all; every batch timed sums exactly
    assert project([first], total=3, sampling=0.0) == pytest.approx({"t_forward": 6.0, "t_sample": 0.75, "t_step": 3.0})
    assert project([first, *others], total=3, sampling=0.0) == pytest.approx({"t_forward": 2.75, "t_sample": 0.75, "t_step": 3.0})


def _result(dataset, backend, mode, epoch_s, peak_rss_mb=100.0):
    return {"case": {"dataset": dataset, "backend": backend, "mode": mode, "batches": None}, "epoch_s": epoch_s, "peak_rss_mb": peak_rss_mb}


def test_ratios_within_a_run_and_against_the_previous_record():
    now = [_result("d", "dgl", "hard", 2.0), _result("d", "torch", "hard", 5.0), _result("d", "dgl", "soft", 4.0)]
    before = {"results": [_result("d", "dgl", "hard", 6.0), _result("other", "dgl", "hard", 1.0)]}
    assert ratios(now, before) == {"torch_over_dgl/d/hard": 2.5, "previous_over_now/d/dgl/hard": 3.0}
    assert ratios(now, None) == {"torch_over_dgl/d/hard": 2.5}
    baseline = {"case": {**_result("d", "auto", "", 0)["case"], "model": "ngcf"}, "epoch_s": 3.0}
    assert ratios([_result("d", "auto", "hard", 2.0), baseline], None) == {"ngcf_over_egogcn-hard/d": 1.5}


def test_a_baseline_case_is_timed_through_the_same_trainer():
    r = measure(Case("synthetic-tiny", "auto", "", model="ngcf"), repeats=1)
    assert r["model"] == "ngcf" and r["layers"] == 3 and r["layers_mm"] is None
    assert r["epoch_s"] > r["t_forward"] > 0 and r["t_backward"] > 0
    assert Case("ml100k", "auto", "", model="ngcf").name == "ml100k/ngcf"
    assert {c.model for c in SUITES["models"]} >= {"egogcn", "lightgcn", "grcn", "mmgcn", "disengcn"}


def test_bench_command_writes_the_report_and_compares_with_the_last(tmp_path):
    runner = CliRunner()
    args = ["bench", "--suite", "synthetic-tiny", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "synthetic-tiny.json").read_text())
    assert report["machine"]["threads"] == 1 and report["machine"]["torch"]
    if Path("/proc/cpuinfo").exists():  # the CPU told apart beyond its vague VM name
        assert report["machine"]["cpu_id"]["cpu family"] and "model" in report["machine"]["cpu_id"]
    assert {Case(**r["case"]).name for r in report["results"]} == {
        f"synthetic-tiny/{b}/{m}" for b in ("dgl", "torch", "fused") for m in ("hard", "soft")
    }
    assert set(report["ratios"]) == {
        f"{r}/synthetic-tiny/{m}" for r in ("torch_over_dgl", "torch_over_fused", "dgl_over_fused", "peak_dgl_over_fused") for m in ("hard", "soft")
    }
    assert "synthetic-tiny/dgl/hard" in first.output
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    again = json.loads((tmp_path / "synthetic-tiny.json").read_text())
    assert sum(k.startswith("previous_over_now/") for k in again["ratios"]) == 6


def test_bench_rejects_an_unknown_suite(tmp_path):
    out = CliRunner().invoke(main, ["bench", "--suite", "nope", "--out", str(tmp_path)])
    assert out.exit_code == 2 and "unknown benchmark suite 'nope'" in out.output
    assert not any(tmp_path.iterdir())


def test_reports_are_named_per_device_and_dgl_cases_skip_where_dgl_cannot_run(tmp_path):
    assert report_path(tmp_path, "ml100k", "cpu") == tmp_path / "ml100k.json"
    assert report_path(tmp_path, "ml100k", "cuda") == tmp_path / "ml100k-cuda.json"
    assert report_path(tmp_path, "ml100k", "cuda:1") == tmp_path / "ml100k-cuda1.json"
    assert runnable(Case("ml100k", "torch", "hard"), "meta") is None
    for backend in ("dgl", "dgl-udf"):
        assert runnable(Case("ml100k", backend, "hard"), "cpu") is None
        assert "cannot run on meta" in runnable(Case("ml100k", backend, "hard"), "meta")
    assert Case("ml100k", "dgl-udf", "hard") in SUITES["ml100k"]


def test_ratios_compare_each_dgl_backend_with_torch():
    now = [_result("d", "dgl", "hard", 2.0), _result("d", "dgl-udf", "hard", 8.0), _result("d", "torch", "hard", 4.0)]
    assert ratios(now, None) == {"torch_over_dgl/d/hard": 2.0, "torch_over_dgl-udf/d/hard": 0.5}


def test_ratios_set_the_fused_backend_against_dgl_in_time_and_memory():
    now = [_result("d", "dgl", "hard", 6.0, peak_rss_mb=300.0), _result("d", "fused", "hard", 2.0, peak_rss_mb=200.0)]
    assert ratios(now, None) == {"dgl_over_fused/d/hard": 3.0, "peak_dgl_over_fused/d/hard": 1.5}
    assert Case("ml100k", "fused", "hard") in SUITES["ml100k"] and Case("synthetic-tiktok", "fused", "hard", 12) in SUITES["synthetic-tiktok"]


def test_a_neighbour_sampled_case_trains_on_blocks_and_is_set_against_full_graph():
    case = Case("synthetic-tiny", "torch", "hard", batches=2, sampler="neighbor", fanouts="2")
    assert case.name == "synthetic-tiny/torch/hard/neighbor-2"
    assert case.options("cpu")["sampler"] == "neighbor" and case.options("cpu")["fanouts"] == "2"
    r = measure(case, repeats=1)
    assert r["case"]["sampler"] == "neighbor" and r["batches_timed"] == 2 and r["t_forward"] > 0
    full, sampled = _result("d", "auto", "hard", 6.0), _result("d", "auto", "hard", 2.0)
    sampled["case"] |= {"sampler": "neighbor", "fanouts": "10"}
    # the sampled case is neither taken for the torch/dgl ratio nor for EgoGCN-hard's epoch
    assert ratios([full, sampled, _result("d", "torch", "hard", 3.0)], None) == {
        "full_over_neighbor-10/d/hard": 3.0, "torch_over_auto/d/hard": 0.5}
    assert len({c.name for c in SUITES["scaling"]}) == len(SUITES["scaling"]) == 14


def test_a_compiled_case_is_set_against_the_eager_step():
    case = Case("ml100k", "torch", "hard", compile="reduce-overhead")
    assert case.name == "ml100k/torch/hard/compile-reduce-overhead" and case.options("cuda")["compile"] == "reduce-overhead"
    eager, compiled = _result("d", "dgl", "hard", 3.0), _result("d", "dgl", "hard", 2.0)
    compiled["case"] |= {"compile": "default"}
    # the compiled case is not taken for the torch/dgl ratio
    assert ratios([eager, compiled, _result("d", "torch", "hard", 6.0)], None) == {
        "eager_over_compile-default/d/dgl/hard": 1.5, "torch_over_dgl/d/hard": 2.0}
    assert {c.name for c in SUITES["compile"]} >= {"ml100k/dgl/hard", "ml100k/dgl/hard/compile-default"}


def test_a_failed_case_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    import subprocess

    import ego_dgl.study.bench as bench

    measured, real_run = [], subprocess.run

    def fake_run(args, **kw):
        if args[1:3] != ["-m", "ego_dgl.study.bench"]:  # e.g. platform asking uname
            return real_run(args, **kw)
        case = Case(**json.loads(args[3]))
        if case.backend == "dgl" and case.mode == "soft":
            return subprocess.CompletedProcess(args, -9, "", "")
        measured.append(case.name)
        return subprocess.CompletedProcess(args, 0, json.dumps({**_result(case.dataset, case.backend, case.mode, 1.0),
            "case": json.loads(args[3])}), "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    report = bench.run_suite("synthetic-tiny", repeats=1, threads=1, out=tmp_path, progress=False)
    assert report["failed"] == {"synthetic-tiny/dgl/soft": "benchmark case synthetic-tiny/dgl/soft was killed by SIGKILL "
                                "(the kernel's out-of-memory killer sends it)"}
    assert len(report["results"]) == 5 and len(measured) == 5
    assert json.loads((tmp_path / "synthetic-tiny.json").read_text())["failed"] == report["failed"]


def test_title_names_each_datasets_model_shape():
    """A suite over two datasets (sampling: ml100k and synthetic-tiktok) trains each under
    its own profile; the title must not give the first one's shape for both."""
    ml = {"case": {"dataset": "ml100k"}, "layers_mm": 4, "layers_id": 3, "batch_size": 2048}
    tt = {"case": {"dataset": "synthetic-tiktok"}, "layers_mm": 2, "layers_id": 2, "batch_size": 1024}
    assert model_shapes([ml, ml]) == "K=4 L=3, batch 2048"
    assert model_shapes([ml, tt, ml]) == "ml100k K=4 L=3, batch 2048; synthetic-tiktok K=2 L=2, batch 1024"
