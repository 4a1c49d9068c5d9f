"""build_features: every feature pinned on small hand-computed marts.

Dates are day offsets from the target date T (0 = T, -7 = a week earlier). The comment beside each
expected number shows the arithmetic, so a failing test says which rule broke.
"""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core import features as features_module
from asin_platform.core.features import FEATURE_COLUMNS, build_features
from asin_platform.core.sales import (
    CALIBRATION_SCHEMA,
    FALLBACK_A,
    FALLBACK_B,
    PowerLawPrior,
    default_calibration,
    estimate_sales,
)
from asin_platform.schemas import FACT_KEYWORDS, FEATURES_DAILY, MART_TIMESERIES_DAILY

T = date(2026, 3, 31)
CAL = pl.DataFrame(
    [("US", "c1", 1000.0, 1.0), ("US", "c2", 2000.0, 0.5)], schema=CALIBRATION_SCHEMA, orient="row"
)


def day(offset: int) -> date:
    return T + timedelta(days=offset)


def mart(rows: list[dict[str, Any]]) -> pl.LazyFrame:
    """Mart rows with defaults: site US, category c1; ``d`` is the day offset from T."""
    full = [
        {"site": "US", "category_id": "c1", **{k: v for k, v in r.items() if k != "d"}, "date": day(r["d"])}
        for r in rows
    ]
    return MART_TIMESERIES_DAILY.conform(pl.DataFrame(full, infer_schema_length=None)).lazy()


def series(asin: str, days: list[int], **columns: Any) -> list[dict[str, Any]]:
    """One row per day offset; a column value may be a constant or a function of the offset."""
    return [
        {"asin": asin, "d": d, **{c: (v(d) if callable(v) else v) for c, v in columns.items()}} for d in days
    ]


def keywords(rows: list[tuple[str, int, str, int]] | None = None) -> pl.LazyFrame:
    """(asin, day offset, keyword, rank) rows."""
    data = [
        {"site": "US", "date": day(d), "asin": a, "keyword": k, "search_volume": 1000, "rank": r}
        for a, d, k, r in (rows or [])
    ]
    return FACT_KEYWORDS.conform(pl.DataFrame(data, schema=FACT_KEYWORDS.schema)).lazy()


def features(rows: list[dict[str, Any]], kw: pl.LazyFrame | None = None, **kwargs: Any) -> pl.DataFrame:
    kwargs.setdefault("calibration", CAL)
    return build_features(mart(rows), kw if kw is not None else keywords(), [T], **kwargs)


def row(frame: pl.DataFrame, asin: str, target: date = T) -> dict[str, Any]:
    found = frame.filter((pl.col("asin") == asin) & (pl.col("date") == target))
    assert found.height == 1, f"expected one row for {asin} on {target}, got {found.height}"
    return found.row(0, named=True)


ALL_30 = list(range(-29, 1))


# ---------------------------------------------------------------------------------------------
# output shape


def test_output_follows_the_table_contract_and_only_rows_present_on_the_target() -> None:
    rows = series("A", ALL_30, bsr_root=100) + series("B", list(range(-29, 0)), bsr_root=100)  # B absent on T
    out = features(rows)
    assert out.schema == pl.Schema(FEATURES_DAILY.schema)
    assert out["asin"].to_list() == ["A"]
    assert set(FEATURE_COLUMNS) == set(out.columns) - {"site", "date", "asin", "category_id"}


def test_no_targets_gives_an_empty_table_and_short_lookback_is_refused() -> None:
    assert build_features(mart(series("A", [0], bsr_root=1)), keywords(), []).height == 0
    with pytest.raises(ValueError, match="lookback"):
        build_features(mart(series("A", [0], bsr_root=1)), keywords(), [T], lookback=14)


def test_duplicate_mart_keys_are_refused() -> None:
    rows = series("A", [0, 0, -1], bsr_root=5)
    with pytest.raises(ValueError, match="duplicate"):
        features(rows)


# ---------------------------------------------------------------------------------------------
# BSR trend


def test_slope_uses_calendar_days_not_rows() -> None:
    # BSR doubles every calendar day, so ln(bsr) rises by ln 2 per day whatever days are missing;
    # a row-index regression over the gappy rows would see a steeper line.
    days = [d for d in ALL_30 if d not in (-1, -4, -12, -20)]
    out = features(series("A", days, bsr_root=lambda d: 2 ** (d + 30)))
    r = row(out, "A")
    for n in (7, 14, 30):
        assert r[f"bsr_log_slope_{n}d"] == pytest.approx(math.log(2), abs=1e-6)


def test_slope_70_percent_rule() -> None:
    # 7 days need ceil(4.9) = 5 BSR days, 14 need 10, 30 need 21.
    up = {"bsr_root": lambda d: 2 ** (d + 40)}
    five_of_7 = series("A", [0, -1, -2, -5, -6], **up)  # 5 in the 7-day window
    four_of_7 = series("B", [0, -1, -5, -6], **up)
    ten_of_14 = series("C", [0, -1, -2, -3, -4, -8, -9, -10, -11, -13], **up)
    nine_of_14 = series("D", [0, -1, -2, -3, -4, -8, -9, -10, -13], **up)
    d21 = [d for d in ALL_30 if d % 10 not in (5, 7, 9)]  # drops 9 of 30 days
    d20 = d21[1:]
    out = features(
        five_of_7 + four_of_7 + ten_of_14 + nine_of_14 + series("E", d21, **up) + series("F", d20, **up)
    )
    assert len(d21) == 21
    assert row(out, "A")["bsr_log_slope_7d"] == pytest.approx(math.log(2), abs=1e-6)
    assert row(out, "B")["bsr_log_slope_7d"] is None
    assert row(out, "C")["bsr_log_slope_14d"] == pytest.approx(math.log(2), abs=1e-6)
    assert row(out, "D")["bsr_log_slope_14d"] is None
    assert row(out, "E")["bsr_log_slope_30d"] == pytest.approx(math.log(2), abs=1e-6)
    assert row(out, "F")["bsr_log_slope_30d"] is None


def test_slope_ignores_days_before_the_window() -> None:
    # A wild BSR at T-7 (just outside the 7-day window T-6..T) must not move the 7-day slope,
    # and a BSR-less day (null) is missing, not zero.
    rows = series("A", list(range(-6, 1)), bsr_root=1000) + series("A", [-7], bsr_root=10)
    rows[3]["bsr_root"] = None  # T-3 has no rank
    out = features(rows)
    assert row(out, "A")["bsr_log_slope_7d"] == pytest.approx(0.0, abs=1e-12)


def test_slope_exact_least_squares_on_irregular_points() -> None:
    # days -6, -4, -3, 0 (4 of 7 is too few for the 7-day slope, so use the 14-day window with
    # 10 days): x = -13..-4 and 0 with ln BSR = 0.5 * x^2 / 100 ... checked against numpy-free OLS.
    days = [-13, -12, -11, -10, -9, -8, -7, -6, -5, 0]
    ln = {d: 5.0 + 0.01 * d * d for d in days}
    out = features(series("A", days, bsr_root=lambda d: round(math.exp(ln[d]))))
    ys = [math.log(round(math.exp(ln[d]))) for d in days]
    n, sx, sy = len(days), sum(days), sum(ys)
    sxy, sxx = sum(x * y for x, y in zip(days, ys, strict=True)), sum(x * x for x in days)
    expected = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    assert row(out, "A")["bsr_log_slope_14d"] == pytest.approx(expected, abs=2e-6)


def test_bsr_percentile_ties_categories_and_changes() -> None:
    # c1 on T: BSR 10, 20, 20, 40 and one unranked -> n = 4, ranks (min) 1, 2, 2, 4
    # pctl = (n - rank + 1) / n = 1, 0.75, 0.75, 0.25; unranked -> null. c2 is ranked on its own.
    today = [("A", 10), ("B", 20), ("C", 20), ("D", 40), ("E", None)]
    rows = [{"asin": a, "d": 0, "bsr_root": b} for a, b in today]
    rows += [{"asin": "X", "d": 0, "bsr_root": 500, "category_id": "c2"}]
    # a week earlier A was the worst of 2 in c1 (pctl 0.5); 30 days earlier A was alone (1.0);
    # B has no row 7 days earlier -> change null
    rows += [{"asin": "A", "d": -7, "bsr_root": 50}, {"asin": "C", "d": -7, "bsr_root": 5}]
    rows += [{"asin": "A", "d": -30, "bsr_root": 99}]
    out = features(rows)
    got = {a: row(out, a)["bsr_pctl"] for a in "ABCDE"}
    assert got == {"A": 1.0, "B": 0.75, "C": 0.75, "D": 0.25, "E": None}
    assert row(out, "X")["bsr_pctl"] == 1.0
    assert row(out, "A")["bsr_pctl_change_7d"] == pytest.approx(1.0 - 0.5)
    assert row(out, "C")["bsr_pctl_change_7d"] == pytest.approx(0.75 - 1.0)
    assert row(out, "B")["bsr_pctl_change_7d"] is None
    assert row(out, "A")["bsr_pctl_change_30d"] == pytest.approx(0.0)
    assert row(out, "C")["bsr_pctl_change_30d"] is None


def test_percentile_counts_products_absent_on_the_target_date() -> None:
    # On T-7, B (gone by T) ranked better than A: A's percentile that day is 0.5, not 1.
    rows = [
        {"asin": "A", "d": 0, "bsr_root": 10},
        {"asin": "A", "d": -7, "bsr_root": 20},
        {"asin": "B", "d": -7, "bsr_root": 10},
    ]
    assert row(features(rows), "A")["bsr_pctl_change_7d"] == pytest.approx(1.0 - 0.5)


# ---------------------------------------------------------------------------------------------
# estimated sales


def test_estimated_sales_power_law_mean_over_available_days() -> None:
    # c1: a=1000, b=1 -> bsr 100 = 10/day, bsr 50 = 20/day, bsr 1000 = 1/day.
    # 7-day window (T-6..T) has bsr 100 (T), 50 (T-2) and a missing day; T-10 (bsr 1000) is
    # only in the 30-day window: mean7 = (10 + 20) / 2 = 15, mean30 = (10 + 20 + 1) / 3.
    rows = [
        {"asin": "A", "d": 0, "bsr_root": 100},
        {"asin": "A", "d": -2, "bsr_root": 50},
        {"asin": "A", "d": -4, "bsr_root": None},
        {"asin": "A", "d": -10, "bsr_root": 1000},
    ]
    r = row(features(rows), "A")
    assert r["est_sales_7d_mean"] == pytest.approx(15.0, rel=1e-6)
    assert r["est_sales_30d_mean"] == pytest.approx(31.0 / 3.0, rel=1e-6)


def test_estimated_sales_per_category_and_fallback() -> None:
    # c2: a=2000, b=0.5 -> bsr 400 = 2000 / 20 = 100/day; unknown category -> 5000 * bsr^-1.
    rows = [
        {"asin": "A", "d": 0, "bsr_root": 400, "category_id": "c2"},
        {"asin": "B", "d": 0, "bsr_root": 400, "category_id": "zz"},
    ]
    out = features(rows)
    assert row(out, "A")["est_sales_7d_mean"] == pytest.approx(100.0, rel=1e-6)
    assert row(out, "B")["est_sales_7d_mean"] == pytest.approx(FALLBACK_A * 400**-FALLBACK_B, rel=1e-6)
    assert row(out, "A")["est_sales_30d_mean"] == pytest.approx(100.0, rel=1e-6)


def test_estimate_sales_expression_and_default_calibration() -> None:
    frame = pl.DataFrame({"bsr": [1, 100, 0, None]})
    got = frame.select(estimate_sales(pl.col("bsr"), 1000.0, 1.0)).to_series().to_list()
    assert got[0] == pytest.approx(1000.0) and got[1] == pytest.approx(10.0)
    assert got[2] is None and got[3] is None  # a rank of 0 is invalid, not infinite sales
    prior = PowerLawPrior(us_curves={"c1": (1000.0, 0.9), "c2": (50.0, 1.0)}, site_scale={"DE": 0.3})
    cal = default_calibration(["US", "DE", "US"], prior)
    assert cal.columns == list(CALIBRATION_SCHEMA)
    assert sorted(cal.rows()) == [
        ("DE", "c1", pytest.approx(300.0), 0.9),
        ("DE", "c2", pytest.approx(15.0), 1.0),
        ("US", "c1", 1000.0, 0.9),
        ("US", "c2", 50.0, 1.0),
    ]
    # without a prior (core never reaches for the simulator's) every category uses the fallback
    assert default_calibration(["US"]).height == 0


# ---------------------------------------------------------------------------------------------
# price


def test_price_median_cv_change_and_promo() -> None:
    # 30-day window: 20 days at 10.00, 9 days at 12.00, today 8.00 -> median 10.00
    # change = 8 / 10 - 1 = -0.2; promo: 8 <= 0.85 * 10. A price 40 days back is ignored.
    prices = {d: (10.0 if d < -9 else 12.0) for d in range(-29, 0)} | {0: 8.0, -40: 1000.0}
    rows = series("A", sorted(prices), price=lambda d: prices[d])
    r = row(features(rows), "A")
    window = [prices[d] for d in range(-29, 1)]
    mean = sum(window) / 30
    std = math.sqrt(sum((p - mean) ** 2 for p in window) / 29)
    assert r["price_change_vs_median_30d"] == pytest.approx(-0.2)
    assert r["promo_flag"] is True
    assert r["price_cv_30d"] == pytest.approx(std / mean, rel=1e-9)


def test_constant_price_has_zero_cv_and_spikes_and_short_history_are_missing() -> None:
    # A: constant 19.99 -> cv exactly 0; a spike-flagged day (199.90) is treated as missing.
    a = series("A", ALL_30, price=19.99)
    a[5] |= {"price": 199.90, "flag_price_spike": True}
    # B: only 6 priced days -> below the 7-day minimum: all price features null
    b = series("B", list(range(-5, 1)), price=5.0)
    # C: 7 priced days, today 0.86 x median -> not a promotion
    c = series("C", list(range(-6, 0)), price=100.0) + series("C", [0], price=86.0)
    out = features(a + b + c)
    assert row(out, "A")["price_cv_30d"] == 0.0
    assert row(out, "A")["price_change_vs_median_30d"] == pytest.approx(0.0)
    assert row(out, "A")["promo_flag"] is False
    assert {k: row(out, "B")[k] for k in ("price_cv_30d", "price_change_vs_median_30d", "promo_flag")} == {
        "price_cv_30d": None,
        "price_change_vs_median_30d": None,
        "promo_flag": None,
    }
    assert row(out, "C")["promo_flag"] is False
    assert row(out, "C")["price_change_vs_median_30d"] == pytest.approx(-0.14)


# ---------------------------------------------------------------------------------------------
# reviews and rating


def test_review_velocity_uses_earliest_point_inside_the_window() -> None:
    # counts: T-20: 100, T-7: 130, T-3: 150, T: 162 (other days missing).
    # 7d window T-6..T: earliest T-3 -> (162 - 150) / 3 = 4.0  (T-7 is NOT borrowed)
    # 14d window T-13..T: earliest T-7 -> (162 - 130) / 7
    # 30d window: earliest T-20 -> (162 - 100) / 20
    counts = {-20: 100, -7: 130, -3: 150, 0: 162}
    r = row(features(series("A", sorted(counts), review_count=lambda d: counts[d])), "A")
    assert r["review_velocity_7d"] == pytest.approx(4.0)
    assert r["review_velocity_14d"] == pytest.approx(32 / 7)
    assert r["review_velocity_30d"] == pytest.approx(62 / 20)


def test_review_velocity_needs_two_points_and_today() -> None:
    only_today = series("A", [0], review_count=10) + series("A", [-8], review_count=2)
    no_today = series("B", [-2], review_count=10) + series("B", [0], review_count=None)
    out = features(only_today + no_today)
    assert row(out, "A")["review_velocity_7d"] is None  # one point in the window
    assert row(out, "A")["review_velocity_14d"] == pytest.approx(8 / 8)
    assert row(out, "B")["review_velocity_7d"] is None  # no count today


def test_rating_mean_and_change_offers_change() -> None:
    # rating: T-30 (outside the 30-day window) 3.0, T-29 4.0, T-1 4.5, T 5.0 -> mean (4 + 4.5 + 5) / 3
    # change over 30 days = 5.0 - 3.0; offers: T 7, T-14 3 -> +4; T-13 ignored.
    rows = [
        {"asin": "A", "d": -30, "rating": 3.0},
        {"asin": "A", "d": -29, "rating": 4.0},
        {"asin": "A", "d": -1, "rating": 4.5},
        {"asin": "A", "d": 0, "rating": 5.0, "new_offer_count": 7},
        {"asin": "A", "d": -14, "new_offer_count": 3},
        {"asin": "A", "d": -13, "new_offer_count": 50},
    ]
    r = row(features(rows), "A")
    assert r["rating_mean_30d"] == pytest.approx(13.5 / 3)
    assert r["rating_change_30d"] == pytest.approx(2.0)
    assert r["new_offer_count"] == 7
    assert r["new_offer_change_14d"] == 4
    # no row 30 / 14 days earlier -> null changes
    r2 = row(features([{"asin": "B", "d": 0, "rating": 4.0, "new_offer_count": 1}]), "B")
    assert r2["rating_change_30d"] is None and r2["new_offer_change_14d"] is None
    assert r2["rating_mean_30d"] == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# keywords and listing


def test_keyword_counts_and_rank_change_over_common_keywords() -> None:
    kw = keywords(
        [
            ("A", 0, "k1", 3),
            ("A", 0, "k2", 10),
            ("A", 0, "k3", 11),
            ("A", 0, "k4", 60),
            ("A", -7, "k1", 9),
            ("A", -7, "k2", 4),
            ("A", -7, "k5", 1),  # k5 lost, k3/k4 new
            ("A", -6, "k1", 1),  # another day: ignored
            ("B", -7, "k1", 5),  # B has no keyword today
        ]
    )
    rows = [{"asin": "A", "d": 0}, {"asin": "B", "d": 0}]
    out = features(rows, kw)
    a, b = row(out, "A"), row(out, "B")
    assert (a["kw_top10_count"], a["kw_top50_count"]) == (2, 3)
    assert a["kw_mean_rank_change_7d"] == pytest.approx(((3 - 9) + (10 - 4)) / 2)  # k1, k2 only
    assert (b["kw_top10_count"], b["kw_top50_count"], b["kw_mean_rank_change_7d"]) == (0, 0, None)


def test_keyword_rows_of_products_without_mart_rows_drop_out() -> None:
    """Keyword rows are matched to grid blocks by (site, asin): an ASIN without mart rows, and an
    ASIN the mart holds on another site only, must neither fail nor lend their ranks to anyone."""
    kw = FACT_KEYWORDS.conform(
        pl.DataFrame(
            [
                {"site": site, "date": day(0), "asin": asin, "keyword": k, "search_volume": 1, "rank": r}
                for site, asin, k, r in [
                    ("US", "A", "k1", 2),
                    ("US", "Z", "k1", 1),  # no mart rows at all
                    ("DE", "A", "k2", 3),  # A is in the mart on US only
                    ("DE", "B", "k3", 4),  # B on DE: in the mart
                    ("FR", "A", "k4", 5),  # a site without mart rows
                ]
            ],
            schema=FACT_KEYWORDS.schema,
        )
    ).lazy()
    rows = [{"asin": "A", "d": 0}, {"asin": "B", "d": 0, "site": "DE"}]
    out = features(rows, kw)
    assert out.select("site", "asin", "kw_top10_count").rows() == [("DE", "B", 1), ("US", "A", 1)]


def test_listing_quality_and_age() -> None:
    full = {
        "title_length": 150,
        "bullet_count": 5,
        "image_count": 7,
        "has_aplus": True,
        "attribute_flag_count": 4,
    }
    partial = {
        "title_length": 75,
        "bullet_count": 0,
        "image_count": 9,
        "has_aplus": False,
        "attribute_flag_count": 2,
    }
    rows = [
        {"asin": "A", "d": 0, **full, "listed_since": day(-100)},
        {"asin": "B", "d": 0, **partial},
        {"asin": "C", "d": 0},
    ]
    out = features(rows)
    assert row(out, "A")["listing_quality_score"] == pytest.approx(1.0)
    # 0.2 * 75/150 + 0 + 0.25 * min(9/7, 1) + 0 + 0.15 * 2/4
    assert row(out, "B")["listing_quality_score"] == pytest.approx(0.1 + 0.25 + 0.075)
    assert row(out, "C")["listing_quality_score"] is None
    assert row(out, "A")["age_days"] == 100
    assert row(out, "A")["image_count"] == 7 and row(out, "A")["has_aplus"] is True


# ---------------------------------------------------------------------------------------------
# ranged backfill = one date at a time


def _random_market(seed: int) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    kws: list[dict[str, Any]] = []
    for site in ("US", "DE"):
        for i in range(25):
            asin = f"B{i:09d}"  # the same ASIN on both sites: blocks are per (site, asin)
            cat = rng.choice(["c1", "c2", "c3"])
            bsr, price, reviews = rng.randint(100, 100_000), rng.uniform(5, 50), rng.randint(0, 500)
            for d in range(-80, 1):
                if rng.random() < 0.08:
                    continue  # gap
                bsr = max(1, int(bsr * math.exp(rng.gauss(0, 0.1))))
                reviews += rng.randint(0, 3)
                rows.append(
                    {
                        "site": site,
                        "date": day(d),
                        "asin": asin,
                        "category_id": cat,
                        "bsr_root": bsr if rng.random() > 0.05 else None,
                        "price": round(price * (0.8 if rng.random() < 0.1 else 1.0), 2),
                        "flag_price_spike": rng.random() < 0.02,
                        "rating": round(rng.uniform(3, 5), 1),
                        "review_count": reviews,
                        "new_offer_count": rng.randint(0, 9),
                        "title_length": rng.randint(40, 200),
                        "bullet_count": rng.randint(0, 5),
                        "image_count": rng.randint(1, 9),
                        "has_aplus": rng.random() < 0.5,
                        "attribute_flag_count": rng.randint(0, 4),
                        "listed_since": day(-400),
                    }
                )
                for k in range(rng.randint(0, 3)):
                    kws.append(
                        {
                            "site": site,
                            "date": day(d),
                            "asin": asin,
                            "keyword": f"kw{k}",
                            "search_volume": 100,
                            "rank": rng.randint(1, 80),
                        }
                    )
    frame = MART_TIMESERIES_DAILY.conform(pl.DataFrame(rows, infer_schema_length=None))
    # warehouse order is by date: the function must not depend on the input order
    frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    return frame.lazy(), FACT_KEYWORDS.conform(pl.DataFrame(kws)).lazy()


def test_multi_date_call_equals_one_date_at_a_time_exactly() -> None:
    mart_lf, kw_lf = _random_market(seed=3)
    targets = [day(-d) for d in range(0, 45, 3)] + [day(-44)]
    together = build_features(mart_lf, kw_lf, targets, calibration=CAL)
    one_by_one = pl.concat([build_features(mart_lf, kw_lf, [t], calibration=CAL) for t in targets])
    assert together.height > 600
    # exact, float bits included: window sums are integer, so the grid length cannot leak in
    # rows come in (site, asin, date) order: one date at a time that is also (site, date, asin)
    assert_frame_equal(together, one_by_one.sort("site", "asin", "date"), check_exact=True)
    for single in (build_features(mart_lf, kw_lf, [t], calibration=CAL) for t in targets[:2]):
        assert_frame_equal(single, single.sort("site", "date", "asin"))
    # and a longer lookback changes nothing
    assert_frame_equal(
        build_features(mart_lf, kw_lf, targets, calibration=CAL, lookback=45), together, check_exact=True
    )


def test_rows_without_category_are_not_ranked_and_use_the_fallback_calibration() -> None:
    rows = [
        {"asin": "A", "d": 0, "bsr_root": 100, "category_id": None},
        {"asin": "B", "d": 0, "bsr_root": 200},
    ]
    out = features(rows)
    assert row(out, "A")["bsr_pctl"] is None  # a rank only means something within a category
    assert row(out, "B")["bsr_pctl"] == 1.0  # and A does not count in c1's n
    assert row(out, "A")["est_sales_7d_mean"] == pytest.approx(FALLBACK_A / 100, rel=1e-6)


def test_no_mart_rows_on_the_target_gives_no_rows() -> None:
    assert features([{"asin": "A", "d": -3, "bsr_root": 5}]).height == 0
    assert build_features(MART_TIMESERIES_DAILY.empty().lazy(), keywords(), [T], calibration=CAL).height == 0


def test_nan_prices_and_ratings_are_missing_days() -> None:
    rows = series("A", list(range(-9, 1)), price=10.0, rating=4.0)
    rows[-1] |= {"price": float("nan"), "rating": float("nan")}
    r = row(features(rows), "A")
    assert r["price_change_vs_median_30d"] is None and r["promo_flag"] is None
    assert r["price_cv_30d"] == 0.0 and r["rating_mean_30d"] == pytest.approx(4.0)


@pytest.mark.parametrize("targets", [[day(0)], [day(-d) for d in range(0, 45, 3)]])
def test_gathered_and_rolled_windows_give_the_same_rows(
    targets: list[date], monkeypatch: pytest.MonkeyPatch
) -> None:
    # build_features picks one strategy by the share of output cells; each must give every value
    mart_lf, kw_lf = _random_market(seed=5)
    by_strategy = []
    for share in (1.0, 0.0):  # every call gathered at the outputs, then every call rolled
        monkeypatch.setattr(features_module, "GATHER_SHARE", share)
        by_strategy.append(build_features(mart_lf, kw_lf, targets, calibration=CAL))
    assert by_strategy[0].height > 30
    assert_frame_equal(by_strategy[0], by_strategy[1], check_exact=True)
