"""Reading what a user hands over: text that may not be UTF-8, JSON that may hold anything,
and records whose fields are checked (type, presence, range) before any is used. Every
failure is one line naming the file and the field, raised as the caller's error class."""

from __future__ import annotations

import json
import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ego_dgl.errors import DataError, EgoDGLError

MAX_SEED = 2**32 - 1  # the one seed range (numpy's) of every seed option and file; DGL's is mapped onto its own
MAX_COUNT = 2**63 - 1  # torch's int64: a larger count, size or cut-off overflows its arithmetic and indexing
MAX_JSON_BYTES = 64 * 2**20  # ego-dgl's own JSON files are kilobytes; a bigger one is not ours
JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "true/false",
              type(None): "null"}


def beyond_int64(value: Any) -> bool:
    """Whether `value` is an integer outside ±MAX_COUNT, which torch's int64 cannot take."""
    return type(value) is int and not -MAX_COUNT <= value <= MAX_COUNT


def kind_name(value: Any) -> str:
    """How a parsed JSON/TOML/YAML value is called in messages ('a list', 'a string', ...)."""
    return JSON_NAMES.get(type(value), f"a {type(value).__name__}")


def decode(data: bytes, path: Path | str, encoding: str = "utf-8", error: type[EgoDGLError] = DataError,
           hint: str = "save it as UTF-8") -> str:
    """`data` read from `path` as text; a byte the encoding cannot read is one line naming the
    file, the line and the byte offset."""
    try:
        return data.decode(encoding)
    except LookupError:
        raise error(f"{encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1, cp1252)") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}: line {line}, byte {err.start} (0x{data[err.start]:02x}) is not {encoding.upper()} text; {hint}") from None


def read_text(path: Path | str, encoding: str = "utf-8", error: type[EgoDGLError] = DataError,
              limit: int | None = None, hint: str = "save it as UTF-8") -> str:
    """A text file, refused in one line when unreadable, not a regular file (a FIFO blocks,
    /dev/zero never ends: their size is 0), larger than `limit` bytes or not in `encoding`."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):  # a folder: reading it says so below
            raise error(f"{path}: not a regular file (a device, pipe or socket); give a file")
        if limit is not None and info.st_size > limit:
            raise error(f"{path}: {info.st_size:,} bytes, more than the {limit:,} such a file can need; is it the right file?")
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err}); check the path") from None
    return decode(data, path, encoding, error, hint)


def read_json(path: Path | str, error: type[EgoDGLError] = DataError, hint: str = "fix or delete the file") -> Any:
    """A JSON file's value; unreadable, oversized, not UTF-8, not JSON or nested beyond
    Python's recursion limit is one line naming the file."""
    text = read_text(path, error=error, limit=MAX_JSON_BYTES, hint=hint)
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{path}: nested too deeply to be an ego-dgl file; {hint}") from None
    except ValueError as err:
        raise error(f"{path}: not valid JSON ({err}); {hint}") from None


@dataclass(frozen=True)
class Field:
    """One field of a record: its type(s), whether it must be present, and for numbers the
    allowed range (None: unbounded; floats must also be finite unless `finite` is False)."""

    kind: type | tuple[type, ...]
    required: bool = True
    low: float | None = None
    high: float | None = None
    finite: bool = True


def type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that true/false is no number and an integer is a float."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds) or (float in kinds and isinstance(value, int))


def _range_error(value: Any, spec: Field) -> str | None:
    """Why a number is out of `spec`'s range, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and math.isnan(value) or spec.finite and not math.isfinite(value):
        return "must be a finite number"
    if spec.low is not None and value < spec.low:
        return f"must be at least {spec.low:g}"
    if spec.high is not None and value > spec.high:
        return f"must be at most {spec.high:g}"
    return None


def check_record(value: Any, fields: dict[str, Field], where: str, error: type[EgoDGLError] = DataError,
                 hint: str = "fix or delete the file", extra_ok: bool = False) -> dict[str, Any]:
    """`value` checked to be an object with `fields`: every required key present, no
    unknown key (unless `extra_ok`), each value of its type and range. The message names
    `where` (the file, and the section within it) and the field."""
    if not isinstance(value, dict):
        raise error(f"{where}: must be a JSON object, found {kind_name(value)}; {hint}")
    for key, spec in fields.items():
        if key not in value:
            if spec.required:
                raise error(f"{where}: field {key!r} is missing; {hint}")
            continue
        if not type_ok(value[key], spec.kind):
            kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
            wanted = " or ".join(JSON_NAMES.get(k, k.__name__) for k in kinds)
            raise error(f"{where}: field {key!r} must be {wanted}, found {value[key]!r:.60}; {hint}")
        problem = _range_error(value[key], spec)
        if problem:
            raise error(f"{where}: field {key!r} {problem}, found {value[key]!r}; {hint}")
    unknown = sorted(str(k) for k in value if k not in fields)
    if unknown and not extra_ok:
        raise error(f"{where}: unknown field {unknown[0]!r}; {hint}")
    return value


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1: ESC starts a terminal sequence


def printable(text: str) -> str:
    """`text` with its control characters written out ('\\x1b'): a title or path from
    someone's file cannot move the cursor, clear the screen or retitle the terminal."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class SafeConsole(Console):
    """rich's Console printing every string through `printable` (rich itself passes ESC
    sequences on); its own styling is unaffected, as that is not in the strings."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        return super().render_str(printable(text), **kwargs)

