"""The `egodgl` command: a thin Click layer over functions the tests call too."""

from ego_dgl.cli.app import main

__all__ = ["main"]
