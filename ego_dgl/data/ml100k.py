"""The built-in default dataset: MovieLens-100K as bundled in the PyPI package recbole
(found on disk, never imported), every rating an implicit positive, with three item
modalities: `text` (all-MiniLM-L6-v2 embedding of "Title (year)"), `genre` (19-d
multi-hot, L2-normalised) and `kg` (Freebase triples -> TF-IDF -> 64-d SVD). One
recipe of the general builder (build.py), which does all but the kg."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer

from ego_dgl.data.build import BuildConfig, Built, ModalitySpec, Table, build_tables
from ego_dgl.data.progress import Steps
from ego_dgl.data.tables import read_table
from ego_dgl.data.text import cache_folder
from ego_dgl.errors import DataError

RECIPE = "ml100k/1"  # bump when the preparation below changes, to rebuild old caches
SEED = 0
KG_DIM = 64
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def source_folder() -> Path:
    """recbole's bundled dataset_example/ml-100k folder."""
    spec = importlib.util.find_spec("recbole")
    folder = next(iter(spec.submodule_search_locations), None) if spec and spec.submodule_search_locations else None
    path = Path(folder or ".") / "dataset_example" / "ml-100k"
    if folder is None or not (path / "ml-100k.inter").exists():
        raise DataError(
            "ml100k needs the MovieLens-100K files bundled in the PyPI package recbole; "
            "install them with: pip install --no-deps recbole==1.2.1 (./install.sh does this)"
        )
    return path


def kg_features(kg: pd.DataFrame, link: pd.DataFrame, items: dict[str, int], dim: int = KG_DIM) -> tuple[np.ndarray, np.ndarray]:
    """Each linked item's bag of (relation, tail) pairs from the triples whose head is
    the item's entity -> TF-IDF -> TruncatedSVD(dim). Only heads: the file already
    holds each relation in both directions (film.film.genre and
    film.film_genre.films_in_this_genre), so tails would repeat the same facts.
    Pairs shared by fewer than two items say nothing about similarity and are dropped.
    Returns features [Q, dim] (zero rows for unlinked items) and the coverage mask."""
    link = link[link["item_id"].isin(items)]
    entity_item = dict(zip(link["entity_id"], link["item_id"].map(items)))
    facts = kg[kg["head_id"].isin(entity_item)]
    rows = facts["head_id"].map(entity_item).to_numpy()
    token = (facts["relation_id"] + "\t" + facts["tail_id"]).to_numpy()
    vocab, cols = np.unique(token, return_inverse=True)
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(items), len(vocab)))
    shared = np.asarray((counts > 0).sum(axis=0)).ravel() >= 2
    counts = counts[:, shared]
    mask = np.asarray(counts.sum(axis=1)).ravel() > 0
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts[mask])
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=SEED)
    x = np.zeros((len(items), dim), dtype=np.float32)
    x[mask] = svd.fit_transform(tfidf).astype(np.float32)
    return x, mask


def recipe_config() -> BuildConfig:
    """ml100k as builder options: every rating a positive, no k-core, 8:1:1 at random."""
    return BuildConfig(
        interactions="ml-100k.inter",
        items="ml-100k.item",
        title="title",
        modalities=(ModalitySpec("text", "text", ("title",)), ModalitySpec("genre", "categories", ("class",), " ", vocabulary=GENRES)),
        seed=SEED,
        name="ml100k",
    )


def build_ml100k(steps: Steps, root: Path) -> Built:
    """recbole's files through the builder, with the Freebase kg as the recipe's side data."""
    src = source_folder()
    files = {kind: src / f"ml-100k.{kind}" for kind in ("inter", "item", "kg", "link")}
    for path in files.values():
        if not path.exists():
            raise DataError(f"{path}: file not found; reinstall recbole (pip install --no-deps recbole==1.2.1)")
    with steps.step("reading MovieLens-100K"):
        item_table = read_table(files["item"])
        titles = [f"{t} ({y})" if y else t for t, y in zip(item_table["movie_title"], item_table["release_year"])]
        inter = Table(read_table(files["inter"]), files["inter"])
        items = Table(item_table.assign(title=titles), files["item"])

    def kg(item_ids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with steps.step("knowledge graph: TF-IDF + SVD"):
            index = {raw: k for k, raw in enumerate(item_ids)}
            return {"kg": kg_features(read_table(files["kg"]), read_table(files["link"]), index)}

    return build_tables(inter, items, recipe_config(), steps, cache_folder(root), list(files.values()), kg, RECIPE)
