"""Realised outcomes: once the label horizon H has passed, what happened to each day's lists.

Thin shell over core.outcomes: for each (date, site) partition, the day's predictions and baseline
scores are labelled with the targets the ranker was trained on, computed from the mart over
(T - W, T + H], and each ranker's NDCG@k / precision@k is written to ``realised_outcomes``. A
partition whose horizon has not passed yet (the mart does not reach T + H) writes no row and says
"pending" in its metadata; it is realised by a later materialisation (the daily chain re-runs it).
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import figures_by_partition
from asin_platform.assets._plots import line_plot_png, png_markdown
from asin_platform.assets._slices import ranged_asset, write_segments
from asin_platform.core.labels import LabelConfig
from asin_platform.core.outcomes import realised_outcomes as compute_outcomes
from asin_platform.core.outcomes import realised_through
from asin_platform.core.sales import default_calibration
from asin_platform.partitions import partitions_of_context
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.simulator.catalog import SALES_PRIOR

SERIES_DAYS = 180  # how far back the realised-quality plot looks


def label_config(settings: Settings) -> LabelConfig:
    """The training labels' windows and thresholds: outcomes are judged by the same yardstick."""
    w, t = settings.windows, settings.thresholds
    return LabelConfig(
        observation=w.observation,
        horizon=w.horizon,
        embargo=max(w.embargo, w.horizon),
        sales_ratio=t.label_sales_ratio,
        pctl_gain=t.label_bsr_pctl_gain,
    )


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``realised_outcomes`` over ``partitions_def``."""
    return [
        ranged_asset(
            realised_outcomes,
            partitions_def,
            deps=["predictions_rank_daily", "score_baseline_daily", "mart_timeseries_daily"],
            group_name="model",
            kinds={"polars", "table"},
            layer="outcomes",
        )
    ]


def realised_outcomes(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """NDCG@k and precision@k (k = 10, 20, 50) of the model's and the baseline's list of each
    (date, site) against the realised labels, once the horizon H has passed (the targets of
    core.labels over the mart's (T, T+H]). A partition still inside its horizon writes nothing and
    its metadata says `status: pending` with the day it will be realised. Each site's newest day in
    the run shows the realised-quality series (precision@20, NDCG@20) as a plot."""
    config = label_config(settings)
    h, w = timedelta(days=config.horizon), timedelta(days=config.observation)
    now = datetime.now(UTC)

    def build(site: str, start: date, end: date) -> pl.DataFrame:
        predictions = warehouse.read("predictions_rank_daily", sites=[site], start=start, end=end)
        baseline = warehouse.read(
            "score_baseline_daily", sites=[site], start=start, end=end,
            columns=["site", "date", "asin", "explosive_score"],
        )  # fmt: skip
        mart = warehouse.read(
            "mart_timeseries_daily", sites=[site], start=start - w, end=end + h,
            columns=["site", "date", "asin", "category_id", "bsr_root"],
        )  # fmt: skip
        calibration = default_calibration([site], SALES_PRIOR)
        return compute_outcomes(
            predictions, baseline, mart, config, calibration=calibration, evaluated_at=now
        )

    frame = write_segments(context, warehouse, "realised_outcomes", build)
    at_k = frame.filter(pl.col("k") == 20)
    figures = figures_by_partition(
        at_k,
        [
            pl.col("precision").filter(pl.col("ranker") == r).first().alias(f"{r}_precision@20")
            for r in ("model", "baseline")
        ]
        + [
            pl.col("ndcg").filter(pl.col("ranker") == r).first().alias(f"{r}_ndcg@20")
            for r in ("model", "baseline")
        ]
        + [pl.col("positives").first().alias("positives"), pl.col("items").first().alias("items")],
    )
    parts = partitions_of_context(context)
    newest = {part.site: part for part in parts}
    for part in parts:
        metadata: dict[str, Any] = (
            {"status": "realised", **figures[part]}
            if part in figures
            else _pending(warehouse, part.site, part.day, config.horizon)
        )
        if newest[part.site] == part:
            metadata.update(quality_plot(warehouse, part.site, part.day))
        context.add_asset_metadata(metadata, partition_key=part.key)
    context.log.info(f"realised_outcomes: {frame.height} rows for {len(figures)} of {len(parts)} partitions")
    return dg.MaterializeResult()


def _pending(warehouse: Warehouse, site: str, day: date, horizon: int) -> dict[str, Any]:
    last = warehouse.query("SELECT max(date) AS d FROM mart_timeseries_daily WHERE site = ?", [site])["d"][0]
    through = realised_through(last, horizon) if last is not None else None
    return {
        "status": "pending",
        "realised_on": str(day + timedelta(days=horizon)),
        "mart_through": str(last),
        "realised_through": str(through),
    }


def quality_plot(warehouse: Warehouse, site: str, day: date) -> dict[str, dg.MarkdownMetadataValue]:
    """Realised precision@20 and NDCG@20 of model and baseline per prediction date, to ``day``."""
    series = warehouse.read(
        "realised_outcomes", sites=[site], start=day - timedelta(days=SERIES_DAYS), end=day
    ).filter(pl.col("k") == 20)
    if series.is_empty():
        return {}
    panels = []
    for metric in ("precision", "ndcg"):
        lines = {}
        for ranker in ("model", "baseline"):
            rows = series.filter(pl.col("ranker") == ranker).sort("date")
            lines[ranker] = (rows["date"].to_list(), rows[metric].to_list())
        panels.append((f"realised {metric}@20", lines))
    png = line_plot_png(panels, f"Realised quality of the lists, {site}, to {day}")
    return {"realised_quality": png_markdown(png, "realised quality")}
