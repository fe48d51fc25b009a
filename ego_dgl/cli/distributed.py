"""`egodgl dist-launch`: a DistDGL training job on this machine."""

from __future__ import annotations

import sys

import click

from ego_dgl.cli.group import main
from ego_dgl.cli.ranges import POSITIVE


@main.command("dist-launch", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--parts-config", type=click.Path(dir_okay=False), required=True,
    help="The partition config, OUT/<name>.json of egodgl data partition.")
@click.option("--trainers", type=POSITIVE, default=1, show_default=True, help="Trainer processes in all (a multiple of the partitions).")
@click.option("--servers", type=POSITIVE, default=1, show_default=True, help="Graph server processes per partition.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def dist_launch_command(parts_config: str, trainers: int, servers: int, command: tuple[str, ...]) -> None:
    """Run a DistDGL training job on this machine: graph servers for every partition and
    the trainers, all on 127.0.0.1; COMMAND is a train command (after --), e.g.
    egodgl dist-launch --parts-config parts/tiny.json --trainers 2 -- train --epochs 5.
    On a cluster, run the same train command with DGL's tools/launch.py."""
    from ego_dgl.distributed.launch import launch

    code = launch(parts_config, list(command), trainers, servers)
    if code:
        sys.exit(code)
