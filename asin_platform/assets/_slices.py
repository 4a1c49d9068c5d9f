"""Which (site, date span) slices a run owns, and the one way a partitioned asset writes them."""

from collections import defaultdict
from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl

from asin_platform.partitions import contiguous_segments, partitions_of_context
from asin_platform.resources.warehouse import Warehouse


def site_segments(context: dg.AssetExecutionContext) -> list[tuple[str, date, date]]:
    """(site, first day, last day) for every contiguous slice of the run's partitions."""
    by_site: dict[str, list[date]] = defaultdict(list)
    for part in partitions_of_context(context):
        by_site[part.site].append(part.day)
    return [(site, a, b) for site, days in sorted(by_site.items()) for a, b in contiguous_segments(days)]


def write_segments(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    table: str,
    build: Callable[[str, date, date], pl.DataFrame],
) -> pl.DataFrame:
    """Build the rows of every contiguous (site, days) slice of the run and replace that slice of
    ``table`` (one transaction each: a re-run replaces a slice whole, never half). Returns every row
    written, for the partitions' metadata."""
    written = []
    for site, start, end in site_segments(context):
        frame = build(site, start, end)
        rows = warehouse.replace_slices(table, frame, sites=[site], start=start, end=end)
        context.log.info(f"{table} {site} {start}..{end}: {rows} rows")
        written.append(frame)
    return pl.concat(written, how="vertical")


def ranged_asset(
    compute: Callable[..., dg.MaterializeResult],
    partitions_def: dg.PartitionsDefinition,
    *,
    deps: list[str],
    group_name: str,
    kinds: set[str],
    layer: str,
) -> dg.AssetsDefinition:
    """A (date, site)-partitioned asset downstream of the mart, named after ``compute``: one run per
    site over a whole date range, because a run costs seconds and a partition inside a ranged run
    milliseconds (many days are one polars plan and one slice write per contiguous segment)."""
    return dg.asset(
        name=compute.__name__,
        partitions_def=partitions_def,
        deps=deps,
        group_name=group_name,
        kinds=kinds,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags={"layer": layer},
    )(compute)
