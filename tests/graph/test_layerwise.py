"""Layer-wise inference in chunks (`--eval-chunk`): the tables equal the whole-graph ones
(float64) for every variant sampled training supports, at any chunk size; through
`train` and `eval` the figures are those without it; bad values are one line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLED_VARIANTS

from ego_dgl.cli import main
from ego_dgl.data import Dataset
from ego_dgl.data.synthetic import make_synthetic
from ego_dgl.errors import ConfigError
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER, structure_graph
from ego_dgl.graph.inference import chunks
from ego_dgl.model.baselines.lightgcn import LightGCN, LightGCNConfig
from ego_dgl.model.egogcn import EgoGCN, ModelConfig

TOL = dict(rtol=0, atol=1e-6)
DIM = 8
SIZES = (1, 7, 10_000)  # one node, a few, more than all


@pytest.fixture(scope="module")
def larger() -> Dataset:
    """Synthetic, larger than synthetic-tiny: 150 users, 220 items (some never clicked in training)."""
    return make_synthetic(150, 220, 2500, {"visual": 12, "acoustic": 6, "textual": 9}, seed=3, name="larger")


def model_of(ds: Dataset, backend: str, options: dict) -> EgoGCN:
    torch.manual_seed(1)
    return EgoGCN(ds, ModelConfig(dim=DIM, backend=backend, **options)).double()


def assert_same_tables(model: EgoGCN, sizes: tuple[int, ...]) -> None:
    """layerwise_tables at each chunk size equals final_tables: tables and stats."""
    full = model.final_tables()
    for size in sizes:
        chunked = model.layerwise_tables(size)
        torch.testing.assert_close(chunked.users, full.users, **TOL, msg=f"users, chunk {size}")
        torch.testing.assert_close(chunked.items, full.items, **TOL, msg=f"items, chunk {size}")
        assert chunked.stats.keys() == full.stats.keys()
        for key in full.stats:
            torch.testing.assert_close(chunked.stats[key], full.stats[key], **TOL, msg=key)


@pytest.mark.parametrize("backend", ["dgl", "torch", "fused"])
@pytest.mark.parametrize("options", SAMPLED_VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_layerwise_tables_equal_the_whole_graph(tiny, backend, options):
    model = model_of(tiny, backend, options)
    assert_same_tables(model, SIZES)
    if options.get("mode") == "hard":
        assert any(float(v) > 0 for v in model.final_tables().stats.values()), "the case must fuse some edge"


@pytest.mark.parametrize("backend", ["dgl", "torch", "fused"])
def test_a_chunk_of_items_never_clicked_in_training(tiny, backend):
    """Items 0-4 lose their training edges, so the first item chunk of 5 has no in-edges."""
    cold = dataclasses.replace(tiny, train=tiny.train[tiny.train[:, 1] >= 5])
    assert_same_tables(model_of(cold, backend, SAMPLED_VARIANTS[0]), (5,))


@pytest.mark.parametrize("options", [SAMPLED_VARIANTS[0], SAMPLED_VARIANTS[4]], ids=["hard", "hard-soft-pruning"])
def test_layerwise_tables_equal_the_whole_graph_on_a_larger_graph(larger, options):
    assert_same_tables(model_of(larger, "dgl", options), (13, 10_000))


def test_layerwise_tables_equal_the_dgl_udf_layers(tiny):
    """dgl-udf's whole-graph layers are DGL message passing; the chunks run its dgl primitives."""
    assert_same_tables(model_of(tiny, "dgl-udf", SAMPLED_VARIANTS[4]), (9,))


def test_chunks_cover_every_node_with_its_full_in_neighbourhood(larger):
    g = structure_graph(larger)
    for ntype, etype in ((USER, CLICKED_BY), (ITEM, CLICKS)):
        seen = []
        for chunk in chunks(g, ntype, 32, "torch", torch.device("cpu")):
            assert len(chunk.dst) <= 32
            degrees = torch.bincount(chunk.rel.dst, minlength=len(chunk.dst))
            assert torch.equal(degrees, g.in_degrees(chunk.dst, etype=etype))
            src, dst = g.find_edges(chunk.edges, etype=etype)  # the global ids of the block's edges
            assert torch.equal(chunk.src[chunk.rel.src], src) and torch.equal(chunk.dst[chunk.rel.dst], dst)
            seen.append(chunk.dst)
        assert torch.equal(torch.cat(seen), torch.arange(g.num_nodes(ntype)))
    assert int(g.in_degrees(etype=CLICKS).min()) == 0  # the case of a node without in-edges is covered


def test_models_without_a_layerwise_form_say_so(tiny):
    with pytest.raises(ConfigError, match="--fusion na"):
        EgoGCN(tiny, ModelConfig(dim=DIM, fusion="na")).layerwise_tables(5)
    with pytest.raises(ConfigError, match="EgoGCN and its variants only"):
        LightGCN(tiny, LightGCNConfig(dim=DIM)).layerwise_tables(5)


# ---------------------------------------------------------------- through the CLI


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def figures(run_dir) -> dict:
    record = json.loads((run_dir / "metrics.json").read_text())
    return {split: record[split] for split in ("valid", "test")}


def assert_same_figures(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for split in want:
        assert got[split].keys() == want[split].keys()
        for key, value in want[split].items():
            assert got[split][key] == pytest.approx(value, abs=1e-6), (split, key)


@pytest.mark.usefixtures("one_thread")
def test_train_and_eval_with_eval_chunk_give_the_same_figures(tmp_path):
    base = ("train", "--dataset", "synthetic-tiny", "--device", "cpu", "--epochs", 2)
    runs = {}
    for name, extra in (("whole", ()), ("chunked", ("--eval-chunk", 7))):
        result = run_cli(*base, "--out", tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        (runs[name],) = (tmp_path / name / "runs").iterdir()
    assert json.loads((runs["chunked"] / "config.json").read_text())["train"]["eval_chunk"] == 7
    assert json.loads((runs["whole"] / "config.json").read_text())["train"]["eval_chunk"] == 0
    assert_same_figures(figures(runs["chunked"]), figures(runs["whole"]))
    evaluated = run_cli("eval", runs["whole"], "--json", "--device", "cpu", "--eval-chunk", 5)
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(evaluated.stdout)
    assert_same_figures({split: payload[split] for split in ("valid", "test")}, figures(runs["whole"]))


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--eval-chunk", -3), "--eval-chunk must be a positive number"),
        (("--model", "lightgcn", "--eval-chunk", 5), "EgoGCN and its variants only"),
        (("--model", "na", "--eval-chunk", 5), "--fusion na"),
    ],
)
def test_bad_eval_chunk_is_one_line(tmp_path, args, message):
    result = run_cli("train", "--dataset", "synthetic-tiny", "--device", "cpu", "--epochs", 1, "--out", tmp_path, *args)
    one_error_line(result, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # refused before training


def test_eval_refuses_a_bad_eval_chunk(tmp_path):
    trained = run_cli("train", "--dataset", "synthetic-tiny", "--device", "cpu", "--epochs", 1, "--model", "lightgcn", "--out", tmp_path)
    assert trained.exit_code == 0, trained.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    one_error_line(run_cli("eval", run_dir, "--eval-chunk", -1), "--eval-chunk takes an integer >= 0")
    one_error_line(run_cli("eval", run_dir, "--eval-chunk", 4), "EgoGCN and its variants only")
