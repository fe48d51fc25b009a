"""Reading the tables users bring (CSV, TSV, Parquet, RecBole atomic files) as columns
of strings, '' meaning missing, so that ids and values compare the same whatever the
file type."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ego_dgl.errors import DataError
from ego_dgl.untrusted import read_text

ATOMIC = (".inter", ".item", ".kg", ".link")  # RecBole atomic files: TSV with `name:type` headers
SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", **{s: "\t" for s in ATOMIC}}
INTEGER = re.compile(r"-?\d+")
PARQUET_HINT = "reading .parquet files needs pyarrow: pip install 'ego-dgl[parquet]' (or pip install pyarrow)"


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as pandas reads it, with one-line errors."""
    try:
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        raise DataError(f"{path}: {PARQUET_HINT}") from None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None


def read_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """A table of strings from a .csv, .tsv, .parquet or RecBole atomic file (whose
    `:type` suffixes are stripped from the column names) in `encoding`; a byte the
    encoding cannot read is one line naming the line and byte, a column named twice too."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = read_parquet(path)
        return table.apply(as_strings) if len(table.columns) else table
    if suffix not in SEPARATORS:
        raise DataError(f"{path}: unknown table type {suffix!r}; use .csv, .tsv, .parquet or RecBole .inter/.item files")
    text = read_text(path, encoding, hint="pass the file's --encoding (e.g. latin-1) or save it as UTF-8")
    try:
        table = pd.read_csv(io.StringIO(text), sep=SEPARATORS[suffix], dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a readable {suffix[1:]} table ({str(err).splitlines()[0]})") from None
    names = [str(c).split(":")[0] if suffix in ATOMIC else str(c) for c in table.columns]
    header = text.split("\n", 1)[0].rstrip("\r").split(SEPARATORS[suffix])
    twice = [c for c in dict.fromkeys(names) if names.count(c) > 1] or [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}: the header names column {twice[0]!r} twice; give every column its own name")
    return table.set_axis(names, axis=1)


def as_strings(column: pd.Series) -> pd.Series:
    """Values as strings ('' for missing); whole floats lose their '.0' so 7.0 matches 7
    (those an int64 holds exactly: |x| < 2**53; larger ones stay as numpy prints them)."""
    missing = column.isna()
    present = column[~missing]
    if pd.api.types.is_float_dtype(column) and bool(((present % 1 == 0) & (present.abs() < 2**53)).all()):
        column = column.astype("Int64")
    return column.astype(str).where(~missing, "")


def require_columns(table: pd.DataFrame, columns: list[str], path: Path, option: str) -> None:
    """A one-line error naming the first missing column and the ones the file has."""
    for col in columns:
        if col not in table.columns:
            have = ", ".join(map(str, table.columns[:12])) + (", ..." if len(table.columns) > 12 else "")
            raise DataError(f"{path}: no column {col!r} (given by {option}); the file's columns are: {have}")


def id_order(raw: pd.Series | list[str]) -> list[str]:
    """Distinct raw ids in the order dense ids follow: numeric when every id is an
    integer, else as text."""
    ids = set(raw)
    if all(INTEGER.fullmatch(i) for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def first_empty(column: pd.Series) -> int | None:
    """The 1-based data row of the first empty value, or None."""
    empty = np.flatnonzero((column.str.strip() == "").to_numpy())
    return int(empty[0]) + 1 if len(empty) else None
