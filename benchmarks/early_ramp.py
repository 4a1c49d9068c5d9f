"""Early-ramp candidates on the sparse-breakout market, one by one, on cached features and samples.

The market of benchmarks/model_quality.py with the simulator's default horizon (1200 days: few
breakouts per query). Features, rank samples and the oracle's scores are built once and cached as
Parquet under $TMPDIR/asin_platform_benchmarks/early_ramp_h<horizon>_hist/, then every candidate trains
the ranker (``core.ranker_levers.build_ranker``, the settings' levers plus the candidate's changes) and is
scored on the validation and test windows. Prints one markdown row per candidate:

    .venv/bin/python benchmarks/early_ramp.py                      # every candidate
    .venv/bin/python benchmarks/early_ramp.py base xs snr          # some
    .venv/bin/python benchmarks/early_ramp.py --seed 8 --visibility refit_lever
        # another draw of the same configuration; after each row, its test top 20s by how
        # visible each breakout is on T (docs/model_quality.md, *Other draws of the same market*)

The table in docs/model_quality.md (*Early-ramp detection*) was made with it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from model_quality import _md, cached_tables  # noqa: E402

from asin_platform.core.features import bsr_percentile, build_features  # noqa: E402
from asin_platform.core.history_features import HISTORY_COLUMNS  # noqa: E402
from asin_platform.core.labels import build_samples, feature_columns  # noqa: E402
from asin_platform.core.metrics import add_baseline_scores, compare_rankers, oracle_scores  # noqa: E402
from asin_platform.core.predict import add_model_scores  # noqa: E402
from asin_platform.core.ranker import feature_matrix  # noqa: E402
from asin_platform.core.ranker_features import set_columns  # noqa: E402
from asin_platform.core.ranker_levers import RankerParams, build_ranker, refit_on_validation  # noqa: E402
from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, default_calibration, estimate_sales  # noqa: E402
from asin_platform.levers import RankerLevers  # noqa: E402
from asin_platform.settings import ScoreWeights  # noqa: E402
from asin_platform.simulator import Market, MarketConfig  # noqa: E402
from asin_platform.simulator.catalog import SALES_PRIOR  # noqa: E402

SITES = ("US", "UK", "DE", "JP")
SEED = 7  # benchmarks/model_quality.py's market
# the settings' levers, with the refit off (its default since 2026-12-05, late afternoon) so that the
# candidates stay comparable with the tables recorded before: a candidate sets it (`refit_lever`)
HARNESS_LEVERS = {**RankerLevers().model_dump(), "refit_factor": 0.0}
KEY = ["site", "date", "asin"]
PROD = {"refit_factor": 1.35}  # the production refit lever (the harness pins it to 0)
# directions known from how a breakout shows (BSR falls, percentile, reviews and keyword ranks improve)
MONOTONE = {
    "bsr_log_slope_7d": -1,
    "bsr_log_slope_14d": -1,
    "bsr_pctl_change_7d": 1,
    "review_velocity_7d": 1,
    "review_velocity_14d": 1,
    "kw_mean_rank_change_7d": -1,
}
# and of the history columns: a BSR that fell the week before, one below its own usual level, a review burst
MONOTONE_HIST = {**MONOTONE, "bsr_log_drop_7d_prior": 1, "bsr_log_z_7d_prior": -1, "review_burst_z_7d": 1}


@dataclass(frozen=True)
class Candidate:
    what: str
    sets: tuple[str, ...] = ()
    levers: dict[str, Any] = field(default_factory=dict)
    lightgbm: dict[str, Any] = field(default_factory=dict)
    sample_every: int = 2
    monotone: bool = False
    monotone_hist: bool = False
    drop: tuple[str, ...] = ()  # features_daily columns left out
    extra: tuple[str, ...] = ()  # prototype feature groups of EXTRA (computed here from the mart)
    # rank-average the model with a second score, the weight chosen on validation: "baseline"
    # (explosive_score) or "binary" (a LightGBM binary classifier of ``explodes`` on the same rows)
    blend: str | None = None
    label: str = "relevance"
    seeds: int = 1  # > 1: that many models (LightGBM seeds 42, 43, ...) averaged (raw scores)
    # > 0: a product's score on T is the mean of the model's scores on the days T-n+1 .. T, n in
    # SMOOTH_DAYS chosen on validation (a day's list from today's and the last days' predictions)
    smooth: bool = False
    # > 0: after the usual fit (whose validation NDCG@20 is reported), refit on train + valid with a
    # fixed round(best_iteration * refit) trees and score the test window with that model
    refit: float = 0.0
    train_share: float = 1.0  # < 1: only the latest share of the training reference dates (data-size check)


# ------------------------------------------------------------- prototype features from the mart
# Per-product history on a dense grid (every (site, asin) x every day of the mart, sorted by
# (site, asin, date)), as core/history_features.py does: a window of N rows is N calendar days and
# shift(N) is N days earlier. Every rank-sample date lies >= 30 days into its block, so the windows
# below (<= 31 days) never cross a product. y = ln BSR (null without a rank).
REACH = 30


def _grid(mart: pl.DataFrame) -> pl.DataFrame:
    lo, hi = mart["date"].min(), mart["date"].max()
    days = pl.DataFrame({"date": pl.date_range(lo, hi, "1d", eager=True)})
    rows = mart.select(
        *KEY,
        "category_id",
        "bsr_root",
        "review_count",
        y=pl.when(pl.col("bsr_root") > 0).then(pl.col("bsr_root").cast(pl.Float64).log()),
    )
    return (
        rows.select("site", "asin")
        .unique()
        .join(days, how="cross")
        .join(rows, on=KEY, how="left")
        .sort("site", "asin", "date")
    )


def _envelope() -> list[pl.Expr]:
    """The BSR's worst rank of a week: between sales a product's rank drifts down to the level its
    underlying demand holds it at, so the weekly maximum of ln BSR follows demand and not the sales
    spikes of the long tail; its fall is demand rising."""
    y = pl.col("y")
    ceil7 = y.rolling_max(7, min_samples=4)
    ceil3 = y.rolling_max(3, min_samples=2)
    med7 = y.rolling_median(7, min_samples=4)
    floor7 = y.rolling_min(7, min_samples=4)
    return [
        ceil7.alias("bsr_ceil_7d"),
        (ceil7.shift(7) - ceil7).alias("bsr_ceil_drop_7d"),
        (ceil7.shift(14) - ceil7).alias("bsr_ceil_drop_14d"),
        (ceil7.shift(21) - ceil7).alias("bsr_ceil_drop_21d"),
        (ceil7.shift(7) - ceil3).alias("bsr_ceil3_drop_7d"),
        (med7.shift(7) - med7).alias("bsr_med_drop_7d"),
        (med7.shift(14) - med7).alias("bsr_med_drop_14d"),
        (floor7.shift(7) - floor7).alias("bsr_floor_drop_7d"),
        (ceil7 - floor7).alias("bsr_range_7d"),
    ]


def _streak(values: pl.Expr, cap: int) -> pl.Expr:
    """Consecutive days ending on T on which ``values`` fell against the day before, at most ``cap``."""
    better = (values < values.shift(1)).fill_null(False)
    streak = pl.lit(0, dtype=pl.Int32)
    run = pl.lit(True)
    for k in range(cap):
        run = run & better.shift(k).fill_null(False)
        streak = streak + run.cast(pl.Int32)
    return streak


def _newlow() -> list[pl.Expr]:
    """Today's ln BSR against the product's own prior window T-30 .. T-8 (its best and median rank
    there), days of the last week below them, and the run of consecutive daily improvements."""
    y = pl.col("y")
    prior_min = y.rolling_min(23, min_samples=10).shift(8)
    prior_med = y.rolling_median(23, min_samples=10).shift(8)
    below_min = pl.sum_horizontal([(y.shift(k) < prior_min).cast(pl.Int32) for k in range(7)])
    below_med = pl.sum_horizontal([(y.shift(k) < prior_med).cast(pl.Int32) for k in range(7)])
    # consecutive days of improvement ending on T: of ln BSR (capped at 14), of its 3-day mean (21)
    streak = _streak(y, 14)
    streak3 = _streak(y.rolling_mean(3, min_samples=2), 21)
    return [
        (y - prior_min).alias("bsr_vs_prior_min"),
        pl.when(prior_min.is_not_null()).then(below_min).alias("bsr_days_below_prior_min_7d"),
        pl.when(prior_med.is_not_null()).then(below_med).alias("bsr_days_below_prior_med_7d"),
        streak.alias("bsr_improve_streak"),
        streak3.alias("bsr3_improve_streak"),
    ]


def _accel() -> list[pl.Expr]:
    """Acceleration of the sales estimate (core.sales power law, the calibration's a, b): log ratios
    of the 3-, 7- and 14-day means against the same window just before, and the change of the
    weekly growth."""
    s = pl.col("_sales")
    out = []
    for n in (3, 7, 14):
        m = s.rolling_mean(n, min_samples=max(2, n // 2))
        out.append(((m + 0.05) / (m.shift(n) + 0.05)).log().alias(f"sales_growth_{n}d"))
    m7 = s.rolling_mean(7, min_samples=4)
    g = ((m7 + 0.05) / (m7.shift(7) + 0.05)).log()
    out.append((g - g.shift(7)).alias("sales_accel_7d"))
    return out


def _weekly_means(column: str, name: str, lags: tuple[int, ...]) -> list[pl.Expr]:
    """``column``'s 7-day mean (at least 4 days) as ``{name}_mean_7d`` and its change against the
    7-day mean ``lag`` days earlier as ``{name}_mean_change_{lag}d``, on the dense grid."""
    mean7 = pl.col(column).rolling_mean(7, min_samples=4)
    changes = [(mean7 - mean7.shift(lag)).alias(f"{name}_mean_change_{lag}d") for lag in lags]
    return [mean7.alias(f"{name}_mean_7d"), *changes]


def _pctl7() -> list[pl.Expr]:
    """The BSR percentile's 7-day mean and its changes against the 7-day means a week and 30 days
    earlier. ``features_daily``'s bsr_pctl_change_7d / _30d difference two single days, each with
    its day's BSR noise: on seed 7's UK B0E7ULLNPK the 30-day change reads 0.30, 0.10, 0.33 on
    three reference dates two days apart, and its SHAP contribution 1.56, -0.06, 1.32."""
    return _weekly_means("bsr_pctl", "bsr_pctl", (7, 30))


def _pctl7_21() -> list[pl.Expr]:
    """``_pctl7`` with the longer change against the week ending 21 days earlier (T-27 .. T-21), so
    that every day it reads lies within features_daily's 30-day reach (T-36 .. T-30 does not)."""
    return _weekly_means("bsr_pctl", "bsr_pctl", (7, 21))


BINS_PER_OCTAVE = 64  # the binned percentile's resolution: BSRs within 1.1% of each other tie


def _binned_percentile() -> pl.Expr:
    """``bsr_percentile`` of the BSR's bin (floor(log2 BSR * 64)) instead of the BSR: what a count per
    (site, date, category, bin) gives without sorting (a histogram sums over ASIN blocks); products
    whose BSRs share a bin tie, and share the better value."""
    keys = ["site", "date", "category_id"]
    ranked = (pl.col("bsr_root") > 0) & pl.col("category_id").is_not_null()
    b = pl.when(ranked).then((pl.col("bsr_root").cast(pl.Float64).log(2) * BINS_PER_OCTAVE).floor())
    n = b.count().over(keys).cast(pl.Float64)
    return ((n - b.rank("min").over(keys).cast(pl.Float64) + 1.0) / n).alias("bsr_pctl")


def _pctl_bins() -> list[pl.Expr]:
    """Every percentile column from the binned daily percentile: bsr_pctl and its single-day changes
    vs T-7 / T-30 (replacing features_daily's), and ``_pctl7_21``'s three weekly-mean columns."""
    p = pl.col("bsr_pctl")
    return [
        p.alias("bsr_pctl_b"),
        (p - p.shift(7)).alias("bsr_pctl_change_7d_b"),
        (p - p.shift(30)).alias("bsr_pctl_change_30d_b"),
        *_pctl7_21(),
    ]


def _logmean7() -> list[pl.Expr]:
    """``_pctl7_21`` on ln BSR instead of the percentile: the product's own 7-day mean ln BSR and its
    changes against the weeks ending 7 and 21 days earlier. No cross-section (window sums of the
    grid, free in features_daily), so it tells whether the percentile's gain is the smoothing."""
    return _weekly_means("y", "bsr_log", (7, 21))


def _fade() -> list[pl.Expr]:
    """Whether precursor signals persist or fade: the days of the last week and of the week before
    with a new review, days since the last one, and the last 3 days' BSR ceiling against 3 days
    earlier (a precursor's traction fading lets the rank sink again)."""
    rc = pl.col("review_count")
    gained = (rc > rc.shift(1)).fill_null(False).cast(pl.Int32)
    pos = pl.int_range(pl.len(), dtype=pl.Int64)
    last = pl.when(gained == 1).then(pos).forward_fill()
    since = (pos - last).clip(upper_bound=REACH)
    ceil3 = pl.col("y").rolling_max(3, min_samples=2)
    return [
        gained.rolling_sum(7).alias("review_gain_days_7d"),
        gained.rolling_sum(7).shift(7).alias("review_gain_days_prev7"),
        pl.when(since.is_null() | (since > REACH))
        .then(REACH)
        .otherwise(since)
        .alias("review_days_since_gain"),
        (ceil3 - ceil3.shift(3)).alias("bsr_ceil3_change_3d"),
    ]


# T-90 .. T-8: 83 days, of which at least 30 with a rank (else null); windows are per product
# (``over``), since they reach further back than REACH
HIST90_DAYS, HIST90_GAP, HIST90_MIN = 83, 8, 30


def _hist90() -> list[pl.Expr]:
    """The product's own longer history, T-90 .. T-8 (the 30-day history columns of
    core/history_features.py read T-30 .. T-8): its ln BSR level spread and day-to-day volatility,
    the volatility of its sales estimate, the last week's sales against its usual (median) daily
    sales, and today's ln BSR and the last week's mean as z-scores against that history. A long
    tail's Poisson sales move its rank by chance; measured against the product's own usual noise
    over three months, a breakout's ramp should stand out sooner."""
    y, s = pl.col("y"), pl.col("_sales")

    def prior(e: pl.Expr, how: str) -> pl.Expr:
        return getattr(e, f"rolling_{how}")(HIST90_DAYS, min_samples=HIST90_MIN).shift(HIST90_GAP)

    mean_y, sd_y = prior(y, "mean"), prior(y, "std")
    sd_dy = prior(y - y.shift(1), "std")
    mean_s, sd_s, med_s = prior(s, "mean"), prior(s, "std"), prior(s, "median")
    exprs = [
        sd_y.alias("bsr_log_sd_90d"),
        sd_dy.alias("bsr_log_daily_sd_90d"),
        (sd_s / (mean_s + 0.05)).alias("sales_cv_90d"),
        ((s.rolling_mean(7, min_samples=4) + 0.05) / (med_s + 0.05)).log().alias("sales_7d_vs_med_90d"),
        ((y - mean_y) / (sd_y + 0.05)).alias("bsr_log_z_90d"),
        ((y.rolling_mean(7, min_samples=4) - mean_y) / (sd_y + 0.05)).alias("bsr_log7_z_90d"),
    ]
    return [e.over("site", "asin") for e in exprs]


EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "fade": (
        "review_gain_days_7d",
        "review_gain_days_prev7",
        "review_days_since_gain",
        "bsr_ceil3_change_3d",
    ),
    "envelope": (
        "bsr_ceil_7d",
        "bsr_ceil_drop_7d",
        "bsr_ceil_drop_14d",
        "bsr_ceil_drop_21d",
        "bsr_ceil3_drop_7d",
        "bsr_med_drop_7d",
        "bsr_med_drop_14d",
        "bsr_floor_drop_7d",
        "bsr_range_7d",
    ),
    "newlow": (
        "bsr_vs_prior_min",
        "bsr_days_below_prior_min_7d",
        "bsr_days_below_prior_med_7d",
        "bsr_improve_streak",
        "bsr3_improve_streak",
    ),
    "accel": ("sales_growth_3d", "sales_growth_7d", "sales_growth_14d", "sales_accel_7d"),
    "pctl7": ("bsr_pctl_mean_7d", "bsr_pctl_mean_change_7d", "bsr_pctl_mean_change_30d"),
    "pctl_bins": (
        "bsr_pctl_b",
        "bsr_pctl_change_7d_b",
        "bsr_pctl_change_30d_b",
        "bsr_pctl_mean_7d",
        "bsr_pctl_mean_change_7d",
        "bsr_pctl_mean_change_21d",
    ),
    "logmean7": ("bsr_log_mean_7d", "bsr_log_mean_change_7d", "bsr_log_mean_change_21d"),
    "pctl7_21": ("bsr_pctl_mean_7d", "bsr_pctl_mean_change_7d", "bsr_pctl_mean_change_21d"),
    "hist90": (
        "bsr_log_sd_90d",
        "bsr_log_daily_sd_90d",
        "sales_cv_90d",
        "sales_7d_vs_med_90d",
        "bsr_log_z_90d",
        "bsr_log7_z_90d",
    ),
    "kwlog": (
        "kw_logrank_mean",
        "kw_count_change_14d",
        "kw_logrank_change_w7",
        "kw_logrank_change_w14",
        "kw_logrank_change_7d",
    ),
    # ranks within (site, date, category) of history columns and of the envelope (needs "envelope")
    "catrel": (
        "review_burst_z_7d_catrank",
        "bsr_log_drop_7d_prior_catrank",
        "bsr_log_z_7d_prior_catrank",
        "bsr_ceil_drop_7d_catrank",
        "bsr_ceil_drop_14d_catrank",
    ),
}


def keyword_log_ranks(keywords: pl.DataFrame, dates: pl.DataFrame) -> pl.DataFrame:
    """Keyword ranks as a second, independent reading of a product's sales velocity: per keyword the
    mean ln rank over the last 7 days against the 7 days before (and 14 days before), averaged over
    the keywords ranked in both weeks; the daily ln-rank change vs T-7 on the keywords of both days;
    the change in how many keywords rank at all (T vs T-14)."""
    kw = (
        keywords.filter(pl.col("rank") > 0)
        .select("site", "asin", "keyword", "date", lr=pl.col("rank").cast(pl.Float64).log())
        .sort("site", "asin", "keyword", "date")
    )
    kw = kw.with_columns(
        w=pl.col("lr").rolling_mean_by("date", window_size="7d").over("site", "asin", "keyword")
    )
    keys = ["site", "asin", "keyword", "date"]
    parts = []
    for lag, col, name in (
        (7, "w", "kw_logrank_change_w7"),
        (14, "w", "kw_logrank_change_w14"),
        (7, "lr", "kw_logrank_change_7d"),
    ):
        before = kw.select(*keys[:3], pl.col("date") + timedelta(days=lag), pl.col(col).alias("_before"))
        parts.append(
            kw.join(before, on=keys)
            .group_by("site", "asin", "date")
            .agg((pl.col(col) - pl.col("_before")).mean().alias(name))
        )
    counts = kw.group_by("site", "asin", "date").agg(
        pl.len().cast(pl.Int32).alias("_n"), pl.col("lr").mean().alias("kw_logrank_mean")
    )
    counts = counts.join(
        counts.select("site", "asin", pl.col("date") + timedelta(days=14), pl.col("_n").alias("_n14")),
        on=["site", "asin", "date"],
        how="left",
    ).with_columns(kw_count_change_14d=pl.col("_n") - pl.col("_n14").fill_null(0))
    out = dates.join(
        counts.select("site", "asin", "date", "kw_logrank_mean", "kw_count_change_14d"), on=["site", "date"]
    )
    for part in parts:
        out = out.join(part, on=["site", "asin", "date"], how="left")
    return out.select(*KEY, *EXTRA_COLUMNS["kwlog"])


def _with_sales(grid: pl.DataFrame) -> pl.DataFrame:
    """The grid with ``_sales``, the sales estimate of its BSR (core.sales, default calibration)."""
    calibration = default_calibration(list(SITES), SALES_PRIOR)
    grid = grid.join(
        calibration.select("site", "category_id", "a", "b"), on=["site", "category_id"], how="left"
    )
    return grid.with_columns(
        _sales=estimate_sales(
            pl.col("bsr_root"), pl.col("a").fill_null(FALLBACK_A), pl.col("b").fill_null(FALLBACK_B)
        )
    )


def extra_frame(
    group: str, mart: pl.DataFrame, dates: pl.DataFrame, keywords: pl.DataFrame | None = None
) -> pl.DataFrame:
    """(site, date, asin, *EXTRA_COLUMNS[group]) on the rank samples' (site, date) pairs."""
    if group == "kwlog":
        assert keywords is not None
        return keyword_log_ranks(keywords, dates)
    grid = _grid(mart)
    if group == "envelope":
        out = grid.with_columns(_envelope())
    elif group == "fade":
        out = grid.with_columns(_fade())
    elif group == "newlow":
        out = grid.with_columns(_newlow())
    elif group == "accel":
        out = _with_sales(grid).with_columns(_accel())
    elif group == "pctl7":
        out = grid.with_columns(bsr_percentile()).with_columns(_pctl7())
    elif group == "pctl_bins":
        out = grid.with_columns(_binned_percentile()).with_columns(_pctl_bins())
    elif group == "logmean7":
        out = grid.with_columns(_logmean7())
    elif group == "pctl7_21":
        out = grid.with_columns(bsr_percentile()).with_columns(_pctl7_21())
    elif group == "hist90":
        out = _with_sales(grid).with_columns(_hist90())
    else:
        raise ValueError(group)
    return out.join(dates, on=["site", "date"]).select(*KEY, *EXTRA_COLUMNS[group])


def with_catrel(rank: pl.DataFrame) -> pl.DataFrame:
    by = ["site", "date", "category_id"]
    cols = [c.removesuffix("_catrank") for c in EXTRA_COLUMNS["catrel"]]
    return rank.with_columns(
        ((pl.col(c).rank("average") / pl.col(c).count()).over(by)).alias(f"{c}_catrank") for c in cols
    )


CANDIDATES: dict[str, Candidate] = {
    "base": Candidate("features_daily columns only, the settings' levers"),
    "nohist": Candidate(
        "features_daily without the history columns (core/history_features.py)", drop=HISTORY_COLUMNS
    ),
    "xs_hist": Candidate("+ ranks within (site, date) of 5 history columns", ("xs_hist",)),
    "mono_hist": Candidate(
        "monotone constraints of `monotone` plus BSR drop up, own-level z down, review burst up",
        monotone_hist=True,
    ),
    "ratios": Candidate("+ 7d vs 30d sales, slope / review-velocity / percentile accelerations", ("ratios",)),
    "xs": Candidate(
        "+ ratios, ranks within (site, date) and robust z within (site, date, category)", ("ratios", "xs")
    ),
    "snr": Candidate("+ Poisson z of 7d vs 30d sales, BSR slopes x sqrt(units in window)", ("snr",)),
    "reviews": Candidate("+ reviews per unit sold (7d, 30d), review excess over 1.5% of sales", ("reviews",)),
    "monotone": Candidate(
        "monotone constraints on 7/14d slopes, 7d percentile, review velocity, kw", monotone=True
    ),
    "xendcg": Candidate("objective rank_xendcg instead of lambdarank", lightgbm={"objective": "rank_xendcg"}),
    "neg03": Candidate(
        "30% of grade-0 training rows (per-key draw, every relevant row kept)",
        levers={"negative_fraction": 0.3},
    ),
    "gain31": Candidate("label_gain grade 4 = 31 (instead of 15)", lightgbm={"label_gain": [0, 1, 3, 7, 31]}),
    "every1": Candidate("every reference date (twice the training rows)", sample_every=1),
    # 2026-12-05 afternoon: on top of the history columns
    "xendcg_hist": Candidate(
        "objective rank_xendcg (with the history columns)", lightgbm={"objective": "rank_xendcg"}
    ),
    "norm_off": Candidate("lambdarank_norm false", lightgbm={"lambdarank_norm": False}),
    "trunc100": Candidate(
        "lambdarank_truncation_level 100 (instead of 50)", lightgbm={"lambdarank_truncation_level": 100}
    ),
    "gain_lin": Candidate(
        "label_gain linear 0, 1, 2, 3, 4 (instead of 2^g - 1)", lightgbm={"label_gain": [0, 1, 2, 3, 4]}
    ),
    "blend_base": Candidate("rank-average with the baseline explosive_score", blend="baseline"),
    "blend_bin": Candidate(
        "rank-average with a binary classifier of explodes (same features, levers)", blend="binary"
    ),
    "envelope": Candidate(
        "+ weekly max / median / min of ln BSR and their 7/14/21-day falls", extra=("envelope",)
    ),
    "newlow": Candidate(
        "+ ln BSR vs own T-30..T-8 min, days of the last 7 below its min / median, improvement streaks",
        extra=("newlow",),
    ),
    "accel": Candidate("+ sales-estimate growth over 3/7/14 days and weekly acceleration", extra=("accel",)),
    "kwlog": Candidate(
        "+ keyword ln-rank changes (weekly means, matched keywords), ranked-keyword count change",
        extra=("kwlog",),
    ),
    "env_kw": Candidate("+ envelope and kwlog", extra=("envelope", "kwlog")),
    "reg": Candidate(
        "min_data_in_leaf 800, lambda_l2 10, feature_fraction 0.5 (fewer, smoother splits for ~70 breakouts)",
        levers={"min_data_in_leaf": 800, "feature_fraction": 0.5},
        lightgbm={"lambda_l2": 10.0},
    ),
    "seeds5": Candidate("5 models (LightGBM seeds 42..46) averaged", seeds=5),
    "seeds5_env": Candidate("5 seeds averaged, + envelope", seeds=5, extra=("envelope",)),
    "seeds5_kwlog": Candidate("5 seeds averaged, + kwlog", seeds=5, extra=("kwlog",)),
    "seeds5_env_kw": Candidate(
        "5 seeds averaged, + envelope and kwlog", seeds=5, extra=("envelope", "kwlog")
    ),
    "seeds5_all": Candidate(
        "5 seeds averaged, + envelope, newlow, accel and kwlog",
        seeds=5,
        extra=("envelope", "newlow", "accel", "kwlog"),
    ),
    "smooth": Candidate("score averaged over the last n days' predictions", smooth=True),
    "smooth_env": Candidate(
        "+ envelope, score averaged over the last n days", smooth=True, extra=("envelope",)
    ),
    "smooth_kwlog": Candidate("+ kwlog, score averaged over the last n days", smooth=True, extra=("kwlog",)),
    "fade": Candidate(
        "+ days with a new review (last week, week before), days since the last one, 3-day BSR ceiling change",
        extra=("fade",),
    ),
    "env_fade": Candidate("+ envelope and fade", extra=("envelope", "fade")),
    "refit": Candidate(
        "refit on train + valid, 1.35x the early-stopped trees (valid: the train-only fit)", refit=1.35
    ),
    "refit_env": Candidate("+ envelope, refit on train + valid as `refit`", refit=1.35, extra=("envelope",)),
    "refit_all": Candidate(
        "+ envelope, newlow, accel, kwlog, refit on train + valid as `refit`",
        refit=1.35,
        extra=("envelope", "newlow", "accel", "kwlog"),
    ),
    "refit_seeds5_all": Candidate(
        "+ envelope, newlow, accel, kwlog, 5 seeds, each refitted on train + valid as `refit`",
        refit=1.35,
        seeds=5,
        extra=("envelope", "newlow", "accel", "kwlog"),
    ),
    "refit_seeds5": Candidate("5 seeds, each refitted on train + valid as `refit`", refit=1.35, seeds=5),
    "refit_lever": Candidate(
        "the production lever refit_factor 1.35 (core.ranker_levers.refit_on_validation)",
        levers={"refit_factor": 1.35},
    ),
    # 2026-12-06: the cheap candidates (no new features_daily column) on top of the production refit,
    # judged on the test windows of other market seeds (--seed 8..12), seed 7 held out
    "prod_snr": Candidate("refit_lever + set snr", ("snr",), levers=PROD),
    "prod_ratios": Candidate("refit_lever + set ratios", ("ratios",), levers=PROD),
    "prod_xs": Candidate("refit_lever + sets ratios, xs", ("ratios", "xs"), levers=PROD),
    "prod_xs_hist": Candidate("refit_lever + set xs_hist", ("xs_hist",), levers=PROD),
    "prod_reviews": Candidate("refit_lever + set reviews", ("reviews",), levers=PROD),
    "prod_gain_lin": Candidate(
        "refit_lever + label_gain 0, 1, 2, 3, 4", levers=PROD, lightgbm={"label_gain": [0, 1, 2, 3, 4]}
    ),
    "prod_every1": Candidate("refit_lever + every reference date", levers=PROD, sample_every=1),
    "prod_pctl7": Candidate("refit_lever + pctl7", levers=PROD, extra=("pctl7",)),
    "prod_pctl7_21": Candidate(
        "refit_lever + pctl7 with the longer change vs 21 days (within features_daily's reach)",
        levers=PROD,
        extra=("pctl7_21",),
    ),
    "prod_pctl_bins": Candidate(
        "prod_pctl7_21 with every percentile column from a percentile of 1/64-octave BSR bins",
        levers=PROD,
        extra=("pctl_bins",),
        drop=("bsr_pctl", "bsr_pctl_change_7d", "bsr_pctl_change_30d"),
    ),
    "prod_logmean7": Candidate(
        "refit_lever + 7-day mean ln BSR and its changes vs 7 and 21 days (no cross-section)",
        levers=PROD,
        extra=("logmean7",),
    ),
    "prod_pctl7_swap": Candidate(
        "refit_lever + pctl7 instead of the single-day percentile changes",
        levers=PROD,
        extra=("pctl7",),
        drop=("bsr_pctl_change_7d", "bsr_pctl_change_30d"),
    ),
    "half_train": Candidate(
        "(data-size check) only the later half of the training reference dates", train_share=0.5
    ),
    "env_all": Candidate("+ envelope, newlow and accel together", extra=("envelope", "newlow", "accel")),
    # 2026-12-05, late afternoon: the 90-day own history the 2026-12-04 analysis asked for
    "hist90": Candidate(
        "+ own T-90..T-8 history: ln BSR spread and daily volatility, sales CV, 7-day sales vs the "
        "90-day median, ln BSR (today, 7-day mean) z against it",
        extra=("hist90",),
    ),
    "seeds5_hist90": Candidate("5 seeds averaged, + hist90", seeds=5, extra=("hist90",)),
    "catrel": Candidate(
        "+ ranks within (site, date, category) of review burst, BSR drop / z, weekly-max falls",
        extra=("catrel",),
    ),
}


def benchmark_market(horizon: int, seed: int = SEED) -> Market:
    """benchmarks/model_quality.py's market (seed 7) with ``horizon``; other seeds draw other markets
    of the same configuration, to see how much one market's figures owe to its draw."""
    return Market(
        MarketConfig(seed=seed, sites=SITES, asins_per_site=5000, horizon_days=horizon, breakout_rate=0.04)
    )


def frames_folder(cache: Path, horizon: int, seed: int = SEED) -> Path:
    return cache / (f"early_ramp_h{horizon}_hist" + ("" if seed == SEED else f"_s{seed}"))


def cached_frames(horizon: int, cache: Path, log=print, seed: int = SEED) -> dict[str, pl.DataFrame]:
    """Rank samples (every 1 and 2 days) and the oracle's valid/test scores of the sparse market."""
    folder = frames_folder(cache, horizon, seed)
    names = ("rank_e1", "rank_e2", "oracle")
    if all((folder / f"{n}.parquet").exists() for n in names):
        return {n: pl.read_parquet(folder / f"{n}.parquet") for n in names}
    market = benchmark_market(horizon, seed)
    start = market.first_day
    tables = cached_tables(market, start, start + timedelta(days=299), cache, log)
    dates = sorted(tables.mart["date"].unique().to_list())[30:]
    calibration = default_calibration(list(SITES), SALES_PRIOR)
    features = build_features(
        tables.mart.lazy(), tables.keywords.lazy(), dates, lookback=30, calibration=calibration
    )
    frames = {f"rank_e{e}": build_samples(features, tables.mart, sample_every=e).rank for e in (1, 2)}
    evaluated = frames["rank_e2"].filter(pl.col("split").is_in(["valid", "test"]))
    first, last = evaluated["date"].min(), evaluated["date"].max()
    truth = pl.concat(
        [market.ground_truth(s, first - timedelta(days=28), last + timedelta(days=30)) for s in SITES]
    )
    frames["oracle"] = oracle_scores(evaluated.select(KEY), truth, horizon=30, observation=28).select(
        *KEY, "oracle_score"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.write_parquet(folder / f"{name}.parquet")
    return frames


def sparse_tables(horizon: int, cache: Path, seed: int = SEED):
    market = benchmark_market(horizon, seed)
    start = market.first_day
    return cached_tables(market, start, start + timedelta(days=299), cache, log=lambda _: None)


def with_extras(
    frames: dict[str, pl.DataFrame], groups: set[str], horizon: int, cache: Path, seed: int = SEED
) -> dict[str, pl.DataFrame]:
    """The rank frames joined with the prototype feature groups (each built once, cached)."""
    folder = frames_folder(cache, horizon, seed)
    base = {g for g in groups if g != "catrel"} | ({"envelope"} if "catrel" in groups else set())
    tables = None
    out = dict(frames)
    for group in sorted(base):
        path = folder / f"extra_{group}.parquet"
        if not path.exists():
            if tables is None:
                tables = sparse_tables(horizon, cache, seed)
            dates = frames["rank_e1"].select("site", "date").unique()
            extra_frame(group, tables.mart, dates, tables.keywords).write_parquet(path)
        extra = pl.read_parquet(path)
        for name in out:
            if name.startswith("rank"):
                out[name] = out[name].join(extra, on=KEY, how="left")
    if "catrel" in groups:
        out = {n: with_catrel(f) if n.startswith("rank") else f for n, f in out.items()}
    return out


def _qpct(c: str) -> pl.Expr:
    return pl.col(c).rank("average").over("site", "date") / pl.len().over("site", "date")


def _ndcg20(rows: pl.DataFrame, score: str) -> dict[str, float]:
    out = {}
    for split in ("valid", "test"):
        table = compare_rankers(
            rows.filter(pl.col("split") == split),
            {"model": score, "oracle": "oracle_score"},
            relevance="relevance",
            positive="explodes",
        )
        at20 = {r["ranker"]: r["ndcg"] for r in table.filter(pl.col("k") == 20).iter_rows(named=True)}
        out[f"{split}_ndcg20"], out[f"{split}_oracle"] = at20["model"], at20["oracle"]
    return out


SMOOTH_DAYS = (1, 2, 3, 5, 7)
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # weight of the second score


def evaluate(name: str, cand: Candidate, frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    rank = frames[f"rank_e{cand.sample_every}"]
    if cand.train_share < 1.0:
        days = rank.filter(pl.col("split") == "train")["date"].unique().sort()
        cutoff = days[int(len(days) * (1.0 - cand.train_share))]
        rank = rank.filter((pl.col("split") != "train") | (pl.col("date") >= cutoff))
    extra = [c for g in cand.extra for c in EXTRA_COLUMNS[g]]
    features = [f for f in feature_columns(rank) if f not in cand.drop] + list(set_columns(cand.sets)) + extra
    lightgbm = dict(cand.lightgbm)
    if cand.monotone or cand.monotone_hist:
        directions = MONOTONE_HIST if cand.monotone_hist else MONOTONE
        lightgbm["monotone_constraints"] = [directions.get(f, 0) for f in features]
    levers = RankerParams.of(HARNESS_LEVERS, **cand.levers, lightgbm=lightgbm)
    trained = build_ranker(rank, levers, features=features, label=cand.label)
    # evaluated on the oracle's rows: the every-2-days reference dates of valid and test
    rows = rank.join(frames["oracle"], on=KEY)
    rows = add_model_scores(rows, trained.booster, trained.features, num_iteration=trained.best_iteration)
    out: dict[str, Any] = {"candidate": name, "what": cand.what, "trees": trained.best_iteration}
    seconds = trained.training_seconds
    if cand.seeds > 1:
        total, trees = rows["model_score"], [trained.best_iteration]
        for seed in range(43, 42 + cand.seeds):
            params = RankerParams.of(HARNESS_LEVERS, **cand.levers, lightgbm={**lightgbm, "seed": seed})
            other = build_ranker(rank, params, features=features, label=cand.label)
            seconds += other.training_seconds
            trees.append(other.best_iteration)
            score = other.booster.predict(feature_matrix(rows, features), num_iteration=other.best_iteration)
            total = total + pl.Series(score)
        rows = rows.with_columns(model_score=total / cand.seeds)
        out["trees"] = "+".join(map(str, trees))
    out.update(_ndcg20(rows, "model_score"))
    if levers.refit_factor > 0:  # the production lever: valid was trained on, the card keeps the first fit's
        at20 = trained.valid_metrics.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))
        out["valid_ndcg20"] = at20["ndcg"].item()
    if cand.refit:
        test_rows = rows.filter(pl.col("split") == "test")
        total, rounds = None, trained.best_iteration
        for seed in range(42, 42 + cand.seeds):  # with `seeds`, every seed refitted and averaged
            # the production refit (core.ranker_levers.refit_on_validation) of this candidate's fit
            seeded = RankerParams.of(
                HARNESS_LEVERS, **cand.levers, refit_factor=cand.refit, lightgbm={**lightgbm, "seed": seed}
            )
            refitted = refit_on_validation(trained, rank, seeded, label=cand.label)
            seconds += refitted.training_seconds - trained.training_seconds  # the refit's own time
            rounds = refitted.best_iteration
            score = pl.Series(
                refitted.booster.predict(feature_matrix(test_rows, features), num_iteration=rounds)
            )
            total = score if total is None else total + score
        test_rows = test_rows.with_columns(model_score=total / cand.seeds)
        refit_scores = _ndcg20(pl.concat([rows.filter(pl.col("split") == "valid"), test_rows]), "model_score")
        out["test_ndcg20"], out["test_oracle"] = refit_scores["test_ndcg20"], refit_scores["test_oracle"]
        out["trees"] = f"{trained.best_iteration} -> {rounds}"
    if cand.smooth:
        # every day's rows of valid and test (rank_e1), scored by the same model(s)
        daily = frames["rank_e1"].filter(pl.col("split").is_in(["valid", "test"]))
        daily_score = pl.Series(
            trained.booster.predict(feature_matrix(daily, features), num_iteration=trained.best_iteration)
        )
        daily = daily.select(*KEY).with_columns(_s=daily_score).sort("site", "asin", "date")
        scored = {}
        for n in SMOOTH_DAYS:
            smoothed = daily.with_columns(
                _m=pl.col("_s").rolling_mean_by("date", window_size=f"{n}d").over("site", "asin")
            ).select(*KEY, "_m")
            scored[n] = _ndcg20(rows.join(smoothed, on=KEY, how="left"), "_m")
        best = max(SMOOTH_DAYS, key=lambda n: scored[n]["valid_ndcg20"])  # chosen on validation
        out.update(scored[best])
        out["what"] = (
            f"{cand.what} ({best} days chosen on valid; "
            + ", ".join(
                f"{n}d {scored[n]['valid_ndcg20']:.3f}/{scored[n]['test_ndcg20']:.3f}" for n in SMOOTH_DAYS
            )
            + " valid/test)"
        )
    if cand.blend is not None:
        if cand.blend == "baseline":
            second = "explosive_score"
        else:  # a binary classifier of explodes, same features and levers, early-stopped on NDCG@20
            binary = RankerParams.of(
                HARNESS_LEVERS, **cand.levers, lightgbm={**lightgbm, "objective": "binary"}
            )
            clf = build_ranker(rank, binary, features=features, label="explodes")
            seconds += clf.training_seconds
            second = "second_score"
            rows = rows.with_columns(
                second_score=pl.Series(
                    clf.booster.predict(
                        feature_matrix(rows, list(clf.features)), num_iteration=clf.best_iteration
                    )
                )
            )
            out["trees"] = f"{trained.best_iteration}+{clf.best_iteration}"
        scored = {
            w: _ndcg20(rows.with_columns(blend=(1 - w) * _qpct("model_score") + w * _qpct(second)), "blend")
            for w in BLEND_WEIGHTS
        }
        best = max(BLEND_WEIGHTS, key=lambda w: scored[w]["valid_ndcg20"])  # chosen on validation
        out.update(scored[best])
        out["what"] = f"{cand.what} (weight {best} chosen on valid)"
    out["test_vs_oracle"] = out["test_ndcg20"] / out["test_oracle"]
    out["train_s"] = seconds
    if not (cand.refit or cand.smooth or cand.blend):  # rows' model_score is the candidate's score
        out["scored"] = rows.filter(pl.col("split") == "test")
    return out


def visibility_table(scored: pl.DataFrame, market: Market) -> pl.DataFrame:
    """Where the model's and the oracle's top-20 places and grade-4 hits go, by how visible each
    row's breakout is on T: its hidden demand multiplier (1 = not begun) and its demand level
    (units/day; below ~1 a week of Poisson sales and a rank floored at "unranked" barely move)."""
    truth = pl.concat(
        [market.ground_truth(s, scored["date"].min(), scored["date"].max()) for s in SITES]
    ).select(*KEY, "breakout_onset", "breakout_multiplier", "demand_level", "decoy")
    level = pl.col("demand_level")
    kind = (
        pl.when(pl.col("breakout_onset").is_not_null())
        .then(
            pl.when(pl.col("breakout_multiplier") < 1.1)
            .then(pl.lit("breakout, demand < 1.1x its own level"))
            .when(level < 1.0)
            .then(pl.lit("breakout, >= 1.1x, < 1 unit/day"))
            .otherwise(pl.lit("breakout, >= 1.1x, >= 1 unit/day"))
        )
        .when(pl.col("decoy"))
        .then(pl.lit("decoy"))
        .when(pl.col("age_days") <= 30)
        .then(pl.lit("launch (<= 30 days)"))
        .otherwise(pl.lit("other"))
    )

    def top20(score: str) -> pl.Expr:
        return pl.col(score).rank("ordinal", descending=True).over("site", "date") <= 20

    grade4 = pl.col("relevance") == 4
    return (
        scored.join(truth, on=KEY, how="left")
        .with_columns(kind=kind, _m=top20("model_score"), _o=top20("oracle_score"))
        .group_by("kind")
        .agg(
            rows=pl.len(),
            grade4=grade4.sum(),
            model_top20=pl.col("_m").sum(),
            model_grade4=(pl.col("_m") & grade4).sum(),
            oracle_top20=pl.col("_o").sum(),
            oracle_grade4=(pl.col("_o") & grade4).sum(),
        )
        .sort("kind")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("candidates", nargs="*", help=f"default: all of {', '.join(CANDIDATES)}")
    parser.add_argument("--horizon-days", type=int, default=1200)
    parser.add_argument(
        "--seed", type=int, default=SEED, help="market seed (7: the benchmark's market; others: other draws)"
    )
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "asin_platform_benchmarks"))
    parser.add_argument(
        "--visibility",
        action="store_true",
        help="after each candidate's row, its test top 20s by how visible each breakout is on T",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}")
    started = time.perf_counter()
    chosen = args.candidates or list(CANDIDATES)
    frames = cached_frames(args.horizon_days, Path(args.cache_dir), seed=args.seed)
    groups = {g for name in chosen for g in CANDIDATES[name].extra}
    frames = with_extras(frames, groups, args.horizon_days, Path(args.cache_dir), args.seed)
    # the levers' hard negatives are the top-baseline grade-0 rows of each query, as in model_quality.py
    weights = ScoreWeights()
    frames = {n: add_baseline_scores(f, weights) if n.startswith("rank") else f for n, f in frames.items()}
    print(f"frames ready in {time.perf_counter() - started:.0f} s", flush=True)
    print("| candidate | what | trees | valid NDCG@20 | test NDCG@20 | test model/oracle |")
    print("|---|---|---|---|---|---|")
    for name in chosen:
        r = evaluate(name, CANDIDATES[name], frames)
        print(
            f"| {name} | {r['what']} | {r['trees']} | {r['valid_ndcg20']:.3f} | {r['test_ndcg20']:.3f} | "
            f"{r['test_vs_oracle']:.3f} |",
            flush=True,
        )
        if args.visibility and "scored" in r:
            print(
                _md(visibility_table(r["scored"], benchmark_market(args.horizon_days, args.seed))), flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
