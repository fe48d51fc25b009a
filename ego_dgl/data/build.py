"""`egodgl data build`: from an interactions table and an item table to a dataset in the
MMRec layout with a card saying how it was made. The built-in ml100k is one recipe of
this builder (see ml100k.py)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ego_dgl import __version__
from ego_dgl.data.dataset import MODALITY_NAME, SPLITS, Dataset
from ego_dgl.data.files import atomic_folder, is_empty_folder, load_npy
from ego_dgl.data.mmrec import write_mmrec_files
from ego_dgl.data.progress import Steps
from ego_dgl.data.split import check_ratios, split_per_user, split_temporal
from ego_dgl.data.tables import (
    as_strings,
    first_empty,
    id_order,
    read_parquet,
    read_table,
    require_columns,
)
from ego_dgl.data.text import DIM, MODEL, embed_texts
from ego_dgl.data.validate import check_card
from ego_dgl.data.variants import Variant, apply_variant, write_cold_items
from ego_dgl.errors import ConfigError, DataError
from ego_dgl.untrusted import decode, read_json, read_text

CARD = "card.json"
CARD_FORMAT = "ego-dgl-card/1"
KINDS = ("text", "categories", "numbers", "embedding")


@dataclass(frozen=True)
class ModalitySpec:
    """One item modality: `columns` of the item table (text, categories, numbers) or a
    `file` of precomputed vectors (embedding). `vocabulary` fixes the category order."""

    name: str
    kind: str
    columns: tuple[str, ...] = ()
    sep: str = "|"
    file: str | None = None
    vocabulary: tuple[str, ...] | None = None


@dataclass
class BuildConfig:
    """Every option of a build; recorded in the card."""

    interactions: str
    items: str | None = None
    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    time: str = "timestamp"
    item_key: str | None = None  # the item table's id column [default: `item`]
    title: str | None = None  # item-table column shown by `recommend`
    min_rating: float | None = None
    k_core: int = 0
    split: str = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    modalities: tuple[ModalitySpec, ...] = ()
    name: str | None = None
    cold_items: float = 0.0  # share of items kept out of training (data/variants.py)
    train_fraction: float = 1.0  # share of each user's training interactions kept
    encoding: str = "utf-8"  # of the text tables and embedding id files (MovieLens-1M's are latin-1)

    def variant(self) -> Variant:
        return Variant(self.cold_items, self.train_fraction, self.seed)


@dataclass
class Built:
    """A built dataset and its card (None for generated built-ins)."""

    ds: Dataset
    card: dict | None = None


# Side data a recipe computes once the items are known: raw item ids (dense order) ->
# {modality: (features [Q, d], coverage mask [Q])}.
Extra = Callable[[list[str]], dict[str, tuple[np.ndarray, np.ndarray]]]


@dataclass
class Table:
    """A table and the file it came from (for error messages and the card)."""

    frame: pd.DataFrame
    path: Path


def parse_modality(kind: str, value: str) -> ModalitySpec:
    """NAME=col1,col2 (text, numbers), NAME=col[:sep] (categories), NAME=FILE (embedding)."""
    name, eq, rest = value.partition("=")
    if not eq or not name or not rest:
        shape = {"text": "NAME=col1,col2", "categories": "NAME=col[:sep]", "numbers": "NAME=col1,col2",
                 "embedding": "NAME=FILE"}[kind]
        raise DataError(f"--{kind} {value!r}: expected {shape}")
    if not MODALITY_NAME.fullmatch(name):
        raise DataError(f"--{kind} {value!r}: modality name {name!r} is not usable; use letters, digits, '_', '-' or '.'")
    if kind == "embedding":
        return ModalitySpec(name, kind, file=rest)
    if kind == "categories":
        col, _, sep = rest.partition(":")
        return ModalitySpec(name, kind, (col,), sep or "|")
    return ModalitySpec(name, kind, tuple(c.strip() for c in rest.split(",") if c.strip()))


def parse_ratios(value: str) -> tuple[float, float, float]:
    """--ratios '8:1:1' or '0.8,0.1,0.1' as fractions summing to 1."""
    try:
        parts = [float(p) for p in value.replace(",", ":").split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or not 0 < sum(parts) < math.inf:  # NaN fails the last test too
        raise ConfigError(f"--ratios {value!r}: give three non-negative finite numbers, e.g. 8:1:1")
    return tuple(p / sum(parts) for p in parts)


def config_from_options(out: Path, ratios: str, text: tuple[str, ...], categories: tuple[str, ...], numbers: tuple[str, ...],
                        embedding: tuple[str, ...], name: str | None, time_col: str, **options) -> BuildConfig:
    """The BuildConfig of `egodgl data build OUT`'s options: each modality option parsed
    (`parse_modality`), the ratios as fractions, the name OUT's unless given."""
    specs = tuple(parse_modality(kind, v) for kind, values in
                  (("text", text), ("categories", categories), ("numbers", numbers), ("embedding", embedding)) for v in values)
    return BuildConfig(**options, time=time_col, ratios=parse_ratios(ratios), modalities=specs, name=name or out.name)


def check_config(cfg: BuildConfig) -> None:
    """Option errors found before any file is read."""
    names = [m.name for m in cfg.modalities]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise DataError(f"modality {dup!r} is given twice; give each modality its own name")
    if not cfg.modalities:
        raise DataError("no item modality given; add --text, --categories, --numbers or --embedding")
    if cfg.items is None and any(m.kind != "embedding" for m in cfg.modalities):
        raise DataError("--text, --categories and --numbers read the item table; give it with --items FILE")
    if cfg.split not in ("random", "temporal"):
        raise DataError(f"--split {cfg.split!r}: use random or temporal")
    decode(b"", "--encoding", cfg.encoding)  # an unknown encoding fails before any file is read
    if cfg.k_core < 0:
        raise DataError("--k-core must be 0 (off) or a positive number of interactions")
    check_ratios(cfg.ratios)
    cfg.variant().check()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- interactions -----------------------------------------------------------------------


def _counts(stage: str, table: pd.DataFrame) -> dict:
    return {"stage": stage, "interactions": int(len(table)), "users": int(table["user"].nunique()),
            "items": int(table["item"].nunique())}


def _numbers(column: pd.Series, path: Path, col: str, what: str) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        raise DataError(f"{path}: column {col!r} holds {column.iloc[bad[0]]!r} on data row {bad[0] + 1}; {what}")
    return values.to_numpy(dtype=np.float64)


def _times(column: pd.Series, path: Path, col: str) -> np.ndarray:
    """Numbers (e.g. unix seconds) or dates, as comparable float64."""
    numeric = pd.to_numeric(column.str.strip(), errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)
    dates = pd.to_datetime(column.str.strip(), errors="coerce", utc=True)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        raise DataError(f"{path}: column {col!r} holds {column.iloc[bad[0]]!r} on data row {bad[0] + 1}; "
                        "times must be numbers or dates")
    return (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def k_core(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drops users and items with fewer than k interactions until none is left to drop."""
    while k > 0 and len(table):
        keep = (table.groupby("user")["item"].transform("size") >= k) & (table.groupby("item")["user"].transform("size") >= k)
        if keep.all():
            break
        table = table[keep]
    return table


def clean_interactions(inter: Table, cfg: BuildConfig) -> tuple[pd.DataFrame, list[dict]]:
    """Columns user, item (raw strings) and time (temporal split), after --min-rating,
    collapsing duplicates (the earliest kept) and --k-core; with the counts after each."""
    path, frame = inter.path, inter.frame
    cols = {"user": (cfg.user, "--user"), "item": (cfg.item, "--item")}
    if cfg.min_rating is not None:
        cols["rating"] = (cfg.rating, "--rating")
    if cfg.split == "temporal":
        cols["time"] = (cfg.time, "--time")
    for col, option in cols.values():
        require_columns(frame, [col], path, option)
    for key in ("user", "item"):
        row = first_empty(frame[cols[key][0]])
        if row is not None:
            n = int((frame[cols[key][0]].str.strip() == "").sum())
            raise DataError(f"{path}: the {key} column {cols[key][0]!r} is empty (NaN) in {n} rows (first: data row {row}); "
                            "fill or drop those rows")
    table = pd.DataFrame({"user": frame[cfg.user].str.strip(), "item": frame[cfg.item].str.strip()})
    for key in ("user", "item"):
        odd = table[key][[len(v.splitlines()) != 1 or "\t" in v for v in table[key]]]
        if len(odd):
            raise DataError(f"{path}: {key} id {odd.iloc[0]!r} holds a tab or line break; ids must be one-line text")
    if cfg.split == "temporal":
        table["time"] = _times(frame[cfg.time], path, cfg.time)
    counts = [_counts("read", table)]
    if not len(table):
        raise DataError(f"{path}: no interactions; the file has a header and no rows")
    if cfg.min_rating is not None:
        rating = _numbers(frame[cfg.rating], path, cfg.rating, "ratings must be numbers")
        table = table[rating >= cfg.min_rating]
        counts.append(_counts(f"rating >= {cfg.min_rating:g}", table))
        if not len(table):
            raise DataError(f"{path}: no rating reaches --min-rating {cfg.min_rating:g}; lower it")
    if "time" in table:
        table = table.sort_values("time", kind="stable")
    table = table.drop_duplicates(["user", "item"])
    counts.append(_counts("duplicates collapsed", table))
    if cfg.k_core:
        table = k_core(table, cfg.k_core)
        counts.append(_counts(f"{cfg.k_core}-core", table))
        if not len(table):
            before = counts[-2]
            raise DataError(f"--k-core {cfg.k_core} removes every interaction ({before['users']:,} users, "
                            f"{before['items']:,} items before it); lower it")
    return table, counts


def split_interactions(table: pd.DataFrame, users: dict[str, int], items: dict[str, int], cfg: BuildConfig):
    """(train, valid, test) dense pairs by --split."""
    pairs = np.stack([table["user"].map(users).to_numpy(), table["item"].map(items).to_numpy()], axis=1).astype(np.int64)
    if cfg.split == "temporal":
        return split_temporal(pairs, table["time"].to_numpy(), len(users), cfg.ratios)
    return split_per_user(pairs, len(users), seed=cfg.seed, ratios=cfg.ratios)


# --- item modalities --------------------------------------------------------------------


def align_items(items: Table, key: str, raw_ids: list[str], option: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The item table's rows in dense item order ('' where an item has no row) and
    which items have a row."""
    frame, path = items.frame, items.path
    require_columns(frame, [key], path, option)
    keys = frame[key].str.strip()
    dup = keys[keys.duplicated()]
    if len(dup):
        raise DataError(f"{path}: item {dup.iloc[0]!r} has more than one row; keep one row per item")
    present = np.isin(np.asarray(raw_ids, dtype=object), keys.to_numpy(dtype=object))
    if not present.any():
        raise DataError(f"{path}: none of the {len(raw_ids):,} interacted items is in the item table "
                        f"(interactions have e.g. {raw_ids[0]!r}, the table e.g. {keys.iloc[0] if len(keys) else None!r}); "
                        "check the id columns (--item, --item-key)")
    aligned = frame.assign(**{key: keys}).set_index(keys).reindex(raw_ids).fillna("")
    return aligned, present


def _normalised(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def category_features(values: list[str], sep: str, vocabulary: tuple[str, ...] | None, where: str) -> tuple[np.ndarray, list[str]]:
    """Multi-hot over the categories (sorted, unless a vocabulary fixes them), rows
    L2-normalised; returns the matrix and the categories."""
    sep = sep if sep.strip() else None  # a blank separator splits on any whitespace
    tokens = [[t.strip() for t in v.split(sep) if t.strip()] for v in values]
    vocab = list(vocabulary) if vocabulary is not None else sorted({t for ts in tokens for t in ts})
    column = {c: k for k, c in enumerate(vocab)}
    x = np.zeros((len(values), len(vocab)), dtype=np.float32)
    for row, ts in enumerate(tokens):
        for t in ts:
            if t not in column:
                raise DataError(f"{where}: unknown category {t!r}; known: {', '.join(vocab)}")
            x[row, column[t]] = 1.0
    return _normalised(x), vocab


def number_features(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each column standardised over the items that have it; a missing value becomes the
    mean (0); an item without any value is masked."""
    x = np.zeros((len(frame), len(columns)), dtype=np.float64)
    have = np.zeros((len(frame), len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        text = frame[col].str.strip()
        have[:, j] = (text != "").to_numpy()
        values = _numbers(text[have[:, j]], path, col, "--numbers columns must hold numbers")
        if len(values):
            std = values.std()
            x[have[:, j], j] = (values - values.mean()) / (std if std > 0 else 1.0)
    return x.astype(np.float32), have.any(axis=1)


def load_embedding(spec: ModalitySpec, raw_ids: list[str], known_ids: set[str], item_col: str,
                   encoding: str = "utf-8") -> tuple[np.ndarray, np.ndarray]:
    """Precomputed vectors keyed by raw item id: a .parquet with an id column (named like
    --item, else the first) and a list column or number columns, or a 2-D .npy whose
    rows follow the ids in FILE.ids.txt (one per line). Returns features and coverage."""
    path = Path(spec.file)
    if not path.is_file():
        raise DataError(f"--embedding {spec.name}: {path}: file not found")
    ids, vectors = _parquet_vectors(path, item_col) if path.suffix.lower() == ".parquet" else _npy_vectors(path, encoding)
    if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.issubdtype(vectors.dtype, np.number) or np.iscomplexobj(vectors):
        raise DataError(f"{path}: vectors of shape {vectors.shape} and dtype {vectors.dtype}; give one real-valued row per item")
    if len(ids) != len(vectors):
        raise DataError(f"{path}: {len(vectors):,} vectors for {len(ids):,} ids; give one id per row")
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: item {pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]!r} has more than one vector")
    unknown = [i for i in ids if i not in known_ids]
    if unknown:
        raise DataError(f"{path}: {len(unknown):,} ids are not items of the interactions or the item table "
                        f"(first: {unknown[0]!r}); key the rows by the raw item ids")
    if not np.isfinite(vectors).all():
        raise DataError(f"{path}: vectors contain NaN or inf; leave those items out instead (they get a coverage mask)")
    row = {i: k for k, i in enumerate(ids)}
    at = np.array([row.get(i, -1) for i in raw_ids])
    x = np.zeros((len(raw_ids), vectors.shape[1]), dtype=np.float32)
    x[at >= 0] = vectors[at[at >= 0]]
    return x, at >= 0


def _npy_vectors(path: Path, encoding: str) -> tuple[list[str], np.ndarray]:
    ids_path = path.with_suffix(".ids.txt")
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: embeddings must be a .npy or .parquet file")
    if not ids_path.is_file():
        raise DataError(f"{path}: the raw item id of each row must be in {ids_path.name} (one per line)")
    vectors = load_npy(path)  # its header checked against the file's length before numpy allocates
    text = read_text(ids_path, encoding, hint="pass the file's --encoding (e.g. latin-1) or save it as UTF-8")
    return [line.strip() for line in text.splitlines() if line.strip()], vectors


def _parquet_vectors(path: Path, item_col: str) -> tuple[list[str], np.ndarray]:
    frame = read_parquet(path)
    if frame.shape[1] < 2:
        raise DataError(f"{path}: needs an id column and a vector column (or number columns)")
    key = item_col if item_col in frame.columns else frame.columns[0]
    ids = as_strings(frame[key]).str.strip().tolist()
    rest = frame.drop(columns=[key])
    try:
        if rest.shape[1] == 1 and rest.iloc[:, 0].dtype == object:
            lengths = {len(v) for v in rest.iloc[:, 0]}
            if len(lengths) > 1:
                raise DataError(f"{path}: vectors of different widths ({', '.join(map(str, sorted(lengths)[:4]))}); "
                                "give every item a vector of the same width")
            vectors = np.stack([np.asarray(v, dtype=np.float32) for v in rest.iloc[:, 0]])
        else:
            vectors = rest.to_numpy(dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{path}: vector columns must hold numbers") from None
    return ids, vectors


def item_modalities(cfg: BuildConfig, items: Table | None, raw_ids: list[str], known_ids: set[str],
                    steps: Steps, text_cache: Path | None) -> tuple[dict, dict, list[dict]]:
    """Features, masks (only for modalities that miss some items) and card rows."""
    features, masks, rows = {}, {}, []
    aligned, present = None, None
    if items is not None:
        aligned, present = align_items(items, cfg.item_key or cfg.item, raw_ids,
                                       "--item-key" if cfg.item_key else "--item")
    for spec in cfg.modalities:
        where = f"{items.path if items else spec.file} ({spec.kind} {spec.name})"
        info: dict = {"name": spec.name, "kind": spec.kind}
        if spec.kind == "embedding":
            x, mask = load_embedding(spec, raw_ids, known_ids, cfg.item, cfg.encoding)
            info["file"] = spec.file
        else:
            require_columns(items.frame, list(spec.columns), items.path, f"--{spec.kind} {spec.name}")
            info["columns"] = list(spec.columns)
            cells = aligned[list(spec.columns)].apply(lambda c: c.str.strip())
            if not (cells != "").to_numpy().any():
                raise DataError(f"{items.path}: --{spec.kind} {spec.name}: column(s) {', '.join(spec.columns)} "
                                "are empty for every interacted item; choose columns with values")
            if spec.kind == "text":
                texts = [" ".join(v for v in row if v) for row in cells.itertuples(index=False)]
                mask = np.array([t != "" for t in texts])
                x = np.zeros((len(texts), DIM), dtype=np.float32)
                x[mask] = embed_texts([t for t, m in zip(texts, mask) if m], steps, spec.name, text_cache)
                info["model"] = MODEL
            elif spec.kind == "categories":
                with steps.step(f"{spec.name}: categories"):
                    x, vocab = category_features(cells.iloc[:, 0].tolist(), spec.sep, spec.vocabulary, where)
                mask = (cells.iloc[:, 0] != "").to_numpy()
                info |= {"separator": spec.sep, "categories": vocab}
            else:
                with steps.step(f"{spec.name}: numbers"):
                    x, mask = number_features(aligned, spec.columns, items.path)
        features[spec.name] = x
        if not mask.all():
            masks[spec.name] = mask
        rows.append(info | {"dim": int(x.shape[1]), "items_with": int(mask.sum()), "coverage": float(mask.mean())})
    return features, masks, rows


# --- the whole build ----------------------------------------------------------------------


def build_tables(inter: Table, items: Table | None, cfg: BuildConfig, steps: Steps, text_cache: Path | None,
                 sources: list[Path], extra: Extra | None = None, recipe: str | None = None) -> Built:
    """The dataset and its card from tables already read (recipes prepare columns first)."""
    start = time.perf_counter()
    check_config(cfg)
    with steps.step("cleaning interactions"):
        table, counts = clean_interactions(inter, cfg)
        user_ids, item_ids = id_order(table["user"]), id_order(table["item"])
        users, dense = ({r: k for k, r in enumerate(ids)} for ids in (user_ids, item_ids))
    with steps.step(f"splitting {cfg.split} per user"):
        train, valid, test = split_interactions(table, users, dense, cfg)
    known = set(inter.frame[cfg.item].str.strip())
    if items is not None:
        key = cfg.item_key or cfg.item
        known |= set(items.frame[key].str.strip()) if key in items.frame else set()
    features, masks, rows = item_modalities(cfg, items, item_ids, known, steps, text_cache)
    if extra is not None:
        for name, (x, mask) in extra(item_ids).items():
            features[name] = x
            if not mask.all():
                masks[name] = mask
            rows.append({"name": name, "kind": "recipe", "dim": int(x.shape[1]), "items_with": int(mask.sum()),
                         "coverage": float(mask.mean())})
    titles = None
    if cfg.title is not None:
        aligned, _ = align_items(items, cfg.item_key or cfg.item, item_ids, "--title")
        require_columns(items.frame, [cfg.title], items.path, "--title")
        titles = [t or raw for t, raw in zip(aligned[cfg.title].str.strip(), item_ids)]
    name = cfg.name or Path(inter.path).stem
    ds = Dataset(name=name, num_users=len(user_ids), num_items=len(item_ids), train=train, valid=valid, test=test,
                 features=features, feature_masks=masks, item_titles=titles, user_ids=user_ids, item_ids=item_ids,
                 sources={s: str(inter.path) for s in SPLITS}).validate()
    ds = apply_variant(ds, cfg.variant(), cfg.ratios)
    held = np.bincount(np.concatenate([ds.valid[:, 0], ds.test[:, 0]]), minlength=ds.num_users)
    card = {
        "format": CARD_FORMAT,
        "name": name,
        "built_by": f"ego-dgl {__version__}",
        "recipe": recipe,
        "sources": [{"path": str(p), "bytes": Path(p).stat().st_size, "sha256": sha256_file(Path(p))} for p in sources],
        "options": asdict(cfg),
        "counts": counts,
        "split": {
            "kind": cfg.split,
            "ratios": list(cfg.ratios),
            "seed": cfg.seed if cfg.split == "random" else None,
            "sizes": {s: int(len(ds.split(s))) for s in SPLITS},
            "users_train_only": int((held == 0).sum()),
            "note": "as MMRec does, a user whose share of valid/test rounds to nothing keeps every "
                    "interaction in train (e.g. with 8:1:1, users with 4 or fewer)",
        },
        "modalities": rows,
        **variant_card(cfg.variant(), ds),
        "users": ds.num_users,
        "items": ds.num_items,
        "fingerprint": ds.fingerprint(),
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    return Built(ds, card)


def variant_card(variant: Variant, ds: Dataset) -> dict:
    """The card's "variant" entry (cold items, train fraction), absent for plain datasets."""
    if variant.is_identity:
        return {}
    cold = len(ds.cold_items) if ds.has_cold_items else 0
    return {"variant": variant.card() | {"cold_item_count": cold, "train_interactions": len(ds.train)}}


def build(cfg: BuildConfig, steps: Steps, text_cache: Path | None) -> Built:
    """`egodgl data build`: read the files named in `cfg` and build."""
    check_config(cfg)
    with steps.step("reading tables"):
        inter = Table(read_table(Path(cfg.interactions), cfg.encoding), Path(cfg.interactions))
        items = Table(read_table(Path(cfg.items), cfg.encoding), Path(cfg.items)) if cfg.items else None
    files = [Path(m.file) for m in cfg.modalities if m.file]
    sources = [inter.path] + ([items.path] if items else []) + files + [f.with_suffix(".ids.txt") for f in files]
    return build_tables(inter, items, cfg, steps, text_cache, [p for p in sources if p.is_file()])


def check_destination(folder: Path, overwrite: bool) -> None:
    """Refuses an existing non-empty folder before any work unless --overwrite; an empty
    one is taken over when the build succeeds (and left as it was when it fails)."""
    folder = Path(folder)
    if folder.exists() and not is_empty_folder(folder) and not overwrite:
        raise DataError(f"{folder} already exists and is not empty; choose another folder or pass --overwrite")


def write_built(built: Built, folder: Path, overwrite: bool = False, recipe: str | None = None) -> Path:
    """The MMRec files, raw ids, card.json and README.md, atomically."""
    folder = Path(folder)
    with atomic_folder(folder, overwrite, take_empty=True) as tmp:
        write_mmrec_files(tmp, folder.name, built.ds, recipe)
        write_cold_items(tmp, built.ds)
        if built.card is not None:
            (tmp / CARD).write_text(json.dumps(built.card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            (tmp / "README.md").write_text(card_markdown(built.card), encoding="utf-8")
    return folder


def read_card(folder: Path) -> dict | None:
    """A dataset folder's card.json, or None."""
    path = Path(folder) / CARD
    if not path.is_file():
        return None
    card = read_json(path, hint="rebuild the dataset or delete the file")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise DataError(f"{path}: not an ego-dgl dataset card ({CARD_FORMAT}); rebuild the dataset or delete the file")
    return check_card(card, path)


def card_markdown(card: dict) -> str:
    """The card as a short README."""
    lines = [f"# {card['name']}", "", f"Built by {card['built_by']} in {card['build_seconds']} s"
             + (f" (recipe {card['recipe']})" if card.get("recipe") else "") + ".", "", "## Sources", ""]
    lines += [f"- `{s['path']}` ({s['bytes']:,} bytes, sha256 `{s['sha256']}`)" for s in card["sources"]]
    lines += ["", "## Interactions", "", "| stage | interactions | users | items |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {c['stage']} | {c['interactions']:,} | {c['users']:,} | {c['items']:,} |" for c in card["counts"]]
    split = card["split"]
    sizes = ", ".join(f"{s} {n:,}" for s, n in split["sizes"].items())
    lines += ["", f"Split {split['kind']} per user, ratios {split['ratios']}: {sizes}. "
              f"{split['users_train_only']:,} users keep all their interactions in train ({split['note']}).",
              "", "## Modalities", "", "| modality | kind | from | dim | coverage |", "| --- | --- | --- | ---: | ---: |"]
    for m in card["modalities"]:
        origin = ", ".join(m.get("columns", [])) or m.get("file") or "recipe"
        lines.append(f"| {m['name']} | {m['kind']} | {origin} | {m['dim']} | {m['coverage']:.1%} |")
    if "variant" in card:
        v = card["variant"]
        lines += ["", (f"Variant (seed {v['seed']}): {v['cold_item_count']:,} cold items ({v['cold_items']:.0%} of the items, "
                       f"every interaction in valid/test, listed in cold_items.txt); {v['train_fraction']:.0%} of each user's "
                       f"training interactions kept ({v['train_interactions']:,}).")]
    lines += ["", "Options: `" + json.dumps(card["options"], ensure_ascii=False) + "`", ""]
    return "\n".join(lines)
