"""Ingestion subcommands: the seed's pipelines/ingest_raw.py and etl_standardize.py, run as the same
Dagster assets as the UI over a (sites x date range), recorded in the instance."""

from __future__ import annotations

import argparse
import sys

from asin_platform.commands._args import add_range_args, range_request
from asin_platform.commands._runtime import cli_warehouse, run_assets_over_range, warehouse_errors
from asin_platform.settings import Settings


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch and standardise a date range."""
    keys = ["raw_payloads"] if args.raw_only else ["raw_payloads", "mart_timeseries_daily"]
    return max(run_assets_over_range(keys, args, settings), report_failed_partitions(args, settings))


def cmd_etl(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the mart from stored raw payloads (no API calls)."""
    return max(
        run_assets_over_range(["mart_timeseries_daily"], args, settings),
        report_failed_partitions(args, settings),
    )


def report_failed_partitions(args: argparse.Namespace, settings: Settings) -> int:
    """Exit code 1 when a partition of the range holds requests failed for good: its data is
    incomplete however the runs ended, so stderr names the partitions and endpoints and the
    commands that re-fetch just those."""
    from asin_platform.runner import failed_partitions, rerun_commands

    request = range_request(args, settings)
    with warehouse_errors():
        failed = failed_partitions(cli_warehouse(settings), request.sites, request.start, request.end)
    if not failed:
        return 0
    print(
        f"asin-platform: {len(failed)} partition(s) incomplete, requests failed for good: "
        + ", ".join(part.describe() for part in failed),
        file=sys.stderr,
    )
    for command in rerun_commands(failed):
        print(f"asin-platform: re-fetch them with: {command}", file=sys.stderr)
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest-raw", help="fetch raw payloads and build the mart for a date range")
    add_range_args(p)
    p.add_argument("--raw-only", action="store_true", help="only raw_payloads, no mart")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("etl-standardize", help="rebuild the mart from stored raw payloads")
    add_range_args(p)
    p.set_defaults(func=cmd_etl)
