"""Batch scoring: a day's features -> model score and ranks (the ``predictions_rank_daily`` rows).

Scores are only comparable inside a query (site x date), as the ranker was trained: a rank is
what the product is worth to a reader of that day's list. ``rank_in_site`` and
``rank_in_category`` start at 1 for the highest score; ties are broken by ASIN so a re-run gives
the same ranks. The rows keep (site, asin) so they join with ``dim_asin`` for title, brand and
category path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

# core.explain does not load lightgbm (it only calls the booster it is given)
from asin_platform.core.explain import DEFAULT_TOP, explain

# core.ranker sets LightGBM's OpenMP wait policy before loading it: import it first, lightgbm never
from asin_platform.core.model_files import LoadedModel
from asin_platform.core.ranker import feature_matrix
from asin_platform.schemas import UTC_TS, Table, register

if TYPE_CHECKING:
    import lightgbm as lgb

PREDICTIONS_RANK_DAILY = register(
    Table(
        "predictions_rank_daily",
        {
            "site": pl.Utf8(),
            "date": pl.Date(),
            "asin": pl.Utf8(),
            "category_id": pl.Utf8(),
            "model_score": pl.Float64(),  # lambdarank score: higher = more likely to explode
            "rank_in_site": pl.Int32(),  # 1 = highest score of the (site, date)
            "rank_in_category": pl.Int32(),  # 1 = highest score of the (site, date, category)
            "model_version": pl.Utf8(),
            "scored_at": UTC_TS,
            # the top feature contributions (core.explain): JSON, and as text for people
            "reasons": pl.Utf8(),
            "reasons_text": pl.Utf8(),
        },
        key=("site", "date", "asin"),
    )
)


def _rank_within(group: list[str]) -> pl.Expr:
    # ordinal rank of (-score, asin) inside the group: the sort below makes ties go by ASIN
    return pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(group)


def score_features(
    booster: lgb.Booster,
    features: pl.DataFrame,
    *,
    model_version: str,
    feature_names: list[str] | None = None,
    scored_at: datetime | None = None,
    reasons: int = DEFAULT_TOP,
) -> pl.DataFrame:
    """PREDICTIONS_RANK_DAILY rows for every feature row (any number of sites and dates), each
    with its ``reasons`` top feature contributions (``reasons=0``: none, the columns stay null)."""
    names = feature_names or booster.feature_name()
    if features.is_empty():
        return PREDICTIONS_RANK_DAILY.empty()
    matrix = feature_matrix(features, names)
    scores = booster.predict(matrix)
    when = scored_at or datetime.now(UTC)
    explained = (
        explain(booster, matrix, features, names, top=reasons)
        if reasons > 0
        else pl.DataFrame({"reasons": [None] * features.height, "reasons_text": [None] * features.height})
    )
    scored = (
        features.select("site", "date", "asin", "category_id")
        .with_columns(model_score=pl.Series(scores, dtype=pl.Float64))
        .hstack(explained.select(pl.all().cast(pl.Utf8)))
        .sort("site", "date", pl.col("model_score"), "asin", descending=[False, False, True, False])
        .with_columns(rank_in_site=_rank_within(["site", "date"]))
        .with_columns(rank_in_category=_rank_within(["site", "date", "category_id"]))
        .with_columns(model_version=pl.lit(model_version), scored_at=pl.lit(when, dtype=UTC_TS))
    )
    return PREDICTIONS_RANK_DAILY.conform(scored)


def predict_with(model: LoadedModel, features: pl.DataFrame, **kwargs: object) -> pl.DataFrame:
    """``score_features`` with a loaded model (its card's feature list and version)."""
    return score_features(
        model.booster,
        features,
        model_version=model.version,
        feature_names=model.features,
        **kwargs,  # type: ignore[arg-type]
    )


def add_model_scores(
    frame: pl.DataFrame,
    booster: lgb.Booster,
    features: list[str] | tuple[str, ...],
    *,
    num_iteration: int | None = None,
) -> pl.DataFrame:
    """``frame`` plus ``model_score`` (e.g. samples to evaluate)."""
    return frame.with_columns(
        model_score=pl.Series(
            booster.predict(feature_matrix(frame, list(features)), num_iteration=num_iteration)
        )
    )
