"""Issue 20, the options: one seed range that works end to end (DGL's own is smaller), a
range for every numeric option, memory estimates before allocations that scale with a
user's number (blaming the right option), and what the error line looks like (no emoji
from a path, no library warning before it)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from untrusted_checks import cli, one_line

from ego_dgl._dgl import dgl
from ego_dgl.errors import ConfigError, DataError
from ego_dgl.train.defaults import MAX_SEED
from ego_dgl.train.trainer import seed_everything


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("res")
    result = cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    return next((out / "runs").iterdir())


@pytest.fixture
def made_ds(tmp_path_factory) -> Path:
    """synthetic-tiny written as an MMRec folder."""
    folder = tmp_path_factory.mktemp("ds") / "ds"
    assert cli("data", "convert", "synthetic-tiny", folder, "--to", "mmrec").exit_code == 0
    return folder


# --- seeds: one range, every accepted value works ----------------------------------------


@pytest.mark.parametrize("seed", [2**31 - 1, 2**31, 3_000_000_000, MAX_SEED])
def test_every_seed_in_range_seeds_dgl_too(seed):
    seed_everything(seed)
    first = torch.from_numpy(np.asarray(dgl.random.choice(1000, 5)))
    seed_everything(seed)
    assert torch.equal(first, torch.from_numpy(np.asarray(dgl.random.choice(1000, 5))))


def test_train_with_the_largest_seed_ends_with_finite_metrics(tmp_path):
    result = cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu",
                 "--seed", MAX_SEED, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads(next((tmp_path / "runs").glob("*/metrics.json")).read_text())
    assert all(np.isfinite(v) for v in metrics["test"].values())


@pytest.mark.parametrize("args", [
    ["data", "build", "OUT", "--interactions", "x.csv", "--seed", "-1"],
    ["data", "build", "OUT", "--interactions", "x.csv", "--seed", str(2**40)],
    ["plot-embeddings", "RUN", "--seed", "-1"],
    ["plot-embeddings", "RUN", "--seed", str(2**40)],
    ["compare", "--models", "lightgcn", "--seed", "-1"],
    ["sweep-eps", "--seed", str(2**32)],
    ["train", "--seed", str(2**32)],
])
def test_seeds_outside_the_one_range_are_one_line(tmp_path, args):
    args = [str(tmp_path / a) if a in ("OUT", "RUN", "x.csv") else a for a in args]
    one_line(cli(*args), "--seed", str(MAX_SEED))
    assert list(tmp_path.iterdir()) == []


# --- a range for every numeric option ------------------------------------------------------


@pytest.mark.parametrize("args, option", [
    (["sweep-eps", "--k-fixed", "0"], "--k-fixed"),
    (["sweep-layers", "--l-fixed", "-1"], "--l-fixed"),
    (["sweep-eps", "--jobs", "0"], "--jobs"),
    (["data", "partition", "synthetic-tiny", "P", "--parts", "0"], "--parts"),
    (["data", "build", "OUT", "--interactions", "x.csv", "--k-core", "-2"], "--k-core"),
    (["data", "build", "OUT", "--interactions", "x.csv", "--min-rating", "nan"], "--min-rating"),
    (["data", "build", "OUT", "--interactions", "x.csv", "--ratios", "nan:1:1"], "--ratios"),
    (["data", "build", "OUT", "--interactions", "x.csv", "--ratios", "1e308:1e308:1"], "--ratios"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--threads", "1000000"], "--threads"),
    (["dist-launch", "--parts-config", "c.json", "--trainers", "0", "--", "train"], "--trainers"),
    (["recommend", "RUN", "--user", "-1"], "--user"),
    (["eval", "RUN", "--k", "0"], "--k"),
    (["eval", "RUN", "--eval-chunk", "x"], "--eval-chunk"),
])
def test_numeric_options_out_of_range_are_one_line(tmp_path, args, option):
    args = [str(tmp_path / a) if a in ("OUT", "RUN", "P", "x.csv", "c.json") else a for a in args]
    one_line(cli(*args), option)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, fragments", [
    (["train", "--nope"], ("No such option", " train --help")),
    (["eval", "--split", "bogus"], ("'bogus' is not one of", " eval --help")),
    (["no-such-command"], ("No such command", "--help")),
    (["--nope"], ("No such option", "--help")),
    (["data", "build"], ("Missing argument", " data build --help")),
])
def test_usage_errors_are_one_line_naming_the_help_to_read(args, fragments):
    one_line(cli(*args), *fragments)


@pytest.mark.parametrize("values", ["1,,2", "1,2,", ",1"])
def test_an_empty_value_in_a_list_is_refused_not_dropped(tmp_path, values):
    one_line(cli("sweep-layers", "--dataset", "synthetic-tiny", "--l-values", values, "--out", tmp_path), "--l-values", "empty value")
    assert list(tmp_path.iterdir()) == []


def test_huge_k_evaluates_without_allocating_it(run_dir):
    result = cli("eval", run_dir, "--k", 10**12, "--k", 10, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    test = figures.get("test", figures)
    assert all(np.isfinite(v) for v in test.values())


@pytest.mark.parametrize("option", ["--k", "--eval-chunk"])
def test_a_count_beyond_int64_is_one_line(run_dir, option):
    """--k or --eval-chunk above 2**63-1 passed the option's range and overflowed in torch
    (OverflowError, ValueError: a traceback)."""
    one_line(cli("eval", run_dir, option, 10**30, "--device", "cpu"), option, "2**63-1")


def test_train_refuses_an_eval_chunk_beyond_int64_before_training(tmp_path):
    one_line(cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--eval-chunk", 10**30, "--out", tmp_path),
             "--eval-chunk", "2**63-1")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_fanout_beyond_int64_is_one_line_before_training(tmp_path):
    """--fanouts 10**30 passed the parse and overflowed in DGL's sampler (ValueError traceback)."""
    one_line(cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--sampler", "neighbor",
                 "--fanouts", f"10,{10**30}", "--out", tmp_path), "--fanouts", "2**63-1")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("dataset", [".", "sub/.."])
def test_compare_of_a_dataset_named_by_dots_gets_a_folder_of_its_own(made_ds, tmp_path, monkeypatch, dataset):
    """compare --dataset . (from inside a dataset folder) wrote its study into OUT/compare
    itself, and --dataset DS/sub/.. into OUT: the default folder name was the path's last part."""
    (made_ds / "sub").mkdir()
    monkeypatch.chdir(made_ds)
    result = cli("compare", "--dataset", dataset, "--models", "pop", "--seeds", 1, "--epochs", 1, "--device", "cpu", "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    assert [p.name for p in tmp_path.iterdir()] == ["compare"] and [p.name for p in (tmp_path / "compare").iterdir()] == ["dataset"]


def test_more_procs_than_cores_is_one_line_before_spawning(tmp_path):
    """--procs 10**30 reached torch's spawn (OverflowError traceback; now refused as beyond
    int64); --procs 10**6 would have started a million training processes on the CPU."""
    one_line(cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--procs", 10**6, "--out", tmp_path),
             "--procs", "CPU cores")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_few_more_processes_than_cores_still_run_and_a_flood_does_not():
    """Oversubscribing the cores (--procs 4 on 2 cores, as the README shows) is a user's
    choice; only a count no machine could run is refused."""
    from ego_dgl.system import PROCESSES_PER_CORE, check_process_count

    cores = os.cpu_count() or 1
    check_process_count("--procs", 2 * cores)
    check_process_count("--procs", PROCESSES_PER_CORE * cores)
    with pytest.raises(ConfigError, match="--procs"):
        check_process_count("--procs", PROCESSES_PER_CORE * cores + 1)


@pytest.mark.parametrize("option", ["--trainers", "--servers"])
def test_dist_launch_with_more_processes_than_cores_is_one_line_before_starting_any(tmp_path, option):
    """--servers 10**6 looped for ever looking for ports 10**6 apart; --trainers 10**6 (a
    multiple of the partitions) would have started a million trainer processes."""
    parts = tmp_path / "parts"
    assert cli("data", "partition", "synthetic-tiny", parts, "--parts", 1, "--method", "random").exit_code == 0
    one_line(cli("dist-launch", "--parts-config", parts / "synthetic-tiny.json", option, 10**6, "--", "train"), option, "CPU cores")


def test_tune_jobs_far_above_the_trials_starts_one_worker_per_trial(tmp_path):
    """tune --jobs 10**30 built a list of 10**30 shares (a MemoryError after eating the
    machine's memory); workers past the missing trials have nothing to do."""
    result = cli("tune", "--model", "lightgcn", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu",
                 "--trials", 1, "--jobs", 10**30, "--out", tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "tune" / "lightgcn-synthetic-tiny" / "best.toml").exists()


def test_huge_bins_bucket_without_allocating_them(run_dir, monkeypatch):
    """--bins 10**9 once asked numpy for a billion quantiles (8 GB, then the OOM killer);
    more buckets than degrees give the same edges as one per degree."""
    real = np.linspace
    monkeypatch.setattr(np, "linspace", lambda a, b, n, *args, **kw: real(a, b, n, *args, **kw) if n <= 10**6
                        else pytest.fail(f"linspace of {n:,} points"))
    huge = cli("eval", run_dir, "--by", "item-degree", "--bins", 10**9, "--json", "--device", "cpu")
    assert huge.exit_code == 0, huge.output
    every = cli("eval", run_dir, "--by", "item-degree", "--bins", 10**4, "--json", "--device", "cpu")
    assert json.loads(huge.output) == json.loads(every.output)


@pytest.mark.parametrize("device", ["", "tpu", "[red]x[/]"])
@pytest.mark.parametrize("command", [("eval",), ("recommend", "--user", 0), ("export",)])
def test_devices_torch_cannot_parse_are_one_line_for_every_command(run_dir, tmp_path, command, device):
    """train checked --device; eval, recommend and export handed it to torch.device and
    died with its RuntimeError."""
    extra = ("--out", tmp_path / "export") if command[0] == "export" else ()
    line = one_line(cli(command[0], run_dir, *command[1:], *extra, "--device", device), "--device", "auto, cpu, cuda")
    assert repr(device) in line
    assert not (tmp_path / "export").exists()


# --- memory estimates before allocating, blaming the right option -------------------------


def test_huge_synthetic_scale_is_refused_before_allocating():
    one_line(cli("data", "info", "synthetic-x100000"), "synthetic data", "smaller scale")


def test_huge_huign_intents_are_refused_before_allocating(tmp_path):
    one_line(cli("train", "--model", "huign", "--param", "intents=100000,100000", "--dataset", "synthetic-tiny",
                 "--device", "cpu", "--out", tmp_path), "intents=100000,100000")


@pytest.mark.parametrize("model, option", [("mmgcn", "latent_dim"), ("grcn", "content_dim"), ("lattice", "feat_dim"),
                                           ("lgmrec", "hyperedges"), ("gat", "heads")])
def test_a_width_the_estimate_does_not_count_is_one_line_naming_it(tmp_path, model, option):
    """Widths beyond --dim and the layers (10**15: petabytes, beyond any address space, so
    no allocator hands them out) reached torch's allocator: a RuntimeError traceback."""
    one_line(cli("train", "--model", model, "--param", f"{option}={10**15}", *(("--layers", 1) if model == "gat" else ()),
                 "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path),
             f"--param {option}={10**15}", "do not fit")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args", [("--model", "gat", "--layers", 1, "--param", f"heads={10**30}"),
                                  ("--model", "grcn", "--param", f"content_dim={10**30}"), ("--config", "CFG")])
def test_an_integer_option_beyond_int64_is_one_line(tmp_path, args):
    """Beyond 2**63-1 torch cannot even take the size (a TypeError traceback from torch.empty)."""
    (tmp_path / "c.toml").write_text(f'model = "lattice"\nfeat-dim = {10**30}\n')
    args = [tmp_path / "c.toml" if a == "CFG" else a for a in args]
    one_line(cli("train", *args, "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path / "res"),
             "2**63-1")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.json"))


def test_the_estimate_blames_layers_not_dim(tmp_path):
    line = one_line(cli("train", "--layers-mm", 10**8, "--dataset", "synthetic-tiny", "--device", "cpu", "--out", tmp_path),
                    "--layers-mm 100000000")
    assert "--dim" not in line


# --- the error line itself -----------------------------------------------------------------


def test_emoji_codes_in_a_path_print_literally(tmp_path):
    one_line(cli("data", "info", tmp_path / ":x: folder"), ":x: folder")


def test_library_warnings_never_precede_the_error_line(monkeypatch):
    import ego_dgl.data

    def warn_then_fail(*args, **kwargs):
        warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=2)
        raise DataError("the one line")

    monkeypatch.setattr(ego_dgl.data, "load_dataset", warn_then_fail)
    one_line(cli("data", "info", "synthetic-tiny"), "the one line")


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                 "64000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError("Unable to allocate 36.2 GiB for an array with shape (4640000000,) and data type int64"),
])
def test_an_allocation_that_fails_anywhere_is_one_line(monkeypatch, error):
    """A failed allocation past the estimates (in a forward pass, a numpy step) was a traceback."""
    import ego_dgl.data

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ego_dgl.data, "load_dataset", fail)
    line = one_line(cli("data", "info", "synthetic-tiny"), "out of memory", "use smaller options")
    assert ("you tried to allocate 64000000000 bytes" if isinstance(error, RuntimeError) else "Unable to allocate 36.2 GiB") in line


def test_another_runtime_error_is_not_called_out_of_memory(monkeypatch):
    import ego_dgl.data

    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ego_dgl.data, "load_dataset", fail)
    assert isinstance(cli("data", "info", "synthetic-tiny").exception, RuntimeError)


def test_library_warnings_of_a_good_command_are_still_shown(monkeypatch):
    import ego_dgl.data

    real = ego_dgl.data.load_dataset

    def warn(*args, **kwargs):
        warnings.warn("a numpy notice", RuntimeWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(ego_dgl.data, "load_dataset", warn)
    result = cli("data", "info", "synthetic-tiny")
    assert result.exit_code == 0 and "a numpy notice" in result.stderr


def test_markup_in_the_compare_folder_prints_literally(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import ego_dgl.study.compare

    folder = tmp_path / "a[/b]" / "comparisons" / "c"
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text("")
    monkeypatch.setattr(ego_dgl.study.compare, "launch_compare",
                        lambda options: SimpleNamespace(summary=[], paired=[], folder=folder))
    result = cli("compare", "--models", "lightgcn", "--out", tmp_path / "a[/b]")
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"comparison folder: {folder} (summary.csv)" in " ".join(result.output.split())
