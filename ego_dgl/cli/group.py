"""The `egodgl` group: how every command fails (one red line, exit code 2) and how
ego-dgl's own warnings are shown."""

from __future__ import annotations

import sys
import warnings

import click
from rich.markup import escape

from ego_dgl.errors import EgoDGLError, EgoDGLWarning, memory_message, os_error_message, out_of_memory
from ego_dgl.untrusted import SafeConsole

console = SafeConsole(emoji=False)  # a user's ':x:' in a path stays ':x:'
_held: list[tuple] = []  # library warnings of the running command, shown only if it succeeds


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """EgoDGLWarning as one yellow line at once; other (numpy, pandas, torch) warnings are
    held until the command ends, so none precedes an error line."""
    if issubclass(category, EgoDGLWarning):
        SafeConsole(stderr=True, emoji=False).print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _held.append((message, category, filename, lineno, file, line))


def fail(message: str) -> None:
    """The one red error line, then exit code 2 (held library warnings are dropped: the
    error says what matters)."""
    _held.clear()
    SafeConsole(stderr=True, emoji=False).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def usage_message(err: click.UsageError) -> str:
    """A usage error (an unknown option, a bad choice, a missing argument) as one line that
    names the command whose --help lists what it takes."""
    where = err.ctx.command_path if err.ctx is not None else "egodgl"
    return f"{err.format_message()} (see '{where} --help')"


class FriendlyGroup(click.Group):
    """Turns EgoDGLError, file-system errors, failed allocations, usage errors and interruptions (Ctrl-C)
    into one red line and exit code 2, never a traceback, Click's usage block or "Aborted!"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as err:
            fail(usage_message(err))

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.simplefilter("always", EgoDGLWarning)
            warnings.showwarning = _show_warning
            _held.clear()
            try:
                result = super().invoke(ctx)
                for message, category, filename, lineno, _, line in _held:  # it succeeded: its library warnings
                    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
                return result
            except EgoDGLError as err:
                fail(str(err))
            except click.exceptions.NoArgsIsHelpError:
                raise
            except click.UsageError as err:
                fail(usage_message(err))
            except OSError as err:  # the file system's (full disk, read-only, a file in the way)
                fail(os_error_message(err))
            except (KeyboardInterrupt, click.exceptions.Abort):
                fail("interrupted; nothing half-written was left behind (a run that saved a checkpoint says how to resume it); "
                     "run the command again to start over")
            except (MemoryError, RuntimeError) as err:  # an allocation that failed (below Abort, itself a RuntimeError)
                if not out_of_memory(err):
                    raise
                fail(memory_message(err))


@click.group(cls=FriendlyGroup)
@click.version_option(package_name="ego-dgl")
def main() -> None:
    """EgoGCN multimodal graph recommendation on DGL."""
