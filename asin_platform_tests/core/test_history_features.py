"""core.history_features: each product against its own T-30 .. T history, exact values on hand-built
marts; the reach is honoured, and chunked / multi-date features still equal the one-shot ones."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core.chunking import ChunkPlan, iter_features
from asin_platform.core.features import build_features
from asin_platform.core.history_features import HISTORY_COLUMNS
from asin_platform.schemas import FEATURES_DAILY
from asin_platform_tests.core.test_features import CAL, T, _random_market, day, keywords, mart, row, series

KEY = ("site", "date", "asin")
ALL_31 = list(range(-30, 1))  # T-30 .. T


def history_of(mart_lf: pl.LazyFrame, targets: list[date]) -> pl.DataFrame:
    """The history columns of build_features (they are computed in its one grid pass)."""
    return build_features(mart_lf, keywords(), targets, calibration=CAL).select(*KEY, *HISTORY_COLUMNS)


def history(rows: list[dict]) -> pl.DataFrame:
    return history_of(mart(rows), [T])


def _bsr(d: int) -> int:
    return 1000 if d <= -14 else (500 if d <= -7 else 200)


def _reviews(d: int) -> int:
    # one a day up to T-7, then five a day
    return 100 + (d + 30) if d <= -7 else 123 + 5 * (d + 7)


def _ramp_rows() -> list[dict]:
    return series(
        "A",
        ALL_31,
        bsr_root=_bsr,
        review_count=_reviews,
        price=lambda d: 20.0 if d <= -7 else 16.0,
        image_count=lambda d: 3 if d <= -10 else 6,
        bullet_count=lambda d: 3 if d <= -10 else 5,
        title_length=100,
        has_aplus=False,
        attribute_flag_count=0,
    )


def test_exact_values_of_a_product_ramping_up() -> None:
    r = row(history(_ramp_rows()), "A")
    assert r["listing_change_days"] == 9  # changed on T-9
    assert (r["image_count_change_30d"], r["bullet_count_change_30d"], r["title_length_change_30d"]) == (
        3,
        2,
        0,
    )
    assert r["listing_quality_change_30d"] == pytest.approx(0.25 * 3 / 7 + 0.20 * 2 / 5, abs=1e-12)
    # week T-20..T-14 all at 1000, week T-13..T-7 all at 500
    assert r["bsr_log_drop_7d_prior"] == pytest.approx(math.log(2), abs=1e-6)
    prior = [math.log(_bsr(d)) for d in range(-30, -7)]  # T-30 .. T-8: 17 x 1000, 6 x 500
    mean = sum(prior) / len(prior)
    std = math.sqrt(sum((v - mean) ** 2 for v in prior) / len(prior))
    assert r["bsr_log_z_7d_prior"] == pytest.approx((math.log(200) - mean) / std, abs=1e-5)
    # 35 reviews in the last 7 days against 7 expected from T-30..T-7's rate of one a day
    assert r["review_burst_z_7d"] == pytest.approx((35 - 7) / math.sqrt(8), abs=1e-12)
    assert r["price_step_7d_prior"] == pytest.approx(16.0 / 20.0 - 1.0, abs=1e-12)


def test_missing_history_gives_nulls_and_a_flat_bsr_a_floored_z() -> None:
    short = series("B", list(range(-5, 1)), bsr_root=300, review_count=10, price=9.0, image_count=4)
    flat = series("C", ALL_31, bsr_root=lambda d: 400 if d < 0 else 100, review_count=7, image_count=4)
    out = history(short + flat)
    b = row(out, "B")
    assert b["listing_change_days"] == 30  # listing known, no change in the window
    for c in (
        "image_count_change_30d",
        "listing_quality_change_30d",
        "bsr_log_drop_7d_prior",
        "bsr_log_z_7d_prior",
        "review_burst_z_7d",
        "price_step_7d_prior",
    ):
        assert b[c] is None, c
    c = row(out, "C")
    # a constant prior BSR has std 0: the floor (0.05) keeps z finite
    assert c["bsr_log_z_7d_prior"] == pytest.approx(math.log(100 / 400) / 0.05, abs=1e-5)
    assert c["bsr_log_drop_7d_prior"] == pytest.approx(0.0, abs=1e-12)
    assert c["review_burst_z_7d"] == 0.0  # no reviews, none expected
    assert c["price_step_7d_prior"] is None  # never priced
    assert c["listing_change_days"] == 30 and c["image_count_change_30d"] == 0


def test_listing_change_needs_both_days_and_the_window() -> None:
    rows = (
        # changed on T-29 (vs T-30): inside the window
        series("D", ALL_31, image_count=lambda d: 2 if d <= -30 else 3)
        # changed on T-30 (vs T-31): outside, so "none within the window"
        + series("E", [-31, *ALL_31], image_count=lambda d: 2 if d <= -31 else 3)
        # a gap on T-4: the change across it is not seen; the later one is
        + series(
            "F",
            [d for d in ALL_31 if d != -4],
            title_length=lambda d: 50 if d < -4 else (60 if d < -1 else 70),
        )
    )
    out = history(rows)
    assert row(out, "D")["listing_change_days"] == 29
    assert row(out, "E")["listing_change_days"] == 30
    assert row(out, "F")["listing_change_days"] == 1


def test_only_t_minus_30_to_t_is_read() -> None:
    rows = _ramp_rows()
    noise = series(
        "A",
        list(range(-60, -30)),
        bsr_root=lambda d: 7 + d * d,
        review_count=lambda d: 5000 + d,
        price=lambda d: 1.0 + d * d,
        image_count=lambda d: abs(d) % 9,
        bullet_count=1,
        title_length=lambda d: 10 + abs(d),
    )
    assert_frame_equal(history(rows + noise), history(rows), check_exact=True)


def test_build_features_carries_the_history_columns() -> None:
    features = build_features(mart(_ramp_rows()), keywords(), [T], calibration=CAL)
    assert features.columns == FEATURES_DAILY.columns
    assert set(HISTORY_COLUMNS) <= set(features.columns)
    # a longer lookback puts more grid in front of T: no history column may move
    longer = build_features(mart(_ramp_rows()), keywords(), [T], calibration=CAL, lookback=45)
    assert_frame_equal(longer, features, check_exact=True)


@pytest.fixture(scope="module")
def market() -> tuple[pl.LazyFrame, pl.LazyFrame]:
    return _random_market(seed=11)


def test_multi_date_and_chunked_equal_one_date_at_a_time(market: tuple[pl.LazyFrame, pl.LazyFrame]) -> None:
    mart_lf, kw_lf = market
    targets: list[date] = [day(-d) for d in range(0, 40, 3)]
    one_by_one = pl.concat([history_of(mart_lf, [t]) for t in targets])
    together = history_of(mart_lf, targets)
    assert together.height > 500
    assert_frame_equal(together.sort(*KEY), one_by_one.sort(*KEY), check_exact=True)
    for c in HISTORY_COLUMNS:  # every column was exercised with values
        assert together[c].null_count() < together.height, c
    one_shot = build_features(mart_lf, kw_lf, targets, calibration=CAL)
    for plan in (ChunkPlan(days=1, asins=None), ChunkPlan(days=4, asins=7), ChunkPlan(days=1, asins=1)):
        chunked = pl.concat(list(iter_features(mart_lf, kw_lf, targets, calibration=CAL, plan=plan)))
        # float bits included: the history columns must not depend on the cut either
        assert_frame_equal(chunked.sort(*KEY), one_shot.sort(*KEY), check_exact=True)
