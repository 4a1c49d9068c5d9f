"""Inference layer: the day's ``features_daily`` scored by the promoted ranker -> ``predictions_rank_daily``.

Thin shell over core.predict (the CLI's batch-predict calls the same function). Each (date, site)
partition is scored with the model the warehouse's ``model_registry`` marks promoted (only a model
that beat the baseline on validation gets there), read from the artifact store wherever the training
run wrote it, written to the warehouse slice and exported beside the baseline's top candidates as
``<exports>/<site>/pred_rank_daily_YYYYMMDD.csv|.parquet`` in the exports store, read back through
``vw_pred_rank_daily`` (title, brand, category path, BSR, price, baseline score and rank).
"""

from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_metadata_by_partition, figures_by_partition
from asin_platform.assets._plots import line_plot_png, png_markdown
from asin_platform.assets._slices import ranged_asset, write_segments
from asin_platform.assets.exports import top_10_table, write_export
from asin_platform.core.explain import is_exact, sales_window
from asin_platform.core.predict import predict_with
from asin_platform.core.sales import default_calibration
from asin_platform.partitions import DateSite, partitions_of_context
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.simulator.catalog import SALES_PRIOR
from asin_platform.storage import NoModelError, exports_store, load_registered

TOP_10_COLUMNS = [
    "rank_in_site",
    "asin",
    "title",
    "category_id",
    "model_score",
    "baseline_rank_in_site",
    "reasons_text",
]
EXPORT_TOP = 100  # rows per (site, date) in the export file, as the baseline's top candidates


def export_frame(warehouse: Warehouse, site: str, day: Any, limit: int = EXPORT_TOP) -> pl.DataFrame:
    """The export's rows through the view, so the file and the dashboards cannot disagree."""
    return warehouse.query(
        "SELECT * FROM vw_pred_rank_daily WHERE site = ? AND date = ? AND rank_in_site <= ? ORDER BY rank_in_site",
        [site, day, limit],
    )


def candidate_plot(
    warehouse: Warehouse, settings: Settings, part: DateSite, top: dict[str, Any]
) -> dict[str, dg.MarkdownMetadataValue]:
    """The #1 candidate's BSR and sales estimate over the lookback window ending on its day."""
    mart = warehouse.read(
        "mart_timeseries_daily",
        sites=[part.site],
        start=part.day - timedelta(days=settings.windows.lookback - 1),
        end=part.day,
        asins=[top["asin"]],
        columns=["site", "date", "asin", "category_id", "bsr_root"],
    ).drop_nulls("bsr_root")
    if mart.is_empty():
        return {}
    window = sales_window(mart, default_calibration([part.site], SALES_PRIOR))
    days = window["date"].to_list()
    png = line_plot_png(
        [
            ("BSR (log, lower = better)", {top["asin"]: (days, window["bsr_root"].to_list())}),
            ("sales estimate (units/day)", {top["asin"]: (days, window["est_sales"].to_list())}),
        ],
        f"#1 {top['asin']} on {part.site} {part.day}: {top.get('reasons_text') or ''}"[:110],
        log_invert=(True, False),
    )
    return {"top_candidate_window": png_markdown(png, f"{top['asin']} window")}


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``predictions_rank_daily`` over ``partitions_def`` (directories come from the settings resource)."""
    return [
        ranged_asset(
            predictions_rank_daily,
            partitions_def,
            deps=["features_daily", "ranker_model", "dim_asin"],
            group_name="model",
            kinds={"lightgbm", "table", "csv", "parquet"},
            layer="inference",
        )
    ]


def predictions_rank_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Model score of every ASIN of the (date, site) and its rank in the site and in its category
    (1 = most likely to explode), with the model version; joinable with dim_asin on (site, asin).
    Exported as `<exports>/<site>/pred_rank_daily_YYYYMMDD.csv` and `.parquet` beside top_candidates
    (the exports store: a local folder by default, object storage in production).
    Each partition's metadata holds its own row count, file and top 10 with each one's reasons (its
    largest feature contributions, core.explain: TreeSHAP for the top `scale.reasons_per_query` rows
    of a partition, counted as `exact_rows`, path attribution for the others unless
    `scale.reasons_rest` is `none`; `explained_rows` counts rows with reasons); each site's newest day
    in the run also shows the #1 candidate's BSR and sales estimate over the lookback window its
    features saw."""
    try:
        model = load_registered(warehouse, "promoted")
    except NoModelError as exc:
        raise dg.Failure(f"no promoted model: materialise ranker_model first ({exc})") from exc

    def build(site: str, start: date, end: date) -> pl.DataFrame:
        features = warehouse.read("features_daily", sites=[site], start=start, end=end)
        return predict_with(
            model,
            features,
            reasons_per_query=settings.scale.reasons_per_query,
            reasons_rest=settings.scale.reasons_rest,
        )

    frame = write_segments(context, warehouse, "predictions_rank_daily", build)
    counts = [
        pl.len().alias("rows"),
        pl.col("reasons").is_not_null().sum().alias("explained_rows"),
        is_exact(pl.col("reasons")).sum().alias("exact_rows"),
    ]
    rows = figures_by_partition(frame, counts)
    store = exports_store(settings)
    parts = partitions_of_context(context)
    newest = {part.site: part for part in parts}  # sorted by (site, day): the last one per site wins
    by_partition: dict[str, dict[str, Any]] = {}
    for part in parts:
        export = export_frame(warehouse, part.site, part.day)
        path = write_export(export, store, part, "pred_rank_daily")
        metadata = {
            "rows": rows.get(part, {}).get("rows", 0),
            # rows with reasons; of them TreeSHAP: the top settings.scale.reasons_per_query by rank
            "explained_rows": rows.get(part, {}).get("explained_rows", 0),
            "exact_rows": rows.get(part, {}).get("exact_rows", 0),
            "path": path,
            "top_10": top_10_table(export, TOP_10_COLUMNS, digits=3),
        }
        if newest[part.site] == part and export.height:
            metadata.update(candidate_plot(warehouse, settings, part, export.row(0, named=True)))
        by_partition[part.key] = metadata
    add_metadata_by_partition(context, by_partition)
    context.log.info(f"predictions run total: {frame.height} rows with model {model.version}")
    return dg.MaterializeResult(
        metadata={
            "model_version": model.version,
            # the run's totals: the per-partition counts summed, not a second pass over the reasons
            **{c: sum(int(r.get(c, 0)) for r in rows.values()) for c in ("explained_rows", "exact_rows")},
            "reasons_per_query": settings.scale.reasons_per_query,
            "reasons_rest": settings.scale.reasons_rest,
        }
    )
