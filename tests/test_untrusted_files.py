"""Issue 20, the files: each example of the issue, grouped by class. Our own files damaged
or hand-edited (meta.json, card.json, a run's config.json, checkpoints), sizes a header
claims, text that is not UTF-8, config files that explode, a user's folder deleted or
written outside. Each fails on the code before the issue and passes after."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import format as npformat
from untrusted_checks import cli, files_under, one_line

# --- fixtures: a dataset folder, a built dataset with its card, a trained run ---------


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Made once per module, copied by each test: synthetic-tiny as an MMRec folder, a
    built dataset (with card.json) and a one-epoch run."""
    root = tmp_path_factory.mktemp("made")
    assert cli("data", "convert", "synthetic-tiny", root / "ds", "--to", "mmrec").exit_code == 0
    tables = root / "tables"
    tables.mkdir()
    (tables / "inter.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u * 3 + k) % 7}\n" for u in range(12) for k in range(5)))
    (tables / "items.csv").write_text("item_id,price\n" + "".join(f"i{i},{i * 1.5}\n" for i in range(7)))
    built = cli("data", "build", root / "built", "--interactions", tables / "inter.csv", "--items", tables / "items.csv",
                "--numbers", "price=price")
    assert built.exit_code == 0, built.output
    trained = cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--out", root / "res")
    assert trained.exit_code == 0, trained.output
    return {"ds": root / "ds", "built": root / "built", "tables": tables, "run": next((root / "res" / "runs").iterdir())}


@pytest.fixture
def copy(made, tmp_path):
    """A fresh copy of one of the made folders."""
    return lambda name: Path(shutil.copytree(made[name], tmp_path / name))


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(change(value)))


# --- our own files, damaged or hand-edited ----------------------------------------------


@pytest.mark.parametrize("field, value", [("num_users", "abc"), ("num_users", 60.5), ("modalities", 5),
                                          ("num_items", -1), ("num_words", {"textual": "many"})])
def test_damaged_meta_json_names_the_file_and_field(copy, field, value):
    ds = copy("ds")
    edit_json(ds / "meta.json", lambda m: m | {field: value})
    one_line(cli("data", "info", ds), "meta.json", field)


@pytest.mark.parametrize("change, fragment", [
    (lambda c: {k: v for k, v in c.items() if k != "built_by"}, "built_by"),
    (lambda c: c | {"sources": [{"path": 5}]}, "sources"),
    (lambda c: c | {"split": []}, "split"),
    (lambda c: c | {"modalities": [c["modalities"][0] | {"columns": [1]}]}, "columns"),
])
def test_damaged_card_json_names_the_file_and_field(copy, change, fragment):
    built = copy("built")
    edit_json(built / "card.json", change)
    one_line(cli("data", "info", built), "card.json", fragment)


def test_the_card_of_a_prepared_variant_is_read_and_its_variant_checked(copy):
    """prepare_variant adds a "variant" entry to the base's card (ml100k-cold0.1): data info
    refused every such folder with "unknown field 'variant'"."""
    from ego_dgl.data import load_dataset
    from ego_dgl.data.build import variant_card
    from ego_dgl.data.variants import Variant

    built = copy("built")
    edit_json(built / "card.json", lambda c: c | variant_card(Variant(train_fraction=0.5), load_dataset(built, progress=False)))
    result = cli("data", "info", built)
    assert result.exit_code == 0, result.output
    assert "variant (seed 0)" in " ".join(result.output.split())
    edit_json(built / "card.json", lambda c: c | {"variant": c["variant"] | {"seed": "x"}})
    one_line(cli("data", "info", built), "card.json", "'variant'", "'seed'")


@pytest.mark.parametrize("text, fragment", [(b"\xff\xfe1\n", "not UTF-8"), ("1\n\u00b2\n".encode(), "one dense item id"),
                                            (b"99999999999999999999999\n", "one dense item id")])
def test_a_damaged_cold_items_list_is_one_line(copy, text, fragment):
    """cold_items.txt that was not UTF-8, held a digit isdigit() takes but int() does not
    ('\u00b2') or an id beyond int64 ended data info with a traceback."""
    ds = copy("ds")
    (ds / "cold_items.txt").write_bytes(text)
    one_line(cli("data", "info", ds), "cold_items.txt", fragment)


def test_duplicates_of_a_refused_dataset_give_no_warning_before_the_error(copy):
    """The duplicate rows leave the valid split empty: the one error line, not a warning
    about the dropped rows first."""
    ds = copy("ds")
    (ds / "ds.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n" + "0\t0\t1\t0\t0\n" * 50)
    one_line(cli("data", "info", ds), "the valid split is empty")


def test_markup_in_a_card_prints_literally(copy):
    built = copy("built")
    edit_json(built / "card.json", lambda c: c | {"built_by": "[/red] me :x:"})
    result = cli("data", "info", built)
    assert result.exit_code == 0, result.output
    assert "[/red] me :x:" in result.output


def test_control_characters_from_files_and_paths_print_escaped(copy, tmp_path):
    """rich passes ESC on: a dataset name in meta.json or a path holding a terminal
    sequence reached the terminal raw (clear the screen, retitle the window)."""
    ds = copy("ds")
    edit_json(ds / "meta.json", lambda m: m | {"name": "evil\x1b[2J"})
    result = cli("data", "info", ds)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "evil\\x1b[2J" in result.output
    line = one_line(cli("eval", tmp_path / "run\x1b]0;pwned\x07"), "run\\x1b]0;pwned\\x07")
    assert "\x1b" not in line


@pytest.mark.parametrize("change, shown", [
    (lambda c: c | {"split": c["split"] | {"kind": "[/]"}}, "split [/] "),
    (lambda c: c | {"split": c["split"] | {"sizes": {"[/x]": 3}}}, "[/x] 3"),
])
def test_markup_in_a_cards_split_prints_literally(copy, change, shown):
    """The caption of the split was handed to rich unescaped: a MarkupError traceback."""
    built = copy("built")
    edit_json(built / "card.json", change)
    result = cli("data", "info", built)
    assert result.exit_code == 0, (result.output, result.exception)
    assert shown in " ".join(result.output.split())


@pytest.mark.parametrize("change, fragment", [
    (lambda c: [c], "object"),
    (lambda c: {k: v for k, v in c.items() if k != "train"}, "'train'"),
    (lambda c: c | {"model": c["model"] | {"evil": 1}}, "evil"),
    (lambda c: c | {"model_name": "evil"}, "model_name"),
    (lambda c: c | {"train": c["train"] | {"lr": "fast"}}, "lr"),
    (lambda c: c | {"train": c["train"] | {"ks": "10"}}, "ks"),
    (lambda c: c | {"model": c["model"] | {"dim": -3}}, "dim"),
    (lambda c: c | {"model": c["model"] | {"dim": 10**13}}, "--dim 10000000000000"),
    (lambda c: c | {"model": c["model"] | {"dim": 10**30}}, "field 'dim' must be at most"),
    (lambda c: c | {"train": c["train"] | {"ks": [10, 10**30]}}, "up to 2**63-1"),
    (lambda c: c | {"train": c["train"] | {"eval_chunk": 10**30}}, "--eval-chunk"),
])
def test_damaged_run_config_names_the_file_and_field(copy, change, fragment):
    run = copy("run")
    edit_json(run / "config.json", change)
    one_line(cli("eval", run), "config.json", fragment)


@pytest.mark.parametrize("change, fragment", [
    (lambda p: {k: v for k, v in p.items() if k != "rng"}, "rng"),
    (lambda p: {k: v for k, v in p.items() if k != "train_state"}, "train_state"),
    (lambda p: p | {"extra": 1}, "extra"),
    (lambda p: p | {"model": 5}, "model"),
    (lambda p: p | {"train_state": p["train_state"] | {"epoch": "one"}}, "epoch"),
    (lambda p: p | {"model": {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in p["model"].items()}}, "NaN"),
])
def test_damaged_checkpoint_names_the_file_and_field(copy, change, fragment):
    run = copy("run")
    for name in ("best.pt", "last.pt"):
        payload = torch.load(run / name, weights_only=True)
        torch.save(change(payload), run / name)
    one_line(cli("eval", run), "best.pt", fragment)
    one_line(cli("train", "--resume", run, "--epochs", 2), "last.pt", fragment)


def test_zip_bomb_checkpoint_is_refused_before_unpacking(copy):
    run = copy("run")
    with zipfile.ZipFile(run / "best.pt", "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("best/data/bomb", bytes(64 * 2**20))  # 64 MiB of zeros in a few kilobytes
    assert (run / "best.pt").stat().st_size < 2**20
    one_line(cli("eval", run), "best.pt", "claims")


# --- sizes are believed before they are checked ----------------------------------------


def npy_claiming(path: Path, shape: tuple[int, ...], descr: str = "<f4", data: bytes = bytes(64)) -> None:
    """A .npy whose header claims `shape` but holds only `data`."""
    with open(path, "wb") as fh:
        npformat.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        fh.write(data)


def test_npy_header_claiming_exabytes_is_refused(copy):
    ds = copy("ds")
    npy_claiming(ds / "visual_feat.npy", (10**12, 10**6))
    one_line(cli("data", "info", ds), "visual_feat.npy", "header claims")


def test_embedding_npy_header_claiming_exabytes_is_refused(made, tmp_path):
    tables = made["tables"]
    npy_claiming(tmp_path / "vec.npy", (10**12, 10**6))
    (tmp_path / "vec.ids.txt").write_text("i0\n")
    one_line(cli("data", "build", tmp_path / "out", "--interactions", tables / "inter.csv",
                 "--embedding", f"image={tmp_path / 'vec.npy'}"), "vec.npy", "header claims")
    assert not (tmp_path / "out").exists()


class HugeArray:
    """Unpickles through the allowed numpy classes to an array of 10^15 bytes: numpy's
    _reconstruct allocates the shape it is given (909 TiB)."""

    def __reduce__(self):
        return np.empty(0).__reduce__()[0], (np.ndarray, (10**15,), b"b")


@pytest.mark.parametrize("header_shape", [(2,), (10**15,)])
def test_pickled_array_claiming_a_petabyte_is_refused(grcn_folder, header_shape):
    npy_claiming(grcn_folder / "val_full.npy", header_shape, "|O", pickle.dumps(HugeArray(), protocol=3))
    one_line(cli("data", "info", grcn_folder), "val_full.npy")


def test_float_ids_in_a_grcn_row_are_refused_not_truncated(grcn_folder):
    rows = np.empty(2, dtype=object)
    rows[0], rows[1] = [0, 6.0], [1, 81.7]
    np.save(grcn_folder / "val_full.npy", rows, allow_pickle=True)
    one_line(cli("data", "info", grcn_folder), "val_full.npy", "81.7")


def test_complex_embedding_is_refused(made, tmp_path):
    np.save(tmp_path / "vec.npy", np.ones((3, 4), dtype=np.complex64))
    (tmp_path / "vec.ids.txt").write_text("i0\ni1\ni2\n")
    one_line(cli("data", "build", tmp_path / "out", "--interactions", made["tables"] / "inter.csv",
                 "--embedding", f"image={tmp_path / 'vec.npy'}"), "vec.npy", "real")


# --- text that is not UTF-8 -------------------------------------------------------------


LATIN1 = "Caf\xe9".encode("latin-1")


def test_latin1_raw_ids_name_file_line_and_byte(copy):
    ds = copy("built")
    ids = ds / "item_ids.tsv"
    ids.write_bytes(ids.read_bytes().replace(b"\ti1\n", b"\t" + LATIN1 + b"\n"))
    one_line(cli("data", "info", ds), "item_ids.tsv", "line", "byte", "0xe9")


def test_latin1_embedding_ids_name_file_line_and_byte(made, tmp_path):
    np.save(tmp_path / "vec.npy", np.ones((2, 4), dtype=np.float32))
    (tmp_path / "vec.ids.txt").write_bytes(b"i0\n" + LATIN1 + b"\n")
    one_line(cli("data", "build", tmp_path / "out", "--interactions", made["tables"] / "inter.csv",
                 "--embedding", f"image={tmp_path / 'vec.npy'}"), "vec.ids.txt", "line 2", "--encoding")


def test_latin1_config_file_names_file_line_and_byte(tmp_path):
    (tmp_path / "c.toml").write_bytes(b"epochs = 1\n# " + LATIN1 + b"\n")
    one_line(cli("train", "--config", tmp_path / "c.toml", "--dataset", "synthetic-tiny"), "c.toml", "line 2")


def test_latin1_item_table_names_the_line_and_builds_with_encoding(made, tmp_path):
    items = tmp_path / "items.csv"
    items.write_bytes(b"item_id,title\n" + b"".join(b"i%d,%s %d\n" % (i, LATIN1, i) for i in range(7)))
    args = ["data", "build", tmp_path / "out", "--interactions", made["tables"] / "inter.csv", "--items", items,
            "--categories", "t=title", "--title", "title"]
    one_line(cli(*args), "items.csv", "line 2", "--encoding")
    assert cli(*args, "--encoding", "latin-1").exit_code == 0
    assert "Café 3" in json.loads((tmp_path / "out" / "meta.json").read_text(encoding="utf-8"))["item_titles"]


def test_unknown_encoding_is_one_line(made, tmp_path):
    one_line(cli("data", "build", tmp_path / "out", "--interactions", made["tables"] / "inter.csv", "--items",
                 made["tables"] / "items.csv", "--numbers", "p=price", "--encoding", "klingon"), "klingon")


# --- config files that explode ----------------------------------------------------------


@pytest.mark.parametrize("name, text, fragment", [
    ("laughs.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join([f'*{chr(97 + k)}'] * 9)}]\n" for k in range(8)), "aliases"),
    ("deep.yaml", "epochs: " + "[" * 100_000 + "]" * 100_000 + "\n", "deep"),
    ("deep.toml", "epochs = " + "[" * 100_000 + "]" * 100_000 + "\n", "deep"),
    ("block.yaml", "epochs:\n" + "".join(" " * k + "-\n" for k in range(3000)), ""),
    ("big.toml", "# " + "x" * (2**21) + "\n", "bytes"),
])
def test_exploding_config_files_are_one_line(tmp_path, name, text, fragment):
    (tmp_path / name).write_text(text)
    one_line(cli("train", "--config", tmp_path / name, "--dataset", "synthetic-tiny", "--out", tmp_path / "res"),
             name, fragment)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("text, fragment", [
    ("lr = {low = 0.001, high = inf}\n", "lr.low and .high must be float numbers, finite and within ±(2**63-1), got 0.001 and inf"),
    ("lr = {low = nan, high = 0.01}\n", "got nan and 0.01"),
    ("lr = {choices = [0.001, nan]}\n", "lr.choices must be a non-empty list of float values (finite)"),
    ("lr = {low = 0.001, high = 0.01, log = \"false\"}\n", "lr.log must be true or false, got 'false'"),
    ("dim = {choices = [true, 8]}\n", "dim.choices must be a non-empty list of int values"),
    (f"batch-size = {{low = 1, high = {10**21}}}\n", "got 1 and 1000000000000000000000"),
])
def test_a_tune_space_with_values_no_trial_can_take_is_one_line(tmp_path, text, fragment):
    """`high = inf` reached numpy's sampler (an OverflowError traceback after study.db
    was made); NaN choices failed every trial; `log = "false"` searched on a log scale."""
    (tmp_path / "space.toml").write_text(text)
    one_line(cli("tune", "--model", "lightgcn", "--dataset", "synthetic-tiny", "--epochs", 1, "--trials", 1, "--device", "cpu",
                 "--space", tmp_path / "space.toml", "--out", tmp_path / "res"), "space.toml", fragment)
    assert not (tmp_path / "res").exists()


def test_a_yaml_number_read_as_text_says_how_to_write_it(tmp_path):
    """YAML 1.1 reads lr: 1e-3 as the text '1e-3': the line said lr must be a float, not why."""
    (tmp_path / "c.yaml").write_text("lr: 1e-3\n")
    one_line(cli("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "res"), "lr", "write it as 0.001")
    (tmp_path / "space.yaml").write_text("lr:\n  low: 1e-3\n  high: 1e-2\n")
    one_line(cli("tune", "--model", "lightgcn", "--dataset", "synthetic-tiny", "--space", tmp_path / "space.yaml", "--out", tmp_path / "res"),
             "lr.low and .high", "write it as 0.001")
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("kind", ["zero", "fifo"])
def test_a_config_file_that_is_a_device_or_a_pipe_is_one_line(tmp_path, kind):
    """A config (or --space, or any JSON record) linked to /dev/zero passed the size check
    (a device's size is 0) and was read until memory ran out; a FIFO blocked for ever."""
    path = tmp_path / "c.toml"
    path.symlink_to("/dev/zero") if kind == "zero" else os.mkfifo(path)
    one_line(cli("train", "--config", path, "--dataset", "synthetic-tiny", "--out", tmp_path / "res"), "c.toml", "not a regular file")
    assert not (tmp_path / "res").exists()


# --- a user's file deleted, a write outside the named folder ------------------------------


def test_overwrite_refuses_an_old_folder_whose_meta_lists_no_files(tmp_path):
    dst = tmp_path / "dst"
    assert cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec").exit_code == 0
    edit_json(dst / "meta.json", lambda m: {k: v for k, v in m.items() if k != "files"})
    (dst / "notes.txt").write_text("mine")
    one_line(cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec", "--overwrite"), "notes.txt")
    assert (dst / "notes.txt").read_text() == "mine"
    (dst / "notes.txt").unlink()  # what is left bears only ego-dgl's names: replaced
    assert cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec", "--overwrite").exit_code == 0
    assert "files" in json.loads((dst / "meta.json").read_text())


def test_partition_overwrite_refuses_a_dataset_folder(tmp_path):
    dst = tmp_path / "dst"
    assert cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec").exit_code == 0
    before = files_under(dst)
    one_line(cli("data", "partition", "synthetic-tiny", dst, "--parts", 1, "--method", "random", "--overwrite"),
             "dataset folder")
    assert files_under(dst) == before


def test_convert_overwrite_refuses_a_partition_folder(tmp_path):
    parts = tmp_path / "parts"
    assert cli("data", "partition", "synthetic-tiny", parts, "--parts", 1, "--method", "random").exit_code == 0
    one_line(cli("data", "convert", "synthetic-tiny", parts, "--to", "mmrec", "--overwrite"), "partitions folder")


def test_failed_build_keeps_the_users_empty_out(made, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    one_line(cli("data", "build", out, "--interactions", made["tables"] / "inter.csv", "--items", made["tables"] / "items.csv",
                 "--numbers", "p=nosuchcolumn"), "nosuchcolumn")
    assert out.is_dir() and not any(out.iterdir())
    result = cli("data", "build", out, "--interactions", made["tables"] / "inter.csv", "--items", made["tables"] / "items.csv",
                 "--numbers", "p=price")
    assert result.exit_code == 0 and (out / "card.json").is_file()


@pytest.mark.parametrize("pid", ["99999999999999999999", "\u00b2"])
def test_a_folder_named_like_a_partial_write_with_no_pid_is_left_alone(tmp_path, pid):
    """A folder beside OUT named .OUT.partial-<not a pid>-x ended every write of OUT with
    int()'s ValueError or os.kill's OverflowError."""
    stray = tmp_path / f".dst.partial-{pid}-x"
    stray.mkdir()
    result = cli("data", "convert", "synthetic-tiny", tmp_path / "dst", "--to", "mmrec")
    assert result.exit_code == 0, (result.output, result.exception)
    assert stray.is_dir()


def test_a_killed_converts_partial_folder_is_removed_by_the_next_write(tmp_path):
    dst = tmp_path / "dst"
    dead = tmp_path / ".dst.partial-999999999-abc"  # no process has this id
    dead.mkdir()
    (dead / "half.npy").write_bytes(b"x")
    alive = tmp_path / f".dst.partial-{os.getpid()}-abc"  # a write still running
    alive.mkdir()
    mine = tmp_path / ".dst.partial-notes"  # not of the pattern: a user's
    mine.mkdir()
    assert cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec").exit_code == 0
    assert not dead.exists() and alive.exists() and mine.exists()


def test_disk_full_during_convert_names_the_folder(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError("102400 requested and 0 written")

    monkeypatch.setattr(np, "save", full)
    dst = tmp_path / "dst"
    one_line(cli("data", "convert", "synthetic-tiny", dst, "--to", "mmrec"), str(dst), "disk full")
    assert files_under(tmp_path) == set()


# --- more of the tracebacks -----------------------------------------------------


def test_recbole_header_naming_a_column_twice(made, tmp_path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\tuser_id:token\nu1\ti1\tu1\n")
    one_line(cli("data", "build", tmp_path / "out", "--interactions", tmp_path / "x.inter", "--items",
                 made["tables"] / "items.csv", "--numbers", "p=price"), "x.inter", "'user_id' twice")


def test_mmrec_inter_header_naming_a_column_twice(copy):
    ds = copy("ds")
    inter = ds / "ds.inter"
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join([lines[0] + "\tuserID"] + [line + "\t0" for line in lines[1:]]) + "\n")
    one_line(cli("data", "info", ds), "twice")


@pytest.mark.parametrize("config, fragment", [(lambda c, m: [c], "object"),
                                              (lambda c, m: c, "fingerprint")])
def test_damaged_partition_config_is_one_line(tmp_path, config, fragment):
    parts = tmp_path / "parts"
    assert cli("data", "partition", "synthetic-tiny", parts, "--parts", 1, "--method", "random").exit_code == 0
    conf = next(p for p in parts.glob("*.json") if p.name != "meta.json")
    if fragment == "object":
        edit_json(conf, lambda c: [c])
    else:
        edit_json(parts / "meta.json", lambda m: {k: v for k, v in m.items() if k != "fingerprint"})
    one_line(cli("train", "--dist", conf, "--epochs", 1), fragment)


def test_more_parts_than_nodes_is_one_line(tmp_path):
    one_line(cli("data", "partition", "synthetic-tiny", tmp_path / "p", "--parts", 1000, "--method", "random"), "--parts")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("record", ["{not json", "[1, 2]", '{"results": [{"case": {"dataset": 1}, "epoch_s": 2}]}',
                                    '{"results": [{"case": {"dataset": "a", "backend": "b", "mode": "c"}, "epoch_s": -1}]}'])
def test_bench_refuses_a_damaged_previous_record_before_running(tmp_path, monkeypatch, record):
    from ego_dgl.study import bench

    monkeypatch.setattr(bench, "run_case", lambda *a: pytest.fail("a case ran before the record was checked"))
    (tmp_path / "synthetic-tiny.json").write_text(record)
    one_line(cli("bench", "--suite", "synthetic-tiny", "--out", tmp_path), "synthetic-tiny.json")
    assert (tmp_path / "synthetic-tiny.json").read_text() == record


def test_no_stray_bytes_in_a_good_npy(copy):
    """The header check keeps the honest files: a converted folder still loads."""
    ds = copy("ds")
    result = cli("data", "info", ds, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["items"] == 80


def test_the_run_config_check_knows_every_training_option():
    """A new TrainConfig field must be known to the config.json check, or every run that
    records it would be refused on load."""
    from dataclasses import fields

    from ego_dgl.train.defaults import TrainConfig
    from ego_dgl.train.validate import TRAIN_FIELDS

    assert set(TRAIN_FIELDS) == {f.name for f in fields(TrainConfig)}


# --- study folders read back: compare.json, cells.csv, a cell's metrics.json, tune's study ---


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """A one-cell comparison and a one-trial tune study, made once per module."""
    root = tmp_path_factory.mktemp("studies")
    shared = ("--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--out", root)
    made = cli("compare", *shared, "--models", "pop", "--seeds", 1)
    assert made.exit_code == 0, made.output
    tuned = cli("tune", *shared, "--model", "lightgcn", "--trials", 1)
    assert tuned.exit_code == 0, tuned.output
    return {"compare": root / "compare" / "synthetic-tiny", "tune": root / "tune" / "lightgcn-synthetic-tiny"}


@pytest.fixture
def study(studies, tmp_path):
    """A fresh copy of one of the made study folders, at OUT/<kind>/<name> under tmp_path."""
    def copy(kind: str) -> Path:
        return Path(shutil.copytree(studies[kind], tmp_path / kind / studies[kind].name))
    return copy


def edit_text(path: Path, change) -> None:
    path.write_text(change(path.read_text()))


COMPARE = ("compare", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--models", "pop", "--seeds", 1)


@pytest.mark.parametrize("damage, fragment", [
    (lambda c: edit_json(c / "compare.json", lambda v: [v]), "compare.json: must be a JSON object"),
    (lambda c: (c / "cells.csv").write_text("garbage\n1,2,3\n"), "column 'key' is missing"),
    (lambda c: edit_text(c / "cells.csv", lambda t: t.replace(",0.", ",abc", 1)), "must be a number"),
    (lambda c: edit_text(c / "cells.csv", lambda t: t.replace("\npop-s0,", "\npop-s0,extra,", 1)), "header's"),
    (lambda c: (c / "cells.csv").write_bytes((c / "cells.csv").read_bytes() + b"\xff\n"), "not UTF-8"),
])
def test_damaged_compare_records_are_one_line(study, damage, fragment):
    folder = study("compare")
    damage(folder)
    one_line(cli(*COMPARE, "--out", folder.parent.parent, "--finished-only"), fragment)
    one_line(cli(*COMPARE, "--out", folder.parent.parent), fragment)


@pytest.mark.parametrize("damage, fragment", [
    (lambda t: t.replace("\npop-s0,", "\n../../../elsewhere,", 1), "not a cell's folder name"),
    (lambda t: t.replace(",pop,pop,,0,1,1,", ",pop,pop,,0,one,1,", 1), "'best_epoch' must be a whole number"),
])
def test_damaged_cells_csv_is_one_line_for_each_reader(study, tmp_path, damage, fragment):
    """compare, eval --by and plot-sparsity read cells.csv through the one check."""
    folder = study("compare")
    edit_text(folder / "cells.csv", damage)
    one_line(cli(*COMPARE, "--out", folder.parent.parent, "--finished-only"), "cells.csv", fragment)
    one_line(cli("eval", folder, "--by", "item-degree", "--device", "cpu"), "cells.csv", fragment)
    one_line(cli("plot-sparsity", folder, "--out", tmp_path / "plot"), "cells.csv", fragment)
    assert not (tmp_path / "plot").exists()


def test_cells_csv_without_a_figure_its_reader_uses_is_one_line(study, tmp_path):
    folder = study("compare")
    edit_text(folder / "cells.csv", lambda t: t.replace("test/recall@10", "test/recall_10", 1))
    one_line(cli(*COMPARE, "--out", folder.parent.parent, "--finished-only"), "cells.csv", "'test/recall@10' is missing")
    one_line(cli("plot-sparsity", folder, "--out", tmp_path / "plot"), "cells.csv", "'test/recall@10' is missing")


@pytest.mark.parametrize("metrics, fragment", [([1], "must be a JSON object"), ({"best_epoch": 1}, "'epochs_run' is missing"),
                                               ({"best_epoch": 1, "epochs_run": 1, "valid": {"recall@10": "x"}, "test": {}},
                                                "'recall@10' must be a number")])
def test_damaged_metrics_of_a_finished_cell_are_one_line(study, metrics, fragment):
    folder = study("compare")
    (folder / "cells.csv").unlink()  # the rerun takes the cell's figures from its metrics.json
    (folder / "cells" / "pop-s0" / "metrics.json").write_text(json.dumps(metrics))
    one_line(cli(*COMPARE, "--out", folder.parent.parent), "metrics.json", fragment)


TUNE = ("tune", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--model", "lightgcn", "--trials", 2)


@pytest.mark.parametrize("damage, fragment", [
    (lambda t: (t / "study.db").write_bytes(b"garbage" * 100), "study.db: not a study database"),
    (lambda t: ((t / "study.db").unlink(), (t / "study.db").mkdir()), "study.db: not a study database"),
    (lambda t: edit_json(t / "study.json", lambda v: [v]), "study.json: must be a JSON object"),
    (lambda t: edit_json(t / "study.json", lambda v: v | {"given": 5}), "field 'given'"),
])
def test_damaged_tune_study_is_one_line_and_kept(study, damage, fragment):
    folder = study("tune")
    damage(folder)
    before = {p.name for p in folder.iterdir()}
    one_line(cli(*TUNE, "--out", folder.parent.parent), fragment)
    assert {p.name for p in folder.iterdir()} == before


@pytest.mark.parametrize("damage, fragment", [
    (lambda r: {}, "trials.json: must be a JSON list of trials"),
    (lambda r: [r[0] | {"number": 3}], "trial 0: numbered 3"),
    (lambda r: [r[0] | {"state": "RUNNING"}], "state must be one of COMPLETE, PRUNED, FAIL"),
    (lambda r: [r[0] | {"value": None}], "values should be set for a complete trial"),
    (lambda r: [r[0] | {"params": {**r[0]["params"], "lr": 5.0}}], "isn't contained in the distribution"),
    (lambda r: [r[0] | {"distributions": {"lr": {"name": "os.system"}}}], "not a trial Optuna can take"),
    (lambda r: [r[0] | {"intermediate": {"one": 0.1}}], "not a trial Optuna can take"),
    (lambda r: [{k: v for k, v in r[0].items() if k != "params"}], "field 'params' is missing"),
    (lambda r: [r[0] | {"user_attrs": {**r[0]["user_attrs"], "options": 5}}], "field 'options' must be an object"),
    (lambda r: [r[0] | {"user_attrs": {"run": "x"}}], "user_attrs.options must be an object"),
    (lambda r: [r[0] | {"user_attrs": {**r[0]["user_attrs"], "options": {"lr": [1]}}}], "user_attrs.options must be an object"),
    (lambda r: [r[0] | {"user_attrs": {**r[0]["user_attrs"], "evil": 1}}], "unknown field 'evil'"),
    (lambda r: [r[0] | {"user_attrs": {**r[0]["user_attrs"], "options": r[0]["user_attrs"]["options"] | {"dataset": "/x"}}}],
     "'dataset', which the trial did not search"),
])
def test_damaged_trials_json_of_a_study_without_its_database_is_one_line(study, damage, fragment):
    """A study carried without study.db is rebuilt from trials.json, checked before a new
    database is made."""
    folder = study("tune")
    (folder / "study.db").unlink()
    edit_json(folder / "trials.json", damage)
    before = {p.name for p in folder.iterdir()}
    one_line(cli(*TUNE, "--out", folder.parent.parent), "trials.json", fragment)
    assert {p.name for p in folder.iterdir()} == before


def test_a_stored_trial_cannot_write_options_it_did_not_search_into_best_toml(study):
    """A trial of study.db (or trials.json) whose options held other keys wrote them into
    best.toml: dataset overridden, and a key with a newline injected out = ELSEWHERE, which
    train --config best.toml then followed."""
    import optuna

    folder = study("tune")
    stored = optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'study.db'}")
    first = stored.trials[0]
    injected = {**first.user_attrs["options"], "dataset": "/elsewhere", 'out = "/elsewhere"\n#': 1}
    stored.add_trial(optuna.trial.create_trial(params=first.params, distributions=first.distributions, value=1.0,
                                               user_attrs={"options": injected}))
    result = cli(*TUNE, "--out", folder.parent.parent)  # two trials finished: records written, nothing trained
    assert result.exit_code == 0, (result.output, result.exception)
    best = (folder / "best.toml").read_text()
    assert "trial 1 of" in best and "elsewhere" not in best and 'dataset = "synthetic-tiny"' in best


def test_a_carried_trial_naming_a_folder_outside_its_study_trains_in_its_own(study, tmp_path):
    """trials.json's interrupted trial names someone else's run folder to resume: it is
    left alone, and the trial is tried again in a trial folder of the study."""
    folder = study("tune")
    (folder / "study.db").unlink()
    elsewhere = tmp_path / "someone" / "run"
    elsewhere.mkdir(parents=True)
    (elsewhere / "last.pt").write_bytes(b"not ours")
    interrupted = lambda r: r[0] | {"number": 1, "state": "FAIL", "value": None, "intermediate": {}, "user_attrs": {"run": str(elsewhere)}}  # noqa: E731
    edit_json(folder / "trials.json", lambda r: [r[0], interrupted(r)])
    result = cli(*TUNE, "--out", folder.parent.parent)
    assert result.exit_code == 0, result.output
    assert [p.name for p in elsewhere.iterdir()] == ["last.pt"] and (elsewhere / "last.pt").read_bytes() == b"not ours"
    retried = json.loads((folder / "trials.json").read_text())[2]
    assert retried["state"] == "COMPLETE" and Path(retried["user_attrs"]["run"]).parent == folder / "trials"


@pytest.mark.parametrize("damage, fragment", [
    (lambda t: edit_json(t / "study.json", lambda v: v | {"space": [1]}), "field 'space'"),
    (lambda t: edit_text(t / "best.toml", lambda s: s.replace("layers =", "# layers =")), "no 'layers'"),
    (lambda t: edit_text(t / "best.toml", lambda s: s + "evil = 1\n"), "evil"),
])
def test_damaged_tune_study_given_to_params_from_is_one_line(study, tmp_path, damage, fragment):
    folder = study("tune")
    damage(folder)
    one_line(cli(*COMPARE, "--out", tmp_path / "out", "--params-from", folder), fragment)


def test_tex_in_a_dataset_or_folder_name_is_drawn_as_typed(made, tmp_path):
    """matplotlib read $...$ in a plot's title as TeX: a dataset folder or run folder named
    d$\\bad$ ended compare, sweep-eps and eval --by with a ValueError traceback, after
    their CSV files were written."""
    ds = Path(shutil.copytree(made["ds"], tmp_path / "d$\\bad$"))
    shared = ("--dataset", ds, "--epochs", 1, "--dim", 8, "--device", "cpu", "--out", tmp_path / "res")
    for args in (("compare", "--models", "pop", "--seeds", 1), ("sweep-eps", "--values", 0.3)):
        result = cli(*args, *shared)
        assert result.exit_code == 0, (args, result.output, result.exception)
    assert {p.name for p in (tmp_path / "res").glob("*/*/*.png")} == {"compare.png", "sweep-eps.png"}
    run = Path(shutil.copytree(made["run"], tmp_path / "r$\\bad$"))
    result = cli("eval", run, "--by", "item-degree", "--device", "cpu")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (run / "by-item-degree-test.png").is_file()


def test_text_drawn_under_pyplot_is_never_tex_and_the_users_matplotlib_is_left_as_it_was(tmp_path):
    """Every ego-dgl plot draws inside runs.pyplot(): its text keeps $...$ as typed, the
    rcParams of a notebook calling us are restored, save_png writes a PNG and closes."""
    import matplotlib

    from ego_dgl.runs import pyplot, save_png

    with pyplot() as plt:
        fig, ax = plt.subplots()
        ax.set_yticks([0, 1], ["$\\bad$", "$x^2$"])
        texts = [fig.suptitle("d$\\bad$"), ax.set_title("$\\frac{1$"), *ax.get_yticklabels()]
        ax.plot([0, 1], label="$\\bad$")
        texts += ax.legend().get_texts()
        save_png(fig, tmp_path / "p.png")
    assert not any(t.get_parse_math() for t in texts)
    assert matplotlib.rcParams["text.parse_math"] and matplotlib.get_backend().lower() == "agg"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.get_fignums()


def test_tex_in_a_model_name_of_cells_csv_is_drawn_as_typed(study, tmp_path):
    folder = study("compare")
    edit_text(folder / "cells.csv", lambda t: t.replace("\npop-s0,pop,", "\npop-s0,$\\bad$,", 1))
    for args in (("eval", folder, "--by", "item-degree", "--device", "cpu"), ("plot-sparsity", folder, "--out", tmp_path / "plot")):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output, result.exception)


@pytest.mark.parametrize("command", [("eval",), ("recommend", "--user", 0), ("export",), ("plot-embeddings",)])
def test_a_file_given_as_the_run_folder_is_called_a_file(tmp_path, command):
    """A file given for RUN_DIR was reported as a run folder that "does not exist"."""
    (tmp_path / "notes.txt").write_text("mine")
    one_line(cli(command[0], tmp_path / "notes.txt", *command[1:]), "notes.txt", "is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b"not sqlite" * 100), lambda p: p.mkdir()])
def test_a_damaged_mlflow_store_of_the_results_folder_is_one_line(tmp_path, damage):
    """results/mlflow.db that is not a database (or a folder, which MLflow retried for
    minutes) ended train --log mlflow with SQLAlchemy's traceback."""
    pytest.importorskip("mlflow")
    damage(tmp_path / "mlflow.db")
    one_line(cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu", "--log", "mlflow",
                 "--out", tmp_path), "--log mlflow", "mlflow.db")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_eval_of_the_newest_run_names_a_damaged_config(copy, tmp_path):
    run = Path(shutil.copytree(copy("run"), tmp_path / "res" / "runs" / "r"))
    edit_json(run / "config.json", lambda c: [c])
    one_line(cli("eval", "--out", tmp_path / "res", "--device", "cpu"), "config.json", "must be a JSON object")
