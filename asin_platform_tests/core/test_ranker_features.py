"""Derived ranker features: exact values, query-local cross-sections, and the same columns at training
and at prediction."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from asin_platform.core.labels import feature_columns
from asin_platform.core.model_files import load_model, save_model
from asin_platform.core.predict import predict_with
from asin_platform.core.ranker import feature_matrix, train_ranker
from asin_platform.core.ranker_features import DEFAULT_SETS, SETS, add_derived, set_columns
from asin_platform_tests.core.test_labels import sim_features
from asin_platform_tests.core.test_ranker import FAST, rank_samples

D1, D2 = date(2025, 3, 1), date(2025, 3, 2)


def rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "site": ["US", "US", "US", "US"],
            "date": [D1, D1, D1, D2],
            "asin": ["A", "B", "C", "A"],
            "category_id": ["c1", "c1", "c2", "c1"],
            "bsr_log_slope_7d": [-0.2, 0.0, 0.1, -0.2],
            "bsr_log_slope_14d": [-0.1, 0.0, 0.0, -0.1],
            "bsr_log_slope_30d": [-0.05, 0.0, 0.0, -0.05],
            "bsr_pctl_change_7d": [0.3, 0.0, -0.1, 0.3],
            "bsr_pctl_change_30d": [0.6, 0.0, 0.0, 0.6],
            "est_sales_7d_mean": [1.95, 0.45, 0.0, 1.95],
            "est_sales_30d_mean": [0.95, 0.45, None, 0.95],
            "review_velocity_7d": [0.5, 0.0, 0.0, 0.5],
            "review_velocity_14d": [0.3, 0.0, 0.0, 0.3],
            "review_velocity_30d": [0.1, 0.0, 0.0, 0.1],
        }
    )


def test_row_local_sets_have_their_exact_values() -> None:
    names = set_columns(("ratios", "snr", "reviews"))
    out = add_derived(rows(), names).row(0, named=True)
    assert out["sales_7v30_log"] == pytest.approx(math.log(2.0 / 1.0))
    assert out["slope_accel_7v30"] == pytest.approx(-0.15)
    assert out["slope_accel_7v14"] == pytest.approx(-0.1)
    assert out["review_accel_7v30"] == pytest.approx(0.4)
    assert out["review_rel_7v30"] == pytest.approx(0.55 / 0.15)
    assert out["pctl_accel_7v30"] == pytest.approx(0.3 - 0.6 * 7 / 30)
    assert out["sales_z_7v30"] == pytest.approx(1.0 / math.sqrt(1.0 / 7))
    assert out["slope_snr_7d"] == pytest.approx(-0.2 * math.sqrt(7.0))
    assert out["reviews_per_sale_7d"] == pytest.approx(0.5 / 2.0)
    assert out["reviews_per_sale_14d"] == pytest.approx(0.3 / 1.5)
    assert out["review_excess_7d"] == pytest.approx(0.5 - 0.015 * 1.95)
    # a missing 30-day mean gives a missing ratio (LightGBM's missing), not a number
    assert add_derived(rows(), ["sales_7v30_log"])["sales_7v30_log"][2] is None


def test_cross_sections_stay_inside_their_query() -> None:
    out = add_derived(rows(), set_columns(("ratios", "xs")))
    day1 = out.filter(pl.col("date") == D1)
    # rank of the 7-day slope among the 3 rows of (US, D1): -0.2 < 0.0 < 0.1
    assert day1["bsr_log_slope_7d_qrank"].to_list() == pytest.approx([1 / 3, 2 / 3, 1.0])
    # A alone on D2: its rank ignores D1's rows
    assert out.filter(pl.col("date") == D2)["bsr_log_slope_7d_qrank"].to_list() == [1.0]
    # category c1 on D1 holds A and B: median -0.1, MAD 0.1 -> A at -0.1/0.14826
    assert day1["bsr_log_slope_7d_catz"][0] == pytest.approx(-0.1 / (0.1 * 1.4826 + 1e-6))
    assert day1["bsr_log_slope_7d_catz"][2] == 0.0  # alone in c2


def test_add_derived_leaves_other_columns_and_refuses_unknown_sets() -> None:
    frame = rows()
    assert add_derived(frame, ["bsr_log_slope_7d", "not_a_feature"]).equals(frame)
    out = add_derived(frame, ["slope_snr_7d", "bsr_log_slope_7d_qrank"])
    assert out.columns == [*frame.columns, "slope_snr_7d", "bsr_log_slope_7d_qrank"]
    with pytest.raises(ValueError, match="unknown ranker feature set"):
        set_columns(("ratios", "magic"))
    assert set(DEFAULT_SETS) <= set(SETS)


def test_a_model_on_derived_features_predicts_from_plain_feature_rows(tmp_path) -> None:
    samples = rank_samples()
    names = feature_columns(samples) + set_columns(("ratios", "xs"))
    model = train_ranker(samples, features=names, params=FAST, num_boost_round=10)
    assert model.features == names
    saved = save_model(model, tmp_path)
    assert saved.card["features"] == list(names)
    day = sim_features().filter(pl.col("date") == pl.col("date").max())
    assert not set(set_columns(("xs",))) & set(day.columns)
    out = predict_with(load_model(saved.directory), day, reasons=0)
    expected = model.booster.predict(feature_matrix(add_derived(day, names), names))
    by_asin = dict(zip(day["site"] + day["asin"], expected, strict=True))
    got = dict(zip(out["site"] + out["asin"], out["model_score"], strict=True))
    assert got.keys() == by_asin.keys()
    assert np.allclose([got[k] for k in by_asin], list(by_asin.values()))


def test_cross_sections_are_taken_before_negatives_are_sampled() -> None:
    from asin_platform.core.ranker import prepare_rank_data

    samples = rank_samples()
    names = feature_columns(samples) + set_columns(("ratios", "xs"))
    half = prepare_rank_data(samples, features=names, negative_fraction=0.5).train
    full = add_derived(samples, names).select("site", "date", "asin", ref="bsr_log_slope_7d_qrank")
    joined = half.select("site", "date", "asin", "bsr_log_slope_7d_qrank").join(
        full, on=["site", "date", "asin"]
    )
    assert joined.height == half.height < samples.filter(pl.col("split") == "train").height
    assert joined.filter(pl.col("bsr_log_slope_7d_qrank") != pl.col("ref")).is_empty()


def test_xs_hist_ranks_history_columns_within_each_query() -> None:
    frame = rows().with_columns(
        listing_change_days=pl.Series([3, 30, 30, 5], dtype=pl.Int32),
        bsr_log_drop_7d_prior=pl.Series([0.4, None, -0.1, 0.0]),
        bsr_log_z_7d_prior=pl.Series([-2.0, 0.0, 1.0, -1.0]),
        review_burst_z_7d=pl.Series([3.0, 0.0, 0.0, 1.0]),
        price_step_7d_prior=pl.Series([-0.2, 0.0, 0.0, 0.0]),
    )
    out = add_derived(frame, set_columns(("xs_hist",)))
    # D1 holds A, B, C; D2 only A (rank 1 of 1); nulls are not ranked
    assert out["listing_change_days_qrank"].to_list() == pytest.approx([1 / 3, 2.5 / 3, 2.5 / 3, 1.0])
    assert out["bsr_log_drop_7d_prior_qrank"].to_list() == [1.0, None, 0.5, 1.0]
    assert out["review_burst_z_7d_qrank"].to_list() == [1.0, 0.5, 0.5, 1.0]
