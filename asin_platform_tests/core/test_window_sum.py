"""core.window_sum: sums and lags at the output cells equal rolling sums and shifts over the grid."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_series_equal

from asin_platform.core.window_sum import Lag, WindowSum, lags, window_sums


def test_exact_values() -> None:
    grid = pl.DataFrame({"v": pl.Series([1, 2, 0, 10, 0, 4, 7], dtype=pl.Int8)})
    specs = (
        WindowSum("v", -3, 0, "last4"),  # cells pos-3 .. pos
        WindowSum("v", -5, -2, "lagged"),  # cells pos-5 .. pos-2
        WindowSum("v", 0, 0, "today"),
    )
    out = window_sums(grid, pl.Series([5, 6]), specs)
    assert out.schema == pl.Schema({"last4": pl.Int64, "lagged": pl.Int64, "today": pl.Int64})
    assert out.rows() == [(14, 13, 4), (21, 12, 7)]  # 2+0+10+4 ... 0+10+4+7; 1+2+0+10, 2+0+10+0
    # the first cell of the grid as a window's start (no prefix sum before it)
    assert window_sums(grid, pl.Series([3]), specs[:1]).rows() == [(13,)]


@pytest.mark.parametrize(("first", "last"), [(-29, 0), (-6, 0), (-13, -7), (-30, -8), (0, 0)])
def test_equals_rolling_sum_at_the_cells(first: int, last: int) -> None:
    rng = np.random.default_rng(11)
    grid = pl.DataFrame({"v": rng.integers(-(2**40), 2**40, 20_000)})
    cells = pl.Series(np.sort(rng.choice(np.arange(31, 20_000), 3_000, replace=False)))
    got = window_sums(grid, cells, (WindowSum("v", first, last, "s"),))["s"]
    rolled = grid["v"].rolling_sum(last - first + 1).shift(-last)
    assert_series_equal(got, rolled.gather(cells).alias("s"), check_exact=True)


def test_exact_when_the_prefix_sums_overflow() -> None:
    # 100 values of ~2^60: the running total wraps around Int64 many times, each 3-day sum fits
    values = np.full(100, 2**60 + 12_345, dtype=np.int64)
    values[::7] = -(2**61)
    grid = pl.DataFrame({"v": values})
    cells = pl.Series(range(2, 100))
    got = window_sums(grid, cells, (WindowSum("v", -2, 0, "s"),))["s"].to_list()
    expected = [int(values[p - 2 : p + 1].astype(object).sum()) for p in range(2, 100)]
    assert got == expected
    assert abs(int(values.astype(object).sum())) > 2**63  # the prefix sums did wrap


def test_refuses_nulls_and_bad_windows() -> None:
    with pytest.raises(ValueError, match="without nulls: v"):
        window_sums(pl.DataFrame({"v": [1, None, 3]}), pl.Series([2]), (WindowSum("v", -1, 0, "s"),))
    with pytest.raises(ValueError, match="bad window sum"):
        WindowSum("v", -3, 1, "s")
    with pytest.raises(ValueError, match="bad lag"):
        Lag("v", 0, "l")


def test_lags_keep_nulls_and_dtype() -> None:
    grid = pl.DataFrame({"r": pl.Series([4.5, None, 3.0, 2.5, 1.0], dtype=pl.Float32), "s": list("abcde")})
    out = lags(grid, pl.Series([3, 4]), (Lag("r", 2, "r2"), Lag("s", 3, "s3")))
    assert out.schema == pl.Schema({"r2": pl.Float32, "s3": pl.String})
    assert out.rows() == [(None, "a"), (3.0, "b")]
    assert lags(grid, pl.Series([], dtype=pl.Int64), ()).height == 0
