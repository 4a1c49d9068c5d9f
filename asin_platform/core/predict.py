"""Batch scoring: a day's features -> model score and ranks (the ``predictions_rank_daily`` rows).

Scores are only comparable inside a query (site x date), as the ranker was trained: a rank is
what the product is worth to a reader of that day's list. ``rank_in_site`` and
``rank_in_category`` start at 1 for the highest score; ties are broken by ASIN so a re-run gives
the same ranks. The rows keep (site, asin) so they join with ``dim_asin`` for title, brand and
category path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

# core.explain does not load lightgbm (it only calls the booster it is given)
from asin_platform.core.explain import DEFAULT_TOP, EXACT, PATH, explain

# core.ranker sets LightGBM's OpenMP wait policy before loading it: import it first, lightgbm never
from asin_platform.core.model_files import LoadedModel
from asin_platform.core.ranker import feature_matrix
from asin_platform.core.ranker_features import add_derived
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


# Exact reasons are TreeSHAP over every tree for each row: ~0.85 ms of CPU a row, so 85 CPU s for
# 100k ASINs against well under 1 s for the score itself (docs/benchmarks.md, *Model*). A reader looks
# at the top of a day's list, so each (site, date)'s top rows get TreeSHAP and the others path
# attribution (~15 us of CPU a row, core.explain.PathAttribution; REST_PATH) or nothing (REST_NONE).
DEFAULT_REASONS_PER_QUERY = 1000
Rest = Literal["path", "none"]
REST_PATH: Rest = "path"
REST_NONE: Rest = "none"


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
    reasons_per_query: int | None = DEFAULT_REASONS_PER_QUERY,
    reasons_rest: Rest = REST_PATH,
) -> pl.DataFrame:
    """PREDICTIONS_RANK_DAILY rows for every feature row (any number of sites and dates).

    Each row's ``reasons`` are its top feature contributions (core.explain). Each (site, date)'s
    ``reasons_per_query`` best-ranked rows (``rank_in_site`` <= N, the rows an analyst reads) get exact
    TreeSHAP; the other rows get path attribution (``reasons_rest="path"``, their JSON entries marked
    ``"m": "path"``) or null reasons (``"none"``). ``reasons_per_query=None`` gives every row TreeSHAP,
    ``reasons=0`` gives no row reasons. Both methods' contributions plus the same expected value sum to
    the row's ``model_score``."""
    names = feature_names or booster.feature_name()
    if features.is_empty():
        return PREDICTIONS_RANK_DAILY.empty()
    if reasons_per_query is not None and reasons_per_query < 0:
        raise ValueError(f"reasons_per_query must be >= 0 or None, not {reasons_per_query}")
    if reasons_rest not in (REST_PATH, REST_NONE):
        raise ValueError(f"reasons_rest must be {REST_PATH!r} or {REST_NONE!r}, not {reasons_rest!r}")
    # derived columns once, on whole queries: the matrix and the reasons' feature values read them
    values = add_derived(features, names)
    matrix = feature_matrix(values, names)
    scores = booster.predict(matrix)
    when = scored_at or datetime.now(UTC)
    ranked = (
        features.select("site", "date", "asin", "category_id")
        .with_columns(model_score=pl.Series(scores, dtype=pl.Float64), _row=pl.int_range(pl.len()))
        .sort("site", "date", pl.col("model_score"), "asin", descending=[False, False, True, False])
        .with_columns(rank_in_site=_rank_within(["site", "date"]))
        .with_columns(rank_in_category=_rank_within(["site", "date", "category_id"]))
        .with_columns(model_version=pl.lit(model_version), scored_at=pl.lit(when, dtype=UTC_TS))
    )
    text = {c: pl.Series(c, [None] * ranked.height, dtype=pl.Utf8) for c in ("reasons", "reasons_text")}
    if reasons > 0:
        exact = (
            np.ones(ranked.height, dtype=bool)
            if reasons_per_query is None
            else (ranked["rank_in_site"] <= reasons_per_query).to_numpy()
        )
        order = ranked["_row"].to_numpy()  # ranked row i is row order[i] of ``features``
        cells = values.select(names)  # the reasons read only the features' values
        for method, chosen in ((EXACT, exact), (PATH, ~exact if reasons_rest == REST_PATH else None)):
            if chosen is None or not chosen.any():
                continue
            at = np.flatnonzero(chosen)
            explained = explain(booster, matrix, cells, names, top=reasons, method=method, rows=order[at])
            for c in text:
                text[c] = text[c].scatter(at, explained[c].cast(pl.Utf8))
    return PREDICTIONS_RANK_DAILY.conform(ranked.drop("_row").with_columns(*text.values()))


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
