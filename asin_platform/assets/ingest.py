"""Ingestion layer: upstream API -> ``raw_payloads``."""

from typing import Any

import dagster as dg

from asin_platform.core.raw import payload_frame
from asin_platform.partitions import date_site_partitions, partitions_of_context
from asin_platform.resources.upstream import UpstreamClient
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import get_settings

_settings = get_settings()


@dg.asset(
    partitions_def=date_site_partitions,
    group_name="ingest",
    kinds={"python", "httpx"},
    # One shared pool for every run that calls the API: concurrent runs (backfills, retries)
    # cannot overrun the per-token quota together. Limit it with `dagster instance concurrency`.
    pool=_settings.api_pool,
    # Several days of one site per run: per-run overhead is seconds, a day's fetch is not.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
    tags={"layer": "raw"},
)
def raw_payloads(
    context: dg.AssetExecutionContext, upstream: UpstreamClient, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Every upstream response for the partition's site and day, stored as received.

    Fetches the tracked universe, product core, the day's timeseries, new reviews and keyword
    ranks (see docs/upstream_api.md), and keeps each body with its endpoint, params, status,
    fetch time and hash, so the mart can be rebuilt without calling the API again. Requests that
    fail after the retry budget are stored too (with the error), never dropped."""
    totals: dict[str, float] = {}
    per_partition: list[str] = []
    for part in partitions_of_context(context):
        context.log.info(f"fetching {part.site} {part.day} ...")
        fetched = upstream.fetch_day(part.site, part.day, progress=context.log.info)
        frame = payload_frame(
            fetched.responses,
            site=part.site,
            day=part.day,
            source=fetched.report.source,
            run_id=context.run_id,
        )
        written = warehouse.replace_slices(
            "raw_payloads", frame, sites=[part.site], start=part.day, end=part.day
        )
        report = fetched.report.as_metadata()
        for key, value in report.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
        missing = sum(len(v) for v in fetched.report.missing_asins.values())
        per_partition.append(
            f"| {part.day} | {part.site} | {fetched.report.tracked_asins} | {written} "
            f"| {missing} | {fetched.report.retries} | {fetched.report.failed_requests} |"
        )
        context.log.info(
            f"{part.site} {part.day}: {written} payloads, {fetched.report.tracked_asins} tracked ASINs, "
            f"{missing} missing, {fetched.report.retries} retries, {fetched.report.elapsed_s:.1f}s"
        )
    table = "\n".join(
        [
            "| date | site | tracked ASINs | payloads | missing ASINs | retries | failed requests |",
            "|---|---|---|---|---|---|---|",
            *per_partition,
        ]
    )
    metadata: dict[str, Any] = {
        "partitions": len(per_partition),
        "fetch_report": dg.MetadataValue.md(table),
        "warehouse": warehouse.describe(),
    }
    metadata.update({k: (int(v) if float(v).is_integer() else round(v, 3)) for k, v in totals.items()})
    return dg.MaterializeResult(metadata=metadata)
