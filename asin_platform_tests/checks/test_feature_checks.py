from datetime import date

import polars as pl

from asin_platform.checks.features import top_churn

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)


def test_top_churn_is_the_share_of_the_top_list_that_changed() -> None:
    top = pl.DataFrame(
        {
            "site": ["US"] * 9 + ["DE"] * 2,
            "date": [D1] * 4 + [D2] * 4 + [D3] + [D2] * 2,
            "asin": ["A", "B", "C", "D", "A", "B", "E", "F", "A", "X", "Y"],
        }
    )
    keys = pl.DataFrame({"site": ["US", "US", "US", "DE"], "date": [D1, D2, D3, D2]})
    churn = top_churn(top, keys)
    # D1 has no previous day and DE's D2 neither: skipped. D2 keeps A, B of 4 -> 50 %;
    # D3 has 1 ASIN vs 4 the day before, A kept -> 1 - 1/4.
    assert churn.rows() == [("US", D2, 0.5), ("US", D3, 0.75)]
