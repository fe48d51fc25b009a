"""Runs the `egodgl` command from a source checkout (`python cli.py ...`); the installed
console script points at `ego_dgl.cli:main`, so this file is not installed."""

from ego_dgl.cli import main

if __name__ == "__main__":
    main()
