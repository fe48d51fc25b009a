"""A rich progress display for dataset preparation, on stderr so that stdout stays
clean for --json; silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ego_dgl.untrusted import SafeConsole, printable


class Steps:
    """Named steps, each with an optional total to advance through."""

    def __init__(self, progress: Progress | None):
        self._progress = progress

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Shows `description` while the block runs; yields advance(n)."""
        if self._progress is None:
            yield lambda n=1: None
            return
        task = self._progress.add_task(escape(printable(description)), total=total)  # a progress column skips the console's check
        yield lambda n=1: self._progress.advance(task, n)
        self._progress.update(task, total=total or 1, completed=total or 1)


@contextmanager
def steps(enabled: bool) -> Iterator[Steps]:
    if not enabled:
        yield Steps(None)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=SafeConsole(stderr=True, emoji=False)) as progress:
        yield Steps(progress)
