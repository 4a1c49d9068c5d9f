"""Checks on the ingest and mart layer: coverage, duplicates, schema, quarantine rate, freshness.

Every partitioned check reads back what the warehouse holds for the run's partitions (one
partition, or a whole range in a ranged/backfill run) and reports one evaluation per partition
(checks/partitioned.py), so it verifies the data as stored, partition by partition.
"""

from collections import defaultdict
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from asin_platform.checks.partitioned import (
    Verdict,
    keys_frame,
    partition_check,
    shared_read,
    verdicts_from_frame,
)
from asin_platform.core.coverage import coverage_table
from asin_platform.core.freshness import freshness_verdict
from asin_platform.core.parsers import parse_payloads
from asin_platform.partitions import DateSite
from asin_platform.resources.warehouse import Warehouse
from asin_platform.schemas import TABLES, validate
from asin_platform.settings import Settings

UNIVERSE_ENDPOINTS = ("/v1/sites/{site}/asins", "/product")
MART_TABLES = ("mart_timeseries_daily", "fact_reviews", "fact_keywords")
KEYS = ["site", "date"]


def read_slices(warehouse: Warehouse, table: str, parts: list[DateSite], **kwargs) -> pl.DataFrame:
    """Rows of ``table`` for the given partitions (one read per site over its date span)."""
    by_site: dict[str, list[date]] = defaultdict(list)
    for p in parts:
        by_site[p.site].append(p.day)
    frames = []
    for site, days in by_site.items():
        frame = warehouse.read(table, sites=[site], start=min(days), end=max(days), **kwargs)
        frames.append(frame.filter(pl.col("date").is_in(days)))
    return pl.concat(frames) if frames else TABLES[table].empty()


def run_raw_payloads(warehouse: Warehouse, parts: list[DateSite]) -> pl.DataFrame:
    """Every raw payload row of the partitions, read once per run: mart_coverage and
    raw_payloads_complete both judge them (checks/partitioned.py ``shared_read``)."""
    return shared_read(("raw_payloads", tuple(parts)), lambda: read_slices(warehouse, "raw_payloads", parts))


def tracked_asins(raw: pl.DataFrame) -> pl.DataFrame:
    """(site, date, asin) from the stored universe payloads."""
    universe = parse_payloads(raw.filter(pl.col("endpoint").is_in(UNIVERSE_ENDPOINTS))).universe
    return universe.select(*KEYS, "asin").unique()


def md_table(frame: pl.DataFrame, limit: int = 40) -> dg.MetadataValue:
    shown = frame.head(limit)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns)
    rows = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in shown.iter_rows()
    ]
    more = [f"\n_{frame.height - limit} more rows_"] if frame.height > limit else []
    return dg.MetadataValue.md("\n".join([header, *rows, *more]))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def coverage_verdicts(warehouse: Warehouse, parts: list[DateSite], threshold: float) -> dict[str, Verdict]:
    raw = run_raw_payloads(warehouse, parts)
    mart = read_slices(
        warehouse,
        "mart_timeseries_daily",
        parts,
        columns=[
            *KEYS,
            "asin",
            "category_id",
            "bsr_root",
            "price",
            "title_length",
            "bullet_count",
            "image_count",
            "source",
        ],
    )
    frame = coverage_table(keys_frame(parts), tracked_asins(raw), mart, raw, min_coverage=threshold)

    def describe(row: dict) -> str:
        text = (
            f"core {_pct(row['core_coverage'])}, timeseries {_pct(row['timeseries_coverage'])} of "
            f"{row['tracked']} tracked ASINs (threshold {threshold:.0%})"
        )
        if row["failed_requests"]:
            text = (
                f"{row['failed_requests']} request(s) for {row['failed_asins']} ASINs failed for good "
                f"on {', '.join(row['failed_endpoints'])}; " + text
            )
        return text + ("" if row["tracked"] else "; no tracked ASINs stored")

    columns = [c for c in frame.columns if c not in ("site", "date", "passed")]
    verdicts = verdicts_from_frame(frame, describe, columns)
    for key, verdict in verdicts.items():
        metadata = dict(verdict.metadata)
        metadata["min_coverage"] = metadata.pop("coverage")
        metadata["threshold"] = threshold
        metadata["failed_endpoints"] = ", ".join(metadata["failed_endpoints"].value) or "none"
        metadata["reviews_keywords"] = (
            "from the source"
            if metadata["reviews_coverage"] is not None
            else "n/a: the source (Keepa) has none"
        )
        verdicts[key] = Verdict(verdict.passed, verdict.description, metadata)
    return verdicts


def duplicate_verdicts(warehouse: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
    frame = keys_frame(parts)
    for name in MART_TABLES:
        key = list(TABLES[name].key)
        dups = (
            read_slices(warehouse, name, parts, columns=sorted({*KEYS, *key}))
            .group_by(key)
            .agg(pl.len().alias("n"), *[pl.col(c).first() for c in KEYS if c not in key])
            .filter(pl.col("n") > 1)
            .group_by(KEYS)
            .agg(pl.len().cast(pl.Int64).alias(f"duplicate_keys_{name}"))
        )
        frame = frame.join(dups, on=KEYS, how="left").with_columns(
            pl.col(f"duplicate_keys_{name}").fill_null(0)
        )
    columns = [f"duplicate_keys_{n}" for n in MART_TABLES]
    frame = frame.with_columns(total=pl.sum_horizontal(columns)).with_columns(passed=pl.col("total") == 0)
    return verdicts_from_frame(
        frame, lambda row: f"{row['total']} duplicated key(s)" if row["total"] else "one row per key", columns
    )


def schema_verdicts(warehouse: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
    """Validate the run's rows at once; only when something fails, per partition to say where."""
    frames = {name: read_slices(warehouse, name, parts) for name in MART_TABLES}
    clean = not any(validate(name, frame) for name, frame in frames.items())
    verdicts = {}
    for part in parts:
        errors: dict[str, list[str]] = {}
        if not clean:
            for name, frame in frames.items():
                problems = validate(
                    name, frame.filter((pl.col("site") == part.site) & (pl.col("date") == part.day))
                )
                if problems:
                    errors[name] = problems[:20]
        verdicts[str(part.key)] = Verdict(
            passed=not errors,
            description=f"schema errors in {', '.join(sorted(errors))}" if errors else "rows conform",
            metadata={"tables_checked": len(MART_TABLES), "errors": dg.MetadataValue.json(errors)},
        )
    return verdicts


def quarantine_verdicts(warehouse: Warehouse, parts: list[DateSite], threshold: float) -> dict[str, Verdict]:
    quarantined = read_slices(warehouse, "quarantine", parts, columns=[*KEYS, "reason"])
    mart = read_slices(warehouse, "mart_timeseries_daily", parts, columns=KEYS)
    by_reason = (
        quarantined.group_by(*KEYS, "reason")
        .agg(pl.len().alias("n"))
        .sort("n", descending=True)
        .group_by(KEYS)
        .agg(pl.struct("reason", "n").alias("by_reason"))
    )
    frame = (
        keys_frame(parts)
        .join(
            quarantined.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("quarantined")), on=KEYS, how="left"
        )
        .join(mart.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("mart_rows")), on=KEYS, how="left")
        .join(by_reason, on=KEYS, how="left")
        .with_columns(pl.col("quarantined", "mart_rows").fill_null(0))
        .with_columns(
            quarantine_rate=pl.col("quarantined")
            / pl.max_horizontal(1, pl.col("quarantined") + pl.col("mart_rows"))
        )
        .with_columns(passed=pl.col("quarantine_rate") <= threshold, threshold=pl.lit(threshold))
    )
    return verdicts_from_frame(
        frame.with_columns(by_reason=pl.col("by_reason").fill_null([])),
        lambda row: f"quarantine rate {row['quarantine_rate']:.2%} (threshold {threshold:.2%})",
        ["quarantine_rate", "threshold", "quarantined", "mart_rows", "by_reason"],
    )


def raw_complete_verdicts(warehouse: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
    raw = run_raw_payloads(warehouse, parts).select(*KEYS, "endpoint", "status", "error")
    failed = raw.filter(pl.col("error").is_not_null())
    by_endpoint = (
        failed.group_by(*KEYS, "endpoint")
        .agg(pl.len().alias("n"))
        .group_by(KEYS)
        .agg(pl.struct("endpoint", "n").alias("failed_by_endpoint"))
    )
    frame = (
        keys_frame(parts)
        .join(raw.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("payloads")), on=KEYS, how="left")
        .join(
            failed.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("failed_requests")), on=KEYS, how="left"
        )
        .join(by_endpoint, on=KEYS, how="left")
        .with_columns(
            pl.col("payloads", "failed_requests").fill_null(0), pl.col("failed_by_endpoint").fill_null([])
        )
        .with_columns(passed=(pl.col("payloads") > 0) & (pl.col("failed_requests") == 0))
    )
    return verdicts_from_frame(
        frame,
        lambda row: f"{row['failed_requests']} of {row['payloads']} requests failed for good",
        ["payloads", "failed_requests", "failed_by_endpoint"],
    )


def build_checks(
    settings: Settings, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The ingest/mart checks; thresholds are taken from ``settings`` when the definitions are built."""
    thresholds = settings.thresholds
    sites = tuple(settings.sites)

    partitioned = [
        partition_check(
            lambda warehouse, parts: coverage_verdicts(warehouse, parts, thresholds.coverage_min),
            name="mart_coverage",
            asset="mart_timeseries_daily",
            partitions_def=partitions_def,
            blocking=True,
            description=f"Per partition: tracked ASINs with a product core row and with a timeseries row >= "
            f"{thresholds.coverage_min:.0%}, and no request failed for good (blocking). Listing, reviews and "
            "keywords coverage are reported (Keepa has no reviews or keywords: n/a).",
        ),
        partition_check(
            duplicate_verdicts,
            name="mart_no_duplicate_keys",
            asset="mart_timeseries_daily",
            partitions_def=partitions_def,
            blocking=True,
            description="Exactly one row per key in the mart and the fact tables.",
        ),
        partition_check(
            schema_verdicts,
            name="mart_schema_conformance",
            asset="mart_timeseries_daily",
            partitions_def=partitions_def,
            blocking=True,
            description="The stored rows conform to the pandera models of schemas.py.",
        ),
        partition_check(
            lambda warehouse, parts: quarantine_verdicts(warehouse, parts, thresholds.quarantine_rate_max),
            name="mart_quarantine_rate",
            asset="mart_timeseries_daily",
            partitions_def=partitions_def,
            description=f"Quarantined records / (mart rows + quarantined) <= {thresholds.quarantine_rate_max:.1%} (WARN).",
            severity=dg.AssetCheckSeverity.WARN,
        ),
        partition_check(
            raw_complete_verdicts,
            name="raw_payloads_complete",
            asset="raw_payloads",
            partitions_def=partitions_def,
            description="Every request of the partition got a usable response (WARN here; a request that "
            "failed for good also fails mart_coverage, which blocks).",
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]

    @dg.asset_check(
        asset="mart_timeseries_daily",
        description=f"The newest mart day of every site is at most {thresholds.freshness_hours:g} h behind "
        "the end of that day (UTC): judges the newest data, so backfilling an old range never fails it (WARN).",
    )
    def mart_freshness(warehouse: Warehouse) -> dg.AssetCheckResult:
        latest = warehouse.query("SELECT site, max(date) AS latest FROM mart_timeseries_daily GROUP BY site")
        verdict = freshness_verdict(
            {row[0]: row[1] for row in latest.iter_rows()},
            sites=sites,
            now=datetime.now(UTC),
            max_lag_hours=thresholds.freshness_hours,
        )
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={
                "latest_date_by_site": dg.MetadataValue.json(verdict.latest_by_site),
                "lag_hours_by_site": dg.MetadataValue.json(verdict.lag_hours_by_site),
                "freshness_hours": thresholds.freshness_hours,
            },
        )

    return [*partitioned, mart_freshness]
