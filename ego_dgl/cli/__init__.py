"""The `egodgl` command: a thin Click layer over functions the tests call too. The group
and its error handling are in `group`; each module below adds one family of commands."""

from ego_dgl.cli import data, distributed, run, study  # noqa: F401  (each registers its commands)
from ego_dgl.cli.group import main

__all__ = ["main"]
