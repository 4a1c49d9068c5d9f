"""Feature layer: ``mart_timeseries_daily`` + ``fact_keywords`` -> ``features_daily``."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_partition_metadata, figures_by_partition, metadata_table
from asin_platform.assets._slices import ranged_asset, write_segments
from asin_platform.core.chunking import build_features_chunked
from asin_platform.core.sales import default_calibration
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.simulator.catalog import SALES_PRIOR
from asin_platform.storage import columnar
from asin_platform.storage.store import artifacts_store

KEY_COLUMNS = ("site", "date", "asin", "category_id")


def null_rates(frame: pl.DataFrame) -> dict[str, float]:
    """Share of nulls per feature column (the null-rate check and the UI's metadata)."""
    features = [c for c in frame.columns if c not in KEY_COLUMNS]
    if frame.is_empty():
        return dict.fromkeys(features, 0.0)
    row = frame.select([pl.col(c).null_count() / pl.len() for c in features]).row(0)
    return dict(zip(features, (float(v) for v in row), strict=True))


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``features_daily`` over ``partitions_def`` (run-time values come from the settings resource)."""
    return [
        ranged_asset(
            features_daily,
            partitions_def,
            deps=["mart_timeseries_daily", "fact_keywords"],
            group_name="features",
            kinds={"polars", "table"},
            layer="features",
        )
    ]


def features_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Rolling features per (site, date, ASIN) from the calendar window ending on the date.

    BSR trend (log-BSR OLS slopes over 7/14/30 days, category percentile changes), estimated
    sales from a per-category BSR power law, price volatility and promotions, review velocity,
    rating, offers, keyword ranks, listing quality and age. Missing days stay missing: a window
    is a span of calendar days, never "the last N rows". Definitions: docs/features.md.
    """
    lookback = settings.windows.lookback
    calibration = default_calibration(settings.sites, SALES_PRIOR)

    def build(site: str, start: date, end: date) -> pl.DataFrame:
        history_start = start - timedelta(days=lookback)
        if settings.scale.columnar_mart:
            # Lazy parquet scans of the mart's columnar copies (days without one: the warehouse), so
            # each chunk reads only its rows (docs/scaling.md).
            store = artifacts_store(settings)
            mart = columnar.scan_window(warehouse, store, "mart_timeseries_daily", site, history_start, end)
            keywords = columnar.scan_window(warehouse, store, "fact_keywords", site, history_start, end)
        else:
            mart = warehouse.read("mart_timeseries_daily", sites=[site], start=history_start, end=end).lazy()
            keywords = warehouse.read("fact_keywords", sites=[site], start=history_start, end=end).lazy()
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        # Chunked by date and ASIN blocks: the working set is bounded by the setting, not the range.
        return build_features_chunked(
            mart,
            keywords,
            days,
            lookback=lookback,
            calibration=calibration,
            max_cells=settings.scale.feature_chunk_cells,
        )

    with warehouse.session():
        frame = write_segments(context, warehouse, "features_daily", build)
    features = [c for c in frame.columns if c not in KEY_COLUMNS]
    rates = figures_by_partition(frame, [(pl.col(c).null_count() / pl.len()).alias(c) for c in features])
    counts = figures_by_partition(frame, [pl.len().alias("rows"), pl.col("asin").n_unique().alias("asins")])
    figures = {
        part: {
            **counts[part],
            "null_rates": metadata_table(pl.DataFrame({"feature": list(r), "null_rate": list(r.values())})),
        }
        for part, r in rates.items()
    }
    add_partition_metadata(context, figures, empty={"rows": 0, "asins": 0})
    context.log.info(f"features run total: {frame.height} rows")
    return dg.MaterializeResult(metadata={"features": len(features), "lookback_days": lookback})
