"""Score layer: ``features_daily`` -> ``score_baseline_daily`` (the baseline Explosive Score)."""

import dagster as dg
import polars as pl

from asin_platform.assets._slices import site_segments
from asin_platform.core.score import score_baseline
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``score_baseline_daily`` over ``partitions_def`` (weights come from the settings resource)."""
    return [
        dg.asset(
            name="score_baseline_daily",
            partitions_def=partitions_def,
            deps=["features_daily"],
            group_name="features",
            kinds={"polars", "table"},
            backfill_policy=dg.BackfillPolicy.single_run(),
            tags={"layer": "score"},
        )(score_baseline_daily)
    ]


def score_baseline_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Baseline Explosive Score: robust z-scores ((x - median) / (1.4826 * MAD)) per site x
    category, combined with the weights of settings.score_weights; ``reason`` holds every
    component's z and weight, and categories too small for a stable MAD fall back to the site.
    Ranked in category and in site (1 = most explosive)."""
    scored: list[pl.DataFrame] = []
    with warehouse.session():
        for site, start, end in site_segments(context):
            features = warehouse.read("features_daily", sites=[site], start=start, end=end)
            frame = score_baseline(
                features, settings.score_weights, min_category_size=settings.min_category_size
            )
            rows = warehouse.replace_slices("score_baseline_daily", frame, sites=[site], start=start, end=end)
            fallback = frame.filter(pl.col("scope") == "site").height
            context.log.info(f"{site} {start}..{end}: scored {rows} ASINs ({fallback} at site level)")
            scored.append(frame)
    frame = pl.concat(scored)
    top = frame.sort("explosive_score", descending=True).head(10)
    table = "\n".join(
        ["| date | site | rank | asin | category | score |", "|---|---|---|---|---|---|"]
        + [
            f"| {r['date']} | {r['site']} | {r['rank_in_site']} | {r['asin']} | {r['category_id']} "
            f"| {r['explosive_score']:.2f} |"
            for r in top.iter_rows(named=True)
        ]
    )
    scores = frame["explosive_score"]
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "site_level_fallback": frame.filter(pl.col("scope") == "site").height,
            "score_median": float(scores.median() or 0.0),
            "score_p99": float(scores.quantile(0.99) or 0.0),
            "top_10": dg.MetadataValue.md(table),
        }
    )
