"""What a training run shows while it works: a live bar on a terminal (epochs, and the
batches of the current epoch), one plain line per epoch when stderr is not a terminal
(nohup, slurm, CI logs), nothing when disabled."""

from __future__ import annotations

import sys
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ego_dgl.train.checkpoint import TrainState
from ego_dgl.untrusted import SafeConsole

SHORT = {"precision": "P", "recall": "R", "ndcg": "N", "hit": "H"}
DISPLAYS = ("auto", "bar", "lines", "off")


def valid_summary(record: dict[str, Any]) -> str:
    """The epoch's overall validation metrics at 10, e.g. 'R@10 0.2612 N@10 0.3177' (not
    the cold-item groups' "valid/warm/...")."""
    return " ".join(
        f"{SHORT[k.split('/')[1].split('@')[0]]}@10 {v:.4f}" for k, v in record.items()
        if k.startswith("valid/") and k.endswith("@10") and k.count("/") == 1
    )


def epoch_line(record: dict[str, Any], state: TrainState, split: str, patience: int, total: int, watched: str = "R@10") -> str:
    """One plain line for a finished epoch: loss, validation figures, best so far (of the
    `watched` metric, R@20 under --protocol mmrec), seconds."""
    best = f"best {split} {watched} {state.best_value:.4f} @{state.best_epoch} ({state.bad_epochs}/{patience} w/o gain)"
    return f"epoch {record['epoch']}/{total} loss {record['loss']:.4f} valid {valid_summary(record)} {best} {record['seconds']:.1f}s"


def resolve_display(display: str, stream: Any = None) -> str:
    """'auto' is a live bar when the stream (stderr) is a terminal, else plain lines."""
    if display != "auto":
        return display
    stream = stream if stream is not None else sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"


class EpochProgress:
    """The display of one run: 'bar' (an epoch bar with the best selection metric and a
    batch bar with the running loss), 'lines' (one line per epoch, after `tag: ` when
    given) or 'off'."""

    def __init__(self, display: str, total_epochs: int, done_epochs: int, batches: int, patience: int, tag: str | None = None):
        self.display = resolve_display(display)
        self.prefix = f"{escape(tag)}: " if tag else ""
        self.total, self.patience = total_epochs, patience
        self.console = SafeConsole(stderr=True, emoji=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=self.display != "bar",
        )
        self.epochs = self.progress.add_task("epochs", total=total_epochs, completed=done_epochs, info="")
        self.batches = self.progress.add_task("batches", total=batches, info="")

    def __enter__(self) -> EpochProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def note(self, markup: str) -> None:
        """A message in rich markup (escape user-supplied parts), unless the display is off."""
        if self.display != "off":
            self.console.print(self.prefix + markup, highlight=False, soft_wrap=True)

    def start_epoch(self, epoch: int) -> None:
        self.progress.reset(self.batches, description=f"epoch {epoch}", info="")

    def batch(self, loss: float) -> None:
        self.progress.update(self.batches, advance=1, info=f"loss {loss:.4f}")

    def end_epoch(self, record: dict[str, Any], state: TrainState, split: str, watched: str = "R@10") -> None:
        if self.display == "lines":
            self.note(escape(epoch_line(record, state, split, self.patience, self.total, watched)))
            return
        self.progress.update(self.batches, info=f"loss {record['loss']:.4f} | valid {valid_summary(record)}")
        best = f"best {split} {watched} {state.best_value:.4f} @{state.best_epoch}"
        self.progress.update(self.epochs, completed=record["epoch"], info=f"{best}, {state.bad_epochs}/{self.patience} w/o gain")
