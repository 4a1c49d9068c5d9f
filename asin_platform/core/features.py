"""Daily features per (site, date, asin) from the mart and keyword ranks (pure polars).

Every feature of a target date T is computed from the calendar window ending on T: a window of N
days holds the days T-N+1 .. T, and a change over N days compares T with T-N. Days missing from
the mart stay missing; nothing is borrowed from before the window. Definitions, units, minimum
data and the sign each feature takes in the score: docs/features.md (the one table of record).

How it is computed, and why this way
------------------------------------
The mart rows of [min(T) - lookback, max(T)] are laid on a dense grid: one block of ``span``
consecutive days per (site, asin), every day present (a missing day is a row of nulls), sorted by
``pos = block * span + day``. Within a block a fixed window of N rows *is* the N-calendar-day
window and ``shift(N)`` *is* the value N days earlier, so every rolling statistic is one global
``rolling_*`` / ``shift`` over a contiguous column. Measured on 3M rows (2 cores), that beats

* ``rolling_*_by("date", ...).over(asin)``: ~4x slower per statistic (per-group kernels + scatter);
* ``rolling_*_by`` on a sorted sparse index: ~2x slower, and each "N days earlier" lag is a join;
* one ``group_by`` with per-window filters: fine for one date, useless for a 365-day backfill.

A block is only crossed in its first N-1 rows, and those are never output: every target day lies
at least ``lookback`` (>= the longest window) days into its block. Building the grid costs one
sort and one sorted left join (~0.3 s per 3M rows) and pays for itself after a few statistics.

Sums run on Int64 fixed-point values (ln BSR in 2^-20, sales in 2^-16 units, prices in cents,
ratings in 1/100 star) next to 0/1 indicators: integer rolling sums are exact and ~2x faster
than float ones, so a row's value does not depend on how long the grid in front of it is. That
is what makes a ranged backfill reproduce one-date-at-a-time runs bit for bit. The OLS slope
comes from the window sums of x, y, xy and x^2 with x = day number, so gaps are honoured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, estimate_sales, validate_calibration
from asin_platform.schemas import FEATURES_DAILY

SLOPE_WINDOWS: tuple[int, ...] = (7, 14, 30)
SLOPE_MIN_COVERAGE = 0.7  # share of a window's days that must carry a BSR for its slope
SALES_WINDOWS: tuple[int, ...] = (7, 30)
VELOCITY_WINDOWS: tuple[int, ...] = (7, 14, 30)
PRICE_WINDOW = 30
PRICE_MIN_DAYS = 7  # a price baseline needs a week of prices, or a new listing meets itself
PROMO_RATIO = 0.85  # price <= 85% of its 30-day median is a promotion
RATING_WINDOW = 30
PCTL_LAGS: tuple[int, ...] = (7, 30)
OFFER_LAG = 14
KEYWORD_LAG = 7
TOP_RANKS: tuple[int, ...] = (10, 50)
# The longest window or lag any feature reads; ``lookback`` must cover it (T-30 for *_change_30d).
LONGEST_REACH = 30

# listing_quality_score = sum of weight * min(value / cap, 1); caps follow the upstream listing
# contract (5 bullets, 4 attribute flags) and common marketplace guidance (150-char titles,
# 7 images). Weights sum to 1, so the score lies in [0, 1].
LISTING_QUALITY: tuple[tuple[str, float, float], ...] = (
    # (column, cap, weight)
    ("title_length", 150.0, 0.20),
    ("bullet_count", 5.0, 0.20),
    ("image_count", 7.0, 0.25),
    ("has_aplus", 1.0, 0.20),
    ("attribute_flag_count", 4.0, 0.15),
)
LISTING_COLUMNS: tuple[str, ...] = tuple(c for c, _, _ in LISTING_QUALITY)

FEATURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in FEATURES_DAILY.columns if c not in (*FEATURES_DAILY.key, "category_id")
)

# Features computed on the grid; the rest come from the target-day listing and keyword rows.
_NUMERIC_FEATURES: frozenset[str] = frozenset(
    [f"bsr_log_slope_{n}d" for n in SLOPE_WINDOWS]
    + ["bsr_pctl"]
    + [f"bsr_pctl_change_{n}d" for n in PCTL_LAGS]
    + [f"est_sales_{n}d_mean" for n in SALES_WINDOWS]
    + ["price_cv_30d", "price_change_vs_median_30d", "promo_flag"]
    + [f"review_velocity_{n}d" for n in VELOCITY_WINDOWS]
    + ["rating_mean_30d", "rating_change_30d", "new_offer_count", f"new_offer_change_{OFFER_LAG}d"]
)

# Grid columns the feature expressions read besides the window columns.
_PASS_THROUGH: tuple[str, ...] = ("_row", "x", "bsr_pctl", "_price", "_rc", "_rating", "new_offer_count")

# Fixed-point scales of the exact integer sums (see module docstring).
_Y_SCALE = 2**20  # ln(bsr): 1e-6 resolution, |sum x*y| over 30 days < 2^38
_SALES_SCALE = 2**16  # units/day: 1.5e-5 resolution
_PRICE_SCALE = 100  # cents (yen stay whole)
_RATING_SCALE = 100

# Columns the grid carries (numbers only: strings go around it, see _split_history).
_GRID_COLUMNS: tuple[str, ...] = (
    "bsr_root",
    "bsr_pctl",
    "est_sales",
    "price",
    "flag_price_spike",
    "rating",
    "review_count",
    "new_offer_count",
)


def _min_days(window: int) -> int:
    """Days with a BSR required for a slope over ``window`` days (the 70% rule): 5, 10, 21."""
    return math.ceil(SLOPE_MIN_COVERAGE * window - 1e-9)


def bsr_percentile() -> pl.Expr:
    """Share of the (site, date, category) products with a BSR that day whose BSR is no better:
    (n - rank_min + 1) / n, so 1 = best, ties share the better value and the worst is 1/n."""
    group = ["site", "date", "category_id"]
    bsr = pl.when((pl.col("bsr_root") > 0) & pl.col("category_id").is_not_null()).then(pl.col("bsr_root"))
    n = bsr.count().over(group).cast(pl.Float64)
    rank_min = bsr.rank("min").over(group).cast(pl.Float64)
    return ((n - rank_min + 1.0) / n).alias("bsr_pctl")


def listing_quality_score() -> pl.Expr:
    """Weighted, capped listing completeness in [0, 1] (see LISTING_QUALITY); a missing attribute
    scores 0, and the score is null only when the whole listing is missing."""
    parts = [
        (pl.col(c).cast(pl.Float64).fill_null(0.0) / cap).clip(0.0, 1.0) * weight
        for c, cap, weight in LISTING_QUALITY
    ]
    any_known = pl.any_horizontal([pl.col(c).is_not_null() for c in LISTING_COLUMNS])
    return pl.when(any_known).then(pl.sum_horizontal(parts)).alias("listing_quality_score")


def _history(mart: pl.LazyFrame, calibration: pl.DataFrame, lo: date, hi: date) -> pl.DataFrame:
    """Mart rows of [lo, hi] with day number ``x``, exact (site, asin) codes and estimated sales."""
    # A private Categories object numbers sites and ASINs densely in first-seen order: exact (no
    # hash collisions), ~3x cheaper than ranking the strings, and dropped with the call.
    codes = pl.Categorical(pl.Categories.random(namespace="asin_platform.features"))
    epoch_day = (lo - date(1970, 1, 1)).days
    return (
        mart.filter(pl.col("date").is_between(lo, hi))
        .select(
            "site",
            "date",
            "asin",
            "category_id",
            "price",
            "flag_price_spike",
            "bsr_root",
            "rating",
            "review_count",
            "new_offer_count",
            *LISTING_COLUMNS,
            "listed_since",
        )
        .join(calibration.lazy(), on=["site", "category_id"], how="left", maintain_order="none")
        .with_columns(
            x=pl.col("date").cast(pl.Int64) - epoch_day,
            _site_code=pl.col("site").cast(codes).to_physical(),
            _asin_code=pl.col("asin").cast(codes).to_physical(),
            est_sales=estimate_sales(
                pl.col("bsr_root"), pl.col("a").fill_null(FALLBACK_A), pl.col("b").fill_null(FALLBACK_B)
            ),
        )
        .drop("a", "b")
        .collect()
    )


def _with_percentile(hist: pl.DataFrame, pctl_dates: list[date]) -> pl.DataFrame:
    """``hist`` plus ``bsr_pctl`` on the days the features read it (T, T-7, T-30 of each target).

    The percentile is a cross-section of each (site, date, category); ranking every history day
    would cost ~0.3 s per 3M rows, so only those days are ranked and scattered back by row."""
    ranked = (
        hist.lazy()
        .with_row_index("_row")
        .filter(pl.col("date").is_in(pctl_dates))
        .select("_row", bsr_percentile())
        .collect()
    )
    pctl = pl.Series("bsr_pctl", dtype=pl.Float64).extend_constant(None, hist.height)
    return hist.with_columns(pctl.scatter(ranked["_row"], ranked["bsr_pctl"]))


def _block_ids(hist: pl.DataFrame) -> pl.Series:
    """Dense block number per row: one block per (site, asin)."""
    if hist.height == 0 or hist["_site_code"].max() == 0:
        return hist["_asin_code"].cast(pl.Int64)  # one site: the ASIN codes are dense already
    pair = hist["_site_code"].cast(pl.UInt64) * 2**32 + hist["_asin_code"].cast(pl.UInt64)
    return pair.rank("dense").cast(pl.Int64) - 1


def _grid(hist: pl.DataFrame, span: int) -> tuple[pl.DataFrame, pl.Series]:
    """The dense (asin x day) grid of the numeric mart columns, and each grid row's ``hist`` row
    (null on a missing day).

    Built as an index map: scatter each row number to ``pos = block * span + x``, then gather every
    column through the map (a gather of a null index is a null row). That replaces a sort and a
    sorted join (~2x the cost) and keeps the strings out of the grid altogether."""
    pos = _block_ids(hist) * span + hist["x"]
    n_pos = (int(pos.max()) + 1) if hist.height else 0  # type: ignore[arg-type]
    source = pl.Series("_row", dtype=pl.UInt32).extend_constant(None, n_pos)
    source = source.scatter(pos, pl.int_range(0, hist.height, dtype=pl.UInt32, eager=True))
    if n_pos - source.null_count() != hist.height:
        # two rows on one position: a duplicated mart key would corrupt its whole block
        raise ValueError("mart has duplicate (site, date, asin) rows")
    grid = hist.select([pl.col(c).gather(source) for c in _GRID_COLUMNS]).with_columns(
        source,
        x=pl.int_range(0, n_pos, dtype=pl.Int64) % span,
    )
    return grid, source


def _fixed(expr: pl.Expr, scale: int) -> pl.Expr:
    """Round to an Int64 fixed-point value (null stays null)."""
    return (expr * scale).round(0).cast(pl.Int64)


def _day_columns() -> list[pl.Expr]:
    """Per-day inputs of the window statistics: Int64 values with nulls as 0 beside 0/1 counts."""
    bsr = pl.col("bsr_root")
    y = _fixed(pl.when(bsr > 0).then(bsr.cast(pl.Float64).log()), _Y_SCALE)
    has_y = y.is_not_null().cast(pl.Int64)
    x = pl.col("x")
    # A spike-flagged price (> price_spike_ratio jump vs the day before) is far more often a data
    # error than a promotion; price features treat it as a missing day.
    price = pl.when((pl.col("price") > 0) & ~pl.col("flag_price_spike").fill_null(False)).then(
        pl.col("price")
    )
    cents = _fixed(price, _PRICE_SCALE)
    rc = pl.col("review_count")
    rc_ok = rc >= 0
    rating = pl.when(pl.col("rating").is_between(1.0, 5.0)).then(pl.col("rating"))
    return [
        has_y.alias("_n"),
        (x * has_y).alias("_sx"),
        (x * x * has_y).alias("_sxx"),
        y.fill_null(0).alias("_sy"),
        (x * y).fill_null(0).alias("_sxy"),
        _fixed(pl.col("est_sales"), _SALES_SCALE).fill_null(0).alias("_sales"),
        price.alias("_price"),
        cents.is_not_null().cast(pl.Int64).alias("_np"),
        cents.fill_null(0).alias("_sp"),
        (cents * cents).fill_null(0).alias("_spp"),
        pl.when(rc_ok).then(rc).alias("_rc"),
        pl.when(rc_ok).then(x).alias("_rc_x"),
        rating.alias("_rating"),
        rating.is_not_null().cast(pl.Int64).alias("_nr"),
        _fixed(rating, _RATING_SCALE).fill_null(0).alias("_sr"),
    ]


def _window_columns() -> list[pl.Expr]:
    """Window sums, medians, first-in-window values and lags over the grid (valid on rows at least
    LONGEST_REACH days into a block, which is every output row)."""
    exprs: list[pl.Expr] = []
    for n in sorted({*SLOPE_WINDOWS, *SALES_WINDOWS}):
        exprs += [pl.col("_n").rolling_sum(n).alias(f"_n{n}"), pl.col("_sy").rolling_sum(n).alias(f"_sy{n}")]
    for n in SLOPE_WINDOWS:
        exprs += [pl.col(c).rolling_sum(n).alias(f"{c}{n}") for c in ("_sx", "_sxx", "_sxy")]
    for n in SALES_WINDOWS:
        exprs.append(pl.col("_sales").rolling_sum(n).alias(f"_sales{n}"))
    for n in VELOCITY_WINDOWS:
        # first review count at or after day T-N+1, searched at most N-1 days ahead (so never past
        # T): the earliest available point of the window, with its day number
        for c in ("_rc", "_rc_x"):
            exprs.append(
                pl.col(c).fill_null(strategy="backward", limit=n - 1).shift(n - 1).alias(f"{c}_first{n}")
            )
    exprs += [pl.col(c).rolling_sum(PRICE_WINDOW).alias(f"{c}{PRICE_WINDOW}") for c in ("_np", "_sp", "_spp")]
    exprs += [pl.col(c).rolling_sum(RATING_WINDOW).alias(f"{c}{RATING_WINDOW}") for c in ("_nr", "_sr")]
    exprs += [
        pl.col("_price").rolling_median(PRICE_WINDOW, min_samples=PRICE_MIN_DAYS).alias("_price_median"),
        pl.col("_rating").shift(RATING_WINDOW).alias("_rating_before"),
        pl.col("new_offer_count").shift(OFFER_LAG).alias("_offers_before"),
    ]
    exprs += [pl.col("bsr_pctl").shift(lag).alias(f"_pctl_before{lag}") for lag in PCTL_LAGS]
    return exprs


def _feature_columns() -> list[pl.Expr]:
    """Features of the output rows from their window columns."""
    exprs: list[pl.Expr] = []
    for n in SLOPE_WINDOWS:
        cnt, sx, sxx, sy, sxy = (pl.col(f"{c}{n}") for c in ("_n", "_sx", "_sxx", "_sy", "_sxy"))
        # exact Int64 numerator and denominator (|values| < 2^50); n^2 var(x) > 0 from 2 days on
        denom = cnt * sxx - sx * sx
        slope = (cnt * sxy - sx * sy).cast(pl.Float64) / (denom.cast(pl.Float64) * _Y_SCALE)
        exprs.append(pl.when((cnt >= _min_days(n)) & (denom > 0)).then(slope).alias(f"bsr_log_slope_{n}d"))
    for lag in PCTL_LAGS:
        exprs.append((pl.col("bsr_pctl") - pl.col(f"_pctl_before{lag}")).alias(f"bsr_pctl_change_{lag}d"))
    for n in SALES_WINDOWS:
        cnt = pl.col(f"_n{n}")
        mean = pl.col(f"_sales{n}").cast(pl.Float64) / (cnt.cast(pl.Float64) * _SALES_SCALE)
        exprs.append(pl.when(cnt > 0).then(mean).alias(f"est_sales_{n}d_mean"))
    n_p, s_p, s_pp = (pl.col(f"{c}{PRICE_WINDOW}").cast(pl.Float64) for c in ("_np", "_sp", "_spp"))
    # sample variance from exact cent sums; the numerator is an exact integer below ~$30k prices,
    # so a constant price gives exactly 0, never a rounding residue
    var = ((n_p * s_pp - s_p * s_p) / (n_p * (n_p - 1.0))).clip(lower_bound=0.0)
    price, median = pl.col("_price"), pl.col("_price_median")
    exprs += [
        pl.when(n_p >= PRICE_MIN_DAYS).then(var.sqrt() * n_p / s_p).alias("price_cv_30d"),
        (price / median - 1.0).alias("price_change_vs_median_30d"),
        (price <= PROMO_RATIO * median).alias("promo_flag"),
    ]
    for n in VELOCITY_WINDOWS:
        days = pl.col("x") - pl.col(f"_rc_x_first{n}")
        gained = (pl.col("_rc") - pl.col(f"_rc_first{n}")).cast(pl.Float64)
        exprs.append(
            pl.when(pl.col("_rc").is_not_null() & (days > 0))
            .then(gained / days.cast(pl.Float64))
            .alias(f"review_velocity_{n}d")
        )
    n_r = pl.col(f"_nr{RATING_WINDOW}")
    exprs += [
        pl.when(n_r > 0)
        .then(pl.col(f"_sr{RATING_WINDOW}").cast(pl.Float64) / (n_r.cast(pl.Float64) * _RATING_SCALE))
        .alias("rating_mean_30d"),
        (pl.col("_rating") - pl.col("_rating_before")).alias("rating_change_30d"),
        (pl.col("new_offer_count") - pl.col("_offers_before")).alias(f"new_offer_change_{OFFER_LAG}d"),
    ]
    return exprs


def _keyword_features(keywords: pl.LazyFrame, targets: list[date]) -> pl.LazyFrame:
    """kw_top10_count / kw_top50_count on T and the mean rank change vs T-7 over the keywords the
    product ranks for on both days (so a keyword gained or lost does not move the mean)."""
    lag = timedelta(days=KEYWORD_LAG)
    kw = keywords.select("site", "date", "asin", "keyword", "rank").filter(pl.col("rank") > 0)
    today = kw.filter(pl.col("date").is_in(targets))
    before = (
        kw.filter(pl.col("date").is_in([t - lag for t in targets]))
        .with_columns(pl.col("date") + lag)
        .rename({"rank": "rank_before"})
    )
    counts = today.group_by("site", "date", "asin").agg(
        [(pl.col("rank") <= k).sum().alias(f"kw_top{k}_count") for k in TOP_RANKS]
    )
    change = (
        today.join(before, on=["site", "date", "asin", "keyword"], how="inner")
        .group_by("site", "date", "asin")
        .agg(kw_mean_rank_change_7d=(pl.col("rank") - pl.col("rank_before")).cast(pl.Float64).mean())
    )
    return counts.join(change, on=["site", "date", "asin"], how="full", coalesce=True)


def build_features(
    mart: pl.LazyFrame,
    keywords: pl.LazyFrame,
    target_dates: Sequence[date],
    *,
    lookback: int = 30,
    calibration: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """FEATURES_DAILY rows for every (site, T, asin) in the mart on a target date T.

    ``mart`` follows MART_TIMESERIES_DAILY (one row per key) and ``keywords`` FACT_KEYWORDS; only
    rows of [min(T) - lookback, max(T)] are read, so pass lazy scans and let the filter push down.
    ``lookback`` (days of history behind each row) must cover the longest window or lag (30).
    ``calibration`` (site, category_id, a, b) drives the BSR -> sales estimate; None = the
    defaults of core.sales. Several target dates give exactly the rows one call per date gives.
    """
    targets = sorted(set(target_dates))
    if not targets:
        return FEATURES_DAILY.empty()
    if lookback < LONGEST_REACH:
        raise ValueError(
            f"lookback={lookback} is shorter than the longest feature reach ({LONGEST_REACH} days)"
        )
    if calibration is None:
        from asin_platform.core.sales import default_calibration
        from asin_platform.settings import KNOWN_SITES

        calibration = default_calibration(KNOWN_SITES)
    cal = validate_calibration(calibration)

    lo, hi = targets[0] - timedelta(days=lookback), targets[-1]
    span = (hi - lo).days + 1
    pctl_dates = sorted({t - timedelta(days=k) for t in targets for k in (0, *PCTL_LAGS)})
    hist = _with_percentile(_history(mart, cal, lo, hi), pctl_dates)
    grid, _ = _grid(hist, span)
    labels = (
        hist.lazy()
        .with_row_index("_row")
        .filter(pl.col("date").is_in(targets))
        .select("_row", "site", "date", "asin", "category_id", *LISTING_COLUMNS, "listed_since")
        .collect()
    )
    del hist  # the grid holds what the windows need; free the strings before they run

    # only rows present in the mart on a target date are output; everything else is window context
    is_output = pl.col("_row").is_not_null() & pl.col("x").is_in([(t - lo).days for t in targets])
    windows = (
        grid.lazy()
        .with_columns(_day_columns())
        # each window column is filtered as soon as it is computed: full-length copies of all of
        # them at once would triple the peak memory of a 100k-ASIN partition
        .select([e.filter(is_output) for e in (*_window_columns(), *(pl.col(c) for c in _PASS_THROUGH))])
        .with_columns(_feature_columns())
        .select("_row", *[c for c in FEATURE_COLUMNS if c in _NUMERIC_FEATURES])
    )
    features = (
        windows.join(labels.lazy(), on="_row", how="inner")
        .with_columns(
            listing_quality_score(),
            age_days=(pl.col("date") - pl.col("listed_since")).dt.total_days(),
        )
        .join(_keyword_features(keywords, targets), on=["site", "date", "asin"], how="left")
        # no ranked keyword that day = zero keywords in the top 10 / 50
        .with_columns(pl.col([f"kw_top{k}_count" for k in TOP_RANKS]).fill_null(0))
        .collect()
    )
    return FEATURES_DAILY.conform(features).sort("site", "date", "asin")
