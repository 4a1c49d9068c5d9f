"""Checks on the ingest and mart layer: coverage, duplicates, schema, quarantine rate, freshness.

Every check reads back what the warehouse holds for the run's partitions (one partition, or a
whole range in a backfill run), so it verifies the data as stored, not the asset's intent.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from asin_platform.core.parsers import parse_payloads
from asin_platform.partitions import DateSite, date_site_partitions, parse_partition_key
from asin_platform.resources.warehouse import Warehouse
from asin_platform.schemas import TABLES, validate
from asin_platform.settings import get_settings

UNIVERSE_ENDPOINTS = ("/v1/sites/{site}/asins", "/product")


def _parts(context: dg.AssetCheckExecutionContext) -> list[DateSite]:
    return sorted((parse_partition_key(k) for k in context.partition_keys), key=lambda p: (p.site, p.day))


def _read_slices(warehouse: Warehouse, table: str, parts: list[DateSite], **kwargs) -> pl.DataFrame:
    """Rows of ``table`` for the given partitions (one read per site over its date span)."""
    by_site: dict[str, list[date]] = defaultdict(list)
    for p in parts:
        by_site[p.site].append(p.day)
    frames = []
    for site, days in by_site.items():
        frame = warehouse.read(table, sites=[site], start=min(days), end=max(days), **kwargs)
        frames.append(frame.filter(pl.col("date").is_in(days)))
    return pl.concat(frames) if frames else TABLES[table].empty()


def tracked_asins(warehouse: Warehouse, parts: list[DateSite]) -> pl.DataFrame:
    """(site, date, tracked) from the stored universe payloads of each partition."""
    raw = _read_slices(warehouse, "raw_payloads", parts)
    universe = parse_payloads(raw.filter(pl.col("endpoint").is_in(UNIVERSE_ENDPOINTS))).universe
    return universe.unique(["site", "date", "asin"]).group_by("site", "date").agg(pl.len().alias("tracked"))


def coverage_frame(warehouse: Warehouse, parts: list[DateSite]) -> pl.DataFrame:
    """Per partition: tracked ASINs, mart rows that carry a BSR or a price, coverage ratio."""
    keys = pl.DataFrame(
        {"site": [p.site for p in parts], "date": [p.day for p in parts]},
        schema={"site": pl.Utf8, "date": pl.Date},
    )
    mart = _read_slices(
        warehouse, "mart_timeseries_daily", parts, columns=["site", "date", "asin", "bsr_root", "price"]
    )
    observed = (
        mart.filter(pl.col("bsr_root").is_not_null() | pl.col("price").is_not_null())
        .group_by("site", "date")
        .agg(pl.len().alias("observed"))
    )
    return (
        keys.join(tracked_asins(warehouse, parts), on=["site", "date"], how="left")
        .join(observed, on=["site", "date"], how="left")
        .with_columns(pl.col("tracked", "observed").fill_null(0))
        .with_columns(
            coverage=pl.when(pl.col("tracked") > 0)
            .then(pl.col("observed") / pl.col("tracked"))
            .otherwise(0.0)
        )
        .sort("site", "date")
    )


def _md(frame: pl.DataFrame, limit: int = 40) -> dg.MetadataValue:
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns)
    rows = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in shown.iter_rows()
    ]
    more = [f"\n_{frame.height - limit} more rows_"] if frame.height > limit else []
    return dg.MetadataValue.md("\n".join([header, *rows, *more]))


@dg.asset_check(
    asset="mart_timeseries_daily",
    partitions_def=date_site_partitions,
    blocking=True,
    description="Mart rows with a BSR or price / tracked ASINs >= thresholds.coverage_min (blocking).",
)
def mart_coverage(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    threshold = get_settings().thresholds.coverage_min
    frame = coverage_frame(warehouse, _parts(context))
    worst = frame.sort("coverage").row(0, named=True)
    low = frame.filter(pl.col("coverage") < threshold)
    return dg.AssetCheckResult(
        passed=low.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"coverage below {threshold:.0%} in {low.height} of {frame.height} partition(s)"
            if low.height
            else f"coverage >= {threshold:.0%} in all {frame.height} partition(s)"
        ),
        metadata={
            "threshold": threshold,
            "min_coverage": float(worst["coverage"]),
            "worst_partition": f"{worst['date']}|{worst['site']}",
            "tracked_asins": int(frame["tracked"].sum()),
            "observed_rows": int(frame["observed"].sum()),
            "by_partition": _md(frame),
        },
    )


@dg.asset_check(
    asset="mart_timeseries_daily",
    partitions_def=date_site_partitions,
    blocking=True,
    description="Exactly one row per key in the mart and the fact tables.",
)
def mart_no_duplicate_keys(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    parts = _parts(context)
    found: dict[str, int] = {}
    examples: list[str] = []
    for name in ("mart_timeseries_daily", "fact_reviews", "fact_keywords"):
        key = list(TABLES[name].key)
        dups = (
            _read_slices(warehouse, name, parts, columns=sorted({"site", "date", *key}))
            .group_by(key)
            .agg(pl.len().alias("n"))
            .filter(pl.col("n") > 1)
        )
        found[name] = dups.height
        examples += [f"{name}: {row}" for row in dups.head(3).iter_rows()]
    return dg.AssetCheckResult(
        passed=not any(found.values()),
        metadata={**{f"duplicate_keys_{k}": v for k, v in found.items()}, "examples": "\n".join(examples)},
    )


@dg.asset_check(
    asset="mart_timeseries_daily",
    partitions_def=date_site_partitions,
    blocking=True,
    description="The stored rows conform to the pandera models of schemas.py.",
)
def mart_schema_conformance(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    parts = _parts(context)
    errors: dict[str, list[str]] = {}
    for name in ("mart_timeseries_daily", "fact_reviews", "fact_keywords"):
        problems = validate(name, _read_slices(warehouse, name, parts))
        if problems:
            errors[name] = problems
    return dg.AssetCheckResult(
        passed=not errors,
        metadata={
            "tables_checked": 3,
            "errors": dg.MetadataValue.json({k: v[:20] for k, v in errors.items()}),
        },
    )


@dg.asset_check(
    asset="mart_timeseries_daily",
    partitions_def=date_site_partitions,
    description="Quarantined records / (mart rows + quarantined) under thresholds.quarantine_rate_max (WARN).",
)
def mart_quarantine_rate(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    threshold = get_settings().thresholds.quarantine_rate_max
    parts = _parts(context)
    quarantined = _read_slices(warehouse, "quarantine", parts, columns=["site", "date", "reason"])
    mart_rows = _read_slices(warehouse, "mart_timeseries_daily", parts, columns=["site", "date"]).height
    rate = quarantined.height / max(1, mart_rows + quarantined.height)
    by_reason = quarantined.group_by("reason").agg(pl.len().alias("n")).sort("n", descending=True)
    return dg.AssetCheckResult(
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"quarantine rate {rate:.2%} (threshold {threshold:.2%})",
        metadata={
            "quarantine_rate": rate,
            "threshold": threshold,
            "quarantined": quarantined.height,
            "mart_rows": mart_rows,
            "by_reason": dg.MetadataValue.json(dict(by_reason.iter_rows())),
        },
    )


@dg.asset_check(
    asset="raw_payloads",
    partitions_def=date_site_partitions,
    description="Every request of the partition got a usable response (WARN: failed batches mean missing ASINs).",
)
def raw_payloads_complete(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    raw = _read_slices(
        warehouse, "raw_payloads", _parts(context), columns=["site", "date", "endpoint", "status", "error"]
    )
    failed = raw.filter(pl.col("error").is_not_null())
    by_endpoint = failed.group_by("endpoint").agg(pl.len().alias("n"))
    return dg.AssetCheckResult(
        passed=failed.is_empty() and raw.height > 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{failed.height} of {raw.height} requests failed for good",
        metadata={
            "payloads": raw.height,
            "failed_requests": failed.height,
            "failed_by_endpoint": dg.MetadataValue.json(dict(by_endpoint.iter_rows())),
        },
    )


@dg.asset_check(
    asset="mart_timeseries_daily",
    description="The newest mart day is recent: no more than thresholds.freshness_hours behind the "
    "end of yesterday (UTC), for every site (WARN).",
)
def mart_freshness(warehouse: Warehouse) -> dg.AssetCheckResult:
    settings = get_settings()
    latest = warehouse.query("SELECT site, max(date) AS latest FROM mart_timeseries_daily GROUP BY site")
    latest_by_site = {row[0]: row[1] for row in latest.iter_rows()}
    now = datetime.now(UTC)
    lag_hours = {
        site: (
            (
                now - datetime.combine(latest_by_site[site] + timedelta(days=1), datetime.min.time(), UTC)
            ).total_seconds()
            / 3600
            if latest_by_site.get(site)
            else None
        )
        for site in settings.sites
    }
    stale = {s: h for s, h in lag_hours.items() if h is None or h > settings.thresholds.freshness_hours}
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=("stale sites: " + ", ".join(sorted(stale))) if stale else "all sites fresh",
        metadata={
            "latest_date_by_site": dg.MetadataValue.json({s: str(d) for s, d in latest_by_site.items()}),
            "freshness_hours": settings.thresholds.freshness_hours,
        },
    )


INGEST_CHECKS = [
    mart_coverage,
    mart_no_duplicate_keys,
    mart_schema_conformance,
    mart_quarantine_rate,
    raw_payloads_complete,
    mart_freshness,
]
