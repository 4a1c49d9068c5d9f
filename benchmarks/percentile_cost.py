"""What the BSR percentile costs on a 1M-ASIN day, as features_daily ranks it and as weekly means would.

docs/model_quality.md (*Weekly means of the BSR percentile*) found that the 7-day mean of the daily
percentile and its changes against the weeks ending 7 and 21 days earlier help the ranker; they read
the percentile on 22 days of each target (T-30, T-27 .. T-21, T-13 .. T) where features_daily reads
3 (T, T-7, T-30). A 1M-ASIN partition runs in ASIN blocks (core/chunking.py), so the percentile is
ranked once over the whole site and handed to each block. Timed here, on the scale benchmark's data
(run ``benchmarks/scale.py --asins 1000000 --range-days 0 --backfill-days --backends`` first):

* ``exact, 3 days``: ``core.features.percentile_frame`` of the last day, as the chunked partition
  calls it today (site, date, asin, bsr_pctl of 3 days);
* ``exact, 22 days``: the same on the 22 days the weekly means read;
* ``bins, 22 days``: counts per (site, date, category, BSR bin) of the 22 days (bins of 1/64 octave:
  BSRs within 1.1% tie) with each bin's count of better-ranked products: the table a block would look
  its rows up in (a few hundred thousand rows whatever the site's size; counts add over blocks).

    PYTHONPATH=. .venv/bin/python benchmarks/percentile_cost.py [--repeat 3]

Prints one markdown row per case: median wall seconds, rows produced.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asin_platform.core.features import percentile_frame  # noqa: E402

BINS_PER_OCTAVE = 64


def weekly_mean_days(t: date) -> list[date]:
    """T-30, T-27 .. T-21 and T-13 .. T: the days the weekly means and the single-day changes read."""
    offsets = [*range(0, 14), *range(21, 28), 30]
    return [t - timedelta(days=k) for k in offsets]


def exact(mart: pl.LazyFrame, days: list[date]) -> pl.DataFrame:
    from asin_platform.core.features import bsr_percentile

    return (
        mart.filter(pl.col("date").is_in(days))
        .select("site", "date", "asin", "category_id", "bsr_root")
        .select("site", "date", "asin", bsr_percentile())
        .collect()
    )


def binned_counts(mart: pl.LazyFrame, days: list[date]) -> pl.DataFrame:
    group = ["site", "date", "category_id"]
    return (
        mart.filter(
            pl.col("date").is_in(days) & (pl.col("bsr_root") > 0) & pl.col("category_id").is_not_null()
        )
        .select(
            *group, bin=(pl.col("bsr_root").cast(pl.Float64).log(2) * BINS_PER_OCTAVE).floor().cast(pl.Int32)
        )
        .group_by(*group, "bin")
        .len()
        .sort(*group, "bin")
        .with_columns(
            better=(pl.col("len").cum_sum() - pl.col("len")).over(group),
            n=pl.col("len").sum().over(group),
        )
        .collect(engine="streaming")
    )


def timed(fn: Callable[[], pl.DataFrame], repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn().height
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="/tmp/asin_platform_scale/days_1000000_31", help="scale.py's day files"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    mart = pl.scan_parquet(Path(args.data) / "mart" / "*.parquet")
    t = mart.select(pl.col("date").max()).collect().item()
    window = mart.filter(pl.col("date").is_between(t - timedelta(days=30), t))
    days = weekly_mean_days(t)
    cases: dict[str, Callable[[], pl.DataFrame]] = {
        "exact, 3 days (percentile_frame, today)": lambda: percentile_frame(window, [t]),
        "exact, 22 days": lambda: exact(window, days),
        f"bins of 1/{BINS_PER_OCTAVE} octave, 22 days (counts table)": lambda: binned_counts(window, days),
    }
    print("| case | median wall s | rows |\n|---|---|---|")
    for name, fn in cases.items():
        seconds, rows = timed(fn, args.repeat)
        print(f"| {name} | {seconds:.2f} | {rows:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
