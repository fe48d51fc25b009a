"""Sampled training (`--sampler neighbor`): with every neighbour taken, the loss and
gradients over DGL blocks equal the full-graph ones (float64); with a fanout, the blocks
hold at most that many in-edges per destination and training still runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLED_VARIANTS

from ego_dgl.cli import main
from ego_dgl.data import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.graph.blocks import BlockSampler, parse_fanouts
from ego_dgl.graph.heterograph import CLICKED_BY, CLICKS, ITEM, USER, structure_graph
from ego_dgl.model.egogcn import EgoGCN, ModelConfig

P, Q, DIM = 14, 18, 8
TOL = dict(rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    rng = np.random.default_rng(5)
    pairs = np.unique(np.stack([rng.integers(0, P, 70), rng.integers(0, Q, 70)], 1), axis=0)
    feats = {"v": rng.normal(size=(Q, 7)), "a": rng.normal(size=(Q, 4)), "t": rng.normal(size=(Q, 5))}
    return Dataset("rand", P, Q, pairs, pairs[:3], pairs[:3], {m: f.astype(np.float32) for m, f in feats.items()})


def batch(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four BPR triples touching a few users (with a repeat) and items."""
    users = torch.tensor([0, 3, 3, 7])
    pos = torch.from_numpy(np.array([ds.train[ds.train[:, 0] == u][0, 1] for u in users.tolist()]))
    return users, pos, torch.tensor([1, 9, 4, 12])


def gradients(model: EgoGCN, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}



@pytest.mark.parametrize("backend", ["dgl", "torch", "fused"])
@pytest.mark.parametrize("options", SAMPLED_VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_full_neighbourhood_blocks_equal_the_full_graph(ds, backend, options):
    torch.manual_seed(3)
    model = EgoGCN(ds, ModelConfig(dim=DIM, backend=backend, **options)).double()
    users, pos, neg = batch(ds)
    full_loss, full_parts = model.loss(users, pos, neg, 1e-3)
    full_grads = gradients(model, full_loss)
    sampler = BlockSampler(structure_graph(ds), parse_fanouts("-1", model.sampling_layers()))
    sampled = sampler.sample(users, torch.cat([pos, neg]), model.device)
    assert len(sampled.blocks) == model.sampling_layers()
    loss, parts = model.sampled_loss(users, pos, neg, 1e-3, sampled)
    grads = gradients(model, loss)
    torch.testing.assert_close(loss, full_loss, **TOL)
    assert parts.keys() == full_parts.keys()  # the fused shares are over the blocks' edges
    for key in ("bpr", "reg"):
        torch.testing.assert_close(parts[key], full_parts[key], **TOL)
    assert grads.keys() == full_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], **TOL, msg=name)
    if options.get("mode") == "hard" and "threshold" not in options:
        assert any(float(v) > 0 for k, v in parts.items() if k.startswith("fused/")), "the case must fuse some edge"


def test_blocks_are_small_where_the_graph_is_not(ds):
    """A fanout bounds every block's in-degree; the seeds are the batch's distinct nodes."""
    users, pos, neg = batch(ds)
    sampled = BlockSampler(structure_graph(ds), [2, 2]).sample(users, torch.cat([pos, neg]), torch.device("cpu"))
    for block in sampled.blocks:
        for etype in (CLICKS, CLICKED_BY):
            assert int(block.in_degrees(etype=etype).max()) <= 2
    last = sampled.blocks[-1]
    seeds = last.dstnodes[USER].data["_ID"]
    assert torch.equal(seeds[sampled.users], users)
    assert torch.equal(last.dstnodes[ITEM].data["_ID"][sampled.items], torch.cat([pos, neg]))
    for inner, outer in zip(sampled.blocks[1:], sampled.blocks[:-1]):
        for ntype in (USER, ITEM):
            assert torch.equal(inner.srcnodes[ntype].data["_ID"], outer.dstnodes[ntype].data["_ID"])


def test_sampled_loss_trains_with_a_fanout(ds):
    torch.manual_seed(0)
    model = EgoGCN(ds, ModelConfig(dim=DIM))
    sampler = BlockSampler(structure_graph(ds), [2, 2])
    users, pos, neg = batch(ds)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss, _ = model.sampled_loss(users, pos, neg, 0.0, sampler.sample(users, torch.cat([pos, neg]), model.device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    ("text", "layers", "message"),
    [("10,x", 2, "comma-separated integers"), ("0", 2, "positive integer or -1"), ("5,5,5", 2, "gives 3 values")],
)
def test_bad_fanouts_say_what_to_give(text, layers, message):
    with pytest.raises(ConfigError, match=message):
        parse_fanouts(text, layers)


def test_node_alignment_refuses_sampling(ds):
    with pytest.raises(ConfigError, match="--fusion na"):
        EgoGCN(ds, ModelConfig(dim=DIM, fusion="na")).sampling_layers()


# ---------------------------------------------------------------- through the trainer and the CLI


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def history(run_dir) -> list[dict[str, str]]:
    """history.csv without the timings."""
    with open(run_dir / "history.csv") as f:
        return [{k: v for k, v in row.items() if not k.startswith("t_") and k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.usefixtures("one_thread")
def test_sampled_training_through_the_cli_is_recorded_and_resumable(tmp_path):
    base = ("train", "--dataset", "synthetic-tiny", "--device", "cpu", "--sampler", "neighbor", "--fanouts", "5,5", "--patience", 50)
    whole = run_cli(*base, "--epochs", 3, "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    (run_dir,) = (tmp_path / "whole" / "runs").iterdir()
    assert run_dir.name.endswith("-synthetic-tiny-hard-neighbor")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["train"]["sampler"], config["train"]["fanouts"]) == ("neighbor", "5,5")
    cut = run_cli(*base, "--epochs", 2, "--out", tmp_path / "cut")
    assert cut.exit_code == 0, cut.output
    (cut_dir,) = (tmp_path / "cut" / "runs").iterdir()
    assert run_cli("train", "--resume", cut_dir, "--epochs", 3).exit_code == 0
    assert history(cut_dir) == history(run_dir)  # DGL's sampling seed comes from the checkpointed generator


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "lightgcn", "--sampler", "neighbor"), "EgoGCN and its variants only"),
        (("--model", "na", "--sampler", "neighbor"), "--fusion na"),
        (("--fanouts", "10"), "applies to --sampler neighbor"),
        (("--sampler", "neighbour"), "is not one of: full, neighbor"),
        (("--sampler", "neighbor", "--fanouts", "3,3,3"), "gives 3 values"),
    ],
)
def test_bad_sampling_options_are_one_line(tmp_path, args, message):
    result = run_cli("train", "--dataset", "synthetic-tiny", "--device", "cpu", "--epochs", 1, "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
