"""Realised outcomes: what happened to a day's lists once the label horizon has passed.

A prediction date T of a site is *realised* when the mart of that site reaches T + H: the label
of every product in T's list (``core.labels.compute_targets``, the very targets the ranker was
trained on) is then known. For each realised (site, T) and ranker (the model's ``model_score``,
the baseline's ``explosive_score``) this module stores NDCG@k and precision@k of that day's
ranking against the realised labels (``core.metrics.query_metrics``), one row per (ranker, k).

A day whose list held no product that went on to explode has ``positives = 0``: precision@k is
0 for every ranker and NDCG@k is null (nothing to find, nothing to rank); the rolling comparison
averages precision over every realised day and NDCG over the days with a positive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import polars as pl

from asin_platform.core.labels import KEY, LabelConfig, compute_targets
from asin_platform.core.metrics import DEFAULT_KS, query_metrics
from asin_platform.schemas import UTC_TS, Table, register

RANKERS: dict[str, str] = {"model": "model_score", "baseline": "explosive_score"}

REALISED_OUTCOMES = register(
    Table(
        "realised_outcomes",
        {
            "site": pl.Utf8(),
            "date": pl.Date(),  # the prediction date T
            "ranker": pl.Utf8(),  # model | baseline
            "k": pl.Int32(),
            "ndcg": pl.Float64(),  # null when the day held no positive
            "precision": pl.Float64(),
            "positives": pl.Int32(),  # products of T's list that exploded in (T, T+H]
            "items": pl.Int32(),  # products in T's list
            "horizon": pl.Int32(),  # H the labels used
            "model_version": pl.Utf8(),  # the model that scored T
            "evaluated_at": UTC_TS,
        },
        key=("site", "date", "ranker", "k"),
    )
)


def realised_through(mart_last_day: date, horizon: int) -> date:
    """The last prediction date whose horizon has fully passed when the mart ends on ``mart_last_day``."""
    return mart_last_day - timedelta(days=horizon)


def realised_outcomes(
    predictions: pl.DataFrame,
    baseline: pl.DataFrame,
    mart: pl.DataFrame | pl.LazyFrame,
    config: LabelConfig,
    *,
    calibration: pl.DataFrame | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    rankers: Mapping[str, str] = RANKERS,
    evaluated_at: Any = None,
) -> pl.DataFrame:
    """REALISED_OUTCOMES rows for the (site, date) of ``predictions`` already realised in ``mart``.

    ``predictions``: predictions_rank_daily rows; ``baseline``: score_baseline_daily rows of the
    same days (a product without a baseline score ranks last for the baseline); ``mart``:
    mart_timeseries_daily (site, date, asin, category_id, bsr_root) over [T - W, T + H]."""
    if predictions.is_empty():
        return REALISED_OUTCOMES.empty()
    last = mart.lazy().group_by("site").agg(_last=pl.col("date").max()).collect()
    reference = (
        predictions.select(*KEY, "model_score", "model_version")
        .join(last, on="site", how="inner")
        .filter(pl.col("date") + timedelta(days=config.horizon) <= pl.col("_last"))
        .drop("_last")
        .join(baseline.select(*KEY, "explosive_score"), on=list(KEY), how="left")
    )
    if reference.is_empty():
        return REALISED_OUTCOMES.empty()
    targets = compute_targets(mart, reference.select(*KEY), config, calibration)
    labelled = reference.join(targets.select(*KEY, "relevance", "explodes"), on=list(KEY), how="left")
    labelled = labelled.with_columns(pl.col("relevance", "explodes").fill_null(0))
    versions = labelled.group_by("site", "date").agg(pl.col("model_version").drop_nulls().first())
    parts = [
        _long(
            query_metrics(labelled, score=column, relevance="relevance", positive="explodes", ks=ks), ks
        ).with_columns(ranker=pl.lit(name))
        for name, column in rankers.items()
    ]
    return REALISED_OUTCOMES.conform(
        pl.concat(parts)
        .join(versions, on=["site", "date"], how="left")
        .with_columns(horizon=pl.lit(config.horizon), evaluated_at=pl.lit(evaluated_at, dtype=UTC_TS))
        .sort("site", "date", "ranker", "k")
    )


def _long(per_query: pl.DataFrame, ks: Sequence[int]) -> pl.DataFrame:
    """query_metrics' wide columns (ndcg@10, precision@10, ...) as one row per k."""
    return pl.concat(
        per_query.select(
            "site",
            "date",
            pl.lit(k, dtype=pl.Int32).alias("k"),
            pl.col(f"ndcg@{k}").alias("ndcg"),
            pl.col(f"precision@{k}").alias("precision"),
            "positives",
            "items",
        )
        for k in ks
    )


def rolling_comparison(
    outcomes: pl.DataFrame, *, k: int = 20, ranker: str = "model", against: str = "baseline"
) -> dict[str, Any]:
    """Mean realised precision@k and NDCG@k of ``ranker`` and ``against`` over ``outcomes`` (the
    rows of one site's rolling window): ``{days, <ranker>_precision, <against>_precision, ...}``."""
    at_k = outcomes.filter(pl.col("k") == k)
    out: dict[str, Any] = {"days": at_k.select(pl.col("date").n_unique()).item() if at_k.height else 0}
    for name in (ranker, against):
        rows = at_k.filter(pl.col("ranker") == name)
        out[f"{name}_precision@{k}"] = rows["precision"].mean() if rows.height else None
        out[f"{name}_ndcg@{k}"] = rows["ndcg"].drop_nulls().mean() if rows.height else None
    return out
