"""The `egodgl` command: a thin Click layer over functions the tests call too."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from ego_dgl.errors import EgoDGLError

console = Console()


class FriendlyGroup(click.Group):
    """Turns EgoDGLError into one red line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EgoDGLError as err:
            Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            sys.exit(2)


@click.group(cls=FriendlyGroup)
@click.version_option(package_name="ego-dgl")
def main() -> None:
    """EgoGCN multimodal graph recommendation on DGL."""


if __name__ == "__main__":
    main()
