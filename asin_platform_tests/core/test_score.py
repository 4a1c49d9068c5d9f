"""score_baseline: robust z, weights and signs, the site fallback, reasons and ranks, with exact numbers."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import polars as pl
import pytest

from asin_platform.core.score import COMPONENTS, MAD_TO_SIGMA, score_baseline
from asin_platform.schemas import FEATURES_DAILY, SCORE_BASELINE_DAILY
from asin_platform.settings import ScoreWeights

D = date(2026, 3, 31)
ONLY = {c.name: 0.0 for c in COMPONENTS}


def weights(**w: float) -> ScoreWeights:
    return ScoreWeights(**{**ONLY, **w})


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {"site": "US", "date": D, "category_id": "c1"}
    return FEATURES_DAILY.conform(pl.DataFrame([{**base, **r} for r in rows], infer_schema_length=None))


def by_asin(out: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["asin"]: r for r in out.iter_rows(named=True)}


def test_robust_z_and_bsr_sign_exact() -> None:
    # slopes -0.1, 0, 0.1, 0.2, 0.3 -> values (sign flipped) 0.1, 0, -0.1, -0.2, -0.3
    # median -0.1; |v - median| = 0.2, 0.1, 0, 0.1, 0.2 -> MAD 0.1; scale 1.4826 * 0.1
    slopes = [-0.1, 0.0, 0.1, 0.2, 0.3]
    rows = [{"asin": f"A{i}", "bsr_log_slope_14d": s} for i, s in enumerate(slopes)]
    out = by_asin(score_baseline(frame(rows), weights(bsr_trend=1.0), min_category_size=5))
    for i, s in enumerate(slopes):
        expected = (-s - -0.1) / (MAD_TO_SIGMA * 0.1)
        assert out[f"A{i}"]["z_bsr_trend"] == pytest.approx(expected, abs=1e-12)
        assert out[f"A{i}"]["explosive_score"] == pytest.approx(expected, abs=1e-12)
    assert out["A0"]["z_bsr_trend"] == pytest.approx(1.3489815189531904)  # falling BSR ranks first
    assert out["A0"]["rank_in_category"] == 1 and out["A4"]["rank_in_category"] == 5


def test_weighted_sum_with_price_volatility_subtracted_once() -> None:
    # Two components per row, each with MAD 1 (values 0, 1, 2 -> median 1, MAD 1), so
    # z = (v - 1) / 1.4826. Score = 0.25 * z_review - 0.1 * z_price (the penalty's only sign flip).
    rows = [
        {"asin": "A", "review_velocity_14d": 2.0, "price_cv_30d": 0.0},
        {"asin": "B", "review_velocity_14d": 1.0, "price_cv_30d": 2.0},
        {"asin": "C", "review_velocity_14d": 0.0, "price_cv_30d": 1.0},
    ]
    w = weights(review_velocity=0.25, price_volatility=0.10)
    out = by_asin(score_baseline(frame(rows), w, min_category_size=3))
    z = {-1: -1 / MAD_TO_SIGMA, 0: 0.0, 1: 1 / MAD_TO_SIGMA}
    assert out["A"]["z_price_volatility"] == pytest.approx(z[-1])  # z keeps the feature's direction
    assert out["A"]["explosive_score"] == pytest.approx(0.25 * z[1] - 0.10 * z[-1])
    assert out["B"]["explosive_score"] == pytest.approx(0.25 * z[0] - 0.10 * z[1])
    assert out["C"]["explosive_score"] == pytest.approx(0.25 * z[-1] - 0.10 * z[0])
    reason = json.loads(out["A"]["reason"])
    assert reason["price_volatility"] == {"z": round(z[-1], 4), "w": -0.1, "value": 0.0}
    assert reason["review_velocity"]["w"] == 0.25


def test_est_sales_in_log_space_and_keyword_sign() -> None:
    # ln sales: ln 1, ln e, ln e^2 = 0, 1, 2 -> z = (v - 1) / 1.4826; rank change -3 (improving) scores up
    e = 2.718281828459045
    rows = [
        {"asin": "A", "est_sales_7d_mean": 1.0, "kw_mean_rank_change_7d": 3.0},
        {"asin": "B", "est_sales_7d_mean": e, "kw_mean_rank_change_7d": 0.0},
        {"asin": "C", "est_sales_7d_mean": e * e, "kw_mean_rank_change_7d": -3.0},
    ]
    out = by_asin(score_baseline(frame(rows), weights(est_sales=1.0, keyword_gain=1.0), min_category_size=3))
    assert out["C"]["z_est_sales"] == pytest.approx(1 / MAD_TO_SIGMA)
    assert out["C"]["z_keyword_gain"] == pytest.approx(1 / MAD_TO_SIGMA)
    assert out["A"]["z_keyword_gain"] == pytest.approx(-1 / MAD_TO_SIGMA)


def test_mad_floor_and_clip() -> None:
    # 4 equal values and one outlier: MAD = 0 -> floored at 0.01 -> z = 0.05 / (1.4826 * 0.01) = 3.372...
    # and with the default floor 1e-3 the same outlier is clipped at 5.
    vals = [0.5, 0.5, 0.5, 0.5, 0.55]
    rows = [{"asin": f"A{i}", "listing_quality_score": v} for i, v in enumerate(vals)]
    floored = by_asin(
        score_baseline(frame(rows), weights(listing_quality=1.0), min_category_size=5, mad_floor=0.01)
    )
    assert floored["A4"]["z_listing_quality"] == pytest.approx(0.05 / (MAD_TO_SIGMA * 0.01))
    assert floored["A0"]["z_listing_quality"] == 0.0
    clipped = by_asin(
        score_baseline(frame(rows), weights(listing_quality=1.0), min_category_size=5, clip=5.0)
    )
    assert clipped["A4"]["z_listing_quality"] == 5.0
    low = [{"asin": f"L{i}", "listing_quality_score": v} for i, v in enumerate([1.0, 1.0, 1.0, 1.0, 0.0])]
    assert (
        by_asin(score_baseline(frame(low), weights(listing_quality=1.0), min_category_size=5))["L4"][
            "z_listing_quality"
        ]
        == -5.0
    )


def test_nulls_contribute_zero_and_the_reason_says_so() -> None:
    rows = [
        {"asin": "A", "review_velocity_14d": 1.0, "listing_quality_score": 0.2},
        {"asin": "B", "review_velocity_14d": None, "listing_quality_score": 0.4},
        {"asin": "C", "review_velocity_14d": 3.0, "listing_quality_score": 0.6},
    ]
    # review velocity over the non-null values: median 2, MAD 1 -> A: -1/1.4826, B: 0 (missing)
    w = weights(review_velocity=0.5, listing_quality=0.5)
    out = by_asin(score_baseline(frame(rows), w, min_category_size=3))
    assert out["B"]["z_review_velocity"] == 0.0
    assert out["A"]["z_review_velocity"] == pytest.approx(-1 / MAD_TO_SIGMA)
    assert out["B"]["explosive_score"] == pytest.approx(0.5 * 0.0)  # listing: B is the median
    reason = json.loads(out["B"]["reason"])
    assert reason["review_velocity"] == {"z": 0.0, "w": 0.5, "value": None}
    assert "review_velocity" in reason["missing"]
    assert "missing values contribute z = 0" in reason["note"] and "review_velocity" in reason["note"]
    assert set(reason) == {c.name for c in COMPONENTS} | {"scope", "category_size", "missing", "note"}


def test_small_category_falls_back_to_site_median_and_says_so() -> None:
    # c1 has 4 ASINs (>= 4 -> category scope), c2 has 2 (< 4 -> site scope over all 6 ASINs).
    # c1 values 0, 1, 2, 3 -> median 1.5, MAD 1. Site values 0,1,2,3,10,20 -> median 2.5;
    # deviations 0.5, 0.5, 1.5, 2.5, 7.5, 17.5 -> MAD 2.
    rows = [{"asin": f"A{i}", "review_velocity_14d": float(i)} for i in range(4)]
    rows += [
        {"asin": "S1", "category_id": "c2", "review_velocity_14d": 10.0},
        {"asin": "S2", "category_id": "c2", "review_velocity_14d": 20.0},
    ]
    out = by_asin(score_baseline(frame(rows), weights(review_velocity=1.0), min_category_size=4))
    assert out["A3"]["scope"] == "category"
    assert out["A3"]["z_review_velocity"] == pytest.approx((3 - 1.5) / MAD_TO_SIGMA)
    assert out["S1"]["scope"] == "site"
    assert out["S1"]["z_review_velocity"] == pytest.approx((10 - 2.5) / (MAD_TO_SIGMA * 2.0))
    reason = json.loads(out["S1"]["reason"])
    assert reason["scope"] == "site" and reason["category_size"] == 2
    # the other components are null here, so the note goes on to name them
    assert reason["note"].startswith(
        "category has 2 ASINs (< 4) on this site and date: z-scores use the site median/MAD; "
        "missing values contribute z = 0: bsr_trend"
    )
    assert not json.loads(out["A3"]["reason"])["note"].startswith("category has")


def test_ranks_break_ties_by_asin_and_are_per_site_and_date() -> None:
    # identical features -> identical scores: the lower asin ranks first, in category and site
    rows = [
        {"asin": "B2", "review_velocity_14d": 5.0},
        {"asin": "B1", "review_velocity_14d": 5.0},
        {"asin": "A9", "review_velocity_14d": 1.0},
        {"asin": "C1", "category_id": "c2", "review_velocity_14d": 5.0},
        {"asin": "Z1", "site": "DE", "review_velocity_14d": 0.0},
        {"asin": "Z2", "date": date(2026, 4, 1), "review_velocity_14d": 0.0},
    ]
    out = by_asin(score_baseline(frame(rows), weights(review_velocity=1.0), min_category_size=1))
    assert out["B1"]["explosive_score"] == out["B2"]["explosive_score"] > out["A9"]["explosive_score"]
    assert [out[a]["rank_in_category"] for a in ("B1", "B2", "A9", "C1")] == [1, 2, 3, 1]
    # site ranks: C1 (z 0 in its own one-ASIN category) sits between the c1 leaders and A9
    assert out["B1"]["rank_in_site"] == 1 and out["B2"]["rank_in_site"] == 2
    assert out["Z1"]["rank_in_site"] == 1 and out["Z2"]["rank_in_site"] == 1


def test_output_contract_and_input_checks() -> None:
    rows = [{"asin": f"A{i}", "review_velocity_14d": float(i)} for i in range(3)]
    out = score_baseline(frame(rows).lazy(), ScoreWeights())
    assert out.schema == pl.Schema(SCORE_BASELINE_DAILY.schema)
    assert out["scope"].to_list() == ["site"] * 3  # default min_category_size 30
    with pytest.raises(ValueError, match="mad_floor"):
        score_baseline(frame(rows), ScoreWeights(), mad_floor=0)


def test_ties_follow_asin_order_whatever_the_input_order() -> None:
    # the same tied rows in (site, asin, date) order, in (site, date, asin) order and shuffled
    rows = [
        {"asin": a, "date": d, "review_velocity_14d": v}
        for a in ("A1", "A2", "A3")
        for d, v in ((D, 1.0), (date(2026, 4, 1), 2.0))
    ]
    base = frame(rows)
    w = weights(review_velocity=1.0)
    expected: pl.DataFrame | None = None
    for variant in (base, base.sort("site", "date", "asin"), base.sample(fraction=1.0, shuffle=True, seed=1)):
        out = score_baseline(variant, w, min_category_size=1).sort("site", "date", "asin")
        ranks = out["rank_in_site"].to_list()
        assert ranks == [1, 2, 3, 1, 2, 3]
        expected = out if expected is None else expected
        assert out.equals(expected)


def test_no_category_scores_at_site_level_with_its_own_note() -> None:
    rows = [{"asin": f"A{i}", "review_velocity_14d": float(i)} for i in range(3)]
    rows.append({"asin": "N", "category_id": None, "review_velocity_14d": 9.0})
    out = by_asin(score_baseline(frame(rows), weights(review_velocity=1.0), min_category_size=3))
    reason = json.loads(out["N"]["reason"])
    assert out["N"]["scope"] == "site" and out["A0"]["scope"] == "category"
    assert reason["note"].startswith("no category: z-scores use the site median/MAD")
    # site reference = all four values 0, 1, 2, 9: median 1.5, MAD 1 -> (9 - 1.5) / 1.4826
    assert out["N"]["z_review_velocity"] == pytest.approx(5.0)  # 5.06 clipped


def test_nan_counts_as_missing_and_a_wide_clip_still_writes_valid_json() -> None:
    rows = [
        {"asin": f"A{i}", "review_velocity_14d": v} for i, v in enumerate([1.0, 2.0, float("nan"), 400.0])
    ]
    out = by_asin(score_baseline(frame(rows), weights(review_velocity=1.0), min_category_size=1, clip=100.0))
    assert out["A2"]["z_review_velocity"] == 0.0
    assert json.loads(out["A2"]["reason"])["missing"] == [c.name for c in COMPONENTS]
    # median 2, MAD 1 -> (400 - 2) / 1.4826 = 268.4..., clipped at 100 and written as 100.0
    assert json.loads(out["A3"]["reason"])["review_velocity"]["z"] == 100.0
