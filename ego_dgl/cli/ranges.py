"""One range check for the numeric command-line options: each option's type is a `Bounded`
number, and every seed option shares SEED. A value out of range, not finite or not a
number is one ConfigError line naming the option (click's usage error takes four)."""

from __future__ import annotations

import math

import click

from ego_dgl.errors import ConfigError
from ego_dgl.untrusted import MAX_SEED


class Bounded(click.ParamType):
    """An int or a finite float in [low, high] (None: unbounded on that side)."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None):
        self.kind, self.low, self.high = kind, low, high
        self.name = f"{kind.__name__} range"

    def get_metavar(self, param, ctx=None) -> str:
        return "INTEGER" if self.kind is int else "FLOAT"

    def convert(self, value, param, ctx):
        where = param.opts[0] if param is not None and param.opts else "the value"
        wanted = "an integer" if self.kind is int else "a number"
        low, high = (None if b is None else f"{b:g}" if self.kind is float else str(b) for b in (self.low, self.high))
        span = f" in {low}..{high}" if low and high else (f" >= {low}" if low else (f" <= {high}" if high else ""))
        try:
            number = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where} takes {wanted}{span}, got {str(value)!r:.40}") from None
        if (self.kind is float and not math.isfinite(number)) or (self.low is not None and number < self.low) or (
                self.high is not None and number > self.high):
            raise ConfigError(f"{where} takes {wanted}{span}, got {str(value)!r:.40}")
        return number


SEED = Bounded(int, 0, MAX_SEED)  # every seed option: numpy's range; DGL's smaller one is mapped in seed_everything
POSITIVE = Bounded(int, 1)
THREADS = Bounded(int, 1, 1024)  # torch's thread pools crash (SIGSEGV) far above any machine's cores
COUNT = Bounded(int, 0)
FINITE = Bounded(float)
