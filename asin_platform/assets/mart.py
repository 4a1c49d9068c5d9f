"""Mart layer: ``raw_payloads`` -> typed, deduplicated, validated daily tables."""

from collections import defaultdict
from datetime import date, timedelta

import dagster as dg

from asin_platform.assets._slices import site_segments
from asin_platform.core.parsers import parse_payloads
from asin_platform.core.standardise import StandardiseResult, standardise
from asin_platform.partitions import date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings, get_settings

MART_TABLES = ("mart_timeseries_daily", "fact_reviews", "fact_keywords", "quarantine")

_specs = [
    dg.AssetSpec(
        "mart_timeseries_daily",
        deps=["raw_payloads"],
        description="One row per (site, date, ASIN): price, BSR (root and sub-category), rating, "
        "review count, offers, listing attributes and validity flags. Latest fetch wins on "
        "duplicates; out-of-range values are nulled, flagged and quarantined.",
        group_name="mart",
        kinds={"polars", "table"},
        tags={"layer": "mart"},
    ),
    dg.AssetSpec(
        "dim_asin",
        deps=["raw_payloads"],
        description="Product dimension keyed by (site, ASIN): title, brand, category path, first/last seen.",
        group_name="mart",
        kinds={"polars", "table"},
    ),
    dg.AssetSpec(
        "fact_reviews",
        deps=["raw_payloads"],
        description="Reviews by (site, ASIN, review id), partitioned by review date.",
        group_name="mart",
        kinds={"polars", "table"},
    ),
    dg.AssetSpec(
        "fact_keywords",
        deps=["raw_payloads"],
        description="Organic keyword ranks by (site, date, ASIN, keyword).",
        group_name="mart",
        kinds={"polars", "table"},
    ),
    dg.AssetSpec(
        "quarantine",
        deps=["raw_payloads"],
        description="Rejected payloads and records with the reason and source payload id. Nothing "
        "malformed is dropped silently: it lands here and is counted by the quarantine-rate check.",
        group_name="mart",
        kinds={"polars", "table"},
    ),
]


@dg.multi_asset(
    specs=_specs,
    partitions_def=date_site_partitions,
    can_subset=False,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def mart_timeseries_daily(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Parse, deduplicate, flag and validate the partition's raw payloads into the mart tables,
    replacing each (site, date) slice of every table in one transaction."""
    settings = get_settings()
    with warehouse.session():
        reports = _standardise_segments(context, warehouse, settings)

    mart_rows = sum(r.mart.height for *_, r in reports)
    quarantined = sum(r.report.quarantined_total for *_, r in reports)
    quality = "\n\n".join(f"**{s} {a}..{b}**\n\n{r.report.as_markdown()}" for s, a, b, r in reports)
    first_report = reports[0][3].report.as_metadata() if len(reports) == 1 else {}
    yield dg.MaterializeResult(
        asset_key="mart_timeseries_daily",
        metadata={
            "rows": mart_rows,
            "quarantined": quarantined,
            "quality_report": dg.MetadataValue.md(quality),
            **first_report,
        },
    )
    yield dg.MaterializeResult(
        asset_key="dim_asin", metadata={"asins_seen": sum(r.dim_asin.height for *_, r in reports)}
    )
    yield dg.MaterializeResult(
        asset_key="fact_reviews", metadata={"rows": sum(r.fact_reviews.height for *_, r in reports)}
    )
    yield dg.MaterializeResult(
        asset_key="fact_keywords", metadata={"rows": sum(r.fact_keywords.height for *_, r in reports)}
    )
    yield dg.MaterializeResult(
        asset_key="quarantine",
        metadata={
            "rows": quarantined,
            "by_reason": dg.MetadataValue.json(
                _merge_counts(r.report.quarantined_by_reason for *_, r in reports)
            ),
        },
    )


def _standardise_segments(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: Settings
) -> list[tuple[str, date, date, StandardiseResult]]:
    reports = []
    for site, start, end in site_segments(context):
        raw = warehouse.read("raw_payloads", sites=[site], start=start, end=end)
        if raw.is_empty():
            raise dg.Failure(
                f"no raw payloads for {site} {start}..{end}: materialise raw_payloads first",
                metadata={"site": site, "start": str(start), "end": str(end)},
            )
        previous = warehouse.read(
            "mart_timeseries_daily",
            sites=[site],
            start=start - timedelta(days=1),
            end=start - timedelta(days=1),
            columns=["site", "asin", "price", "flag_price_spike"],
        )
        result = standardise(
            parse_payloads(raw),
            previous_prices=previous,
            price_spike_ratio=settings.thresholds.price_spike_ratio,
            plausibility=settings.plausibility,
        )
        with warehouse.transaction() as tx:
            tx.replace_slices("mart_timeseries_daily", result.mart, sites=[site], start=start, end=end)
            tx.replace_slices("fact_reviews", result.fact_reviews, sites=[site], start=start, end=end)
            tx.replace_slices("fact_keywords", result.fact_keywords, sites=[site], start=start, end=end)
            tx.replace_slices("quarantine", result.quarantine, sites=[site], start=start, end=end)
            tx.upsert("dim_asin", result.dim_asin)
        context.log.info(
            f"{site} {start}..{end}: {result.mart.height} mart rows, "
            f"coverage {result.report.coverage:.1%}, {result.report.quarantined_total} quarantined"
        )
        reports.append((site, start, end, result))
    return reports


def _merge_counts(counts) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for c in counts:
        for k, v in c.items():
            merged[k] += int(v)
    return dict(merged)
