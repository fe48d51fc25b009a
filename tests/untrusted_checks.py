"""Helpers of the tests/test_untrusted_*.py files (issue 20): run the CLI catching every
exception, and check the one-line failure and what a command left on disk."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner, Result

from ego_dgl.cli import main


def cli(*args) -> Result:
    """`egodgl ARGS...` in-process; an exception is kept in the result (a traceback fails
    `one_line`), never raised into the test."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(result: Result, *fragments: str) -> str:
    """The command exited 2 with no traceback and nothing printed to stderr but its one
    `error:` line (no library warning before it), which holds every fragment."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def ok_or_one_line(result: Result) -> None:
    """Either success or exit 2 with one line: never a traceback, a hang or another code."""
    if result.exit_code == 0:
        assert result.exception is None, repr(result.exception)
    else:
        one_line(result)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if p.is_file()}


def files_under(folder: Path) -> set[str]:
    return {os.path.relpath(p, folder) for p in Path(folder).rglob("*")}
