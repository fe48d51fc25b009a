"""Dataset names, where prepared datasets live, `load_dataset` and `prepare`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ego_dgl.data import grcn, mmrec
from ego_dgl.data.build import Built, read_card, variant_card, write_built
from ego_dgl.data.dataset import Dataset
from ego_dgl.data.files import read_meta
from ego_dgl.data.ml100k import RECIPE as ML100K_RECIPE
from ego_dgl.data.ml100k import build_ml100k
from ego_dgl.data.progress import Steps, steps
from ego_dgl.data.synthetic import PRESETS, make_preset, make_synthetic_scaled
from ego_dgl.data.variants import (
    Variant,
    apply_variant,
    parse_variant,
    read_cold_items,
    variant_name,
)
from ego_dgl.errors import DataError, os_error_message

KNOWN = ("ml100k", "synthetic", "synthetic-tiny", "synthetic-tiktok", "tiktok", "movielens")
SCALED = re.compile(r"synthetic-x(\d+(?:\.\d+)?)")
EXTERNAL = ("tiktok", "movielens")  # the paper's datasets, supplied by the user

# Built-ins slow enough to build that they are prepared once into the datasets root:
# name -> (recipe tag stored in meta.json, builder(steps, datasets root))
CACHED: dict[str, tuple[str, Callable[[Steps, Path], Built]]] = {
    "ml100k": (ML100K_RECIPE, build_ml100k),
    "synthetic-tiktok": ("synthetic-tiktok/2", lambda s, root: Built(_generate(s, "synthetic-tiktok"))),
}


def datasets_root() -> Path:
    """Folder of prepared datasets: $EGODGL_DATASETS, else ./datasets."""
    return Path(os.environ.get("EGODGL_DATASETS") or "datasets")


def dataset_folder(dataset: str, root: Path | None = None) -> Path:
    """Where a dataset's files are: a built-in prepared once lives under the datasets
    folder (`root`, else datasets_root()), and so does a variant of one (`ml100k-cold0.1`,
    data/variants.py); any other name is a folder path itself."""
    return Path(root or datasets_root()) / dataset if is_prepared_name(dataset) else Path(dataset)


def is_prepared_name(name: str) -> bool:
    """Whether `name` is a built-in dataset or a variant of one (prepared under the
    datasets folder), rather than a folder path."""
    return name in CACHED or parse_variant(name, list(CACHED)) is not None


def datasets_folder(root: Path | None) -> Path:
    """`root` (else datasets_root()) made if missing, checked before any slow build."""
    root = Path(root or datasets_root())
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot use {root} as the datasets folder ({os_error_message(err)}); "
            "point EGODGL_DATASETS (or --root) at a writable folder"
        ) from None
    return root


def known_names() -> str:
    return ", ".join(KNOWN) + ", synthetic-x<scale> (e.g. synthetic-x4), ml100k-cold<share>-train<share> (e.g. ml100k-cold0.1)"


def _generate(s: Steps, name: str) -> Dataset:
    with s.step(f"generating {name}"):
        return make_preset(name).validate()


def detect_layout(folder: Path) -> str:
    """'mmrec' (a .inter file) or 'grcn' (train.npy)."""
    if mmrec.is_mmrec(folder):
        return "mmrec"
    if grcn.is_grcn(folder):
        return "grcn"
    raise DataError(f"{folder}: neither an MMRec folder (<name>.inter + <modality>_feat.npy) "
                    "nor a GRCN folder (train.npy, val_full.npy, test_full.npy, feat_v/a/t)")


def read_folder(folder: Path, name: str | None = None) -> Dataset:
    """A dataset folder in either layout."""
    reader = mmrec.read_mmrec if detect_layout(folder) == "mmrec" else grcn.read_grcn
    return read_cold_items(folder, reader(folder, name))


def prepare(name: str, root: Path | None = None, progress: bool = True, force: bool = False) -> Path:
    """Builds a cached built-in into <root>/<name> unless an up-to-date copy is there;
    the folder appears only once complete."""
    if (found := parse_variant(name, list(CACHED))) is not None:
        return prepare_variant(*found, root, progress, force)
    if name not in CACHED:
        raise DataError(f"{name!r} needs no preparation; only {', '.join(CACHED)} are built ahead of use")
    recipe, build = CACHED[name]
    root = datasets_folder(root)
    folder = root / name
    if folder.exists() and not force:
        meta = read_meta(folder) if folder.is_dir() else {}
        if meta.get("recipe") == recipe:
            return folder
        if not meta.get("recipe", "").startswith(f"{name}/"):
            raise DataError(
                f"{folder} exists but was not prepared by ego-dgl; move it away "
                "(ego-dgl replaces only folders it wrote)"
            )
    with steps(progress) as s:
        built = build(s, root)
        with s.step(f"writing {folder}"):
            write_built(built, folder, overwrite=True, recipe=recipe)
    return folder


def prepare_variant(base: str, variant: Variant, root: Path | None = None, progress: bool = True, force: bool = False) -> Path:
    """Prepares the cached built-in `base`, then its variant (cold items, train fraction)
    into <root>/<variant name> unless an up-to-date copy is there; returns that folder."""
    name = variant_name(base, variant.check())
    if variant.is_identity:
        return prepare(base, root, progress, force)
    base_folder = prepare(base, root, progress, force=False)
    base_recipe = read_meta(base_folder).get("recipe", "")
    recipe = f"{name}/1+{base_recipe}"  # starts with "<name>/" like every recipe prepare() writes
    folder = Path(root or datasets_root()) / name
    if folder.exists() and not force:
        meta = read_meta(folder) if folder.is_dir() else {}
        if meta.get("recipe") == recipe:
            return folder
        if not meta.get("recipe", "").startswith(f"{name}/"):
            raise DataError(f"{folder} exists but was not prepared by ego-dgl; move it away "
                            "(ego-dgl replaces only folders it wrote)")
    with steps(progress) as s:
        with s.step(f"making {name}"):
            ds = apply_variant(mmrec.read_mmrec(base_folder, base), variant)
            ds.name = name
            card = read_card(base_folder)
            if card is not None:
                card = card | {"name": name, "recipe": recipe, "fingerprint": ds.fingerprint(), **variant_card(variant, ds)}
                card["split"] = card["split"] | {"sizes": {s: len(ds.split(s)) for s in ("train", "valid", "test")}}
        with s.step(f"writing {folder}"):
            write_built(Built(ds, card), folder, overwrite=True, recipe=recipe)
    return folder


def load_dataset(name_or_path: str | Path, root: Path | None = None, progress: bool = True) -> Dataset:
    """A validated dataset by built-in name or from a folder in MMRec or GRCN layout.

    ml100k and synthetic-tiktok are prepared on first use into `root` (default
    `datasets_root()`) and read from there afterwards; tiktok and movielens are read
    from <root>/tiktok and <root>/movielens.
    """
    name = str(name_or_path)
    if not name.strip():
        raise DataError(f"the dataset name is empty; use one of {known_names()}, or a folder in MMRec or GRCN layout")
    root = Path(root or datasets_root())
    if name in CACHED:
        return mmrec.read_mmrec(prepare(name, root, progress), name)
    if (found := parse_variant(name, list(CACHED))) is not None:
        return read_cold_items(root / name, mmrec.read_mmrec(prepare_variant(*found, root, progress), name))
    if name in PRESETS:
        return make_preset(name).validate()
    if name == "synthetic":
        return make_synthetic_scaled(1.0).validate()
    if m := SCALED.fullmatch(name):
        return make_synthetic_scaled(float(m.group(1))).validate()
    if name in EXTERNAL:
        folder = root / name
        if not grcn.is_grcn(folder):
            raise DataError(
                f"{folder}: {name} not found; put the authors' GRCN/EgoGCN files there (train.npy, val_full.npy, "
                "test_full.npy, user_item_dict.npy, feat_v, feat_a, feat_t as .npy or .pt) or set EGODGL_DATASETS"
            )
        return grcn.read_grcn(folder, name)
    if Path(name).is_dir():
        return read_folder(Path(name))
    if Path(name).exists() or os.sep in name or name.startswith("."):
        raise DataError(f"{name}: no such dataset folder; give a folder in MMRec or GRCN layout, or one of {known_names()}")
    raise DataError(f"unknown dataset {name!r}; use one of {known_names()}, or a folder in MMRec or GRCN layout")
