"""`python -m ego_dgl.cli ...`: the `egodgl` command, for launchers that need a Python module."""

from ego_dgl.cli import main

main()
