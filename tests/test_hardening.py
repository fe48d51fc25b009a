"""Issue 8: no code runs from a dataset, nothing a user has is deleted, every failure is
one clear line with exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ego_dgl.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, *fragments: str) -> str:
    """The result failed with exit code 2 and its last line, the only `error:` line, holds
    every fragment."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line or "Traceback" in line]
    assert len(errors) == 1 and lines[-1].startswith("error:"), result.stderr  # above it: progress bars only
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]


# --- a dataset never runs code ---------------------------------------------------------


class Payload:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_code_in_a_grcn_split_is_refused(grcn_folder, tmp_path):
    marker = tmp_path / "marker"
    rows = np.empty(2, dtype=object)
    rows[0], rows[1] = [0, 6], Payload(marker)
    np.save(grcn_folder / "val_full.npy", rows)
    result = run("data", "info", grcn_folder)
    assert not marker.exists()
    one_error_line(result, "val_full.npy", "system", "refuses")


def test_grcn_object_arrays_still_load(grcn_folder):
    result = run("data", "info", grcn_folder, "--json")
    assert result.exit_code == 0, result.output


def test_a_text_file_named_npy_is_not_called_pickled(grcn_folder):
    (grcn_folder / "feat_v.npy").write_text("0.1 0.2\n0.3 0.4\n")
    line = one_error_line(run("data", "info", grcn_folder), "feat_v.npy", "not a .npy file")
    assert "pickle" not in line


# --- nothing a user has is deleted ---------------------------------------------------


def user_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_into_its_own_source_is_refused(mmrec_folder):
    (mmrec_folder / "README").write_text("my notes")
    before = user_files(mmrec_folder)
    one_error_line(run("data", "convert", mmrec_folder, mmrec_folder, "--to", "grcn", "--overwrite"), "source")
    assert user_files(mmrec_folder) == before


def test_convert_into_the_folder_holding_the_source_is_refused(mmrec_folder):
    parent = mmrec_folder.parent
    (parent / "beside.txt").write_text("keep me")
    before = user_files(parent)
    one_error_line(run("data", "convert", mmrec_folder, parent, "--to", "mmrec", "--overwrite"), "source")
    one_error_line(run("data", "convert", mmrec_folder, mmrec_folder / "inner", "--to", "mmrec"), "source")
    assert user_files(parent) == before


def test_overwrite_replaces_only_a_folder_ego_dgl_wrote(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "thesis.tex").write_text("years of work")
    one_error_line(run("data", "convert", "synthetic-tiny", dst, "--to", "mmrec", "--overwrite"), "not written by ego-dgl")
    assert user_files(dst) == {"thesis.tex": b"years of work"}
    (tmp_path / "file").write_text("a file")
    one_error_line(run("data", "convert", "synthetic-tiny", tmp_path / "file", "--to", "mmrec", "--overwrite"), "not a folder")
    assert (tmp_path / "file").read_text() == "a file"


def test_overwrite_keeps_a_file_added_to_a_folder_ego_dgl_wrote(tmp_path):
    dst = tmp_path / "dst"
    assert run("data", "convert", "synthetic-tiny", dst, "--to", "grcn").exit_code == 0
    assert run("data", "convert", "synthetic-tiny", dst, "--to", "grcn", "--overwrite").exit_code == 0
    (dst / "notes.md").write_text("mine")
    one_error_line(run("data", "convert", "synthetic-tiny", dst, "--to", "grcn", "--overwrite"), "notes.md")
    assert (dst / "notes.md").read_text() == "mine"


# --- options: non-finite numbers, seeds, empty names -----------------------------------


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr", "inf", "--lr"), ("--lr", "nan", "--lr"), ("--reg", "nan", "--reg"), ("--reg", "inf", "--reg"),
    ("--eps", "nan", "--eps"), ("--eps", "inf", "--eps"),
    ("--seed", "-5", "--seed"), ("--seed", str(2**70), "--seed"), ("--dataset", "", "--dataset"),
])
def test_bad_numbers_and_names_are_one_line(tmp_path, option, value, fragment):
    args = ["train", "--epochs", 1, "--device", "cpu", "--out", tmp_path]
    if option != "--dataset":
        args += ["--dataset", "synthetic-tiny"]
    one_error_line(run(*args, option, value), fragment)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_empty_dataset_name_for_data_commands():
    one_error_line(run("data", "info", ""), "empty")


def test_help_says_what_eps_outside_0_1_means():
    text = " ".join(run("train", "--help").output.split())
    assert "> 1" in text and "gm" in text and "< 0" in text and "every edge" in text


# --- a failed run never says it succeeded ---------------------------------------------


def nan_at_batch(monkeypatch, call: int) -> None:
    """Make the `call`-th training step (1-based, over the whole run) report a NaN loss."""
    import ego_dgl.train.trainer as trainer

    real, calls = trainer.train_step, []

    def step(*args, **kwargs):
        calls.append(1)
        loss, parts = real(*args, **kwargs)
        return (float("nan") if len(calls) == call else loss), parts

    monkeypatch.setattr(trainer, "train_step", step)


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    import torch

    from ego_dgl.train.sampler import NegativeSampler

    per_epoch = NegativeSampler(tiny).num_batches(256)
    nan_at_batch(monkeypatch, per_epoch + 2)
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 3, "--device", "cpu", "--out", tmp_path)
    one_error_line(result, "epoch 2", f"batch 2 of {per_epoch}", "--lr", "features")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "metrics.json").exists()
    assert torch.load(run_dir / "last.pt", weights_only=True)["train_state"]["epoch"] == 1


def test_nan_loss_in_the_first_epoch_leaves_no_run(tmp_path, monkeypatch):
    nan_at_batch(monkeypatch, 1)
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--epochs", 2, "--device", "cpu", "--out", tmp_path), "epoch 1")
    assert not any((tmp_path / "runs").iterdir())


# --- file-system errors are one line --------------------------------------------------


def fail_mkdir_under(monkeypatch, folder: Path, code: int) -> None:
    """Path.mkdir raises OSError(code) for every path under `folder` (tests run as root,
    where a chmod'ed folder would not stop writes)."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if folder in Path(self).parents or Path(self) == folder:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path / "file" / "res")
    one_error_line(result, "file")
    assert (tmp_path / "file").read_text() == "x"


def test_out_on_a_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    import errno

    fail_mkdir_under(monkeypatch, tmp_path / "ro", errno.EROFS)
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path / "ro")
    one_error_line(result, "Read-only file system", "writable")


def test_datasets_root_that_is_a_file_fails_before_building(tmp_path, monkeypatch):
    from ego_dgl.data import registry

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EGODGL_DATASETS", str(tmp_path / "file"))
    monkeypatch.setitem(registry.CACHED, "synthetic-tiktok", ("synthetic-tiktok/2", lambda s: pytest.fail("built first")))
    one_error_line(run("data", "prepare", "synthetic-tiktok"), "EGODGL_DATASETS")


def full_disk_writes(monkeypatch, module) -> None:
    """Every file `module` opens through os.fdopen fails to write: no space left."""
    import errno
    import types

    def fdopen(fd, *args, **kwargs):
        fh = os.fdopen(fd, *args, **kwargs)

        def write(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        fh.write = write
        return fh

    monkeypatch.setattr(module, "os", types.SimpleNamespace(**{**vars(os), "fdopen": fdopen}))


def test_full_disk_during_training_is_one_line_and_writes_nothing_half(tmp_path, monkeypatch):
    import ego_dgl.runs as runs

    full_disk_writes(monkeypatch, runs)
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path)
    one_error_line(result, "No space left on device", "free")
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]


def test_full_disk_during_convert_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    import errno

    import ego_dgl.data.mmrec as mmrec

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "dst" / "meta.json"))

    monkeypatch.setattr(mmrec, "write_meta", full)
    one_error_line(run("data", "convert", "synthetic-tiny", tmp_path / "dst", "--to", "mmrec"), "No space left on device")
    assert os.listdir(tmp_path) == []


# --- user-supplied text is printed as given, never read as markup ------------------------


def copy_folder(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bracketed_folder_names_print_literally(mmrec_folder, tmp_path):
    folder = copy_folder(mmrec_folder, tmp_path / "my[v2]")
    (folder / "toy.inter").rename(folder / "my[v2].inter")
    table = run("data", "info", folder)
    assert table.exit_code == 0, table.output
    assert "my[v2]" in table.stdout
    odd = copy_folder(mmrec_folder, tmp_path / "[bold]x")
    with open(odd / "toy.inter", "a") as fh:  # a duplicate interaction: a warning naming the dataset
        fh.write("0\t0\t4\t0\t0\n")
    warned = run("data", "info", odd)
    assert warned.exit_code == 0 and "[bold]x: dropped 1 duplicate" in warned.stderr, warned.output
    (odd / "image_feat.npy").unlink()
    (odd / "text_feat.npy").unlink()
    one_error_line(run("data", "info", odd), "[bold]x: no <modality>_feat.npy")


def test_bracketed_text_in_messages_is_kept(grcn_folder):
    np.save(grcn_folder / "train.npy", np.zeros((3, 3), dtype=np.int64))
    one_error_line(run("data", "info", grcn_folder), "[user, item + num_users] rows")


def test_bracketed_results_folder_prints_literally(tmp_path):
    out = tmp_path / "[bold]res[v2]"
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = (out / "runs").iterdir()
    assert f"run folder: {run_dir}" in result.stdout


def test_item_titles_in_tables_print_literally():
    import io

    from rich.console import Console

    from ego_dgl.cli.tables import recommend_table

    rows = [{"rank": 1, "item": 3, "score": 0.5, "title": "[b]Heat[/b] [1995]", "held_out": False}]
    buf = io.StringIO()
    Console(file=buf, width=200).print(recommend_table("top 1 for user 0 ([my] run)", rows))
    assert "[b]Heat[/b] [1995]" in buf.getvalue() and "([my] run)" in buf.getvalue()


# --- data that cannot fit, or is not what it claims ----------------------------------------


def mmrec_with(folder: Path, line: bytes) -> Path:
    with open(folder / "toy.inter", "ab") as fh:
        fh.write(line)
    return folder


@pytest.mark.parametrize("user, fragment", [(10**12, "user ids go up to 1,000,000,000,000"), (2**63, "2**63-1"), (2**70, "2**63-1")])
def test_ids_too_large_are_one_line(mmrec_folder, user, fragment):
    one_error_line(run("data", "info", mmrec_with(mmrec_folder, f"{user}\t0\t4\t0\t0\n".encode())), "toy.inter", fragment)


def test_huge_id_in_a_grcn_row_is_one_line(grcn_folder):
    rows = np.empty(1, dtype=object)
    rows[0] = [0, 2**70]
    np.save(grcn_folder / "val_full.npy", rows)
    one_error_line(run("data", "info", grcn_folder), "val_full.npy", "2**63-1")


def test_latin1_byte_in_inter_is_one_line(mmrec_folder):
    one_error_line(run("data", "info", mmrec_with(mmrec_folder, b"0\t0\tcaf\xe9\t0\t0\n")), "toy.inter", "UTF-8")
    (mmrec_folder / "toy.inter").write_bytes(b"userID\titemID\trating\ttimestamp\tx_label\xe9\n")
    one_error_line(run("data", "info", mmrec_folder), "toy.inter", "UTF-8")


def test_feature_matrix_without_columns_is_one_line(mmrec_folder):
    np.save(mmrec_folder / "image_feat.npy", np.zeros((5, 0), dtype=np.float32))
    one_error_line(run("data", "info", mmrec_folder), "image_feat.npy", "no columns")


def test_too_few_feature_rows_blame_the_feature_file(mmrec_folder):
    np.save(mmrec_folder / "image_feat.npy", np.zeros((4, 3), dtype=np.float32))
    np.save(mmrec_folder / "text_feat.npy", np.zeros((4, 2), dtype=np.float32))
    line = one_error_line(run("data", "info", mmrec_folder), "image_feat.npy", "4 rows", "item id 4")
    assert "toy.inter:" not in line


# --- runs: checkpoints of another configuration, locks, which run, interruptions ---------


def train_tiny(out: Path, *extra) -> Path:
    result = run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return max((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime_ns)


def test_checkpoint_of_another_configuration_is_one_line(tmp_path):
    import shutil

    run_dir, other = train_tiny(tmp_path / "a"), train_tiny(tmp_path / "b", "--dim", 8)
    for name in ("best.pt", "last.pt"):
        shutil.copy(other / name, run_dir / name)
    one_error_line(run("eval", run_dir, "--device", "cpu"), "best.pt", "another configuration")
    one_error_line(run("train", "--resume", run_dir, "--epochs", 2), "last.pt", "another configuration")


def test_a_run_being_trained_cannot_be_resumed_twice(tmp_path):
    from ego_dgl.runs import run_lock

    run_dir = train_tiny(tmp_path)
    with run_lock(run_dir):
        one_error_line(run("train", "--resume", run_dir, "--epochs", 2), "another egodgl process")
    assert run("train", "--resume", run_dir, "--epochs", 2).exit_code == 0  # released on exit


def test_a_sweep_cannot_run_twice_at_once(tmp_path):
    from ego_dgl.runs import run_lock

    folder = tmp_path / "sweeps" / "mine"
    folder.mkdir(parents=True)
    with run_lock(folder):
        result = run("sweep-eps", "--dataset", "synthetic-tiny", "--values", "0.2", "--epochs", 1, "--out", tmp_path, "--name", "mine")
        one_error_line(result, "another egodgl process")
    assert not (folder / "cells").exists()


def killed_copy(run_dir: Path) -> Path:
    """A newer run folder that was killed during its first epoch: config.json only."""
    import json

    config = json.loads((run_dir / "config.json").read_text())
    config["created"] = "9999-01-01T00:00:00"
    killed = run_dir.parent / "99990101-000000-synthetic-tiny-hard"
    killed.mkdir()
    (killed / "config.json").write_text(json.dumps(config))
    return killed


def test_eval_without_run_folder_takes_the_newest_run_with_a_best_checkpoint(tmp_path):
    import json

    run_dir = train_tiny(tmp_path)
    killed_copy(run_dir)
    result = run("eval", "--out", tmp_path, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == str(run_dir)


def test_resume_of_a_run_that_never_saved_a_checkpoint(tmp_path):
    killed = killed_copy(train_tiny(tmp_path))
    line = one_error_line(run("train", "--resume", killed), "never saved a checkpoint", "config.json")
    assert "--resume" not in line


def test_sweep_names_are_names_not_paths(tmp_path):
    for name in ("../../x", "a/b", ".."):
        result = run("sweep-eps", "--dataset", "synthetic-tiny", "--values", "0.2", "--epochs", 1, "--out", tmp_path / "out", "--name", name)
        one_error_line(result, "--name")
    assert os.listdir(tmp_path) == []


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interruptions_are_one_line_and_exit_2(tmp_path, monkeypatch):
    import click

    import ego_dgl.data as data
    import ego_dgl.train.trainer as trainer

    monkeypatch.setattr(trainer, "train_step", interrupt)
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--device", "cpu", "--out", tmp_path), "interrupted")
    assert not any((tmp_path / "runs").iterdir())
    monkeypatch.setattr(data, "load_dataset", interrupt)
    one_error_line(run("data", "convert", "synthetic-tiny", tmp_path / "dst", "--to", "mmrec"), "interrupted")
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(click.exceptions.Abort()))
    one_error_line(run("data", "info", "synthetic-tiny"), "interrupted")


# --- results are readable as the user's umask allows -------------------------------------


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_run_records_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    run_dir = train_tiny(tmp_path)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert modes == dict.fromkeys(["config.json", "history.csv", "metrics.json", "best.pt", "last.pt"], mode)


def test_written_dataset_folders_follow_the_umask(tmp_path, umask):
    umask(0o027)
    assert run("data", "convert", "synthetic-tiny", tmp_path / "dst", "--to", "mmrec").exit_code == 0
    assert (tmp_path / "dst").stat().st_mode & 0o777 == 0o750
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "dst").iterdir()} == {0o640}


# --- what cannot fit is refused before it is allocated -----------------------------------


def test_huge_dim_is_refused_before_allocating(tmp_path):
    one_error_line(run("train", "--dataset", "synthetic-tiny", "--dim", 100_000_000, "--device", "cpu", "--out", tmp_path),
                   "--dim 100000000", "GiB", "smaller --dim")
    assert not any((tmp_path / "runs").iterdir())


def test_memory_estimate_scales_with_dim_and_fits_small_models(tiny, monkeypatch):
    from ego_dgl.model.egogcn.config import ModelConfig
    from ego_dgl.train import budget as memory

    small, large = memory.training_bytes(tiny, ModelConfig(dim=32)), memory.training_bytes(tiny, ModelConfig(dim=64))
    assert 0 < small < large < 2.2 * small
    memory.check_fits(tiny, ModelConfig(dim=32), "cpu")
    monkeypatch.setattr(memory, "available_memory", lambda device: small - 1)
    with pytest.raises(memory.ConfigError, match="--dim 32"):
        memory.check_fits(tiny, ModelConfig(dim=32), "cpu")
