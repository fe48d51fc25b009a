"""File helpers shared by the readers and writers: atomic folder writes, the small
`meta.json` that makes a round trip exact, and array loading with one-line errors."""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from ego_dgl.data.dataset import Dataset, WordBag
from ego_dgl.data.validate import check_array_size, check_meta
from ego_dgl.errors import DataError
from ego_dgl.umask import folder_mode
from ego_dgl.untrusted import read_json, read_text

META = "meta.json"
FORMAT = "ego-dgl/1"
# every name the dataset writers gave files before meta.json listed them (MMRec, GRCN, build)
WRITTEN_BEFORE_LISTS = (META, "*.inter", "*_feat.npy", "*_words.npy", "*_mask.npy", "user_ids.tsv", "item_ids.tsv",
                        "card.json", "README.md", "train.npy", "val_full.npy", "test_full.npy", "user_item_dict.npy",
                        "feat_*.npy", "feat_*.pt", "mask_*.npy")


@contextmanager
def atomic_folder(target: Path, overwrite: bool = False, kind: str | None = None, take_empty: bool = False) -> Iterator[Path]:
    """Yields a hidden temporary folder beside `target` and renames it to `target` only
    when the block completes, so an interrupted write leaves no half-written dataset.
    With `overwrite`, an existing `target` is replaced only if ego-dgl wrote it
    (`check_replaceable`) and is of the same `kind` (meta.json's; None: a dataset); the
    files written are listed in meta.json for that check. With `take_empty`, an empty
    `target` is replaced as if absent, and left as it was when the block fails."""
    target = Path(target)
    if (target.exists() or target.is_symlink()) and not (take_empty and is_empty_folder(target)):
        if not overwrite:
            raise DataError(f"{target} already exists; choose another folder or pass --overwrite")
        check_replaceable(target, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    try:
        try:
            yield tmp
        except OSError as err:
            raise write_error(err, target) from None
        list_written_files(tmp)
        tmp.chmod(folder_mode())  # mkdtemp made it 0700
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def is_empty_folder(path: Path) -> bool:
    """A real (not linked) folder with nothing in it: taken over by a write, and kept
    as it is when the write fails."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def remove_stale_partials(target: Path) -> None:
    """Remove the hidden `.NAME.partial-PID-*` folders that a write of `target` killed
    outright (kill -9, the OOM killer) left behind: those whose process no longer runs.
    Only folders of that exact pattern, which only atomic_folder makes, are touched."""
    for folder in target.parent.glob(f".{target.name}.partial-*-*"):
        pid = folder.name[len(f".{target.name}.partial-"):].split("-", 1)[0]
        ours = pid.isascii() and pid.isdigit() and int(pid) < 2**31  # a pid; '²' or 10**20 in a name is someone else's folder
        if ours and folder.is_dir() and not folder.is_symlink() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def write_error(err: OSError, target: Path) -> OSError | DataError:
    """An OSError met while writing `target`, with the path when the error lacks one (numpy
    reports a short write as byte counts only) and 'disk full' said plainly."""
    if err.filename:
        return err
    full = err.errno in (errno.ENOSPC, errno.EDQUOT) or "requested and" in str(err)
    if full:
        return DataError(f"{target}: disk full while writing ({err}); free some space and run again "
                         "(nothing was left half-written)")
    return OSError(err.errno, err.strerror or str(err), str(target))


def folder_files(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if not p.is_dir())


def list_written_files(folder: Path) -> None:
    """Record in the folder's meta.json (when it has one) which files ego-dgl wrote."""
    path = Path(folder) / META
    if path.exists():
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta["files"] = folder_files(folder)
        path.write_text(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def check_replaceable(target: Path, kind: str | None = None) -> None:
    """--overwrite replaces only a folder ego-dgl wrote of the same `kind` (a dataset, or
    partitions): one with its meta.json and no file beyond those the meta file lists;
    anything else is refused, never deleted."""
    if not target.is_dir() or target.is_symlink():
        raise DataError(f"{target}: exists and is not a folder ego-dgl wrote; move it away or choose another destination")
    try:
        meta = read_meta(target)
    except DataError:
        meta = {}
    if not meta:
        raise DataError(
            f"{target}: not written by ego-dgl (no {META} of format {FORMAT}), so --overwrite will not replace it; "
            "move it away or choose another folder"
        )
    if meta.get("kind") != kind:
        found = f"{meta['kind']} folder" if meta.get("kind") else "dataset folder"
        raise DataError(f"{target}: is a {found} ego-dgl wrote, not what this command writes, so --overwrite will not "
                        "replace it; choose another folder")
    if "files" in meta:
        extra = [f for f in folder_files(target) if f not in meta["files"]]
    else:  # an older ego-dgl listed nothing: only names its writers use prove the files its own
        extra = [f for f in folder_files(target) if not any(fnmatch(f, pattern) for pattern in WRITTEN_BEFORE_LISTS)]
    if extra:
        raise DataError(
            f"{target}: holds {extra[0]}, which ego-dgl did not write, so --overwrite will not replace the folder; "
            "move that file away or choose another folder"
        )


def check_separate(src: Path, dst: Path) -> None:
    """Refuse a destination that is, contains or lies inside the source folder: writing
    it would replace or mix with the data being read."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise DataError(
            f"{dst}: is, contains or lies inside the source folder {src}; choose a destination outside the source"
        )


def require_folder(folder: Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; {what}")
    return folder


def write_meta(folder: Path, ds: Dataset, recipe: str | None = None) -> None:
    """Sizes, modality order, vocabulary sizes and titles: what the array files alone
    cannot say exactly."""
    meta = {
        "format": FORMAT,
        "name": ds.name,
        "num_users": int(ds.num_users),
        "num_items": int(ds.num_items),
        "modalities": ds.modalities,
        "num_words": {m: f.num_words for m, f in ds.features.items() if isinstance(f, WordBag)},
    }
    if recipe is not None:
        meta["recipe"] = recipe
    if ds.item_titles is not None:
        meta["item_titles"] = list(ds.item_titles)
    (Path(folder) / META).write_text(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def folder_dataset(
    folder: Path, name: str | None, meta: dict, num_users: int, num_items: int, splits: dict[str, np.ndarray],
    features: dict, masks: dict[str, np.ndarray], sources: dict[str, str],
) -> Dataset:
    """The validated Dataset a reader assembled from `folder`: named by the caller, else by
    meta.json, else by the folder; titles from meta.json."""
    return Dataset(
        name=name or meta.get("name") or folder.name,
        num_users=num_users,
        num_items=num_items,
        **splits,
        features=features,
        feature_masks=masks,
        item_titles=meta.get("item_titles"),
        sources=sources | {"titles": str(folder / "meta.json")},
    ).validate()


def read_meta(folder: Path) -> dict:
    """The folder's meta.json, or {} for data written by other tools."""
    path = Path(folder) / META
    if not path.exists():
        return {}
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not an ego-dgl meta file (format {FORMAT}); delete it or rename it")
    return check_meta(meta, path)


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what numpy needs to rebuild an object array of plain Python values
    (ints, lists, dicts): a dataset file can never name another callable to run."""

    ALLOWED = {
        "ndarray": np.ndarray,
        "dtype": np.dtype,
        "_reconstruct": np.empty(0).__reduce__()[0],  # numpy.(_)core.multiarray._reconstruct
        "scalar": np.int64(0).__reduce__()[0],  # numpy.(_)core.multiarray.scalar
    }
    MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")

    def __init__(self, fh, limit: int):
        super().__init__(fh)
        self.limit = limit  # the most elements any array inside may have (the file's length bounds it)

    def find_class(self, module: str, name: str):
        if module in self.MODULES and name == "_reconstruct":
            return self.reconstruct
        if module in self.MODULES and name in self.ALLOWED:
            return self.ALLOWED[name]
        raise pickle.UnpicklingError(f"{module}.{name}")

    def reconstruct(self, cls, shape, dtype) -> BoundedArray:
        """numpy's _reconstruct, its shape and the array's later state (its real shape)
        checked against the limit before numpy allocates either."""
        BoundedArray.check_shape(shape, self.limit)
        array = self.ALLOWED["_reconstruct"](BoundedArray, shape, dtype)
        array.limit = self.limit
        return array


class BoundedArray(np.ndarray):
    """An array being unpickled whose __setstate__ refuses a shape of more elements than
    `limit` (a pickled shape of 10^15 would otherwise be allocated before anything fails)."""

    limit = 0

    @staticmethod
    def check_shape(shape, limit: int) -> None:
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"pickled array shape {shape!r:.40} is not a shape")
        if math.prod(shape) > limit:
            raise ValueError(f"its pickled array claims {math.prod(shape):,} elements, more than the file can hold")

    def __setstate__(self, state):
        self.check_shape(state[1] if isinstance(state, tuple) and len(state) > 1 else (), self.limit)
        super().__setstate__(state)


def load_npy(path: Path) -> np.ndarray:
    """A .npy array with a one-line DataError for missing or unreadable files. Object
    arrays (the GRCN held-out rows) go through ArrayUnpickler, never plain pickle."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as fh:
            try:
                version = npformat.read_magic(fh)
            except ValueError:
                raise DataError(f"{path}: not a .npy file (no NumPy header); save the array with numpy.save") from None
            header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            try:
                shape, _, dtype = header(fh)
            except Exception as err:  # noqa: BLE001 - numpy's header parser raises what its tokenizer meets
                raise ValueError(f"damaged header: {type(err).__name__}") from None
            data_bytes = path.stat().st_size - fh.tell()
            check_array_size(path, shape, dtype, data_bytes)
            if not dtype.hasobject:
                return np.load(path)
            array = ArrayUnpickler(fh, data_bytes).load()
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{path}: holds a pickled reference to {err}, which ego-dgl refuses to load (no code runs from data); "
            "save plain integer rows (lists of ints) or a numeric array"
        ) from None
    except (OSError, ValueError, EOFError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err}); re-save it with numpy.save") from None
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise DataError(f"{path}: its pickled content is not the array its header describes; re-save it with numpy.save")
    return array.view(np.ndarray)


def load_pt(path: Path) -> np.ndarray:
    """A tensor saved with torch.save, as a numpy array."""
    import torch  # only .pt files need torch; the rest of the data layer does not

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise DataError(f"{path}: not a readable torch tensor ({type(err).__name__}); re-save it with torch.save") from None
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: holds a {type(value).__name__}, expected one tensor")
    return value.numpy()


def save_pt(path: Path, array: np.ndarray) -> None:
    import torch  # see load_pt

    torch.save(torch.from_numpy(np.ascontiguousarray(array)), path)


def wordbag_from_pairs(pairs: np.ndarray, path: Path, num_words: int | None) -> WordBag:
    """A 2 x N (item, word id) integer array as a WordBag (vocabulary = largest id + 1
    unless the meta file says otherwise)."""
    if pairs.ndim != 2 or pairs.shape[0] != 2:
        raise DataError(f"{path}: word ids must be a 2 x N array of (item, word id) rows, found shape {pairs.shape}")
    pairs = pairs.astype(np.int64)
    if num_words is None:
        num_words = int(pairs[1].max()) + 1 if pairs.shape[1] else 0
    return WordBag(pairs[0], pairs[1], num_words)


def is_word_ids(array: np.ndarray) -> bool:
    """Integer 2 x N arrays are (item, word id) pairs; anything else is a feature matrix."""
    return np.issubdtype(array.dtype, np.integer) and array.ndim == 2 and array.shape[0] == 2


RAW_IDS = {"user": "user_ids.tsv", "item": "item_ids.tsv"}


def write_raw_ids(folder: Path, ds: Dataset) -> None:
    """user_ids.tsv and item_ids.tsv (dense id, raw id), when the dataset knows its raw ids."""
    for kind, ids in (("user", ds.user_ids), ("item", ds.item_ids)):
        if ids is not None:
            lines = [f"{kind}ID\traw_id"] + [f"{k}\t{raw}" for k, raw in enumerate(ids)]
            (Path(folder) / RAW_IDS[kind]).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_raw_ids(folder: Path, kind: str, count: int) -> list[str] | None:
    """The raw ids of user_ids.tsv or item_ids.tsv (row k = dense id k), or None when absent."""
    path = Path(folder) / RAW_IDS[kind]
    if not path.exists():
        return None
    lines = read_text(path, hint="rebuild the dataset or save the file as UTF-8").splitlines()[1:]
    rows = [line.split("\t", 1) for line in lines]
    if len(rows) != count or any(len(r) != 2 or r[0] != str(k) for k, r in enumerate(rows)):
        raise DataError(
            f"{path}: expected {count} lines 'dense id<TAB>raw id' for ids 0..{count - 1} in order; "
            "rebuild the dataset or delete the file"
        )
    return [r[1] for r in rows]
