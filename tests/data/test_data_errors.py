"""Every bad input of issue 2: one line naming the file and the fix, nothing half-written."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from conftest import TEST, TRAIN, VALID, VISUAL, write_inter

import ego_dgl.data.mmrec as mmrec
from ego_dgl.data import load_dataset, prepare, read_grcn, read_mmrec, write_mmrec
from ego_dgl.data.registry import CACHED
from ego_dgl.errors import DataError, EgoDGLWarning


def data_error(fn, *args, match: str) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    msg = data_error(load_dataset, str(tmp_path / "nowhere"), match="no such dataset folder")
    assert "nowhere" in msg
    data_error(read_mmrec, tmp_path / "nowhere", match="folder not found.*<name>.inter")


def test_folder_of_unknown_layout(tmp_path):
    data_error(load_dataset, str(tmp_path), match="neither an MMRec folder")


def test_missing_file(grcn_folder, mmrec_folder):
    (grcn_folder / "val_full.npy").unlink()
    data_error(read_grcn, grcn_folder, match=r"val_full\.npy: file not found")
    for f in mmrec_folder.glob("*_feat.npy"):
        f.unlink()
    data_error(read_mmrec, mmrec_folder, match=r"no <modality>_feat\.npy file")


def test_unknown_name_lists_known_ones():
    msg = data_error(load_dataset, "ml-1m", match="unknown dataset 'ml-1m'")
    for name in ("ml100k", "synthetic-tiny", "synthetic-tiktok", "tiktok", "movielens"):
        assert name in msg


@pytest.mark.parametrize("name", ["tiktok", "movielens"])
def test_absent_paper_dataset_says_what_to_put_where(name, datasets_root):
    msg = data_error(load_dataset, name, match=f"{name} not found")
    assert str(datasets_root / name) in msg and "train.npy" in msg and "feat_v" in msg


def test_feature_rows_differ_from_items(mmrec_folder):
    np.save(mmrec_folder / "text_feat.npy", np.ones((4, 2), np.float32))
    data_error(read_mmrec, mmrec_folder, match=r"text_feat\.npy: features of shape \(4, 2\) for 5 items")


@pytest.mark.parametrize("bad", [[1, 7], [-1, 0]])
def test_ids_out_of_range(mmrec_folder, bad):
    write_inter(mmrec_folder / "toy.inter", (np.vstack([TRAIN, bad]), VALID, TEST))
    data_error(read_mmrec, mmrec_folder,
        match=r"toy\.inter: 1 train rows have user ids outside|image_feat\.npy: 5 rows, but toy\.inter uses item id 7")


def test_grcn_items_not_offset(grcn_folder):
    np.save(grcn_folder / "train.npy", TRAIN)  # forgot the + num_users offset
    data_error(read_grcn, grcn_folder, match=r"train\.npy: item id 0 is below the number of users")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_features(mmrec_folder, value):
    x = VISUAL.copy()
    x[3, 1] = value
    np.save(mmrec_folder / "image_feat.npy", x)
    data_error(read_mmrec, mmrec_folder, match=r"image_feat\.npy: 1 item rows contain NaN or inf \(first: item 3\)")


def test_empty_split(mmrec_folder):
    write_inter(mmrec_folder / "toy.inter", (TRAIN, VALID, TEST[:0]))
    data_error(read_mmrec, mmrec_folder, match=r"toy\.inter: the test split is empty")


def test_user_only_in_held_out_splits(mmrec_folder):
    write_inter(mmrec_folder / "toy.inter", (TRAIN[TRAIN[:, 0] != 3], VALID, np.vstack([TEST, [[3, 1]]])))
    data_error(read_mmrec, mmrec_folder, match=r"toy\.inter: 1 users have interactions only in valid/test \(first: user 3\)")


@pytest.mark.parametrize("header", ["user_id\titem_id\tlabel", "userID itemID rating timestamp x_label"])
def test_malformed_inter_header(mmrec_folder, header):
    write_inter(mmrec_folder / "toy.inter", (TRAIN, VALID, TEST), header=header)
    data_error(read_mmrec, mmrec_folder, match=r"toy\.inter: malformed header.*userID itemID rating timestamp x_label")


def test_bad_x_label(mmrec_folder):
    path = mmrec_folder / "toy.inter"
    path.write_text(path.read_text().replace("\t2\n", "\t3\n", 1))
    data_error(read_mmrec, mmrec_folder, match=r"toy\.inter: x_label 3 .*use 0 train, 1 valid, 2 test")


def test_duplicates_dropped_with_a_count(mmrec_folder):
    write_inter(mmrec_folder / "toy.inter", (np.vstack([TRAIN, TRAIN[:2]]), np.vstack([VALID, TRAIN[2:3]]), TEST))
    with pytest.warns(EgoDGLWarning, match="dropped 3 duplicate interactions"):
        ds = read_mmrec(mmrec_folder)
    assert np.array_equal(ds.train, TRAIN) and np.array_equal(ds.valid, VALID)


def test_in_memory_errors_name_the_part(tiny):
    bad = dataclasses.replace(tiny, valid=tiny.valid[:0])
    data_error(bad.validate, match=r"synthetic-tiny \(valid\): the valid split is empty")
    no_features = dataclasses.replace(tiny, features={})
    data_error(no_features.validate, match="no item features")
    bad_mask = dataclasses.replace(tiny, feature_masks={"visual": np.ones(79, bool)})
    data_error(bad_mask.validate, match="boolean vector of 80 entries")


def test_interrupted_prepare_leaves_nothing(monkeypatch, datasets_root):
    monkeypatch.setitem(CACHED, "synthetic-tiktok", ("synthetic-tiktok/2", fail_with(RuntimeError("power cut"))))
    with pytest.raises(RuntimeError):
        prepare("synthetic-tiktok", progress=False)
    assert not [p for p in os.listdir(datasets_root) if "synthetic-tiktok" in p]


def fail_with(error: BaseException):
    def broken(*args, **kwargs):
        raise error

    return broken


def test_interrupted_write_leaves_nothing(monkeypatch, tiny, tmp_path):
    monkeypatch.setattr(mmrec, "write_meta", fail_with(KeyboardInterrupt()))  # the last file written
    with pytest.raises(KeyboardInterrupt):
        write_mmrec(tiny, tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_failed_rewrite_keeps_the_old_copy(monkeypatch, tiny, tmp_path):
    write_mmrec(tiny, tmp_path / "out")
    before = sorted(os.listdir(tmp_path / "out"))
    monkeypatch.setattr(mmrec, "write_meta", fail_with(OSError("disk full")))
    with pytest.raises(OSError):
        write_mmrec(tiny, tmp_path / "out", overwrite=True)
    assert os.listdir(tmp_path) == ["out"] and sorted(os.listdir(tmp_path / "out")) == before


def test_existing_destination_is_not_overwritten(tiny, tmp_path):
    (tmp_path / "out").mkdir()
    data_error(write_mmrec, tiny, tmp_path / "out", match="already exists; choose another folder or pass --overwrite")


def test_foreign_folder_under_a_cached_name_is_kept(tmp_path):
    (tmp_path / "synthetic-tiktok").mkdir()
    (tmp_path / "synthetic-tiktok" / "mine.txt").write_text("user data")
    data_error(load_dataset, "synthetic-tiktok", tmp_path, match="was not prepared by ego-dgl")
    assert os.listdir(tmp_path / "synthetic-tiktok") == ["mine.txt"]


def test_prepare_only_cached_builtins():
    data_error(prepare, "synthetic-tiny", match="needs no preparation; only ml100k, synthetic-tiktok")
