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
window and the cell N rows back *is* the value N days earlier, so every window statistic is an
offset into a contiguous column. When few cells are outputs (one target date: 1 in 31), sums and
lags are gathered at the output cells from one prefix sum per column (core/window_sum.py);
otherwise they are one global ``rolling_sum`` / ``shift`` each (``GATHER_SHARE``). Medians are
always sorted at the output cells (core/window_median.py), and the first value of a window is one
global ``fill_null`` / ``shift``. Measured on 3M rows (2 cores), the grid beats

* ``rolling_*_by("date", ...).over(asin)``: ~4x slower per statistic (per-group kernels + scatter);
* ``rolling_*_by`` on a sorted sparse index: ~2x slower, and each "N days earlier" lag is a join;
* one ``group_by`` per ASIN with per-window filtered aggregations: 1.5 s vs 0.9 s for grid plus
  windows on a 100k-ASIN partition, and no way to serve a 365-day backfill in one pass.

A block is only crossed in its first N-1 rows, and those are never output: every target day lies
at least ``lookback`` (>= the longest window) days into its block. The grid is built without a
sort or a join: a private polars ``Categories`` numbers the (site, asin) pairs exactly, the few
distinct pairs are ranked as strings to give blocks in (site, asin) order, each mart row's number
is scattered to its position, and every column is gathered through that index map (~0.3 s per 3M
rows). Output rows are therefore already in (site, asin, date) order. Strings never enter the
grid; every other key (percentile cross-sections, calibration, keyword rows) is an integer derived
from the same codes, because string hashing and sorting were the largest costs of the first
versions.

Sums run on Int64 fixed-point values (ln BSR and sales in 2^-24 units, prices in cents,
ratings in 1/100 star) next to 0/1 indicators: integer window sums are exact (a difference of
prefix sums too, see core/window_sum.py), so a row's value does not depend on how long the grid in
front of it is. That
is what makes a ranged backfill reproduce one-date-at-a-time runs bit for bit. The OLS slope
comes from the window sums of x, y, xy and x^2 with x = day number, so gaps are honoured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from asin_platform.core import history_features
from asin_platform.core.feature_grid import Blocks, at_positions, build_grid, codes
from asin_platform.core.keyword_features import TOP_RANKS, keyword_features
from asin_platform.core.listing_quality import LISTING_COLUMNS, listing_quality_score
from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, estimate_sales, validate_calibration
from asin_platform.core.window_median import WindowMedian, window_medians
from asin_platform.core.window_sum import Lag, WindowSum, lags, window_sums
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
# The longest window or lag any feature reads; ``lookback`` must cover it (T-30 for *_change_30d).
LONGEST_REACH = 30

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
    + list(history_features.HISTORY_COLUMNS)
)

# Grid columns the feature expressions read besides the window columns.
_PASS_THROUGH: tuple[str, ...] = (
    "x",
    "bsr_pctl",
    "_y",
    "_price",
    "_rc",
    "_rating",
    "new_offer_count",
    *LISTING_COLUMNS,
)

# Fixed-point scales of the exact integer sums (see module docstring).
_Y_SCALE = 2**24  # ln(bsr): 6e-8 resolution; n * sum(x*y) stays < 2^50 for 5-year grids
_SALES_SCALE = 2**24  # units/day: 6e-8 resolution; a 30-day sum stays < 2^50 for a < 1e6
_PRICE_SCALE = 100  # cents (yen stay whole)
_RATING_SCALE = 100

# Columns the grid carries (numbers only: strings reach the output rows through ``labels``).
_GRID_COLUMNS: tuple[str, ...] = (
    "bsr_root",
    "bsr_pctl",
    "est_sales",
    "price",
    "rating",
    "review_count",
    "new_offer_count",
    *LISTING_COLUMNS,  # the history columns' listing changes and quality 30 days earlier
)


def _min_days(window: int) -> int:
    """Days with a BSR required for a slope over ``window`` days (the 70% rule): 5, 10, 21."""
    return math.ceil(SLOPE_MIN_COVERAGE * window - 1e-9)


def bsr_percentile(*group: str) -> pl.Expr:
    """Share of the (site, date, category) products with a BSR that day whose BSR is no better:
    (n - rank_min + 1) / n, so 1 = best, ties share the better value and the worst is 1/n.
    ``group`` names the cross-section columns (default site, date, category_id); a row with a
    null key (no category) is not ranked."""
    keys = list(group) or ["site", "date", "category_id"]
    ranked = pl.all_horizontal([pl.col("bsr_root") > 0, *(pl.col(k).is_not_null() for k in keys)])
    bsr = pl.when(ranked).then(pl.col("bsr_root"))
    n = bsr.count().over(keys).cast(pl.Float64)
    rank_min = bsr.rank("min").over(keys).cast(pl.Float64)
    return ((n - rank_min + 1.0) / n).alias("bsr_pctl")


def percentile_dates(targets: Sequence[date]) -> list[date]:
    """The days whose BSR percentile the features of ``targets`` read: T, T-7 and T-30."""
    return sorted({t - timedelta(days=k) for t in targets for k in (0, *PCTL_LAGS)})


def percentile_frame(mart: pl.LazyFrame, targets: Sequence[date]) -> pl.DataFrame:
    """(site, date, asin, bsr_pctl) of every mart row on a day the features of ``targets`` read,
    ranked over each whole (site, date, category) cross-section: the one input of an ASIN block's
    features that depends on the other ASINs. Three small columns of 3 days, whatever the range."""
    return (
        mart.filter(pl.col("date").is_in(percentile_dates(targets)))
        .select("site", "date", "asin", "category_id", "bsr_root")
        .select("site", "date", "asin", bsr_percentile())
        .collect()
    )


def _history(
    mart: pl.LazyFrame,
    calibration: pl.DataFrame,
    lo: date,
    hi: date,
    sites: pl.Categorical,
    asins: pl.Categorical,
) -> tuple[pl.DataFrame, Blocks]:
    """Mart rows of [lo, hi] with day number ``x``, grid block ``_block`` (pairs coded by ``sites``
    / ``asins``), the integer cross-section key ``_xsec`` of (site, date, category) and estimated
    sales; and the blocks."""
    epoch_day = (lo - date(1970, 1, 1)).days
    small = codes("small")  # categories: a handful of values
    hist = (
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
        .with_columns(
            # a NaN is no value, like null (and must not reach the fixed-point casts)
            pl.col("price", "rating").cast(pl.Float64).fill_nan(None),
        )
        .with_columns(
            # A spike-flagged price (> price_spike_ratio jump vs the day before) is far more often a
            # data error than a promotion: price features treat it as a missing day. Cleaned here,
            # on the rows, so the flag never has to enter the grid.
            price=pl.when((pl.col("price") > 0) & ~pl.col("flag_price_spike").fill_null(False)).then(
                pl.col("price")
            ),
            rating=pl.when(pl.col("rating").is_between(1.0, 5.0)).then(pl.col("rating")),
            x=pl.col("date").cast(pl.Int64) - epoch_day,
            _site=pl.col("site").cast(sites),
            _asin=pl.col("asin").cast(asins),
            _cat_code=pl.col("category_id").cast(small).to_physical().cast(pl.Int64),
        )
        .with_columns(_site_code=pl.col("_site").to_physical().cast(pl.Int64))
        .with_columns(
            # (site, day, category) as one Int64; null without a category, so it is not ranked
            _xsec=(pl.col("_site_code") * 2**16 + pl.col("x")) * 2**32 + pl.col("_cat_code"),
        )
        .collect()
    )
    # ``hist`` arrives in ~100 chunks per column and is only ever changed in place or read by column:
    # an eager select / with_columns would rechunk every column it touches, strings included
    # (~0.25 s per 5.7M rows for the site and category alone)
    blocks, row_blocks = Blocks.of(hist.drop_in_place("_site"), hist.drop_in_place("_asin"), sites, asins)
    hist.insert_column(hist.width, row_blocks)
    # Calibration per (site, category): joined on the handful of distinct pairs, then gathered by
    # a dense pair index (a join over every mart row on two string keys cost ~0.2 s per 3M rows,
    # a hash lookup ~0.1 s). Sites and categories are small numberings, so the index
    # site * width + category stays below width^2 (a few thousand).
    width = 1 + max(int(hist[c].max() or 0) for c in ("_site_code", "_cat_code"))  # type: ignore[arg-type]
    pair = hist["_site_code"] * width + hist["_cat_code"]
    first = pair.arg_unique()  # a row of each (site, category): ~5x cheaper than a group_by
    pairs = (
        pl.DataFrame([hist[c].gather(first) for c in ("site", "category_id")])
        .with_columns(_sc=pair.gather(first))
        .drop_nulls("_sc")
        .join(calibration, on=["site", "category_id"], how="left")
    )
    by_pair = {
        c: pl.Series(c, dtype=pl.Float64).extend_constant(None, width * width).scatter(pairs["_sc"], pairs[c])
        for c in ("a", "b")
    }
    sales = pl.select(
        estimate_sales(
            pl.lit(hist["bsr_root"]),
            pl.lit(by_pair["a"].gather(pair).fill_null(FALLBACK_A)),
            pl.lit(by_pair["b"].gather(pair).fill_null(FALLBACK_B)),
        ).alias("est_sales")
    ).to_series()
    for name in ("_site_code", "_cat_code"):
        hist.drop_in_place(name)
    return hist.hstack([sales]), blocks


def _with_percentile(
    hist: pl.DataFrame, pctl_dates: list[date], given: pl.DataFrame | None = None
) -> pl.DataFrame:
    """``hist`` plus ``bsr_pctl`` on the days the features read it (T, T-7, T-30 of each target),
    without ``_xsec``. ``hist`` is consumed (its ``_xsec`` is moved out in place).

    The percentile is a cross-section of each (site, date, category); only those days are ranked
    (a single-date partition ranks 3 of its 31 days) and scattered back by row number. ``given``
    (site, date, asin, bsr_pctl) replaces the ranking when ``hist`` holds only a block of the
    site's ASINs: a block cannot rank itself against the products it does not hold."""
    rows = hist.lazy().with_row_index("_row").filter(pl.col("date").is_in(pctl_dates))
    if given is None:
        ranked = rows.select("_row", bsr_percentile("_xsec")).collect()
    else:
        ranked = (
            rows.select("_row", "site", "date", "asin")
            .join(given.lazy().select("site", "date", "asin", "bsr_pctl"), on=["site", "date", "asin"])
            .select("_row", "bsr_pctl")
            .collect()
        )
    pctl = pl.Series("bsr_pctl", dtype=pl.Float64).extend_constant(None, hist.height)
    hist.drop_in_place("_xsec")  # in place, not with_columns: see _history
    return hist.hstack([pctl.scatter(ranked["_row"], ranked["bsr_pctl"])])


def _fixed(expr: pl.Expr, scale: int) -> pl.Expr:
    """Round to an Int64 fixed-point value (null stays null)."""
    return (expr * scale).round(0).cast(pl.Int64)


def _day_inputs() -> list[pl.Expr]:
    """Per-day values that several day columns share, as columns of their own: polars re-evaluated
    them in each user when written inline (~1.7x the cost of _day_columns). price and rating
    arrive cleaned by _history (spikes, non-positive prices, ratings off 1..5 are null)."""
    bsr = pl.col("bsr_root")
    return [
        _fixed(pl.when(bsr > 0).then(bsr.cast(pl.Float64).log()), _Y_SCALE).alias("_y"),
        pl.col("price").alias("_price"),
        _fixed(pl.col("price"), _PRICE_SCALE).alias("_cents"),
        pl.col("rating").alias("_rating"),
    ]


def _day_columns() -> list[pl.Expr]:
    """Per-day inputs of the window statistics: integers with nulls as 0 beside 0/1 counts.

    Counts are Int8 and small sums Int32 (a 30-day sum of each fits): ~100 MB less to allocate and
    page in per 100k-ASIN partition. _feature_columns widens every sum to Int64 before multiplying."""
    x, y, cents, rating = pl.col("x"), pl.col("_y"), pl.col("_cents"), pl.col("_rating")
    has_y = y.is_not_null().cast(pl.Int8)
    rc = pl.col("review_count")
    rc_ok = rc >= 0
    return [
        has_y.alias("_n"),
        (x * has_y).cast(pl.Int32).alias("_sx"),
        (x * x * has_y).alias("_sxx"),
        y.fill_null(0).alias("_sy"),
        (x * y).fill_null(0).alias("_sxy"),
        _fixed(pl.col("est_sales"), _SALES_SCALE).fill_null(0).alias("_sales"),
        cents.is_not_null().cast(pl.Int8).alias("_np"),
        cents.fill_null(0).alias("_sp"),
        (cents * cents).fill_null(0).alias("_spp"),
        pl.when(rc_ok).then(rc).alias("_rc"),
        pl.when(rc_ok).then(x).cast(pl.Int32).alias("_rc_x"),
        rating.is_not_null().cast(pl.Int8).alias("_nr"),
        _fixed(rating, _RATING_SCALE).fill_null(0).cast(pl.Int32).alias("_sr"),
    ]


def _window_sums() -> tuple[WindowSum, ...]:
    """Window sums of the day columns (T-n+1 .. T) for the slopes, sales, prices and ratings."""
    specs: list[WindowSum] = []
    for n in sorted({*SLOPE_WINDOWS, *SALES_WINDOWS}):
        specs += [WindowSum(c, 1 - n, 0, f"{c}{n}") for c in ("_n", "_sy")]
    for n in SLOPE_WINDOWS:
        specs += [WindowSum(c, 1 - n, 0, f"{c}{n}") for c in ("_sx", "_sxx", "_sxy")]
    specs += [WindowSum("_sales", 1 - n, 0, f"_sales{n}") for n in SALES_WINDOWS]
    specs += [WindowSum(c, 1 - PRICE_WINDOW, 0, f"{c}{PRICE_WINDOW}") for c in ("_np", "_sp", "_spp")]
    specs += [WindowSum(c, 1 - RATING_WINDOW, 0, f"{c}{RATING_WINDOW}") for c in ("_nr", "_sr")]
    return tuple(specs)


# Sums and lags are taken at the output cells only (core/window_sum.py), medians too
# (core/window_median.py); the first review count of a window is computed over the whole grid.
_SUMS: tuple[WindowSum, ...] = (*_window_sums(), *history_features.SUMS)
_LAGS: tuple[Lag, ...] = (
    Lag("_rating", RATING_WINDOW, "_rating_before"),
    Lag("new_offer_count", OFFER_LAG, "_offers_before"),
    *[Lag("bsr_pctl", lag, f"_pctl_before{lag}") for lag in PCTL_LAGS],
    *history_features.LAGS,
)
_MEDIANS: tuple[WindowMedian, ...] = (
    WindowMedian("price", 1 - PRICE_WINDOW, 0, PRICE_MIN_DAYS, "_price_median"),
    *history_features.MEDIANS,
)


def _first_in_window() -> list[pl.Expr]:
    """The first review count at or after day T-n+1, searched at most n-1 days ahead (so never
    past T), with its day number: the earliest available point of each velocity window, on every
    grid cell (a block is crossed in its first rows only, which are never output)."""
    return [
        pl.col(c).fill_null(strategy="backward", limit=n - 1).shift(n - 1).alias(f"{c}_first{n}")
        for n in VELOCITY_WINDOWS
        for c in ("_rc", "_rc_x")
    ]


def _feature_columns() -> list[pl.Expr]:
    """Features of the output rows from their window columns."""
    exprs: list[pl.Expr] = []
    for n in SLOPE_WINDOWS:
        cnt, sx, sxx, sy, sxy = (
            pl.col(f"{c}{n}").cast(pl.Int64) for c in ("_n", "_sx", "_sxx", "_sy", "_sxy")
        )
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


# Outputs at most this share of the grid's cells (one target date: 1/31): sums and lags are
# gathered at the outputs (core/window_sum.py); above it (a backfill's 30-day date block: 1/2) they
# are rolled over every cell in one polars plan, which was then faster (7.8 s against 10.1 s for
# 100k ASINs x 30 of 60 days) and 0.4 GB lighter (the day columns are never all materialised).
GATHER_SHARE = 0.1


def _gathered(cells: pl.DataFrame, positions: pl.Series) -> pl.DataFrame:
    """The window columns at the output rows (``positions``, the ``_out`` cells) of the grid with
    its day columns: sums and lags gathered there, the rest filtered from whole-grid expressions."""
    return pl.concat(
        [
            cells.lazy().select(e.filter(pl.col("_out")) for e in _whole_grid()).collect(),
            window_sums(cells, positions, _SUMS),
            lags(cells, positions, _LAGS),
        ],
        how="horizontal",
    )


def _rolled(cells: pl.LazyFrame) -> pl.LazyFrame:
    """``_gathered`` as one plan of whole-grid expressions, each filtered to the ``_out`` rows as
    soon as it is computed (full-length copies of all of them at once would triple the peak memory
    of a 100k-ASIN partition)."""
    windows = (*_whole_grid(), *(s.rolled() for s in _SUMS), *(lag.shifted() for lag in _LAGS))
    return cells.select(e.filter(pl.col("_out")) for e in windows)


def _numeric_features(at_outputs: pl.LazyFrame, medians: pl.DataFrame) -> pl.LazyFrame:
    """The grid's features (``_NUMERIC_FEATURES``) of the output rows from their window columns."""
    return (
        pl.concat([at_outputs, medians.lazy()], how="horizontal")
        .with_columns(*_feature_columns(), *history_features.feature_columns())
        .select(*[c for c in FEATURE_COLUMNS if c in _NUMERIC_FEATURES])
    )


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` rebuilt through Arrow (zero-copy), which drops polars' column flags (sortedness).
    Without it, the gathered outputs of a few-row ASIN block gave review_velocity_14d 1 ulp off the
    one-shot value (x * (1 / d) instead of x / d, a scalar division polars 2.1 picks by flags we do
    not control; not isolated further); rebuilt, every cut and both strategies give the same bits
    (test_chunking, test_features)."""
    plain = pl.from_arrow(frame.to_arrow())
    assert isinstance(plain, pl.DataFrame)
    return plain


def _whole_grid() -> list[pl.Expr]:
    """Window columns computed over every grid cell, and the grid columns the features read."""
    return [*_first_in_window(), history_features.listing_change(), *map(pl.col, _PASS_THROUGH)]


def build_features(
    mart: pl.LazyFrame,
    keywords: pl.LazyFrame,
    target_dates: Sequence[date],
    *,
    lookback: int = 30,
    calibration: pl.DataFrame | None = None,
    percentiles: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """FEATURES_DAILY rows for every (site, T, asin) in the mart on a target date T.

    ``mart`` follows MART_TIMESERIES_DAILY (one row per key) and ``keywords`` FACT_KEYWORDS; only
    rows of [min(T) - lookback, max(T)] are read, so pass lazy scans and let the filter push down.
    ``lookback`` (days of history behind each row) must cover the longest window or lag (30).
    ``calibration`` (site, category_id, a, b) drives the BSR -> sales estimate; None = the
    defaults of core.sales. Several target dates give exactly the rows one call per date gives.
    Rows are ordered (site, asin, date), which for a single target date is key order.
    ``percentiles`` (site, date, asin, bsr_pctl: see ``percentile_frame``) is for a mart that holds
    a block of the ASINs only (core.chunking): the cross-sections were ranked over the whole site.
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
    pctl_dates = percentile_dates(targets)
    sites, asins = codes("sites"), codes("asins")
    # Blocks are numbered in (site, asin) order, so the grid - and every output row taken from it -
    # is ordered (site, asin, date): for one target date that is key order with no sort at all, and
    # a backfill needs no transposing gather.
    hist, blocks = _history(mart, cal, lo, hi, sites, asins)
    hist = _with_percentile(hist, pctl_dates, percentiles)
    n_blocks = blocks.count
    grid = build_grid(hist, span, _GRID_COLUMNS)

    # only rows present in the mart on a target date are output; everything else is window context
    is_output = pl.col("_row").is_not_null() & pl.col("x").is_in([(t - lo).days for t in targets])
    out = grid.lazy().filter(is_output).select("_row", "_pos").collect()
    labels = pl.DataFrame(
        [
            hist[c].gather(out["_row"])
            for c in ("site", "date", "asin", "category_id", *LISTING_COLUMNS, "listed_since")
        ]
    )
    del hist  # the grid and the labels hold all that is left to read; free the strings first

    # the two plans are independent: collected together they share the cores (the keyword match
    # is a quarter of a backfill's feature time)
    cells_plan = (
        grid.lazy()
        .with_columns(_day_inputs())
        # the output mask as a column: written inline, it was re-evaluated in each of the ~40
        # filters (CSE did not catch it), which doubled the window plan's time
        .with_columns(*_day_columns(), *history_features.day_columns(), _out=is_output)
    )
    keyword_plan = keyword_features(keywords, targets, lo, span, blocks)
    medians = window_medians(grid, out["_pos"], _MEDIANS)
    if out.height <= GATHER_SHARE * grid.height:
        cells, keyword = pl.collect_all([cells_plan, keyword_plan])
        at_outputs = _plain(_gathered(cells, out["_pos"]))
        del cells  # only output rows from here on
        windows = _numeric_features(at_outputs.lazy(), medians).collect()
        del at_outputs
    else:
        windows, keyword = pl.collect_all([_numeric_features(_rolled(cells_plan), medians), keyword_plan])
    del cells_plan, keyword_plan, grid, blocks  # the keyword rows are numbered: the mappings may go
    features = (
        pl.concat([labels, windows, at_positions(out["_pos"], keyword, n_blocks * span)], how="horizontal")
        .lazy()
        .with_columns(
            listing_quality_score(),
            # no ranked keyword that day = zero keywords in the top 10 / 50
            *[pl.col(f"kw_top{k}_count").fill_null(0) for k in TOP_RANKS],
            age_days=(pl.col("date") - pl.col("listed_since")).dt.total_days(),
        )
        .collect()
    )
    return FEATURES_DAILY.conform(features)
