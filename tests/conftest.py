"""Shared fixtures and helpers for every test folder (tests/<layer>/ mirrors ego_dgl/): a
small dataset, hand-built layout folders, a private datasets folder for the whole
session, the helpers that run the CLI and read its CSVs, and the model tests' float64
model builder, neighbour lists and early-fusion reference; a CLI command started as a real
process in its own session, and the live members of its process group."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from ego_dgl.cli import main
from ego_dgl.data import Dataset, load_dataset
from ego_dgl.model.base import Recommender
from ego_dgl.model.registry import build_model
from ego_dgl.train.defaults import resolve_options


def run(*args) -> Result:
    """`egodgl ARGS...` in-process; an unexpected exception fails the test with its traceback."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts."""
    with open(path) as fh:
        return list(csv.DictReader(fh))


# as in a terminal: a runner started in the background may pass SIGINT down ignored
MAIN = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from ego_dgl.cli import main; main()"


def start_in_session(args: list, checkpoints: Path, pattern: str, count: int = 2) -> subprocess.Popen:
    """`egodgl ARGS` as a real process in its own session (so that every process of it can be killed at the end
    whatever happens), returned once `count` files under `checkpoints` match `pattern` (or it has exited)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", MAIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, cwd=os.getcwd(), start_new_session=True)
    deadline = time.monotonic() + 300  # generous: a loaded machine starts the workers slowly
    while time.monotonic() < deadline and len(list(checkpoints.glob(pattern))) < count and proc.poll() is None:
        time.sleep(0.2)
    return proc


def _live(field: int, value: int) -> list[int]:
    """The live (not zombie) processes whose /proc stat field after the name (1: parent,
    2: process group) is `value`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[field]) == value and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group, from /proc."""
    return _live(2, pgid)


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`, from /proc."""
    return _live(1, pid)


def left_after_kill(proc: subprocess.Popen, wait_s: float = 60) -> list[int]:
    """SIGKILL `proc` (no handler runs: only its workers' watchdogs can notice) and return the members of its
    process group still alive after up to `wait_s` seconds."""
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + wait_s
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return group_members(proc.pid)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_datasets_root: keep $EGODGL_DATASETS as it is instead of a temporary folder"
    )


@pytest.fixture(scope="session")
def session_datasets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private datasets folder per test session, so ml100k is prepared at most once."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(autouse=True)
def datasets_root(request: pytest.FixtureRequest, session_datasets_root: Path, monkeypatch) -> Path | None:
    """Points $EGODGL_DATASETS at the session's private folder so that no test reads or
    writes the user's prepared datasets (opt out with @pytest.mark.real_datasets_root)."""
    if request.node.get_closest_marker("real_datasets_root"):
        return None
    monkeypatch.setenv("EGODGL_DATASETS", str(session_datasets_root))
    return session_datasets_root


@pytest.fixture
def tiny() -> Dataset:
    """synthetic-tiny: 60 users, 80 items, 900 interactions, 3 modalities."""
    return load_dataset("synthetic-tiny")


def float64_model(ds: Dataset, name: str, **given) -> Recommender:
    """Model `name` on `ds` with the options `given` over its defaults, seeded, in float64:
    what the loop-by-loop references of the model tests compare against."""
    _, cfg, _, _ = resolve_options({"dataset": ds.name, "model": name, **given})
    torch.manual_seed(0)
    return build_model(ds, cfg, "cpu").double()


def early_fusion_reference(model, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """x_u = e_u; x_i = W [i_1(0) || ... || i_M(0)] + b + e_i, item by item."""
    inp = model.inputs
    feats = inp.features()  # i_m(0) [Q, M, D] (EgoGCN's layer-0 inputs, tested there)
    items = []
    for i in range(ds.num_items):
        concat = torch.cat([feats[i, m] for m in range(feats.shape[1])])
        items.append(inp.fuse.weight @ concat + inp.fuse.bias + inp.items[i])
    return inp.users.detach().clone(), torch.stack(items)


def bpr_reference(model: Recommender, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> float:
    """The BPR term of a batch pair by pair: the mean of log(1 + exp(-(y_ui - y_uj)))."""
    t = model.propagate()
    diffs = [(t.users[u] @ t.items[p] - t.users[u] @ t.items[n]).item() for u, p, n in zip(users, pos, neg)]
    return float(np.mean([math.log1p(math.exp(-d)) for d in diffs]))


def neighbours(pairs, num_users: int, num_items: int) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Each user's and each item's training neighbours, in ascending order, from raw
    (user, item) pairs (a pair given twice counts once)."""
    of_user: dict[int, list[int]] = {u: [] for u in range(num_users)}
    of_item: dict[int, list[int]] = {i: [] for i in range(num_items)}
    for u, i in sorted({(int(u), int(i)) for u, i in pairs}):
        of_user[u].append(i)
        of_item[i].append(u)
    return of_user, of_item


# The EgoGCN variants that sampled training and layer-wise inference support, as model
# options: each equals the whole-graph model in both tests (the eps values make hard fuse).
SAMPLED_VARIANTS = [
    dict(fusion="ego", mode="hard", eps=0.2),
    dict(fusion="ego", mode="hard", eps=1.0, threshold="relative"),
    dict(fusion="ego", mode="soft"),
    dict(fusion="gm"),
    dict(fusion="ego", mode="hard", eps=0.2, id_weights="soft-pruning", layers_id=3),
    dict(fusion="ego", mode="soft", id_weights="soft-pruning"),
    dict(branches="id", layers_id=3),
    dict(branches="mm", layers_mm=3),
]


# A hand-built dataset: 4 users, 5 items, written below with plain numpy / text in the
# documented layouts (never with ego-dgl's writers), so the readers are checked against
# the formats themselves.
TRAIN = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 3], [2, 2], [3, 4], [3, 0]])
VALID = np.array([[0, 2], [1, 3]])
TEST = np.array([[0, 3], [2, 4]])
VISUAL = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
TEXT = np.array([[1, 0], [0, 1], [1, 1], [0.5, 0], [0, 2]], dtype=np.float32)
WORDS = np.array([[0, 0, 1, 2, 3, 4, 4], [5, 1, 2, 2, 0, 3, 1]])  # (item, word id); vocabulary 6


def write_inter(path: Path, splits, header: str = "userID\titemID\trating\ttimestamp\tx_label") -> None:
    lines = [header]
    for label, pairs in enumerate(splits):
        lines += [f"{u}\t{i}\t4\t88000{k}\t{label}" for k, (u, i) in enumerate(pairs)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def mmrec_folder(tmp_path: Path) -> Path:
    """MMRec layout: toy.inter + image_feat.npy + text_feat.npy."""
    folder = tmp_path / "toy"
    folder.mkdir()
    write_inter(folder / "toy.inter", (TRAIN, VALID, TEST))
    np.save(folder / "image_feat.npy", VISUAL)
    np.save(folder / "text_feat.npy", TEXT)
    return folder


def offset_rows(pairs: np.ndarray, num_users: int) -> np.ndarray:
    rows = np.empty(len(np.unique(pairs[:, 0])), dtype=object)
    for k, u in enumerate(np.unique(pairs[:, 0])):
        rows[k] = [int(u)] + [int(i) + num_users for i in pairs[pairs[:, 0] == u, 1]]
    return rows


@pytest.fixture
def grcn_folder(tmp_path: Path) -> Path:
    """GRCN / EgoGCN layout, items offset by 4 users; Tiktok-style text as a 2 x N .pt."""
    folder = tmp_path / "toy_grcn"
    folder.mkdir()
    np.save(folder / "train.npy", TRAIN + np.array([0, 4]))
    np.save(folder / "val_full.npy", offset_rows(VALID, 4), allow_pickle=True)
    np.save(folder / "test_full.npy", offset_rows(TEST, 4), allow_pickle=True)
    user_items = {u: [int(i) + 4 for i in TRAIN[TRAIN[:, 0] == u, 1]] for u in range(4)}
    np.save(folder / "user_item_dict.npy", np.array(user_items, dtype=object), allow_pickle=True)
    np.save(folder / "feat_v.npy", VISUAL)
    np.save(folder / "feat_a.npy", TEXT)
    torch.save(torch.from_numpy(WORDS), folder / "feat_t.pt")
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Bit-exact comparisons need one CPU thread: multi-threaded MKL on a loaded machine
    can change the last bits of a loss between otherwise identical runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
