"""core.window_median: medians of each output cell's window equal polars' rolling_median bit for bit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_series_equal

from asin_platform.core.window_median import WindowMedian, window_medians


def test_exact_values_with_gaps_and_minimum_samples() -> None:
    grid = pl.DataFrame({"p": [1.0, None, 3.0, 10.0, None, 4.0, 2.0]})
    spec = (
        WindowMedian("p", -3, 0, 2, "last4"),  # cells pos-3 .. pos
        WindowMedian("p", -5, -2, 3, "lagged"),  # cells pos-5 .. pos-2
    )
    out = window_medians(grid, pl.Series([5, 6]), spec)
    # pos 5: {3, 10, 4} -> 4; pos 6: {10, 4, 2} -> 4
    assert out["last4"].to_list() == [4.0, 4.0]
    # pos 5: {1, 3, 10} -> 3; pos 6: {3, 10}, 2 values below the 3 asked -> null
    assert out["lagged"].to_list() == [3.0, None]
    odd = window_medians(grid, pl.Series([3]), (WindowMedian("p", -3, 0, 1, "m"),))
    assert odd["m"].to_list() == [3.0]  # {1, 3, 10}
    even = window_medians(grid, pl.Series([6, 3]), (WindowMedian("p", -1, 0, 1, "m"),))
    assert even["m"].to_list() == [3.0, 6.5]  # {4, 2}, {3, 10}


@pytest.mark.parametrize(
    ("first", "last", "min_samples"), [(-29, 0, 7), (-6, 0, 4), (-30, -8, 10), (0, 0, 1)]
)
def test_equals_rolling_median_at_the_cells(first: int, last: int, min_samples: int) -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(3, 1, 20_000).round(2)
    values[rng.random(values.size) < 0.75] = np.nan  # so each min_samples bites somewhere
    grid = pl.DataFrame({"p": pl.Series(values, nan_to_null=True)})
    cells = pl.Series(np.sort(rng.choice(np.arange(31, values.size), 3_000, replace=False)))
    got = window_medians(grid, cells, (WindowMedian("p", first, last, min_samples, "m"),))["m"]
    n = last - first + 1
    rolled = grid["p"].rolling_median(n, min_samples=min_samples).shift(-last)
    assert_series_equal(got, rolled.gather(cells).alias("m"), check_exact=True)
    assert 0 < got.null_count() < got.len()


def test_rejects_a_window_reaching_past_the_cell() -> None:
    with pytest.raises(ValueError, match="bad window median"):
        WindowMedian("p", -3, 1, 1, "m")
