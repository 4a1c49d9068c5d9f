"""Why a product is on the list: each prediction's top feature contributions (TreeSHAP).

LightGBM's ``pred_contrib=True`` returns, per row, one SHAP value per feature plus the expected
value (the model's mean raw score) in the last column; they add up to the row's raw score exactly
(TreeSHAP is exact for trees, not an approximation). For a lambdarank model the raw score *is* the
model score, so a contribution reads "this feature moved the product's score by c".

A prediction keeps its ``top`` contributions by absolute size as compact JSON (``reasons``)::

    [{"f": "bsr_log_slope_7d", "v": -0.042, "c": 0.31}, ...]      f = feature, v = value, c = contribution

and as text for people (``reasons_text``): ``"BSR 7-day log slope -0.042 (+0.31), review velocity
7d 3.1/day (+0.12)"``: the feature's value, and in brackets how much it moved the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import lightgbm as lgb

DEFAULT_TOP = 3  # reasons kept per prediction: what fits a spreadsheet cell and a reader's glance

# How a feature reads in a reason: (label, unit suffix). Unknown features read as their name.
FEATURE_LABELS: dict[str, tuple[str, str]] = {
    "bsr_log_slope_7d": ("BSR 7-day log slope", "/day"),
    "bsr_log_slope_14d": ("BSR 14-day log slope", "/day"),
    "bsr_log_slope_30d": ("BSR 30-day log slope", "/day"),
    "bsr_pctl": ("BSR percentile in category", ""),
    "bsr_pctl_change_7d": ("BSR percentile 7-day change", ""),
    "bsr_pctl_change_30d": ("BSR percentile 30-day change", ""),
    "est_sales_7d_mean": ("sales estimate 7d", "/day"),
    "est_sales_30d_mean": ("sales estimate 30d", "/day"),
    "price_cv_30d": ("price volatility 30d", ""),
    "price_change_vs_median_30d": ("price vs 30-day median", ""),
    "promo_flag": ("on promotion", ""),
    "review_velocity_7d": ("review velocity 7d", "/day"),
    "review_velocity_14d": ("review velocity 14d", "/day"),
    "review_velocity_30d": ("review velocity 30d", "/day"),
    "rating_mean_30d": ("rating 30d", " stars"),
    "rating_change_30d": ("rating 30-day change", " stars"),
    "new_offer_count": ("new offers", ""),
    "new_offer_change_14d": ("new offers 14-day change", ""),
    "kw_top10_count": ("keywords in top 10", ""),
    "kw_top50_count": ("keywords in top 50", ""),
    "kw_mean_rank_change_7d": ("keyword rank 7-day change", ""),
    "title_length": ("title length", " chars"),
    "bullet_count": ("bullets", ""),
    "image_count": ("images", ""),
    "has_aplus": ("A+ content", ""),
    "attribute_flag_count": ("attribute flags", ""),
    "listing_quality_score": ("listing quality", ""),
    "age_days": ("age", " days"),
    "listing_change_days": ("days since listing change", " days"),
    "image_count_change_30d": ("images 30-day change", ""),
    "bullet_count_change_30d": ("bullets 30-day change", ""),
    "title_length_change_30d": ("title length 30-day change", " chars"),
    "listing_quality_change_30d": ("listing quality 30-day change", ""),
    "bsr_log_drop_7d_prior": ("BSR log drop, week before last", ""),
    "bsr_log_z_7d_prior": ("BSR vs own prior level (z)", ""),
    "review_burst_z_7d": ("review burst 7d (z)", ""),
    "price_step_7d_prior": ("price step vs prior weeks", ""),
}


def contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """SHAP values per row: ``(rows, features + 1)``, the expected value in the last column.

    Rows sum to the raw score of ``booster.predict(matrix, raw_score=True)``."""
    contrib = booster.predict(matrix, pred_contrib=True)
    return np.asarray(contrib, dtype=np.float64).reshape(matrix.shape[0], -1)


def top_contributions(
    contrib: np.ndarray, values: pl.DataFrame, names: Sequence[str], *, top: int = DEFAULT_TOP
) -> pl.DataFrame:
    """Long frame ``row, place, f, v, c``: each row's ``top`` features by |contribution| (place 1 =
    largest, ties in feature order), with the feature's value from ``values`` (the scored frame, same
    row order; a null value stays null, a NaN stays NaN)."""
    shap = contrib[:, : len(names)]
    rows, k = shap.shape[0], min(top, len(names))
    # argpartition then a sort of only k columns: the order among the top k, cheaply, for all rows
    part = np.argpartition(-np.abs(shap), kth=k - 1, axis=1)[:, :k] if k < len(names) else None
    idx = part if part is not None else np.tile(np.arange(len(names)), (rows, 1))
    picked = np.take_along_axis(shap, idx, axis=1)
    order = np.argsort(-np.abs(picked), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    # the picked features' values: one numpy gather over the value matrix and its null mask
    cells = values.select([pl.col(n).cast(pl.Float64) for n in names])
    value = np.take_along_axis(cells.to_numpy(), idx, axis=1).reshape(-1)
    null = np.take_along_axis(cells.select(pl.all().is_null()).to_numpy(), idx, axis=1).reshape(-1)
    return pl.DataFrame(
        {
            "row": np.repeat(np.arange(rows, dtype=np.int64), k),
            "place": np.tile(np.arange(1, k + 1, dtype=np.int64), rows),
            "f": pl.Series(idx.reshape(-1)).replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8),
            "v": pl.Series(value, dtype=pl.Float64, nan_to_null=False),
            "c": np.take_along_axis(shap, idx, axis=1).reshape(-1),
        }
    ).with_columns(v=pl.when(pl.Series(null)).then(None).otherwise(pl.col("v")))


def _num(expr: pl.Expr, digits: int) -> pl.Expr:
    # rounded, as text; a missing value reads "n/a" (LightGBM's own missing-value branch)
    return expr.round_sig_figs(digits).cast(pl.Utf8).fill_null("n/a")


def reasons_columns(long: pl.DataFrame, rows: int) -> pl.DataFrame:
    """``reasons`` (JSON) and ``reasons_text`` per row 0..rows-1 from ``top_contributions``."""
    label = pl.col("f").replace_strict(
        {f: lab for f, (lab, _) in FEATURE_LABELS.items()}, default=pl.col("f"), return_dtype=pl.Utf8
    )
    unit = pl.col("f").replace_strict(
        {f: u for f, (_, u) in FEATURE_LABELS.items()}, default=pl.lit(""), return_dtype=pl.Utf8
    )
    sign = pl.when(pl.col("c") >= 0).then(pl.lit("+")).otherwise(pl.lit(""))
    text = pl.format(
        "{} {}{} ({}{})",
        label,
        _num(pl.col("v"), 3),
        pl.when(pl.col("v").is_null()).then(pl.lit("")).otherwise(unit),
        sign,
        pl.col("c").round(3).cast(pl.Utf8),
    )
    finite_v = pl.when(pl.col("v").is_finite()).then(pl.col("v").round_sig_figs(4))
    items = long.with_columns(
        json=pl.struct(pl.col("f"), v=finite_v, c=pl.col("c").round(4)).struct.json_encode(),
        text=text,
    )
    per_row = items.group_by("row").agg(
        reasons=pl.format("[{}]", pl.col("json").sort_by("place").str.join(",")),
        reasons_text=pl.col("text").sort_by("place").str.join(", "),
    )
    return (
        pl.DataFrame({"row": np.arange(rows, dtype=np.int64)})
        .join(per_row, on="row", how="left")
        .sort("row")
        .drop("row")
    )


def explain(
    booster: lgb.Booster,
    matrix: np.ndarray,
    values: pl.DataFrame,
    names: Sequence[str],
    *,
    top: int = DEFAULT_TOP,
) -> pl.DataFrame:
    """``reasons`` and ``reasons_text`` of every row of ``matrix`` (same order as ``values``)."""
    if matrix.shape[0] == 0:
        return pl.DataFrame(schema={"reasons": pl.Utf8, "reasons_text": pl.Utf8})
    long = top_contributions(contributions(booster, matrix), values, names, top=top)
    return reasons_columns(long, matrix.shape[0])


def sales_window(mart: pl.DataFrame, calibration: pl.DataFrame) -> pl.DataFrame:
    """date, bsr_root and the sales estimate (units/day, ``core.sales``) of mart rows: what a
    candidate's window looked like to the features that put it on the list."""
    from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, estimate_sales, validate_calibration

    est = estimate_sales(
        pl.col("bsr_root"), pl.col("a").fill_null(FALLBACK_A), pl.col("b").fill_null(FALLBACK_B)
    )
    return (
        mart.join(validate_calibration(calibration), on=["site", "category_id"], how="left")
        .select("date", "bsr_root", est_sales=est)
        .sort("date")
    )
