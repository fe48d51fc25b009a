"""Config files for `egodgl train`: TOML or YAML with the same keys as the command-line
options (`layers-mm` or `layers_mm`); the command line wins over the file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ego_dgl.errors import ConfigError
from ego_dgl.train.defaults import option_types
from ego_dgl.untrusted import read_text

MAX_BYTES = 2**20  # a config file names a few dozen options; a megabyte is not one
MAX_DEPTH = 32  # options are scalars under one mapping; deeper nesting is not a config


class NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases: an option file never needs them, and
    nested aliases ("billion laughs") expand exponentially."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"anchors and aliases (& and *) are not allowed in a config file (line {mark.line + 1})")
        return super().compose_node(parent, index)


def nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { in the text (strings not told apart): a cheap bound
    checked before a parser recurses into 100,000 nested lists."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def parse_file(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, by extension (.toml, .yaml/.yml); refused in one line
    when larger than MAX_BYTES, not UTF-8, nested deeper than MAX_DEPTH or (YAML) using
    aliases."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    text = read_text(path, error=ConfigError, limit=MAX_BYTES, hint="save the config file as UTF-8")
    if nesting_depth(text) > MAX_DEPTH:
        raise ConfigError(f"config file {path} nests lists or tables more than {MAX_DEPTH} deep; "
                          "a config file holds option = value lines")
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.load(text, Loader=NoAliasLoader) or {}
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply; a config file holds option = value lines") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option = value")
    return data


def coerce(key: str, value: Any, path: Path) -> Any:
    """The value converted to the option's type (ints are accepted for floats)."""
    kind = option_types()[key]
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not ok:
        raise ConfigError(f"{key} in {path} must be a {kind.__name__}, got {value!r}{yaml_text_number(value)}")
    return value


def yaml_text_number(value: Any) -> str:
    """A hint for a number YAML 1.1 reads as text (1e-3 lacks the '.' its float form needs), else ''."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9]+[eE][-+]?[0-9]+", value.strip()):
        return f" (YAML reads {value} as text; write it as {float(value)!r})"
    return ""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML/YAML file, keys normalised to snake_case; an unknown key is a
    ConfigError that names it."""
    path = Path(path)
    options = {}
    for raw_key, value in parse_file(path).items():
        key = str(raw_key).replace("-", "_")
        if key not in option_types():
            known = ", ".join(k.replace("_", "-") for k in sorted(option_types()))
            raise ConfigError(f"unknown key {raw_key!r} in config file {path}; known keys: {known}")
        options[key] = coerce(key, value, path)
    return options


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--param KEY=VALUE` pairs as typed options: numbers and true/false as the option's
    type says, anything else as given."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--param takes KEY=VALUE, got {pair!r}")
        kind = option_types().get(key)
        if kind is None:
            raise ConfigError(f"--param {key}: no model has this option; egodgl models lists them")
        options[key] = convert_text(key, text.strip(), kind)
    return options


def convert_text(key: str, text: str, kind: type, where: str | None = None) -> Any:
    """A command-line string as an option of type `kind`; `where` names it in errors
    [default: --param KEY]."""
    where = where or f"--param {key}"
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{where} takes true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{where} must be a {kind.__name__}, got {text!r}") from None


def merge_options(from_file: dict[str, Any], from_cli: dict[str, Any]) -> dict[str, Any]:
    """The options set explicitly: the file's, overridden by every command-line option
    that was given (None means not given)."""
    return {**from_file, **{k: v for k, v in from_cli.items() if v is not None}}
