"""Ingestion subcommands: the seed's pipelines/ingest_raw.py and etl_standardize.py, run as the same
Dagster assets as the UI over a (sites x date range), recorded in the instance."""

from __future__ import annotations

import argparse

from asin_platform.commands._args import add_range_args
from asin_platform.commands._runtime import run_assets_over_range
from asin_platform.settings import Settings


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch and standardise a date range."""
    keys = ["raw_payloads"] if args.raw_only else ["raw_payloads", "mart_timeseries_daily"]
    return run_assets_over_range(keys, args, settings)


def cmd_etl(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the mart from stored raw payloads (no API calls)."""
    return run_assets_over_range(["mart_timeseries_daily"], args, settings)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest-raw", help="fetch raw payloads and build the mart for a date range")
    add_range_args(p)
    p.add_argument("--raw-only", action="store_true", help="only raw_payloads, no mart")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("etl-standardize", help="rebuild the mart from stored raw payloads")
    add_range_args(p)
    p.set_defaults(func=cmd_etl)
