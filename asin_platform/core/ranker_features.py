"""Derived ranker inputs: per-row ratios and cross-sectional ranks computed from ``features_daily`` columns.

``features_daily`` holds each product's own window statistics (slopes, means, velocities over 7 / 14 /
30 days). The ranker can also use columns derived from them, grouped in named sets:

- ``ratios``: short- vs long-window growth of the same product (7-day vs 30-day sales, slope and
  review-velocity accelerations);
- ``snr``: growth measured against the noise its sales level implies (a long-tail product selling
  0.3 units/day moves its BSR by chance far more than one selling 30): the 7-day vs 30-day sales
  difference as a Poisson z-score, and the BSR slopes scaled by sqrt(units sold in the window);
- ``reviews``: reviews per unit sold (a review burst the sales do not explain);
- ``xs``: cross-sectional percentile ranks of the growth columns within the query (site, date) and
  robust z-scores within (site, date, category): how a product moves against the rest of the
  market on the same day;
- ``xs_hist``: percentile ranks within the query of the history columns (core/history_features.py):
  how unusual a product's move against its own past is on that day's market.

Every column is a pure function of one ``features_daily`` row (``ratios``, ``snr``, ``reviews``) or of
the rows of its (site, date) query (``xs``), so training and prediction compute them the same way as
long as a whole day is scored at once (``predictions_rank_daily`` scores a site's whole day).
``DEFAULT_SETS`` is what the ranker adds to ``features_daily``'s columns unless told otherwise; what
each set did on the benchmark's sparse market is in docs/model_quality.md (*Early-ramp detection*).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

QUERY: tuple[str, ...] = ("site", "date")
CATEGORY_QUERY: tuple[str, ...] = ("site", "date", "category_id")
EPS_SALES = 0.05  # units/day added to sales means: a product without sales still has a finite ratio
EPS_REVIEWS = 0.05  # reviews/day, idem
MAD_TO_SD = 1.4826
Z_CLIP = 20.0

# the growth columns ranked across the query by the ``xs`` set
XS_COLUMNS: tuple[str, ...] = (
    "bsr_log_slope_7d",
    "bsr_log_slope_14d",
    "bsr_log_slope_30d",
    "bsr_pctl_change_7d",
    "bsr_pctl_change_30d",
    "review_velocity_7d",
    "est_sales_7d_mean",
    "sales_7v30_log",
    "slope_accel_7v30",
    "review_accel_7v30",
)


def _ratio_exprs() -> dict[str, pl.Expr]:
    s7, s30 = pl.col("est_sales_7d_mean"), pl.col("est_sales_30d_mean")
    return {
        "sales_7v30_log": ((s7 + EPS_SALES) / (s30 + EPS_SALES)).log(),
        "slope_accel_7v30": pl.col("bsr_log_slope_7d") - pl.col("bsr_log_slope_30d"),
        "slope_accel_7v14": pl.col("bsr_log_slope_7d") - pl.col("bsr_log_slope_14d"),
        "review_accel_7v30": pl.col("review_velocity_7d") - pl.col("review_velocity_30d"),
        "review_rel_7v30": (pl.col("review_velocity_7d") + EPS_REVIEWS)
        / (pl.col("review_velocity_30d") + EPS_REVIEWS),
        "pctl_accel_7v30": pl.col("bsr_pctl_change_7d") - pl.col("bsr_pctl_change_30d") * (7 / 30),
    }


def _snr_exprs() -> dict[str, pl.Expr]:
    s30 = pl.col("est_sales_30d_mean") + EPS_SALES
    return {
        "sales_z_7v30": (pl.col("est_sales_7d_mean") - pl.col("est_sales_30d_mean")) / (s30 / 7).sqrt(),
        "slope_snr_7d": pl.col("bsr_log_slope_7d") * (s30 * 7).sqrt(),
        "slope_snr_14d": pl.col("bsr_log_slope_14d") * (s30 * 14).sqrt(),
        "slope_snr_30d": pl.col("bsr_log_slope_30d") * (s30 * 30).sqrt(),
    }


def _review_exprs() -> dict[str, pl.Expr]:
    s7, s30 = pl.col("est_sales_7d_mean"), pl.col("est_sales_30d_mean")
    return {
        "reviews_per_sale_7d": pl.col("review_velocity_7d") / (s7 + EPS_SALES),
        "reviews_per_sale_14d": pl.col("review_velocity_14d") / ((s7 + s30) / 2 + EPS_SALES),
        "reviews_per_sale_30d": pl.col("review_velocity_30d") / (s30 + EPS_SALES),
        "review_excess_7d": pl.col("review_velocity_7d") - 0.015 * s7,
    }


# the history columns ranked across the query by the ``xs_hist`` set
XS_HIST_COLUMNS: tuple[str, ...] = (
    "listing_change_days",
    "bsr_log_drop_7d_prior",
    "bsr_log_z_7d_prior",
    "review_burst_z_7d",
    "price_step_7d_prior",
)


def _qrank(c: str) -> pl.Expr:
    """Percentile rank of ``c`` within the query (ties averaged, nulls unranked)."""
    return (pl.col(c).rank("average") / pl.col(c).count()).over(QUERY)


def _xs_hist_exprs() -> dict[str, pl.Expr]:
    return {f"{c}_qrank": _qrank(c) for c in XS_HIST_COLUMNS}


def _xs_exprs() -> dict[str, pl.Expr]:
    out: dict[str, pl.Expr] = {}
    for c in XS_COLUMNS:
        col = pl.col(c)
        out[f"{c}_qrank"] = _qrank(c)
        median = col.median().over(CATEGORY_QUERY)
        mad = (col - median).abs().median().over(CATEGORY_QUERY)
        out[f"{c}_catz"] = ((col - median) / (mad * MAD_TO_SD + 1e-6)).clip(-Z_CLIP, Z_CLIP)
    return out


# set name -> its columns, in the order they are computed (``xs`` ranks columns of ``ratios``)
SETS: dict[str, dict[str, pl.Expr]] = {
    "ratios": _ratio_exprs(),
    "snr": _snr_exprs(),
    "reviews": _review_exprs(),
    "xs": _xs_exprs(),
    "xs_hist": _xs_hist_exprs(),
}
DERIVED: dict[str, pl.Expr] = {name: expr for exprs in SETS.values() for name, expr in exprs.items()}
DEFAULT_SETS: tuple[str, ...] = ()


def set_columns(sets: Iterable[str]) -> tuple[str, ...]:
    """The derived column names of ``sets`` (refuses an unknown set)."""
    sets = tuple(sets)
    unknown = sorted(set(sets) - set(SETS))
    if unknown:
        raise ValueError(f"unknown ranker feature set(s) {unknown}; known: {sorted(SETS)}")
    return tuple(name for s in SETS if s in sets for name in SETS[s])


def add_derived(frame: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """``frame`` plus the derived columns of ``names`` it lacks (other names are ignored: they are
    ``features_daily`` columns). A cross-sectional column needs ``frame`` to hold whole queries."""
    wanted = [n for n in names if n in DERIVED and n not in frame.columns]
    if not wanted:
        return frame
    ratios = [n for n in SETS["ratios"] if n not in frame.columns]
    rest = [n for n in wanted if n not in SETS["ratios"]]
    needs_ratios = any(n in SETS["xs"] for n in rest)
    first = ratios if needs_ratios else [n for n in wanted if n in SETS["ratios"]]
    out = frame.with_columns(DERIVED[n].alias(n) for n in first) if first else frame
    if rest:
        out = out.with_columns(DERIVED[n].alias(n) for n in rest)
    return out.select(*frame.columns, *wanted)
