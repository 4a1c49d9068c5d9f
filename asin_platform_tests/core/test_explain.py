"""Reasons per prediction: TreeSHAP and path-attribution contributions that add up to the score, and
how they read."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest

from asin_platform.core.explain import (
    PATH,
    PathAttribution,
    contributions,
    explain,
    is_exact,
    path_contributions,
    reasons_columns,
    top_contributions,
)
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


def test_path_contributions_plus_expected_value_sum_to_the_raw_score(model_and_frame) -> None:
    booster, frame = model_and_frame
    # every row, rows with a missing value (LightGBM's default-left routing) and a row missing all
    matrix = np.vstack([feature_matrix(frame, NAMES), np.full((1, len(NAMES)), np.nan, dtype=np.float32)])
    assert np.isnan(matrix[:, 2]).sum() > 20
    contrib = path_contributions(booster, matrix)
    assert contrib.shape == (matrix.shape[0], len(NAMES) + 1)
    raw = booster.predict(matrix, raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=0, atol=1e-6)
    # the base is TreeSHAP's expected value: the two methods split the same raw - expected value
    shap = contributions(booster, matrix[:50])
    np.testing.assert_allclose(contrib[:, -1], shap[0, -1], rtol=0, atol=1e-9)
    # the rows' own leaves decide: small chunks give the same numbers as one
    paths = PathAttribution.of(booster)
    leaves = booster.predict(matrix, pred_leaf=True)
    np.testing.assert_array_equal(paths.contributions(leaves, chunk_rows=7), contrib)
    with pytest.raises(ValueError, match="leaves a row"):
        paths.contributions(leaves[:, :3])
    # a model read back from its text (as scoring loads it) and one cut at a best iteration agree too
    reread = lgb.Booster(model_str=booster.model_to_string())
    np.testing.assert_allclose(path_contributions(reread, matrix), contrib, rtol=0, atol=1e-12)
    reread.best_iteration = 12  # predict and dump_model both stop there
    cut = path_contributions(reread, matrix)
    assert len(PathAttribution.of(reread).tables) == 12
    np.testing.assert_allclose(cut.sum(axis=1), reread.predict(matrix, raw_score=True), rtol=0, atol=1e-6)


def test_path_attribution_of_stumps_is_treeshap() -> None:
    # one split per tree: the feature's Shapley value is leaf - expected value, as its path credit
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3))
    x[rng.random(400) < 0.2, 1] = np.nan
    y = x[:, 0] - 0.5 * np.nan_to_num(x[:, 1]) + rng.normal(scale=0.3, size=400)
    params = {"objective": "regression", "num_leaves": 2, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=25)
    np.testing.assert_allclose(path_contributions(booster, x), contributions(booster, x), rtol=0, atol=1e-9)


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


def test_top_rows_get_treeshap_and_the_rest_path_attribution(model_and_frame) -> None:
    booster, frame = model_and_frame
    two_sites = pl.concat([frame, frame.with_columns(site=pl.lit("UK"))])  # 24 queries of 50 rows
    rows = score_features(booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=7)
    # every row has reasons; exactly ranks 1..7 of every (site, date) are TreeSHAP, the JSON says which
    assert rows["reasons"].null_count() == 0 and rows["reasons_text"].null_count() == 0
    marked = rows.with_columns(exact=is_exact(pl.col("reasons")))
    exact, path = marked.filter(pl.col("exact")), marked.filter(~pl.col("exact"))
    assert exact.height == 24 * 7 and path.height == rows.height - 24 * 7
    per_query = exact.group_by("site", "date").agg(pl.col("rank_in_site").sort())
    assert per_query.height == 24 and all(r == list(range(1, 8)) for r in per_query["rank_in_site"].to_list())
    path_entries = [it for raw in path["reasons"].to_list() for it in json.loads(raw)]
    exact_entries = [it for raw in exact["reasons"].to_list() for it in json.loads(raw)]
    assert len(path_entries) == 3 * path.height and all(it["m"] == "path" for it in path_entries)
    assert len(exact_entries) == 3 * exact.height and all("m" not in it for it in exact_entries)
    # the TreeSHAP rows' reasons are those of explaining every row with TreeSHAP, row for row
    everything = score_features(
        booster, two_sites, model_version="v1", feature_names=NAMES, reasons_per_query=None
    )
    assert (
        everything["reasons"].null_count() == 0
        and everything.select(is_exact(pl.col("reasons")).all()).item()
    )
    key = ["site", "date", "asin"]
    both = exact.select(*key, "reasons", "reasons_text").join(
        everything.select(*key, "reasons", "reasons_text"), on=key, suffix="_all"
    )
    assert both.height == exact.height
    assert (both["reasons"] == both["reasons_all"]).all()
    assert (both["reasons_text"] == both["reasons_text_all"]).all()
    # issue 14's contract on both kinds of rows: contributions + expected value == the raw score
    for kind, method in ((exact, contributions), (path, path_contributions)):
        sample = kind.sample(n=50, seed=2).join(two_sites, on=key)
        contrib = method(booster, feature_matrix(sample, NAMES))
        np.testing.assert_allclose(contrib.sum(axis=1), sample["model_score"].to_numpy(), rtol=0, atol=1e-6)
        for raw, c in zip(sample["reasons"].to_list(), contrib, strict=True):
            want = np.argsort(-np.abs(c[:-1]), kind="stable")[:3]
            assert [it["f"] for it in json.loads(raw)] == [NAMES[j] for j in want]
            assert [it["c"] for it in json.loads(raw)] == pytest.approx(
                [round(c[j], 4) for j in want], abs=1e-4
            )


def test_reasons_per_query_and_rest_choose_the_methods(model_and_frame) -> None:
    booster, frame = model_and_frame
    two_sites = pl.concat([frame, frame.with_columns(site=pl.lit("UK"))])

    def score(**kwargs) -> pl.DataFrame:
        out = score_features(booster, two_sites, model_version="v1", feature_names=NAMES, **kwargs)
        return out.with_columns(exact=is_exact(pl.col("reasons")))

    # the old behaviour: only the top N have reasons, the rest are null
    old = score(reasons_per_query=7, reasons_rest="none")
    assert old.filter(pl.col("rank_in_site") <= 7)["exact"].all()
    rest = old.filter(pl.col("rank_in_site") > 7)
    assert rest["reasons"].null_count() == rest.height and rest["reasons_text"].null_count() == rest.height
    # a query smaller than N is all TreeSHAP; 0 makes every row path attribution; reasons=0 none
    assert score(reasons_per_query=500)["exact"].all()
    assert not score(reasons_per_query=0)["exact"].any()
    assert score(reasons_per_query=0, reasons_rest="none")["reasons"].null_count() == 2 * frame.height
    assert score(reasons=0)["reasons"].null_count() == 2 * frame.height
    with pytest.raises(ValueError, match="reasons_rest"):
        score(reasons_rest="all")


def test_path_reasons_are_marked_and_read_the_same(model_and_frame) -> None:
    booster, frame = model_and_frame
    head = frame.head(30)
    matrix = feature_matrix(head, NAMES)
    out = explain(booster, matrix, head, NAMES, method=PATH, chunk_rows=8)  # chunks join up in order
    contrib = path_contributions(booster, matrix)
    for raw, c in zip(out["reasons"].to_list(), contrib, strict=True):
        assert json.loads(raw)[0] == {
            "f": NAMES[int(np.argmax(np.abs(c[:-1])))],
            "v": json.loads(raw)[0]["v"],
            "c": pytest.approx(round(float(c[np.argmax(np.abs(c[:-1]))]), 4), abs=1e-4),
            "m": "path",
        }
    # explaining chosen rows of the whole matrix = explaining those rows' own matrix
    pick = np.array([17, 3, 3, 25])
    chosen = explain(booster, matrix, head, NAMES, method=PATH, rows=pick, chunk_rows=3)
    assert chosen.equals(explain(booster, matrix[pick], head[pick], NAMES, method=PATH))
    # top_contributions' dense layout takes a reshape, any other order the group-by: same reasons
    long = top_contributions(contrib, head, NAMES)
    assert reasons_columns(long, 30, method=PATH).equals(out)
    assert reasons_columns(long.sample(fraction=1.0, shuffle=True, seed=4), 30, method=PATH).equals(out)
    long = pl.DataFrame({"row": [0], "place": [1], "f": ["review_velocity_7d"], "v": [3.14159], "c": [-0.1]})
    marked, plain = reasons_columns(long, 1, method=PATH), reasons_columns(long, 1)
    assert json.loads(marked["reasons"][0]) == [
        {"f": "review_velocity_7d", "v": 3.142, "c": -0.1, "m": "path"}
    ]
    assert "m" not in json.loads(plain["reasons"][0])[0]
    assert marked["reasons_text"][0] == plain["reasons_text"][0] == "review velocity 7d 3.14/day (-0.1)"
