"""`egodgl data ...` through Click's test runner."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from conftest import TEST, TRAIN, VALID, write_inter

from ego_dgl.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_info_table_and_json(tiny):
    table = run("data", "info", "synthetic-tiny")
    assert table.exit_code == 0, table.output
    for text in ("users", "60", "items", "80", "interactions", "900", "density", "visual", "acoustic", "textual"):
        assert text in table.stdout
    as_json = run("data", "info", "synthetic-tiny", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == json.loads(json.dumps(tiny.summary()))


def test_convert_both_layouts(tmp_path, tiny):
    for layout in ("mmrec", "grcn"):
        dst = tmp_path / layout
        result = run("data", "convert", "synthetic-tiny", str(dst), "--to", layout)
        assert result.exit_code == 0, result.output
        info = json.loads(run("data", "info", str(dst), "--json").stdout)
        assert info["fingerprint"] == tiny.fingerprint()
    again = run("data", "convert", "synthetic-tiny", str(tmp_path / "grcn"), "--to", "grcn")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert run("data", "convert", "synthetic-tiny", str(tmp_path / "grcn"), "--to", "grcn", "--overwrite").exit_code == 0


def test_bad_input_is_one_red_line_and_exit_2(tmp_path):
    result = run("data", "info", "no-such-dataset")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown dataset 'no-such-dataset'")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_duplicate_warning_is_one_yellow_line(mmrec_folder):
    write_inter(mmrec_folder / "toy.inter", (np.vstack([TRAIN, TRAIN[:2]]), VALID, TEST))
    result = run("data", "info", str(mmrec_folder), "--json")
    assert result.exit_code == 0
    assert result.stderr == ("warning: toy: dropped 2 duplicate interactions (the same user and item more than once; kept the first, in "
                             "train, valid, test order)\n")
    assert json.loads(result.stdout)["interactions"] == len(TRAIN) + len(VALID) + len(TEST)


def test_prepare_loads_and_summarises_other_names():
    result = run("data", "prepare", "synthetic-tiny")
    assert result.exit_code == 0 and "900" in result.stdout
