"""Feature-layer subcommands: the seed's pipelines/features_build.py and score_baseline.py.

Two modes each: over the warehouse (runs the Dagster assets for a date range, recorded in the
instance) or over Parquet files (calls the same core functions; what `build-labels` consumes).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import polars as pl

from asin_platform.commands._args import add_range_args, check_start_end
from asin_platform.commands._runtime import run_assets_over_range
from asin_platform.settings import Settings


def cmd_features_build(args: argparse.Namespace, settings: Settings) -> int:
    if args.mart is None:
        return run_assets_over_range(["features_daily"], args, settings)
    check_start_end(args.start, args.end)
    from asin_platform.core.features import build_features
    from asin_platform.core.sales import default_calibration
    from asin_platform.schemas import FACT_KEYWORDS
    from asin_platform.simulator.catalog import SALES_PRIOR

    mart = pl.scan_parquet(args.mart)
    keywords = pl.scan_parquet(args.keywords) if args.keywords else FACT_KEYWORDS.empty().lazy()
    dates = mart.select(pl.col("date").unique()).collect()["date"]
    first, last = dates.min(), dates.max()
    # every day with a full lookback behind it (or all days with --all-dates)
    start = first if args.all_dates else min(last, first + timedelta(days=settings.windows.lookback))
    targets = [d for d in dates.sort().to_list() if d >= (args.start or start) and d <= (args.end or last)]
    frame = build_features(
        mart,
        keywords,
        targets,
        lookback=settings.windows.lookback,
        calibration=default_calibration(settings.sites, SALES_PRIOR),
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.output)
    print(f"{frame.height:,} feature rows for {len(targets)} day(s) -> {args.output}")
    return 0


def cmd_score_baseline(args: argparse.Namespace, settings: Settings) -> int:
    if args.features is None:
        return run_assets_over_range(["score_baseline_daily"], args, settings)
    from asin_platform.core.score import score_baseline

    frame = score_baseline(
        pl.scan_parquet(args.features), settings.score_weights, min_category_size=settings.min_category_size
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.output)
    print(f"{frame.height:,} scores -> {args.output}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    return run_assets_over_range(["top_candidates"], args, settings)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features-build",
        help="build features_daily (warehouse via Dagster, or --mart/--keywords Parquet -> --output)",
    )
    add_range_args(p)
    p.add_argument("--mart", help="mart_timeseries_daily Parquet (file mode)")
    p.add_argument("--keywords", help="fact_keywords Parquet (file mode, optional)")
    p.add_argument("--output", default="artifacts/features_daily.parquet", help="file mode output")
    p.add_argument("--all-dates", action="store_true", help="file mode: also days without a full lookback")
    p.set_defaults(func=cmd_features_build)

    p = sub.add_parser(
        "score-baseline",
        help="compute the baseline Explosive Score (warehouse via Dagster, or --features Parquet -> --output)",
    )
    add_range_args(p)
    p.add_argument("--features", help="features_daily Parquet (file mode)")
    p.add_argument("--output", default="artifacts/score_baseline_daily.parquet", help="file mode output")
    p.set_defaults(func=cmd_score_baseline)

    p = sub.add_parser(
        "export-top-candidates",
        help="write exports/<site>/top_candidates_YYYYMMDD.csv/.parquet for a date range",
    )
    add_range_args(p)
    p.set_defaults(func=cmd_export)
