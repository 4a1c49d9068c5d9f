"""Bounded-memory features and score: any range, any site size, in chunks (pure polars).

Peak memory of ``build_features`` grows with the grid it lays out: (ASINs) x (target days +
lookback) cells, ~0.3-0.6 KB each at the peak. A 90-day backfill of 100k ASINs is a 12M-cell grid
(7.5 GB), one 1M-ASIN partition a 31M-cell one. So a range is cut into chunks of at most
``max_cells`` cells, each computed and handed back on its own:

* **date blocks**: consecutive target days, as many as fit beside the lookback. A block needs
  nothing from the others: ``build_features`` of several dates equals one call per date, bit for
  bit (integer window sums), so any cut gives the same rows;
* **ASIN blocks**, when even one day of the whole site does not fit: contiguous runs of the sorted
  (site, asin) pairs, so block outputs concatenate in (site, asin) order. Every feature is a
  function of one ASIN's own rows except the BSR percentile, a cross-section of the whole
  (site, date, category): it is ranked once per date block over every ASIN (3 days x 3 small
  columns, see ``percentile_frame``) and handed to each ASIN block.

Inputs are ``pl.LazyFrame``s and each chunk filters them (date range, then site + asin range), so
a source that pushes predicates down (parquet / Arrow scans, an IO plugin over the warehouse)
reads only the chunk's rows. The score needs the whole (site, date) cross-section (median / MAD
per category over the day) and nothing from another day: it is chunked by date blocks of whole
days (``iter_scores``); a 1M-ASIN day is 1M rows, small beside its 31M-row feature window.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from asin_platform.core.features import LONGEST_REACH, build_features, percentile_frame
from asin_platform.schemas import FEATURES_DAILY, SCORE_BASELINE_DAILY

# Peak bytes per grid cell of build_features, inputs (a lazy parquet scan's chunk) and the chunk's
# output included: measured 325 (1.30 GB peak for 4M-cell chunks of a 100k-ASIN, 90-day backfill,
# interpreter included), rounded up so a budget is a ceiling, not a hope.
BYTES_PER_CELL = 400
MIN_CELLS = 200_000  # below this the per-chunk overhead (plans, percentile) dominates
# ~2.4 GB: a 100k-ASIN site in date blocks of 30 days (each re-reads its 30-day lookback, so a
# 90-day range costs 1.5x the cells of one call; smaller blocks cost more, see docs/scaling.md)
MAX_DEFAULT_CELLS = 6_000_000
# ASIN blocks computed at once (see iter_features)
ASIN_BLOCK_WORKERS = 2


def default_max_cells(available_bytes: int | None = None) -> int:
    """A quarter of the memory available now, in grid cells, within [MIN_CELLS, MAX_DEFAULT_CELLS].

    A quarter: the run shares its machine (other runs, the daemon, the warehouse's own cache) and
    the chunk's output waits beside the next chunk while it is written."""
    if available_bytes is None:
        available_bytes = _available_memory()
    return max(MIN_CELLS, min(MAX_DEFAULT_CELLS, available_bytes // 4 // BYTES_PER_CELL))


def _available_memory() -> int:
    """MemAvailable from /proc/meminfo (Linux); else physical memory via sysconf; else 8 GB."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


@dataclass(frozen=True)
class AsinBlock:
    """The pairs (site, asin) with ``first <= asin <= last`` of one site."""

    site: str
    first: str
    last: str

    def predicate(self) -> pl.Expr:
        return (pl.col("site") == pl.lit(self.site)) & pl.col("asin").is_between(
            pl.lit(self.first), pl.lit(self.last)
        )


def date_blocks(targets: Sequence[date], days: int) -> list[list[date]]:
    """Sorted distinct ``targets`` cut into runs spanning at most ``days`` calendar days."""
    if days < 1:
        raise ValueError(f"a date block spans at least 1 day, not {days}")
    blocks: list[list[date]] = []
    for t in sorted(set(targets)):
        if blocks and (t - blocks[-1][0]).days < days:
            blocks[-1].append(t)
        else:
            blocks.append([t])
    return blocks


def asin_blocks(pairs: pl.DataFrame, size: int) -> list[AsinBlock]:
    """``pairs`` (site, asin; distinct) cut into blocks of at most ``size`` ASINs of one site, in
    (site, asin) order."""
    if size < 1:
        raise ValueError(f"an ASIN block holds at least 1 ASIN, not {size}")
    ordered = pairs.sort("site", "asin").with_columns(_block=(pl.int_range(pl.len()).over("site") // size))
    bounds = ordered.group_by("site", "_block", maintain_order=True).agg(
        first=pl.col("asin").first(), last=pl.col("asin").last()
    )
    return [AsinBlock(r["site"], r["first"], r["last"]) for r in bounds.iter_rows(named=True)]


@dataclass(frozen=True)
class ChunkPlan:
    """How a range is cut: target days per date block and ASINs per block (None = all)."""

    days: int
    asins: int | None


def plan_chunks(n_asins: int, span_days: int, lookback: int, max_cells: int) -> ChunkPlan:
    """The largest chunks of at most ``max_cells`` grid cells for ``n_asins`` (site, asin) pairs.

    A date block of d days lays out n x (d + lookback) cells; when one day of every ASIN is already
    too many, a day is cut into ASIN blocks of max_cells / (1 + lookback) instead."""
    if max_cells < 1:
        raise ValueError(f"max_cells must be positive, not {max_cells}")
    per_day_and_lookback = max(n_asins, 1) * (1 + lookback)
    if per_day_and_lookback <= max_cells:
        days = 1 + (max_cells - per_day_and_lookback) // max(n_asins, 1)
        return ChunkPlan(days=max(1, min(days, span_days)), asins=None)
    return ChunkPlan(days=1, asins=max(1, max_cells // (1 + lookback)))


def _pairs(mart: pl.LazyFrame, targets: list[date]) -> pl.DataFrame:
    """The (site, asin) pairs with a mart row on a target day: only they get output rows, so only
    they need blocks (reading the target days, not the whole window: 1M rows, not 31M)."""
    return (
        mart.filter(pl.col("date").is_in(targets)).select("site", "asin").unique().collect(engine="streaming")
    )


def iter_features(
    mart: pl.LazyFrame,
    keywords: pl.LazyFrame,
    target_dates: Sequence[date],
    *,
    lookback: int = 30,
    calibration: pl.DataFrame | None = None,
    max_cells: int | None = None,
    plan: ChunkPlan | None = None,
) -> Iterator[pl.DataFrame]:
    """``build_features`` of ``target_dates`` in chunks of at most ``max_cells`` grid cells
    (default ``default_max_cells()``), each a FEATURES_DAILY frame of whole target days (every ASIN
    of a date block, its ASIN blocks concatenated), in date order. Together they are exactly the
    rows of one ``build_features`` call: per date block in (site, asin, date) order.

    ``plan`` fixes the cut instead (tests, benchmarks)."""
    targets = sorted(set(target_dates))
    if not targets:
        return
    if lookback < LONGEST_REACH:  # checked here too: a generator would only fail at first use
        raise ValueError(
            f"lookback={lookback} is shorter than the longest feature reach ({LONGEST_REACH} days)"
        )
    pairs: pl.DataFrame | None = None
    if plan is None:
        pairs = _pairs(mart, targets)
        span = (targets[-1] - targets[0]).days + 1
        plan = plan_chunks(pairs.height, span, lookback, max_cells or default_max_cells())
    for block in date_blocks(targets, plan.days):
        lo = block[0] - timedelta(days=lookback)
        window = mart.filter(pl.col("date").is_between(lo, block[-1]))
        kw_window = keywords.filter(pl.col("date").is_between(lo, block[-1]))
        if plan.asins is None:
            yield build_features(window, kw_window, block, lookback=lookback, calibration=calibration)
            continue
        if pairs is None:
            pairs = _pairs(mart, targets)
        percentiles = percentile_frame(window, block)

        def one(
            ab: AsinBlock,
            block: list[date] = block,
            window: pl.LazyFrame = window,
            kw_window: pl.LazyFrame = kw_window,
            percentiles: pl.DataFrame = percentiles,
        ) -> pl.DataFrame:
            return build_features(
                window.filter(ab.predicate()),
                kw_window.filter(ab.predicate()),
                block,
                lookback=lookback,
                calibration=calibration,
                percentiles=percentiles.filter(ab.predicate()),
            )

        # Two ASIN blocks at a time, each half the budget (so the pair stays within it): one
        # build_features keeps ~1 core busy (measured: CPU s = wall s on an idle 2-core machine),
        # and polars releases the GIL while it computes. Results come back in block order.
        blocks = asin_blocks(pairs, max(1, plan.asins // ASIN_BLOCK_WORKERS))
        with ThreadPoolExecutor(max_workers=ASIN_BLOCK_WORKERS) as pool:
            parts = list(pool.map(one, blocks))
        yield pl.concat(parts) if parts else FEATURES_DAILY.empty()


def build_features_chunked(
    mart: pl.LazyFrame,
    keywords: pl.LazyFrame,
    target_dates: Sequence[date],
    **kwargs: object,
) -> pl.DataFrame:
    """All chunks of ``iter_features`` in one frame (bounds the working set, not the output):
    for callers that keep the result anyway, e.g. one large partition."""
    chunks = list(iter_features(mart, keywords, target_dates, **kwargs))  # type: ignore[arg-type]
    return pl.concat(chunks) if chunks else FEATURES_DAILY.empty()


def iter_scores(
    features: pl.LazyFrame, target_dates: Sequence[date], days: int, **score_kwargs: object
) -> Iterator[pl.DataFrame]:
    """``score_baseline`` per block of ``days`` whole target days of ``features`` (z-scores are per
    site x date x category, so a whole day is the smallest exact cut), in date order."""
    from asin_platform.core.score import score_baseline

    for block in date_blocks(target_dates, days):
        day_rows = features.filter(pl.col("date").is_between(block[0], block[-1]))
        frame = score_baseline(day_rows, **score_kwargs)  # type: ignore[arg-type]
        yield frame if frame.height else SCORE_BASELINE_DAILY.empty()
