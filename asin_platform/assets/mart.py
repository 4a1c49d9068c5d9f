"""Mart layer: ``raw_payloads`` -> typed, deduplicated, validated daily tables."""

from collections import defaultdict
from datetime import date, timedelta

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_partition_metadata, figures_by_partition
from asin_platform.assets._slices import site_segments
from asin_platform.core import ranges
from asin_platform.core.parsers import parse_payloads
from asin_platform.core.quality import FLAG_COLUMNS
from asin_platform.core.standardise import StandardiseResult, standardise
from asin_platform.partitions import DateSite
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.storage import columnar
from asin_platform.storage.store import artifacts_store

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


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The mart multi-asset over ``partitions_def`` (run-time values come from the settings resource)."""
    return [
        dg.multi_asset(
            name="mart_timeseries_daily",
            specs=_specs,
            partitions_def=partitions_def,
            can_subset=False,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )(mart_timeseries_daily)
    ]


def mart_timeseries_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
):
    """Parse, deduplicate, flag and validate the partition's raw payloads into the mart tables,
    replacing each (site, date) slice of every table in one transaction."""
    with warehouse.session():
        reports = _standardise_segments(context, warehouse, settings)
    _partition_metadata(context, [result for *_, result in reports])
    context.log.info(
        f"mart run total: {sum(r.mart.height for *_, r in reports)} rows, "
        f"{sum(r.report.quarantined_total for *_, r in reports)} quarantined"
    )
    for spec in _specs:
        yield dg.MaterializeResult(asset_key=spec.key)


def _partition_metadata(context: dg.AssetExecutionContext, results: list[StandardiseResult]) -> None:
    """Each (date, site) gets its own rows, coverage and quarantine counts, on every mart table."""
    slices = pl.concat([r.report.by_slice for r in results])
    quality = figures_by_partition(
        slices,
        [
            pl.col("mart_rows").sum().alias("rows"),
            pl.col("tracked_asins").sum(),
            pl.col("covered_rows").sum(),
            (pl.col("covered_rows").sum() / pl.col("tracked_asins").sum())
            .fill_nan(0.0)
            .round(6)
            .alias("coverage"),
            pl.col("duplicates_dropped").sum(),
            pl.col("quarantined").sum(),
        ],
    )
    mart = pl.concat([r.mart for r in results])
    flags = figures_by_partition(mart, [pl.col(f).sum().alias(f"invalid.{f}") for f in FLAG_COLUMNS])
    quality = {part: {**figures, **flags.get(part, {})} for part, figures in quality.items()}
    empty = {"rows": 0, "tracked_asins": 0, "covered_rows": 0, "coverage": 0.0, "quarantined": 0}
    add_partition_metadata(context, quality, empty=empty, asset_key="mart_timeseries_daily")
    counts = {
        "dim_asin": ([mart], pl.col("asin").n_unique().alias("asins_seen")),
        "fact_reviews": ([r.fact_reviews for r in results], pl.len().alias("rows")),
        "fact_keywords": ([r.fact_keywords for r in results], pl.len().alias("rows")),
    }
    for key, (frames, figure) in counts.items():
        figures = figures_by_partition(pl.concat(frames), [figure])
        add_partition_metadata(context, figures, empty={figure.meta.output_name(): 0}, asset_key=key)
    quarantine = pl.concat([r.quarantine for r in results]).group_by("site", "date", "reason").len()
    reasons: dict[DateSite, dict[str, int]] = defaultdict(dict)
    for site, day, reason, n in quarantine.iter_rows():  # one row per (partition, reason): a handful
        reasons[DateSite(day, site)][reason] = n
    by_reason = {
        part: {"rows": sum(n.values()), "by_reason": dg.MetadataValue.json(n)} for part, n in reasons.items()
    }
    empty_quarantine = {"rows": 0, "by_reason": dg.MetadataValue.json({})}
    add_partition_metadata(context, by_reason, empty=empty_quarantine, asset_key="quarantine")


def _standardise_segments(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: Settings
) -> list[tuple[str, date, date, StandardiseResult]]:
    reports = []
    for site, start, end in site_segments(context):
        raw = _raw_for(warehouse, site, start, end)
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
            ranges.clip(parse_payloads(raw), raw, start, end),
            previous_prices=previous,
            price_spike_ratio=settings.thresholds.price_spike_ratio,
            plausibility=settings.plausibility,
        )
        # With scale.columnar_mart, the tables the features read also get their parquet copy, written
        # and recorded inside the transaction (storage/columnar.py); old versions go after the commit.
        store = artifacts_store(settings) if settings.scale.columnar_mart else None
        with columnar.copies(store) as copies, warehouse.transaction() as tx:
            copies.replace_slices(
                tx, "mart_timeseries_daily", result.mart, sites=[site], start=start, end=end
            )
            tx.replace_slices("fact_reviews", result.fact_reviews, sites=[site], start=start, end=end)
            copies.replace_slices(
                tx, "fact_keywords", result.fact_keywords, sites=[site], start=start, end=end
            )
            tx.replace_slices("quarantine", result.quarantine, sites=[site], start=start, end=end)
            tx.upsert("dim_asin", result.dim_asin)
        context.log.info(
            f"{site} {start}..{end}: {result.mart.height} mart rows, "
            f"coverage {result.report.coverage:.1%}, {result.report.quarantined_total} quarantined"
        )
        reports.append((site, start, end, result))
    return reports


def _raw_for(warehouse: Warehouse, site: str, start: date, end: date) -> pl.DataFrame:
    """The raw rows a rebuild of ``site`` ``start..end`` parses: the slice's own rows plus the range
    payloads stored before it that cover its days (docs/architecture.md, "Range payloads")."""
    raw = warehouse.read("raw_payloads", sites=[site], start=start, end=end)
    before = warehouse.read(
        "raw_payloads",
        sites=[site],
        start=start - timedelta(days=ranges.MAX_RANGE_DAYS),
        end=start - timedelta(days=1),
        columns=["payload_id", "date", "request_params"],
    )
    wanted = ranges.covering(before, start)
    if wanted.is_empty():
        return raw
    older = warehouse.read("raw_payloads", sites=[site], start=wanted["date"].min(), end=wanted["date"].max())
    return pl.concat([older.filter(pl.col("payload_id").is_in(wanted["payload_id"].implode())), raw])
