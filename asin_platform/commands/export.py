"""``asin-platform export-table``: a warehouse table or view (or a slice of it) to Parquet, e.g. the
mart for ``build-labels``. Works on both backends outside a run (the URL is resolved here)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asin_platform.commands._args import add_range_args, check_sites, check_start_end
from asin_platform.commands._runtime import cli_warehouse, warehouse_errors
from asin_platform.errors import UserError
from asin_platform.settings import Settings

# The dashboard / feature-store views of the migrations (sql/*/00*_*.sql), readable like tables,
# with the columns that order their rows.
VIEWS = {
    "vw_features_latest": "site, date, asin",
    "vw_top_candidates_daily": "site, date, rank",
    "vw_pred_rank_daily": "site, date, rank_in_site, asin",
}


def _view_filter(args: argparse.Namespace, sites: list[str] | None) -> tuple[str, list[object]]:
    clauses, params = [], []
    if sites is not None:
        clauses.append(f"site IN ({', '.join('?' for _ in sites)})")
        params.extend(sites)
    if args.start is not None:
        clauses.append("date >= ?")
        params.append(args.start)
    if args.end is not None:
        clauses.append("date <= ?")
        params.append(args.end)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _all_tables() -> dict:
    # The model layer's tables register themselves when their core module is imported.
    from asin_platform.core import labels, metrics, predict  # noqa: F401
    from asin_platform.schemas import TABLES

    return TABLES


def cmd_export_table(args: argparse.Namespace, settings: Settings) -> int:
    TABLES = _all_tables()
    known = [*sorted(TABLES), *VIEWS]
    if args.table not in known:
        raise UserError(f"unknown table {args.table!r}: the tables and views are {', '.join(known)}")
    check_start_end(args.start, args.end)
    sites = check_sites(args.sites, settings) if args.sites else None
    if args.table in TABLES:
        columns = TABLES[args.table].schema
        if ((args.start or args.end) and "date" not in columns) or (sites and "site" not in columns):
            raise UserError(f"{args.table} has no date/site columns: export it without --start/--end/--sites")
    warehouse = cli_warehouse(settings)
    with warehouse_errors():
        if args.table in TABLES:
            frame = warehouse.read(args.table, sites=sites, start=args.start, end=args.end)
        else:
            where, params = _view_filter(args, sites)
            frame = warehouse.query(
                f'SELECT * FROM "{args.table}"{where} ORDER BY {VIEWS[args.table]}', params
            )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.output)
    print(f"{frame.height:,} rows of {args.table} ({warehouse.describe()}) -> {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-table", help="write a warehouse table or view (or a slice of it) to Parquet")
    p.add_argument(
        "--table", required=True, help="a table (e.g. mart_timeseries_daily, features_daily) or a view "
        f"({', '.join(VIEWS)})",
    )  # fmt: skip
    p.add_argument("--output", required=True, help="Parquet file to write")
    add_range_args(p, default_start="the oldest row", default_end="the newest row")
    p.set_defaults(func=cmd_export_table)
    p.description = "Without --start/--end/--sites the whole table is exported."
