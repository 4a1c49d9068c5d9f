"""Window medians at the output cells of a dense day grid (numpy; no Dagster, no polars plan).

``core/features.py`` lays each (site, asin) on a block of consecutive days and computes its window
statistics over every grid cell, although only the output cells (the target days) are kept. For
sums that costs little; for medians it was ~40% of a 1M-ASIN partition's window arithmetic:
``rolling_median`` over 5.7M cells took 0.56 CPU s for one 30-day window, while sorting just the
output cells' windows (a (outputs x n) gather, NaN = missing, sorted row-wise) takes ~0.07 s.
The values are ``rolling_median``'s bit for bit: the middle element, or for an even count
``low + (high - low) * 0.5`` as polars interpolates ((low + high) / 2 differs in the last bit;
asin_platform_tests/core/test_window_median.py compares both on random windows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# Output cells per sorted slab: bounds the gathered (cells x window) matrix to ~64 MB at 31 days.
_SLAB = 1 << 18


@dataclass(frozen=True)
class WindowMedian:
    """The median of grid column ``column`` over the days T+first .. T+last (offsets <= 0, both
    included) of each output day T, null below ``min_samples`` values; named ``alias``."""

    column: str
    first: int
    last: int
    min_samples: int
    alias: str

    def __post_init__(self) -> None:
        if not self.first <= self.last <= 0 or self.min_samples < 1:
            raise ValueError(f"bad window median {self}")


def window_medians(grid: pl.DataFrame, positions: pl.Series, specs: tuple[WindowMedian, ...]) -> pl.DataFrame:
    """One column per spec, one row per grid row index in ``positions`` (in that order).

    Every window must lie inside the grid, within the output cell's own block: the caller's
    outputs sit at least ``-first`` cells into their blocks (core/features.py: lookback >= 30)."""
    pos = positions.cast(pl.Int64).to_numpy()
    out: dict[str, pl.Series] = {}
    for column in dict.fromkeys(s.column for s in specs):
        values = grid[column].cast(pl.Float64).to_numpy()  # a null reads NaN: sorted last
        for spec in (s for s in specs if s.column == column):
            result = np.empty(len(pos), dtype=np.float64)
            offsets = np.arange(spec.first, spec.last + 1)
            for start in range(0, len(pos), _SLAB):
                cells = pos[start : start + _SLAB]
                window = np.sort(values[cells[:, None] + offsets], axis=1)
                k = np.count_nonzero(~np.isnan(window), axis=1)
                rows = np.arange(len(cells))
                low, high = window[rows, np.maximum(k - 1, 0) // 2], window[rows, k // 2]
                result[start : start + len(cells)] = np.where(
                    k >= spec.min_samples, low + (high - low) * 0.5, np.nan
                )
            out[spec.alias] = pl.Series(spec.alias, result, nan_to_null=True)
    return pl.DataFrame([out[s.alias] for s in specs]) if specs else pl.DataFrame(height=len(pos))
