"""Feature layer: ``mart_timeseries_daily`` + ``fact_keywords`` -> ``features_daily``."""

from datetime import timedelta

import dagster as dg
import polars as pl

from asin_platform.assets._slices import site_segments
from asin_platform.core.features import build_features
from asin_platform.core.sales import default_calibration
from asin_platform.partitions import date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.schemas import FEATURES_DAILY
from asin_platform.settings import get_settings
from asin_platform.simulator.catalog import SALES_PRIOR

KEY_COLUMNS = ("site", "date", "asin", "category_id")


def null_rates(frame: pl.DataFrame) -> dict[str, float]:
    """Share of nulls per feature column (the null-rate check and the UI's metadata)."""
    features = [c for c in frame.columns if c not in KEY_COLUMNS]
    if frame.is_empty():
        return dict.fromkeys(features, 0.0)
    row = frame.select([pl.col(c).null_count() / pl.len() for c in features]).row(0)
    return dict(zip(features, (float(v) for v in row), strict=True))


@dg.asset(
    partitions_def=date_site_partitions,
    deps=["mart_timeseries_daily", "fact_keywords"],
    group_name="features",
    kinds={"polars", "table"},
    # One run per site over the whole date range: the features of many days are one polars plan.
    backfill_policy=dg.BackfillPolicy.single_run(),
    tags={"layer": "features"},
)
def features_daily(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    """Rolling features per (site, date, ASIN) from the calendar window ending on the date.

    BSR trend (log-BSR OLS slopes over 7/14/30 days, category percentile changes), estimated
    sales from a per-category BSR power law, price volatility and promotions, review velocity,
    rating, offers, keyword ranks, listing quality and age. Missing days stay missing: a window
    is a span of calendar days, never "the last N rows". Definitions: docs/features.md.
    """
    settings = get_settings()
    lookback = settings.windows.lookback
    calibration = default_calibration(settings.sites, SALES_PRIOR)
    written: list[pl.DataFrame] = []
    with warehouse.session():
        for site, start, end in site_segments(context):
            history_start = start - timedelta(days=lookback)
            mart = warehouse.read("mart_timeseries_daily", sites=[site], start=history_start, end=end)
            keywords = warehouse.read("fact_keywords", sites=[site], start=history_start, end=end)
            days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            frame = build_features(
                mart.lazy(), keywords.lazy(), days, lookback=lookback, calibration=calibration
            )
            rows = warehouse.replace_slices("features_daily", frame, sites=[site], start=start, end=end)
            context.log.info(f"{site} {start}..{end}: {rows} feature rows from {mart.height} mart rows")
            written.append(frame)
    frame = pl.concat(written) if written else FEATURES_DAILY.empty()
    rates = null_rates(frame)
    table = "\n".join(
        ["| feature | null rate |", "|---|---|"] + [f"| `{k}` | {v:.1%} |" for k, v in rates.items()]
    )
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "asins": frame["asin"].n_unique() if frame.height else 0,
            "features": len(rates),
            "null_rates": dg.MetadataValue.md(table),
            "lookback_days": lookback,
        }
    )
