"""Reasons per prediction: TreeSHAP contributions that add up to the score, and how they read."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest

from asin_platform.core.explain import contributions, explain, reasons_columns
from asin_platform.core.predict import score_features
from asin_platform.core.ranker import feature_matrix, lgb

NAMES = ["bsr_log_slope_7d", "review_velocity_7d", "price_cv_30d", "mystery_feature"]


@pytest.fixture(scope="module")
def model_and_frame() -> tuple[lgb.Booster, pl.DataFrame]:
    rng = np.random.default_rng(3)
    rows, per_query = 600, 50
    x = rng.normal(size=(rows, len(NAMES)))
    x[rng.random(rows) < 0.1, 2] = np.nan  # missing values take LightGBM's missing branch
    grade = np.clip(np.round(-2 * x[:, 0] + x[:, 1] + rng.normal(scale=0.5, size=rows)), 0, 4)
    params = {"objective": "lambdarank", "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5}
    train = lgb.Dataset(x, label=grade, group=[per_query] * (rows // per_query), feature_name=NAMES)
    booster = lgb.train(params, train, num_boost_round=30)
    frame = pl.DataFrame(
        {
            "site": ["US"] * rows,
            "date": [date(2025, 3, 1 + i // per_query) for i in range(rows)],
            "asin": [f"A{i:05d}" for i in range(rows)],
            "category_id": ["c1"] * rows,
            **{n: x[:, j] for j, n in enumerate(NAMES)},
        }
    ).with_columns(pl.col("price_cv_30d").fill_nan(None))
    return booster, frame


def test_contributions_plus_expected_value_sum_to_the_raw_score(model_and_frame) -> None:
    booster, frame = model_and_frame
    sample = frame.sample(n=100, seed=1)
    matrix = feature_matrix(sample, NAMES)
    contrib = contributions(booster, matrix)
    assert contrib.shape == (100, len(NAMES) + 1)
    raw = booster.predict(matrix, raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=0, atol=1e-6)
    # the expected value is one number, the same for every row
    assert np.ptp(contrib[:, -1]) < 1e-12


def test_reasons_are_the_largest_contributions_in_order(model_and_frame) -> None:
    booster, frame = model_and_frame
    head = frame.head(40)
    matrix = feature_matrix(head, NAMES)
    contrib = contributions(booster, matrix)[:, :-1]
    out = explain(booster, matrix, head, NAMES, top=2)
    assert out.columns == ["reasons", "reasons_text"] and out.height == 40
    for i, raw in enumerate(out["reasons"].to_list()):
        items = json.loads(raw)
        want = np.argsort(-np.abs(contrib[i]), kind="stable")[:2]
        assert [it["f"] for it in items] == [NAMES[j] for j in want]
        assert [it["c"] for it in items] == pytest.approx([round(contrib[i, j], 4) for j in want], abs=1e-4)
        for it in items:
            value = head[it["f"]][i]
            assert (it["v"] is None) if value is None else it["v"] == pytest.approx(value, rel=1e-3)


def test_reasons_text_reads_label_value_unit_and_contribution() -> None:
    long = pl.DataFrame(
        {
            "row": [0, 0, 1],
            "place": [1, 2, 1],
            "f": ["bsr_log_slope_7d", "review_velocity_7d", "mystery_feature"],
            "v": [-0.04213, 3.14159, None],
            "c": [0.31234, -0.1, 0.05],
        }
    )
    out = reasons_columns(long, rows=3)
    assert out["reasons_text"].to_list() == [
        "BSR 7-day log slope -0.0421/day (+0.312), review velocity 7d 3.14/day (-0.1)",
        "mystery_feature n/a (+0.05)",
        None,  # a row without contributions has no reasons
    ]
    assert json.loads(out["reasons"][0]) == [
        {"f": "bsr_log_slope_7d", "v": -0.04213, "c": 0.3123},
        {"f": "review_velocity_7d", "v": 3.142, "c": -0.1},
    ]
    assert json.loads(out["reasons"][1]) == [{"f": "mystery_feature", "v": None, "c": 0.05}]


def test_predictions_carry_their_reasons_in_rank_order(model_and_frame) -> None:
    booster, frame = model_and_frame
    day = frame.filter(pl.col("date") == date(2025, 3, 1))
    rows = score_features(booster, day, model_version="v1", feature_names=NAMES)
    assert rows["reasons"].null_count() == 0 and rows["reasons_text"].null_count() == 0
    # the reasons travel with their own row through the rank sort
    best = rows.filter(pl.col("rank_in_site") == 1).row(0, named=True)
    own = day.filter(pl.col("asin") == best["asin"])
    own_contrib = contributions(booster, feature_matrix(own, NAMES))
    assert own_contrib.sum() == pytest.approx(best["model_score"], abs=1e-6)
    top = NAMES[int(np.argmax(np.abs(own_contrib[0, :-1])))]
    assert json.loads(best["reasons"])[0]["f"] == top
    silent = score_features(booster, day, model_version="v1", feature_names=NAMES, reasons=0)
    assert silent["reasons"].null_count() == silent.height


def test_only_each_querys_top_rows_are_explained(model_and_frame) -> None:
    booster, frame = model_and_frame
    two_sites = pl.concat([frame, frame.with_columns(site=pl.lit("UK"))])  # 24 queries of 50 rows
    rows = score_features(booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=7)
    explained = rows.filter(pl.col("reasons").is_not_null())
    # exactly ranks 1..7 of every (site, date), and nothing else
    assert explained.height == 24 * 7 and explained["reasons_text"].null_count() == 0
    assert set(explained["rank_in_site"]) == set(range(1, 8))
    per_query = explained.group_by("site", "date").agg(pl.col("rank_in_site").sort())
    assert per_query.height == 24 and all(r == list(range(1, 8)) for r in per_query["rank_in_site"].to_list())
    rest = rows.filter(pl.col("rank_in_site") > 7)
    assert rest["reasons"].null_count() == rest.height and rest["reasons_text"].null_count() == rest.height
    # the explained rows' reasons are those of explaining every row, row for row
    everything = score_features(
        booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=None
    )
    assert everything["reasons"].null_count() == 0
    key = ["site", "date", "asin"]
    both = explained.select(*key, "reasons", "reasons_text").join(
        everything.select(*key, "reasons", "reasons_text"), on=key, suffix="_all"
    )
    assert both.height == explained.height
    assert (both["reasons"] == both["reasons_all"]).all()
    assert (both["reasons_text"] == both["reasons_text_all"]).all()
    # issue 14's contract on the explained rows: contributions + expected value == the raw score
    sample = explained.sample(n=50, seed=2).join(two_sites, on=key)
    contrib = contributions(booster, feature_matrix(sample, NAMES))
    np.testing.assert_allclose(contrib.sum(axis=1), sample["model_score"].to_numpy(), rtol=0, atol=1e-6)
    for raw, c in zip(sample["reasons"].to_list(), contrib, strict=True):
        top = int(np.argmax(np.abs(c[:-1])))
        assert json.loads(raw)[0]["f"] == NAMES[top]
        assert json.loads(raw)[0]["c"] == pytest.approx(round(c[top], 4), abs=1e-4)
    # a query smaller than N is explained whole; 0 explains nothing
    few = score_features(booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=500)
    assert few["reasons"].null_count() == 0
    none = score_features(booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=0)
    assert none["reasons"].null_count() == none.height
