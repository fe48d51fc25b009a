"""DistDGL training (`data partition`, `train --dist`, `dist-launch`): partitions are
written once and refused over folders ego-dgl did not write; every trainer gets its own
share of the edges; two partitions served on localhost train two trainers to a run whose
validation recall matches single-process sampled training; misuse is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ego_dgl._dgl import dgl
from ego_dgl.cli import main
from ego_dgl.distributed.graph import DistBlockSampler, IdMaps, trainer_edges
from ego_dgl.distributed.launch import LaunchConfig, train_command
from ego_dgl.distributed.partition import read_partitions
from ego_dgl.errors import ConfigError
from ego_dgl.graph.blocks import BlockSampler
from ego_dgl.graph.heterograph import (
    CLICKED_BY,
    CLICKS,
    ITEM,
    USER,
    structure_graph,
    unique_pairs,
)

ROOT = Path(__file__).resolve().parents[2]
# Measured best validation R@10 after 2 sampled epochs on synthetic-tiny: one process,
# seeds 0-4: 0.339 0.288 0.367 0.297 0.331 (range 0.079, sd 0.033); --procs 2, seeds 0-1:
# 0.368 0.331; dist-launch (2 partitions, 2 trainers, seed 0; the servers' sampling is not
# seeded): 0.368 0.360 0.385. The tolerance is the one-process seed range: the distributed
# run is one more draw from that spread, not the same computation.
TOLERANCE = 0.08


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.fixture
def parts(tmp_path) -> Path:
    """synthetic-tiny in 2 METIS partitions; the partition config file."""
    result = run_cli("data", "partition", "synthetic-tiny", tmp_path / "parts", "--parts", 2)
    assert result.exit_code == 0, result.output
    return tmp_path / "parts" / "synthetic-tiny.json"


def test_partition_writes_a_folder_it_alone_replaces(parts, tmp_path):
    folder = parts.parent
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["kind"], meta["parts"], meta["method"], meta["dataset"]) == ("partitions", 2, "metis", "synthetic-tiny")
    assert json.loads(parts.read_text())["num_parts"] == 2
    assert {"part0/graph.dgl", "part1/graph.dgl", "orig_ids.npz", "synthetic-tiny.json"} <= set(meta["files"])
    one_line(run_cli("data", "partition", "synthetic-tiny", folder, "--parts", 2), "already exists")
    assert run_cli("data", "partition", "synthetic-tiny", folder, "--parts", 2, "--method", "random", "--overwrite").exit_code == 0
    assert json.loads((folder / "meta.json").read_text())["method"] == "random"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line(run_cli("data", "partition", "synthetic-tiny", foreign, "--parts", 2, "--overwrite"), "not written by ego-dgl")
    assert (foreign / "notes.txt").read_text() == "mine"


class Book:
    """A partition book of 2 partitions owning 5 and 4 edges."""

    ranges = [(0, 5), (5, 9)]

    def num_partitions(self) -> int:
        return 2

    def partid2eids(self, part: int, etype) -> torch.Tensor:
        return torch.arange(*self.ranges[part])


@pytest.mark.parametrize("trainers", [2, 4])
def test_every_edge_goes_to_one_trainer_of_its_partition(trainers):
    shares = [trainer_edges(Book(), ("user", "clicks", "item"), r, trainers) for r in range(trainers)]
    assert sorted(torch.cat(shares).tolist()) == list(range(9))
    per_part = trainers // 2
    assert all(set(shares[r].tolist()) <= set(range(*Book.ranges[r // per_part])) for r in range(trainers))


def test_the_server_finds_graphbolts_graph_class():
    assert isinstance(sys.modules["dgl.graphbolt"].FusedCSCSamplingGraph, type)
    assert dgl.distributed.DistGraphServer  # imported with the stub in place


def test_launch_options_and_command():
    with pytest.raises(ConfigError, match="multiple of the 2 partitions"):
        LaunchConfig(Path("p.json"), 2, trainers=3).validate()
    with pytest.raises(ConfigError, match="runs a training command"):
        train_command(["eval", "run"], Path("p.json"))
    assert train_command(["train", "--epochs", "1"], Path("p.json"))[-2:] == ["--dist", "p.json"]
    assert "--dist" not in train_command(["train", "--resume", "run"], Path("p.json")), "a resumed run has its partitions"


def test_dist_misuse_is_one_line(parts, tmp_path, monkeypatch):
    monkeypatch.delenv("DGL_IP_CONFIG", raising=False)
    one_line(run_cli("train", "--dist", parts, "--out", tmp_path), "--dist needs its graph servers")
    one_line(run_cli("train", "--dist", parts, "--sampler", "full", "--out", tmp_path), "use it with --sampler neighbor")
    one_line(run_cli("train", "--dist", tmp_path / "nope.json", "--out", tmp_path), "no such partition config")
    one_line(run_cli("dist-launch", "--parts-config", parts, "--trainers", 3, "--", "train"), "multiple of the 2 partitions")
    assert not (tmp_path / "runs").exists()


def best_valid_recall(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["valid"]["recall@10"]


def dist_launch(parts: Path, *train: str) -> subprocess.CompletedProcess:
    """`egodgl dist-launch` with 1 server per partition and 2 trainers, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ego_dgl.cli", "dist-launch", "--parts-config", str(parts), "--trainers", "2", "--servers", "1", "--", *train]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_failing_trainer_stops_the_job_with_its_exit_code(parts, tmp_path):
    launched = dist_launch(parts, "train", "--model", "lightgcn", "--device", "cpu", "--out", str(tmp_path))
    assert launched.returncode == 2, launched.stderr[-3000:]
    assert "EgoGCN and its variants only" in launched.stderr
    assert not any((tmp_path / "runs").iterdir()), "the failed run left no folder"


def test_two_partitions_two_trainers_train_like_one_process(parts, tmp_path):
    train = ("train", "--epochs", "2", "--device", "cpu")
    launched = dist_launch(parts, *train, "--out", str(tmp_path / "dist"))
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("run folder:") == 1, "rank 0 alone reports"
    (run_dir,) = (tmp_path / "dist" / "runs").iterdir()
    assert run_dir.name.endswith("-synthetic-tiny-hard-neighbor-dist")
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "history.csv", "metrics.json", "best.pt", "last.pt"}
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["train"]["dist"], config["train"]["sampler"]) == (str(parts.resolve()), "neighbor")
    single = run_cli(*train, "--dataset", "synthetic-tiny", "--sampler", "neighbor", "--out", tmp_path / "single")
    assert single.exit_code == 0, single.output
    (single_dir,) = (tmp_path / "single" / "runs").iterdir()
    assert abs(best_valid_recall(run_dir) - best_valid_recall(single_dir)) <= TOLERANCE
    # the launched run resumes from its last.pt with its own partitions (the servers'
    # sampling is unseeded, so the third epoch is checked for being there, not for its values)
    before = (run_dir / "history.csv").read_text().splitlines()
    resumed = dist_launch(parts, "train", "--resume", str(run_dir), "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = (run_dir / "history.csv").read_text().splitlines()
    assert after[:3] == before and len(after) == 4 and after[3].startswith("3,")
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 3


def test_original_ids_name_the_datasets_nodes_and_edges(parts, tiny):
    """Every edge of every partition, read through the id maps, is the training pair the
    dataset's edge id names, in both directions: what lets blocks sampled on the DistGraph
    run the model's block layers unchanged."""
    ids = IdMaps.of(read_partitions(parts))
    pairs = torch.from_numpy(unique_pairs(tiny.train))
    checked = 0
    for part in range(2):
        g, _, _, book, *_ = dgl.distributed.load_partition(str(parts), part, load_feats=False)
        inner = g.edata["inner_edge"].bool()
        src, dst = (g.ndata[dgl.NID][end[inner]] for end in g.edges())
        etype, eid = book.map_to_per_etype(g.edata[dgl.EID][inner])
        (src_type, src_new), (dst_type, dst_new) = book.map_to_per_ntype(src), book.map_to_per_ntype(dst)
        for k, name in enumerate(book.canonical_etypes):
            here = etype == k
            s_type, _, d_type = name
            assert (src_type[here] == book.ntypes.index(s_type)).all() and (dst_type[here] == book.ntypes.index(d_type)).all()
            s, d = ids.nodes[s_type][src_new[here]], ids.nodes[d_type][dst_new[here]]
            users, items = (s, d) if s_type == USER else (d, s)
            assert torch.equal(pairs[ids.edges[name][eid[here]]], torch.stack([users, items], 1))
            checked += int(here.sum())
    assert checked == 2 * len(pairs)


def renumbered(ids: IdMaps, pairs: torch.Tensor, num_users: int, num_items: int) -> dgl.DGLGraph:
    """The structure graph in partition ids (nodes and edges renumbered as DistDGL does)."""
    data = {}
    for name in (CLICKS, CLICKED_BY):
        users, items = pairs[ids.edges[name]].T
        u, i = ids.new_nodes[USER][users], ids.new_nodes[ITEM][items]
        data[name] = (u, i) if name == CLICKS else (i, u)
    return dgl.heterograph(data, num_nodes_dict={USER: num_users, ITEM: num_items})


def block_edges(block: dgl.DGLGraph, name) -> set[tuple[int, int, int]]:
    src, dst = block.edges(etype=name)
    s_type, _, d_type = name
    s, d = block.srcnodes[s_type].data[dgl.NID][src], block.dstnodes[d_type].data[dgl.NID][dst]
    return set(zip(s.tolist(), d.tolist(), block.edges[name].data[dgl.EID].tolist()))


def test_blocks_sampled_in_partition_ids_come_back_in_the_datasets(parts, tiny):
    ids = IdMaps.of(read_partitions(parts))
    pairs = torch.from_numpy(unique_pairs(tiny.train))
    local = BlockSampler(structure_graph(tiny), [-1, -1])
    dist = DistBlockSampler(renumbered(ids, pairs, tiny.num_users, tiny.num_items), [-1, -1], ids)
    users, items = torch.tensor([3, 7, 3, 41]), torch.tensor([5, 0, 77, 5, 12])
    want, got = local.sample(users, items, torch.device("cpu")), dist.sample(users, items, torch.device("cpu"))
    assert torch.equal(want.users, got.users) and torch.equal(want.items, got.items)
    for t in (USER, ITEM):  # the seeds, in order; inner blocks may list their nodes in another order
        assert torch.equal(want.blocks[-1].dstnodes[t].data[dgl.NID], got.blocks[-1].dstnodes[t].data[dgl.NID])
    for a, b in zip(want.blocks, got.blocks):
        for t in (USER, ITEM):
            assert sorted(a.srcnodes[t].data[dgl.NID].tolist()) == sorted(b.srcnodes[t].data[dgl.NID].tolist())
        for name in (CLICKS, CLICKED_BY):
            assert block_edges(a, name) == block_edges(b, name)
