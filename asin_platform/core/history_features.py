"""Features from a product's own recent history (pure polars): what it did before the last week.

``core/features.py`` describes each product by its windows ending on T (slopes, velocities,
levels). A breakout early in its ramp is hard to tell from the long tail's noise by those alone
(docs/model_quality.md, *Early-ramp detection*): what precedes a breakout is a change against the
product's *own* past - a listing improved a few weeks ago, a BSR that had already begun to fall the
week before, a BSR far from its own usual level, a review burst, a price step. These nine columns
measure that, each against the product's own window, never against other products:

* ``listing_change_days``: days since the listing (title length, bullets, images) last changed;
* ``{image_count,bullet_count,title_length}_change_30d``, ``listing_quality_change_30d``: T vs T-30;
* ``bsr_log_drop_7d_prior``: the fall of ln BSR over the week before the last one;
* ``bsr_log_z_7d_prior``: today's ln BSR against the product's own prior window (T-30 .. T-8);
* ``review_burst_z_7d``: reviews gained over 7 days against the rate of T-30 .. T-7;
* ``price_step_7d_prior``: the last week's median price against the prior window's.

Definitions, units and minimum data: docs/features.md (*History features*). Every feature of T reads
the days T-30 .. T only (``HISTORY_REACH``), like the 30-day features of core/features.py, so the
same ``lookback`` serves both.

How: these are window sums, lags and medians at the output cells of core/features.py's dense
(site, asin) x day grid, in its one pass (a grid of its own cost a second pass, ~40% of a 1M-ASIN
partition's features), so a window of N rows is N calendar days and the cell N rows back is N days
earlier (no Python loop over products, no per-group kernel). Every window lies inside its output
cell's block: outputs sit at least 30 days into their blocks. Sums are exact Int64 fixed-point
sums (ln BSR in 2^-24 units) and medians are order statistics, so a value does not depend on how
much grid precedes it: chunked and multi-date calls equal one-date calls bit for bit (tested).
"""

from __future__ import annotations

import polars as pl

from asin_platform.core.listing_quality import LISTING_COLUMNS, listing_quality_score
from asin_platform.core.window_median import WindowMedian
from asin_platform.core.window_sum import Lag, WindowSum

HISTORY_REACH = 30  # every feature of T reads T-30 .. T (a 31-day span)
RECENT = 7  # "the last week": T-6 .. T
PRIOR_GAP = 8  # the prior window ends on T-8, a day before the week of the lag-7 values
PRIOR_DAYS = HISTORY_REACH - PRIOR_GAP + 1  # T-30 .. T-8: 23 days
PRIOR_MIN_DAYS = 10  # days with a value the prior window needs (z-scores, price median)
WEEK_MIN_DAYS = 4  # days with a BSR a week's mean needs
RECENT_PRICE_MIN_DAYS = 4
BSR_Z_MIN_STD = 0.05  # floor of the prior window's ln BSR std: a flat BSR must not give z = 1e9
LISTING_CHANGE_CAP = HISTORY_REACH  # no change within T-29 .. T: "30 days or more"
LISTING_CHANGE_COLUMNS: tuple[str, ...] = ("title_length", "bullet_count", "image_count")

HISTORY_COLUMNS: tuple[str, ...] = (
    "listing_change_days",
    "image_count_change_30d",
    "bullet_count_change_30d",
    "title_length_change_30d",
    "listing_quality_change_30d",
    "bsr_log_drop_7d_prior",
    "bsr_log_z_7d_prior",
    "review_burst_z_7d",
    "price_step_7d_prior",
)

_Y_SCALE = 2**24  # ln(bsr) fixed point, as core/features.py's ``_y``: 23-day sums of squares stay < 2^62

# The last week's and the prior window's median price, taken at the output cells.
MEDIANS: tuple[WindowMedian, ...] = (
    WindowMedian("price", 1 - RECENT, 0, RECENT_PRICE_MIN_DAYS, "_h_price_recent"),
    WindowMedian("price", -HISTORY_REACH, -PRIOR_GAP, PRIOR_MIN_DAYS, "_h_price_prior"),
)


def _lag(column: str, n: int) -> str:
    return f"_h_{column}_{n}"


def day_columns() -> list[pl.Expr]:
    """Grid columns of the sums below besides core/features.py's day columns: ln BSR squared
    (fixed point, 0 when missing). Reads ``_y``."""
    return [(pl.col("_y") * pl.col("_y")).fill_null(0).alias("_h_ss")]


# Window sums at the output cells (core/window_sum.py). ``_n`` (0/1) and ``_sy`` (ln BSR, 0 when
# missing) are core/features.py's day columns.
SUMS: tuple[WindowSum, ...] = (
    # the week before the last one (T-13 .. T-7) and the one before it (T-20 .. T-14)
    WindowSum("_n", 1 - 2 * RECENT, -RECENT, "_h_n_w1"),
    WindowSum("_sy", 1 - 2 * RECENT, -RECENT, "_h_s_w1"),
    WindowSum("_n", 1 - 3 * RECENT, -2 * RECENT, "_h_n_w2"),
    WindowSum("_sy", 1 - 3 * RECENT, -2 * RECENT, "_h_s_w2"),
    # the prior window T-30 .. T-8
    WindowSum("_n", -HISTORY_REACH, -PRIOR_GAP, "_h_n_p"),
    WindowSum("_sy", -HISTORY_REACH, -PRIOR_GAP, "_h_s_p"),
    WindowSum("_h_ss", -HISTORY_REACH, -PRIOR_GAP, "_h_ss_p"),
)
# Values 7 and 30 days earlier: the review count, and the listing whose changes and quality score
# are taken at the outputs.
LAGS: tuple[Lag, ...] = (
    Lag("_rc", RECENT, _lag("rc", RECENT)),
    Lag("_rc", HISTORY_REACH, _lag("rc", HISTORY_REACH)),
    *[Lag(c, HISTORY_REACH, _lag(c, HISTORY_REACH)) for c in LISTING_COLUMNS],
)


def listing_change() -> pl.Expr:
    """``listing_change_days`` on every grid cell (core/features.py filters it to the outputs):
    days since the last day d of T-29 .. T whose listing differs from day d-1's (both days in the
    mart with the attribute), LISTING_CHANGE_CAP when none; null without a listing on T."""
    changed = pl.any_horizontal([pl.col(c) != pl.col(c).shift(1) for c in LISTING_CHANGE_COLUMNS]).fill_null(
        False
    )
    # grid positions: a change found in an earlier block lies > 30 positions back, so it reads as none
    last = pl.when(changed).then(pl.col("_pos")).forward_fill()
    since = (pl.col("_pos") - last).cast(pl.Int64)
    known = pl.any_horizontal([pl.col(c).is_not_null() for c in LISTING_CHANGE_COLUMNS])
    capped = pl.when(since < LISTING_CHANGE_CAP).then(since).otherwise(LISTING_CHANGE_CAP)
    return pl.when(known).then(capped).alias("listing_change_days")


def feature_columns() -> list[pl.Expr]:
    """HISTORY_COLUMNS but ``listing_change_days`` (a window column already) on the output rows,
    from ``SUMS``, ``LAGS``, ``MEDIANS``, ``_y``, ``_rc`` and the listing columns of T."""
    lag = HISTORY_REACH
    mean_w1 = pl.col("_h_s_w1").cast(pl.Float64) / pl.col("_h_n_w1").cast(pl.Float64)
    mean_w2 = pl.col("_h_s_w2").cast(pl.Float64) / pl.col("_h_n_w2").cast(pl.Float64)
    n_p = pl.col("_h_n_p").cast(pl.Float64)
    mean_p = pl.col("_h_s_p").cast(pl.Float64) / n_p
    std_p = (pl.col("_h_ss_p").cast(pl.Float64) / n_p - mean_p * mean_p).clip(
        lower_bound=0.0
    ).sqrt() / _Y_SCALE
    rc, rc7, rc30 = (pl.col(c).cast(pl.Int64) for c in ("_rc", _lag("rc", RECENT), _lag("rc", lag)))
    expected = (rc7 - rc30).cast(pl.Float64) * (RECENT / (lag - RECENT))
    return [
        *[(pl.col(c) - pl.col(_lag(c, lag))).alias(f"{c}_change_30d") for c in LISTING_CHANGE_COLUMNS[::-1]],
        (listing_quality_score() - listing_quality_score(lambda c: _lag(c, lag))).alias(
            "listing_quality_change_30d"
        ),
        pl.when((pl.col("_h_n_w1") >= WEEK_MIN_DAYS) & (pl.col("_h_n_w2") >= WEEK_MIN_DAYS))
        .then((mean_w2 - mean_w1) / _Y_SCALE)
        .alias("bsr_log_drop_7d_prior"),
        pl.when(pl.col("_h_n_p") >= PRIOR_MIN_DAYS)
        .then((pl.col("_y").cast(pl.Float64) - mean_p) / _Y_SCALE / std_p.clip(lower_bound=BSR_Z_MIN_STD))
        .alias("bsr_log_z_7d_prior"),
        pl.when(expected >= 0)
        .then(((rc - rc7).cast(pl.Float64) - expected) / (expected + 1.0).sqrt())
        .alias("review_burst_z_7d"),
        (pl.col("_h_price_recent") / pl.col("_h_price_prior") - 1.0).alias("price_step_7d_prior"),
    ]
