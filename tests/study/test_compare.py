"""`egodgl compare` on synthetic-tiny: the table's means, standard deviations, improvement
and p-values against numpy/scipy from cells.csv, resuming (a rerun trains nothing),
--jobs 2 equal to --jobs 1, tuning by validation recall, the name syntax, and bad input
as one line with exit code 2."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import rows, run
from scipy import stats

from ego_dgl.cli import main
from ego_dgl.study.compare import Entry, ModelCell, choose, parse_entry, tuned_keys

PNG = b"\x89PNG\r\n\x1a\n"
TABLE_METRICS = ("precision@10", "recall@10", "ndcg@10", "precision@20", "recall@20", "ndcg@20")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_table_against_numpy_and_scipy_and_a_rerun_trains_nothing(tmp_path):
    args = ["compare", "--dataset", "synthetic-tiny", "--models", "pop,lightgcn,egogcn-hard,gm", "--seeds", 3, "--epochs", 1,
            "--device", "cpu", "--out", tmp_path]
    result = run(*args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "synthetic-tiny"
    cells = rows(folder / "cells.csv")
    assert sorted(c["key"] for c in cells) == sorted(f"{m}-s{s}" for m in ("pop", "lightgcn", "egogcn-hard", "gm") for s in range(3))
    test = {m: {int(c["seed"]): {k: float(c[f"test/{k}"]) for k in TABLE_METRICS} for c in cells if c["name"] == m}
            for m in ("pop", "lightgcn", "egogcn-hard", "gm")}
    summary = {s["name"]: s for s in rows(folder / "summary.csv")}
    for name, by_seed in test.items():
        for metric in TABLE_METRICS:
            values = [by_seed[s][metric] for s in range(3)]
            assert float(summary[name][f"{metric}_mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(summary[name][f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    # the best EgoGCN variant and the best baseline by mean VALIDATION recall@10; pop never the baseline here
    valid_r10 = {m: np.mean([float(c["valid/recall@10"]) for c in cells if c["name"] == m]) for m in test}
    variant = max(("egogcn-hard", "gm"), key=valid_r10.get)
    paired = {r["metric"]: r for r in rows(folder / "paired.csv")}
    assert {r["variant"] for r in paired.values()} == {variant} and {r["baseline"] for r in paired.values()} == {"lightgcn"}
    for metric in TABLE_METRICS:
        a = [test[variant][s][metric] for s in range(3)]
        b = [test["lightgcn"][s][metric] for s in range(3)]
        row = paired[metric]
        assert float(row["improvement_pct"]) == pytest.approx(100 * (np.mean(a) - np.mean(b)) / np.mean(b))
        assert float(row["p_ttest"]) == pytest.approx(stats.ttest_rel(a, b).pvalue)
        assert float(row["p_wilcoxon"]) == pytest.approx(stats.wilcoxon(a, b).pvalue)
    table = (folder / "table.md").read_text()
    assert "egodgl compare --dataset synthetic-tiny --models pop,lightgcn,egogcn-hard,gm --seeds 3 --epochs 1" in table
    assert f"| %improv. {variant} over lightgcn |" in table and "scipy.stats.ttest_rel" in table
    assert "| pop (floor) | 3 |" in table
    assert "defaults over the dataset's synthetic-tiny training profile, then the KEY=VALUE pairs a model's name carries" in table
    assert (folder / "compare.png").read_bytes()[:8] == PNG
    # a rerun trains nothing and writes the same summary
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/metrics.json")}
    assert len(stamps) == 12
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/metrics.json")} == stamps
    assert {s["name"]: s for s in rows(folder / "summary.csv")} == summary
    # --finished-only trains nothing: with two of lightgcn's cells and all of gm's gone
    # from cells.csv, it tabulates each model over the seeds it has, pairs over shared seeds
    kept = [c for c in cells if not (c["name"] == "lightgcn" and c["seed"] != "1") and c["name"] != "gm"]
    with open(folder / "cells.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(cells[0]))
        writer.writeheader()
        writer.writerows(kept)
    partial = run(*args, "--finished-only")
    assert partial.exit_code == 0, partial.output
    assert {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/metrics.json")} == stamps
    seeds = {s["name"]: int(s["seeds"]) for s in rows(folder / "summary.csv")}
    assert seeds == {"pop": 3, "lightgcn": 1, "egogcn-hard": 3}
    lone = rows(folder / "paired.csv")
    assert {(r["variant"], r["baseline"], r["seeds"], r["p_ttest"]) for r in lone} == {("egogcn-hard", "lightgcn", "1", "n/a")}
    assert float(lone[0]["variant_mean"]) == test["egogcn-hard"][1][lone[0]["metric"]]
    table = (folder / "table.md").read_text()
    assert "lightgcn with fewer seeds than asked" in table and "not trained yet: gm" in table
    assert "--finished-only" not in table.splitlines()[2]  # the command shown trains the whole study


def test_pairs_asked_for_are_tested_like_the_headline_pair(tmp_path):
    result = run("compare", "--dataset", "synthetic-tiny", "--models", "pop,id-only,bpr", "--seeds", 3, "--epochs", 1,
                 "--device", "cpu", "--out", tmp_path, "--pair", "bpr:pop", "--pair", "id-only:bpr")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "synthetic-tiny"
    cells = rows(folder / "cells.csv")
    test = lambda name, metric: [float(c[f"test/{metric}"]) for c in sorted(cells, key=lambda c: c["seed"]) if c["name"] == name]  # noqa: E731
    paired = {(r["variant"], r["baseline"], r["metric"]): r for r in rows(folder / "paired.csv")}
    for a, b in (("bpr", "pop"), ("id-only", "bpr")):
        for metric in TABLE_METRICS:
            row = paired[(a, b, metric)]
            assert float(row["improvement_pct"]) == pytest.approx(100 * (np.mean(test(a, metric)) / np.mean(test(b, metric)) - 1))
            assert float(row["p_ttest"]) == pytest.approx(stats.ttest_rel(test(a, metric), test(b, metric)).pvalue)
    table = (folder / "table.md").read_text()
    assert "--pair bpr:pop --pair id-only:bpr" in table.splitlines()[2]
    assert "## Paired tests asked for (--pair)" in table and "| bpr over pop | " in table and "| id-only over bpr | " in table


def test_finished_only_needs_a_comparison(tmp_path):
    result = CliRunner().invoke(main, ["compare", "--dataset", "synthetic-tiny", "--models", "pop", "--finished-only", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "holds no comparison yet" in result.output
    assert not (tmp_path / "compare").exists()


def test_one_seed_prints_na_and_pop_is_the_baseline_only_when_alone(tmp_path):
    result = run("compare", "--dataset", "synthetic-tiny", "--models", "pop,id-only", "--seeds", 1, "--epochs", 1,
                 "--device", "cpu", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "synthetic-tiny"
    paired = rows(folder / "paired.csv")
    assert {(r["variant"], r["baseline"], r["p_ttest"], r["p_wilcoxon"]) for r in paired} == {("id-only", "pop", "n/a", "n/a")}
    assert "unless it is the only one, as here" in (folder / "table.md").read_text()


def test_jobs_2_gives_the_results_of_jobs_1(tmp_path):
    common = ["compare", "--dataset", "synthetic-tiny", "--models", "lightgcn,egogcn-hard", "--seeds", 1, "--epochs", 2, "--device", "cpu"]
    assert run(*common, "--jobs", 1, "--out", tmp_path / "a").exit_code == 0
    result = run(*common, "--jobs", 2, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    for key in ("lightgcn-s0", "egogcn-hard-s0"):
        one, two = (json.loads((tmp_path / d / "compare" / "synthetic-tiny" / "cells" / key / "metrics.json").read_text()) for d in "ab")
        assert one == two and one["epochs_run"] == 2


def test_tune_chooses_by_validation_and_trains_every_seed_with_the_choice(tmp_path):
    result = run("compare", "--dataset", "synthetic-tiny", "--models", "pop,lightgcn", "--tune", "lr=0.05,0.0005", "--seeds", 2,
                 "--epochs", 2, "--device", "cpu", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "compare" / "synthetic-tiny"
    tuning = rows(folder / "tuning.csv")
    assert [r["key"] for r in tuning] == ["lightgcn+lr=0.05-s0", "lightgcn+lr=0.0005-s0"]  # pop has nothing to tune
    assert not any(k.startswith("test/") for k in tuning[0])
    best = max(tuning, key=lambda r: float(r["valid/recall@10"]))
    assert [r["chosen"] for r in tuning] == [str(int(r is best)) for r in tuning]
    chosen_lr = float(best["lr"])
    config = json.loads((folder / "cells" / f"lightgcn+lr={chosen_lr:g}-s1" / "config.json").read_text())
    assert config["train"]["lr"] == chosen_lr and config["train"]["seed"] == 1
    summary = {s["name"]: s for s in rows(folder / "summary.csv")}
    assert summary["lightgcn"]["tuned"] == f"lr={chosen_lr:g}" and summary["pop"]["tuned"] == ""
    # the other value was trained on the first seed only
    assert sorted(p.name for p in (folder / "cells").iterdir() if p.name.startswith("lightgcn")) == sorted(
        [r["key"] for r in tuning] + [f"lightgcn+lr={chosen_lr:g}-s1"])


def test_choice_follows_validation_even_where_test_disagrees():
    entry = Entry("lightgcn", "lightgcn")
    a, b = ModelCell(entry, (("lr", 0.1),), 0), ModelCell(entry, (("lr", 0.01),), 0)
    figures = {a.key: {"valid/recall@10": "0.2", "test/recall@10": "0.9"}, b.key: {"valid/recall@10": "0.3", "test/recall@10": "0.1"}}
    assert choose([a, b], figures) is b


def test_names_take_options_and_tune_skips_what_a_variant_fixes_or_ignores():
    entry = parse_entry("egogcn+branches=id+mm+eps=0.3+layers-mm=1")
    assert (entry.model, entry.overrides) == ("egogcn", (("branches", "id+mm"), ("eps", 0.3), ("layers_mm", 1)))
    assert entry.label == "egogcn+branches=id+mm+eps=0.3+layers_mm=1"
    shared = {"dataset": "synthetic-tiny"}
    grid = {"eps": [0.1, 0.2], "threshold": ["absolute", "relative"], "lr": [1e-3]}
    assert tuned_keys(parse_entry("egogcn-hard"), grid, shared) == ["eps", "threshold", "lr"]
    assert tuned_keys(parse_entry("egogcn-hard+eps=0.5"), grid, shared) == ["threshold", "lr"]
    assert tuned_keys(parse_entry("egogcn-soft"), grid, shared) == ["lr"]  # eps and threshold are hard-mode options
    assert tuned_keys(parse_entry("gm"), grid, shared) == ["lr"]
    assert tuned_keys(parse_entry("lightgcn"), grid, shared) == ["lr"]
    assert tuned_keys(parse_entry("pop"), grid, shared) == []


@pytest.mark.parametrize("extra, fragment", [
    (["--models", "pop,nosuch"], "'nosuch' is not a model or preset"),
    (["--models", "pop+eps=0.3"], "--eps is not an option of --model pop"),
    (["--models", "egogcn-soft+eps=0.3"], "--eps is the hard-mode threshold"),
    (["--models", "lightgcn+colour=red"], "unknown option 'colour'"),
    (["--models", "lightgcn+layers=two"], "layers must be a int"),
    (["--models", "egogcn+seed=3"], "--seed is the same for every model"),
    (["--models", "pop,lightgcn,pop"], "--models lists pop twice"),
    (["--models", "pop,lightgcn", "--tune", "eps=0.1,0.2"], "--tune eps: none of the models has this option free"),
    (["--models", "lightgcn", "--tune", "lr"], "--tune takes KEY=V1,V2"),
    (["--models", "lightgcn", "--tune", "lr=fast"], "--tune lr must be a float"),
    (["--models", "lightgcn", "--seeds", 0], "--seeds must be >= 1"),
    (["--models", "pop,lightgcn", "--pair", "lightgcn:bpr"], "--pair lightgcn:bpr: bpr is not a model of the table"),
    (["--models", "pop,lightgcn", "--pair", "lightgcn"], "give two models of the table as A:B"),
    (["--models", "pop,lightgcn", "--pair", "pop:pop"], "a model against itself tests nothing"),
])
def test_bad_names_and_options_are_one_line_and_train_nothing(tmp_path, extra, fragment):
    result = run("compare", "--dataset", "synthetic-tiny", "--epochs", 1, "--out", tmp_path, *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr
    assert not (tmp_path / "compare").exists()


def test_compare_png_has_a_row_per_model_in_every_metric_panel(tmp_path):
    """compare.png: one panel per metric, one bar per model on the axis, so it grows in
    height (not width) with the number of models."""
    from PIL import Image

    from ego_dgl.study.compare import plot_bars

    def summary(n):
        return [{"name": f"m{k}", "role": ("egogcn", "baseline", "floor")[k % 3],
                 **{f"{m}_{s}": 0.1 + 0.01 * k for m in TABLE_METRICS for s in ("mean", "std")}} for k in range(n)]

    sizes = {}
    for n in (4, 16):
        plot_bars(summary(n), tmp_path / f"{n}.png", "title")
        sizes[n] = Image.open(tmp_path / f"{n}.png").size
    assert sizes[4][0] == sizes[16][0] and sizes[16][1] > 2 * sizes[4][1] * 0.8
