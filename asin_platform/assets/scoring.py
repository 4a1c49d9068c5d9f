"""Score layer: ``features_daily`` -> ``score_baseline_daily`` (the baseline Explosive Score)."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_partition_metadata, figures_by_partition, top_by_partition
from asin_platform.assets._slices import ranged_asset, write_segments
from asin_platform.core.chunking import iter_scores
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``score_baseline_daily`` over ``partitions_def`` (weights come from the settings resource)."""
    return [
        ranged_asset(
            score_baseline_daily,
            partitions_def,
            deps=["features_daily"],
            group_name="features",
            kinds={"polars", "table"},
            layer="score",
        )
    ]


def score_baseline_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Baseline Explosive Score: robust z-scores ((x - median) / (1.4826 * MAD)) per site x
    category, combined with the weights of settings.score_weights; ``reason`` holds every
    component's z and weight, and categories too small for a stable MAD fall back to the site.
    Ranked in category and in site (1 = most explosive)."""

    def build(site: str, start: date, end: date) -> pl.DataFrame:
        features = warehouse.read("features_daily", sites=[site], start=start, end=end).lazy()
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        # Whole days at a time (z-scores are per site x date x category, so a day is the exact cut).
        blocks = iter_scores(
            features,
            days,
            settings.scale.score_chunk_days,
            weights=settings.score_weights,
            min_category_size=settings.min_category_size,
        )
        return pl.concat(list(blocks))

    with warehouse.session():
        frame = write_segments(context, warehouse, "score_baseline_daily", build)
    score = pl.col("explosive_score")
    figures = figures_by_partition(
        frame,
        [
            pl.len().alias("rows"),
            (pl.col("scope") == "site").sum().alias("site_level_fallback"),
            score.median().fill_null(0.0).round(4).alias("score_median"),
            score.quantile(0.99).fill_null(0.0).round(4).alias("score_p99"),
        ],
    )
    top = top_by_partition(
        frame,
        by="explosive_score",
        columns=["date", "site", "rank_in_site", "asin", "category_id", "explosive_score"],
    )
    figures = {part: {**f, "top_10": top[part]} for part, f in figures.items()}
    add_partition_metadata(context, figures, empty={"rows": 0, "site_level_fallback": 0})
    fallback = frame.filter(pl.col("scope") == "site").height
    context.log.info(f"score run total: {frame.height} ASIN-days scored ({fallback} at site level)")
    return dg.MaterializeResult()
