"""Issue 20, property-based: Hypothesis generates damaged JSON, NPY, TOML, YAML, CSV and
Parquet inputs and extreme option values for every reader and option parser. Each either
succeeds with finite results or fails with the project's one-line error (exit 2 through
the CLI), touching no file outside the folder named and deleting none that existed.
Seeded (derandomize) and bounded (few examples each) so that together they take well
under a minute."""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Self

import click
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from untrusted_checks import cli, ok_or_one_line, snapshot

from ego_dgl.cli.ranges import COUNT, FINITE, POSITIVE, SEED
from ego_dgl.errors import EgoDGLError

FUZZ = settings(max_examples=10, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def json_text(value) -> str:
    return json.dumps(value, allow_nan=True)


@st.composite
def damaged_record(draw, record: dict) -> dict:
    """`record` with one field (top level or one level down) removed, replaced by any JSON
    value, or joined by an unknown one."""
    out = json.loads(json.dumps(record))
    target = out
    nested = [k for k, v in out.items() if isinstance(v, dict) and v]
    if nested and draw(st.booleans()):
        target = out[draw(st.sampled_from(sorted(nested)))]
    key = draw(st.sampled_from(sorted(target)))
    action = draw(st.sampled_from(["drop", "replace", "add"]))
    if action == "drop":
        del target[key]
    elif action == "replace":
        target[key] = draw(JSON)
    else:
        target[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
    return out


def damaged_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` truncated, with bytes overwritten, or with bytes inserted."""
    cut = st.integers(0, len(data)).map(lambda n: data[:n])
    flips = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=6).map(
        lambda changes: bytes(_apply(bytearray(data), changes)))
    inserted = st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=16)).map(
        lambda a: data[:a[0]] + a[1] + data[a[0]:])
    return cut | flips | inserted


def _apply(buf: bytearray, changes) -> bytearray:
    for at, value in changes:
        buf[at] = value
    return buf


def read_or_one_line(read, path: Path):
    """`read(path)`, or None when it raised the project's error, checked to be one line."""
    try:
        return read(path)
    except EgoDGLError as err:
        assert "\n" not in str(err)
        return None


def finite_summary(result) -> None:
    """A successful `data info --json` reports finite numbers only."""
    summary = json.loads(result.output)
    numbers = [v for v in summary.values() if isinstance(v, (int, float))]
    assert all(math.isfinite(v) for v in numbers), summary


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Once per module: synthetic-tiny as an MMRec folder, a built dataset with card.json
    and its source tables, and a one-epoch run."""
    root = tmp_path_factory.mktemp("fuzz")
    assert cli("data", "convert", "synthetic-tiny", root / "ds", "--to", "mmrec").exit_code == 0
    (root / "inter.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u * 3 + k) % 7}\n" for u in range(12) for k in range(5)))
    (root / "items.csv").write_text("item_id,price\n" + "".join(f"i{i},{i * 1.5}\n" for i in range(7)))
    assert cli("data", "build", root / "built", "--interactions", root / "inter.csv", "--items", root / "items.csv",
               "--numbers", "price=price").exit_code == 0
    assert cli("train", "--dataset", "synthetic-tiny", "--epochs", 1, "--dim", 8, "--device", "cpu",
               "--out", root / "res").exit_code == 0
    return {"root": root, "ds": root / "ds", "built": root / "built", "run": next((root / "res" / "runs").iterdir())}


class Sandbox:
    """A fresh folder per example holding copies of what the example damages; `freeze`
    (after the damage, before the command) records every file, and the end checks that
    nothing outside ROOT/out changed and no file that existed is gone."""

    def __init__(self, made: dict[str, Path], *names: str):
        self.root = Path(tempfile.mkdtemp(prefix="fuzz-"))
        self.paths = {n: Path(shutil.copytree(made[n], self.root / n)) for n in names}
        self.before: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> Self:
        return self

    def freeze(self) -> None:
        self.before = snapshot(self.root)

    def __exit__(self, *exc) -> None:
        after = snapshot(self.root)
        named = str(self.root / "out")
        assert self.before, "the example never called freeze()"
        assert set(self.before) <= set(after), "a file that existed was deleted"
        changed = [p for p in after if not p.startswith(named) and self.before.get(p) != after[p]]
        assert not changed, f"written outside the named folder: {changed}"
        shutil.rmtree(self.root)


# --- the dataset folder's files ---------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzzed_meta_json(made, data):
    with Sandbox(made, "ds") as box:
        meta = json.loads((box.paths["ds"] / "meta.json").read_text())
        text = data.draw(st.one_of(damaged_record(meta).map(json_text), JSON.map(json_text)))
        (box.paths["ds"] / "meta.json").write_text(text)
        box.freeze()
        result = cli("data", "info", box.paths["ds"], "--json")
        ok_or_one_line(result)
        if result.exit_code == 0:
            finite_summary(result)


@FUZZ
@given(data=st.data(), case=st.sampled_from([("built", "card.json", "data info"), ("run", "config.json", "eval")]))
def test_fuzzed_card_and_run_config(made, data, case):
    """card.json read by `data info`, a run's config.json by `eval`."""
    folder, name, command = case
    with Sandbox(made, folder) as box:
        path = box.paths[folder] / name
        path.write_text(json_text(data.draw(damaged_record(json.loads(path.read_text())))))
        box.freeze()
        ok_or_one_line(cli(*command.split(), box.paths[folder]))


@FUZZ
@given(data=st.data(), name=st.sampled_from(["visual_feat.npy", "textual_feat.npy"]))
def test_fuzzed_npy_features(made, data, name):
    with Sandbox(made, "ds") as box:
        path = box.paths["ds"] / name
        path.write_bytes(data.draw(damaged_bytes(path.read_bytes()[:400])))
        box.freeze()
        result = cli("data", "info", box.paths["ds"], "--json")
        ok_or_one_line(result)
        if result.exit_code == 0:
            finite_summary(result)


# --- tables: CSV and Parquet ---------------------------------------------------------------------


CELL = st.one_of(st.text(max_size=6), st.integers(-(2**65), 2**65).map(str), st.floats().map(str), st.just(""))


@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=12), header=st.lists(CELL, min_size=1, max_size=4),
       raw=st.binary(max_size=40))
def test_fuzzed_csv_interactions(made, rows, header, raw):
    with Sandbox(made) as box:
        table = box.root / "inter.csv"
        text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
        table.write_bytes(text.encode("utf-8", "replace") + raw)
        box.freeze()
        result = cli("data", "build", box.root / "out", "--interactions", table, "--user", header[0], "--item", header[-1],
                     "--items", made["root"] / "items.csv", "--item-key", "item_id", "--numbers", "p=price")
        ok_or_one_line(result)


@FUZZ
@given(frame=st.dictionaries(st.sampled_from(["user_id", "item_id", "price", "x"]),
                             st.lists(st.one_of(st.integers(-5, 5), st.floats(), st.text(max_size=3), st.none()),
                                      min_size=3, max_size=3), min_size=1, max_size=4))
def test_fuzzed_parquet_tables(made, frame):
    buffer = io.BytesIO()
    try:
        pd.DataFrame(frame).to_parquet(buffer)
    except Exception:  # noqa: BLE001 - pyarrow refuses mixed columns: no file to read then
        assume(False)
    with Sandbox(made) as box:
        path = box.root / "items.parquet"
        path.write_bytes(buffer.getvalue())
        box.freeze()
        result = cli("data", "build", box.root / "out", "--interactions", made["root"] / "inter.csv", "--items", path,
                     "--numbers", "p=price")
        ok_or_one_line(result)
        if result.exit_code == 0:
            summary = json.loads((box.root / "out" / "card.json").read_text())
            assert all(0 <= m["coverage"] <= 1 for m in summary["modalities"])


# --- config files: TOML and YAML ---------------------------------------------------------------


OPTION_KEYS = st.sampled_from(["epochs", "lr", "layers-mm", "seed", "dim", "eps", "mode", "nosuch", "model"])


@FUZZ
@given(options=st.dictionaries(OPTION_KEYS, JSON, max_size=4), kind=st.sampled_from(["yaml", "toml"]),
       tail=st.binary(max_size=12))
def test_fuzzed_config_files(made, options, kind, tail):
    from ego_dgl.train.config_file import load_config_file

    with Sandbox(made) as box:
        path = box.root / f"c.{kind}"
        text = yaml.safe_dump(options) if kind == "yaml" else "\n".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
        path.write_bytes(text.encode() + tail)
        box.freeze()
        loaded = read_or_one_line(load_config_file, path)
        assert loaded is None or all(isinstance(k, str) for k in loaded)


# --- run folders: checkpoints --------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_payload(made, data):
    from ego_dgl.train.checkpoint import load_checkpoint

    with Sandbox(made, "run") as box:
        path = box.paths["run"] / "best.pt"
        payload = torch.load(path, weights_only=True)
        key = data.draw(st.sampled_from(sorted(payload) + ["extra"]))
        value = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=4), st.just({}), st.just([1])))
        if data.draw(st.booleans()) and key in payload:
            del payload[key]
        else:
            payload[key] = value
        torch.save(payload, path)
        box.freeze()
        loaded = read_or_one_line(load_checkpoint, path)
        assert loaded is None or set(loaded) == {"format", "model", "optimizer", "train_state", "rng"}


@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_bytes(made, data):
    from ego_dgl.train.checkpoint import load_checkpoint

    with Sandbox(made, "run") as box:
        path = box.paths["run"] / "last.pt"
        path.write_bytes(data.draw(damaged_bytes(path.read_bytes()[:2000])))
        box.freeze()
        with pytest.raises(EgoDGLError):
            load_checkpoint(path)


# --- partition configs and bench records --------------------------------------------------------


@FUZZ
@given(meta=JSON, conf=JSON)
def test_fuzzed_partition_config(made, meta, conf):
    from ego_dgl.distributed.partition import read_partitions

    with Sandbox(made) as box:
        (box.root / "meta.json").write_text(json_text(meta))
        (box.root / "p.json").write_text(json_text(conf))
        box.freeze()
        with pytest.raises(EgoDGLError):  # no generated pair names a real partition folder
            read_partitions(box.root / "p.json")


@FUZZ
@given(record=st.one_of(JSON, st.fixed_dictionaries({"results": st.lists(st.fixed_dictionaries(
    {"case": st.dictionaries(st.sampled_from(["dataset", "backend", "mode", "batches", "x"]), JSON), "epoch_s": JSON}),
    max_size=3)})))
def test_fuzzed_bench_record(made, record):
    from ego_dgl.study.bench import ratios, read_previous

    with Sandbox(made) as box:
        (box.root / "r.json").write_text(json_text(record))
        box.freeze()
        previous = read_or_one_line(read_previous, box.root / "r.json")
        assert previous is None or all(math.isfinite(v) for v in ratios([], previous).values())


# --- option parsers ---------------------------------------------------------------------------------


EXTREME = st.one_of(st.integers(-(2**80), 2**80).map(str), st.floats().map(str), st.text(max_size=8),
                    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", " 7 ", "", "1_000"]))


@settings(FUZZ, max_examples=60)
@given(kind=st.sampled_from([SEED, POSITIVE, COUNT, FINITE]), value=EXTREME)
def test_fuzzed_numeric_options(kind, value):
    option = click.Option(["--opt"], type=kind)
    try:
        number = kind.convert(value, option, None)
    except EgoDGLError as err:
        assert str(err).startswith("--opt") and "\n" not in str(err)
    else:
        assert math.isfinite(number)
        assert (kind.low is None or number >= kind.low) and (kind.high is None or number <= kind.high)


@settings(FUZZ, max_examples=40)
@given(pairs=st.lists(st.tuples(OPTION_KEYS, EXTREME).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=8), max_size=3))
def test_fuzzed_param_pairs(pairs):
    from ego_dgl.train.config_file import parse_params

    try:
        parse_params(pairs)
    except EgoDGLError as err:
        assert "\n" not in str(err)


@settings(FUZZ, max_examples=10)
@given(k=st.integers(-(2**70), 2**70), chunk=st.integers(-5, 2**40))
def test_fuzzed_eval_options(made, k, chunk):
    result = cli("eval", made["run"], "--k", k, "--eval-chunk", chunk, "--json")
    ok_or_one_line(result)
    if result.exit_code == 0:
        figures = json.loads(result.output)
        assert all(math.isfinite(v) for split in figures.values() if isinstance(split, dict) for v in split.values())
