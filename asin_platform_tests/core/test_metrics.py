"""Ranking metrics against hand-computed values, query filtering, the oracle's definition."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl
import pytest

from asin_platform.core.metrics import (
    ceiling_scores,
    compare_rankers,
    markdown_table,
    oracle_scores,
    query_metrics,
    random_scores,
    ranking_metrics,
    ratios,
)

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)


def _frame() -> pl.DataFrame:
    rows = [
        # query 1: graded relevance, scores in descending order a..e
        ("US", D1, "a", 5.0, 0),
        ("US", D1, "b", 4.0, 2),
        ("US", D1, "c", 3.0, 0),
        ("US", D1, "d", 2.0, 1),
        ("US", D1, "e", 1.0, 0),
        # query 2: no positive at all -> excluded from every mean
        ("US", D2, "a", 1.0, 0),
        ("US", D2, "b", 2.0, 0),
        # query 3: a tie in the score, broken by asin: "x" before "y"
        ("DE", D1, "y", 1.0, 1),
        ("DE", D1, "x", 1.0, 0),
        ("DE", D1, "z", 0.5, 0),
    ]
    return pl.DataFrame(rows, schema=["site", "date", "asin", "score", "rel"], orient="row")


def _dcg(rels: list[int]) -> float:
    return sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(rels))


def test_ndcg_precision_recall_match_hand_computed_values() -> None:
    per_query = query_metrics(_frame(), score="score", relevance="rel", ks=[3, 5])
    q1 = per_query.filter((pl.col("site") == "US") & (pl.col("date") == D1)).row(0, named=True)
    # ranked relevances 0, 2, 0, 1, 0; ideal 2, 1, 0, 0, 0
    assert q1["ndcg@3"] == pytest.approx(_dcg([0, 2, 0]) / _dcg([2, 1, 0]))
    assert q1["ndcg@3"] == pytest.approx((3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert q1["ndcg@5"] == pytest.approx(_dcg([0, 2, 0, 1, 0]) / _dcg([2, 1, 0, 0, 0]))
    assert q1["precision@3"] == pytest.approx(1 / 3) and q1["recall@3"] == pytest.approx(1 / 2)
    assert q1["precision@5"] == pytest.approx(2 / 5) and q1["recall@5"] == pytest.approx(1.0)
    q3 = per_query.filter(pl.col("site") == "DE").row(0, named=True)
    # tie: x (rel 0) ranks before y (rel 1)
    assert q3["ndcg@3"] == pytest.approx((1 / math.log2(3)) / 1.0)


def test_queries_without_a_positive_are_excluded_and_counted() -> None:
    table = ranking_metrics(_frame(), score="score", relevance="rel", ks=[3])
    row = table.row(0, named=True)
    assert row["queries_kept"] == 2 and row["queries_total"] == 3
    q1 = _dcg([0, 2, 0]) / _dcg([2, 1, 0])
    q3 = 1 / math.log2(3)
    assert row["ndcg"] == pytest.approx((q1 + q3) / 2)  # not (q1 + q3 + 1) / 3
    assert row["precision"] == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_binary_labels_and_an_explicit_positive_column() -> None:
    frame = _frame().with_columns(bin=(pl.col("rel") >= 2).cast(pl.Int8))
    # graded gains, but only grade >= 2 counts as a positive: query 3 has none now
    row = ranking_metrics(frame, score="score", relevance="rel", positive="bin", ks=[3]).row(0, named=True)
    assert row["queries_kept"] == 1
    assert row["recall"] == pytest.approx(1.0)  # b is in the top 3
    binary = ranking_metrics(frame, score="score", relevance="bin", ks=[3]).row(0, named=True)
    assert binary["ndcg"] == pytest.approx((1 / math.log2(3)) / 1.0)


def test_a_perfect_ranking_scores_one_and_null_scores_rank_last() -> None:
    frame = _frame().with_columns(perfect=pl.col("rel").cast(pl.Float64), nulls=pl.lit(None, pl.Float64))
    row = ranking_metrics(frame, score="perfect", relevance="rel", ks=[5]).row(0, named=True)
    assert row["ndcg"] == pytest.approx(1.0)
    with_null = frame.with_columns(s=pl.when(pl.col("asin") == "b").then(None).otherwise(pl.col("score")))
    q1 = (
        query_metrics(with_null, score="s", relevance="rel", ks=[5])
        .filter((pl.col("site") == "US") & (pl.col("date") == D1))
        .row(0, named=True)
    )
    assert q1["ndcg@5"] == pytest.approx(_dcg([0, 0, 1, 0, 2]) / _dcg([2, 1, 0, 0, 0]))


def test_compare_rankers_table_and_ratios() -> None:
    frame = _frame().with_columns(
        perfect=pl.col("rel").cast(pl.Float64), random_score=random_scores(_frame(), seed=1)
    )
    table = compare_rankers(
        frame, {"model": "score", "oracle": "perfect", "random": "random_score"}, relevance="rel", ks=[3, 5]
    )
    assert table.height == 6 and set(table["ranker"]) == {"model", "oracle", "random"}
    r = ratios(table, k=3)
    assert r["oracle"] == pytest.approx(
        table.filter((pl.col("ranker") == "model") & (pl.col("k") == 3))["ndcg"][0]
    )
    md = markdown_table(table)
    assert md.splitlines()[0].startswith("| ranker | NDCG@3 | P@3 | R@3 | NDCG@5")
    assert "2 of 3 queries" in md
    # random scores are reproducible
    assert random_scores(frame, seed=1).equals(random_scores(frame, seed=1))


def test_oracle_ranks_committed_breakouts_first_and_decoys_last() -> None:
    t = date(2025, 5, 1)
    days = [t + timedelta(days=i) for i in range(-35, 36)]
    rows = []
    spec = {
        # asin: (onset, ramp, decoy, level today, level a week ago, multiplier by day offset)
        "ONSET_SOON": (t + timedelta(days=10), 30, False, 12.0, 10.0, lambda k: 1.0 if k < 10 else 5.0),
        "ONSET_LATE": (t + timedelta(days=25), 30, False, 10.0, 10.0, lambda k: 1.0 if k < 25 else 9.0),
        "RAMPING": (t - timedelta(days=5), 30, False, 40.0, 10.0, lambda k: 1.0 if k < -5 else (2.0 if k <= 0 else 3.0)),
        "DONE": (t - timedelta(days=60), 20, False, 500.0, 500.0, lambda k: 50.0),  # growth phase over
        "DECOY": (None, None, True, 20.0, 10.0, lambda k: 1.0),
        "RISER": (None, None, False, 15.0, 10.0, lambda k: 1.0),
        "FLAT": (None, None, False, 10.0, 10.0, lambda k: 1.0),
    }  # fmt: skip
    for asin, (onset, ramp, decoy, now, before, mult) in spec.items():
        for d in days:
            k = (d - t).days
            rows.append(
                {
                    "site": "US",
                    "date": d,
                    "asin": asin,
                    "demand_level": now if d == t else before,
                    "breakout_multiplier": mult(k),
                    "breakout_onset": onset,
                    "breakout_ramp_days": ramp,
                    "decoy": decoy,
                }
            )
    gt = pl.DataFrame(rows, schema_overrides={"breakout_ramp_days": pl.Int32})
    ref = pl.DataFrame({"site": ["US"] * len(spec), "date": [t] * len(spec), "asin": list(spec)})
    scored = oracle_scores(ref, gt, horizon=30, observation=28).sort("oracle_score", descending=True)
    order = scored["asin"].to_list()
    # committed by planned growth, then the rest by latent momentum (three tied at 0), decoys last
    assert order[:3] == ["ONSET_SOON", "RAMPING", "RISER"]
    assert set(order[3:6]) == {"FLAT", "ONSET_LATE", "DONE"} and order[-1] == "DECOY"
    row = {r["asin"]: r for r in scored.iter_rows(named=True)}
    assert row["ONSET_SOON"]["committed"] and row["RAMPING"]["committed"]
    assert (
        not row["ONSET_LATE"]["committed"] and not row["DONE"]["committed"] and not row["DECOY"]["committed"]
    )
    # planned growth: future (T, T+30] = 9 days x1 + 21 days x5; past (T-28, T] = 28 days x1
    assert row["ONSET_SOON"]["planned_growth"] == pytest.approx(math.log((9 + 21 * 5) / 30))
    # past = 22 days x1 + 6 days x2, future = 30 days x3
    assert row["RAMPING"]["planned_growth"] == pytest.approx(math.log(3 / (34 / 28)))
    assert row["RISER"]["momentum"] == pytest.approx(math.log(1.5))
    # a ground truth that knows when the precursors began overrides the default lead
    explicit = gt.with_columns(precursor_start=pl.col("breakout_onset") - timedelta(days=30))
    late = oracle_scores(ref, explicit, horizon=30).filter(pl.col("asin") == "ONSET_LATE")
    assert late["committed"][0]


def test_ceiling_is_the_latent_demand_ratio() -> None:
    t = date(2025, 5, 1)
    days = [t + timedelta(days=i) for i in range(-28, 31)]
    gt = pl.DataFrame(
        {
            "site": "US",
            "date": days,
            "asin": "A",
            "latent_demand": [2.0 if d > t else 1.0 for d in days],
        }
    )
    ref = pl.DataFrame({"site": ["US"], "date": [t], "asin": ["A"]})
    assert ceiling_scores(ref, gt)["ceiling_score"][0] == pytest.approx(math.log(2.0))
