"""Exact integer window sums and lags of a dense day grid, at its output cells (numpy; no Dagster).

``core/features.py`` lays each (site, asin) on a block of consecutive days, and only the output
cells (the target days) are kept. A ``rolling_sum`` over every grid cell does ``span`` times the
work a single target date needs: on a 97k-ASIN block of 31 days its 22 sums took 0.40 CPU s, while
one prefix sum per column and three gathers per window at the output cells take 0.20 s, and a lag
gathered at the outputs skips a full-length shifted copy of its column. When most cells are
outputs (a backfill's date block) the rolling sums win: ``WindowSum.rolled`` and ``Lag.shifted``
are the same statistics as expressions over every cell, for core/features.py to choose.

Prefix sums of fixed-point values (ln BSR squared is ~2^56) overflow Int64 over a large grid.
numpy's integer arrays wrap around on overflow (two's complement, no error), so the prefix sums are
exact modulo 2^64 and so is a difference of two of them: a window sum that itself fits in Int64 (the
callers' fixed-point scales keep every window sum below 2^62) comes out exact, whatever the prefix
sums did on the way. asin_platform_tests/core/test_window_sum.py checks that on values that wrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class WindowSum:
    """The sum of grid column ``column`` over the days T+first .. T+last (offsets <= 0, both
    included) of each output day T, as Int64; named ``alias``. The column holds integers without
    nulls (a missing day is a 0 beside a 0/1 count column)."""

    column: str
    first: int
    last: int
    alias: str

    def __post_init__(self) -> None:
        if not self.first <= self.last <= 0:
            raise ValueError(f"bad window sum {self}")

    def rolled(self) -> pl.Expr:
        """The same sum on every cell of the grid (a rolling sum shifted to end on T+last)."""
        return pl.col(self.column).rolling_sum(self.last - self.first + 1).shift(-self.last).alias(self.alias)


def window_sums(grid: pl.DataFrame, positions: pl.Series, specs: Sequence[WindowSum]) -> pl.DataFrame:
    """One Int64 column per spec, one row per grid row index in ``positions`` (in that order).

    Every window must lie inside the grid, within the output cell's own block: the caller's outputs
    sit at least ``-first`` cells into their blocks (core/features.py: lookback >= 30)."""
    for column in dict.fromkeys(s.column for s in specs):
        if grid[column].null_count():
            raise ValueError(f"window sums need a column without nulls: {column}")
    pos = positions.cast(pl.Int64).to_numpy()
    out: dict[str, pl.Series] = {}
    for column in dict.fromkeys(s.column for s in specs):
        values = grid[column].cast(pl.Int64).to_numpy()
        prefix = np.cumsum(values)  # wraps on overflow: see the module docstring
        for spec in (s for s in specs if s.column == column):
            start = pos + spec.first
            # sum over [start, end] = prefix[end] - prefix[start] + values[start] (no prefix[-1])
            total = prefix[pos + spec.last] - prefix[start] + values[start]
            out[spec.alias] = pl.Series(spec.alias, total, dtype=pl.Int64)
        del prefix, values
    return pl.DataFrame([out[s.alias] for s in specs]) if specs else pl.DataFrame(height=len(pos))


@dataclass(frozen=True)
class Lag:
    """Grid column ``column`` ``days`` days before each output day (null where missing); named
    ``alias``."""

    column: str
    days: int
    alias: str

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"bad lag {self}")

    def shifted(self) -> pl.Expr:
        """The same lag on every cell of the grid."""
        return pl.col(self.column).shift(self.days).alias(self.alias)


def lags(grid: pl.DataFrame, positions: pl.Series, specs: Sequence[Lag]) -> pl.DataFrame:
    """One column per spec (the column's dtype), one row per grid row index in ``positions``; the
    same bounds as ``window_sums``."""
    pos = positions.cast(pl.Int64)
    return pl.DataFrame([grid[s.column].gather(pos - s.days).alias(s.alias) for s in specs], height=len(pos))
