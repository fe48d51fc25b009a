"""Readers and writers of the MMRec and GRCN layouts, against hand-built fixtures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import TEST, TEXT, TRAIN, VALID, VISUAL, WORDS, offset_rows, write_inter

from ego_dgl.data import (
    Dataset,
    WordBag,
    detect_layout,
    load_dataset,
    read_grcn,
    read_mmrec,
    write_grcn,
    write_mmrec,
)


def assert_same(a: Dataset, b: Dataset) -> None:
    assert (a.name, a.num_users, a.num_items) == (b.name, b.num_users, b.num_items)
    for s in ("train", "valid", "test"):
        assert np.array_equal(a.split(s), b.split(s)), s
    assert a.modalities == b.modalities
    for m in a.modalities:
        fa, fb = a.features[m], b.features[m]
        if isinstance(fa, WordBag):
            assert isinstance(fb, WordBag) and fa.num_words == fb.num_words
            assert np.array_equal(fa.items, fb.items) and np.array_equal(fa.words, fb.words)
        else:
            assert fa.dtype == fb.dtype == np.float32 and np.array_equal(fa, fb)
        assert np.array_equal(a.mask(m), b.mask(m))
    assert a.item_titles == b.item_titles
    assert a.fingerprint() == b.fingerprint()


def test_read_mmrec_fixture(mmrec_folder):
    ds = read_mmrec(mmrec_folder)
    assert (ds.name, ds.num_users, ds.num_items) == ("toy", 4, 5)
    assert np.array_equal(ds.train, TRAIN) and np.array_equal(ds.valid, VALID) and np.array_equal(ds.test, TEST)
    assert ds.modalities == ["image", "text"]
    assert np.array_equal(ds.features["image"], VISUAL) and np.array_equal(ds.features["text"], TEXT)
    assert ds.sources["train"].endswith("toy.inter")


def test_read_grcn_fixture_removes_offset_and_keeps_word_ids(grcn_folder):
    ds = read_grcn(grcn_folder)
    assert (ds.num_users, ds.num_items) == (4, 5)
    assert np.array_equal(ds.train, TRAIN) and np.array_equal(ds.valid, VALID) and np.array_equal(ds.test, TEST)
    assert ds.modalities == ["visual", "acoustic", "textual"]
    words = ds.features["textual"]
    assert isinstance(words, WordBag) and words.num_words == 6
    assert np.array_equal(words.items, WORDS[0]) and np.array_equal(words.words, WORDS[1])
    assert ds.modality_dims() == {"visual": 3, "acoustic": 2, "textual": 6}


@pytest.mark.parametrize("layout", ["mmrec", "grcn"])
@pytest.mark.parametrize("source", ["mmrec_folder", "grcn_folder"])
def test_round_trip(layout, source, request, tmp_path):
    first = load_dataset(str(request.getfixturevalue(source)))
    writer = write_mmrec if layout == "mmrec" else write_grcn
    out = writer(first, tmp_path / "out")
    assert detect_layout(out) == layout
    assert_same(first, load_dataset(str(out)))


@pytest.mark.parametrize("writer", [write_mmrec, write_grcn])
def test_round_trip_keeps_masks_and_titles(writer, tiny, tmp_path):
    mask = np.arange(80) % 3 > 0
    feats = dict(tiny.features, visual=np.where(mask[:, None], tiny.features["visual"], 0).astype(np.float32))
    ds = dataclasses.replace(tiny, features=feats, feature_masks={"visual": mask},
                             item_titles=[f"item {k}" for k in range(80)]).validate()
    assert_same(ds, read_mmrec(writer(ds, tmp_path / "x")) if writer is write_mmrec else read_grcn(writer(ds, tmp_path / "x")))


def test_grcn_output_reads_without_meta_like_the_authors_files(tiny, tmp_path):
    out = write_grcn(tiny, tmp_path / "plain")
    (out / "meta.json").unlink()
    assert_same(dataclasses.replace(tiny, name="plain"), read_grcn(out))
    user_items = np.load(out / "user_item_dict.npy", allow_pickle=True).item()
    assert user_items[0] == sorted(int(i) + 60 for i in tiny.train[tiny.train[:, 0] == 0, 1])
    rows = np.load(out / "val_full.npy", allow_pickle=True)
    assert rows.dtype == object and all(min(r[1:]) >= 60 for r in rows)


def test_grcn_infers_users_from_item_offsets(tmp_path):
    """A fifth user without interactions shows only in the offset: items start at 5."""
    folder = tmp_path / "g"
    folder.mkdir()
    np.save(folder / "train.npy", TRAIN + np.array([0, 5]))
    np.save(folder / "val_full.npy", offset_rows(VALID, 5), allow_pickle=True)
    np.save(folder / "test_full.npy", offset_rows(TEST, 5), allow_pickle=True)
    np.save(folder / "feat_v.npy", VISUAL)
    ds = read_grcn(folder)
    assert (ds.num_users, ds.num_items) == (5, 5)
    assert np.array_equal(ds.train, TRAIN) and ds.user_degree[4] == 0


def test_held_out_rows_may_be_a_regular_array(grcn_folder):
    np.save(grcn_folder / "val_full.npy", np.array([[0, 2 + 4], [1, 3 + 4]]))
    assert np.array_equal(read_grcn(grcn_folder).valid, VALID)


def test_mmrec_columns_found_by_name(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    write_inter(folder / "m.inter", (TRAIN, VALID, TEST), header="itemID\tuserID\trating\ttimestamp\tx_label")
    np.save(folder / "v_feat.npy", VISUAL)
    ds = read_mmrec(folder)
    # columns are found by name: the file's first column is now itemID
    assert np.array_equal(ds.train, TRAIN[:, ::-1]) and ds.num_users == 5
