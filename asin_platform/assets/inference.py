"""Inference layer: the day's ``features_daily`` scored by the promoted ranker -> ``predictions_rank_daily``.

Thin shell over core.predict (the CLI's batch-predict calls the same function). Each (date, site)
partition is scored with the model ``<artifacts_dir>/models/latest`` points at (only a model that
beat the baseline on validation gets there), written to the warehouse slice and exported beside the
baseline's top candidates as ``exports/<site>/pred_rank_daily_YYYYMMDD.csv|.parquet``, read back
through ``vw_pred_rank_daily`` (title, brand, category path, BSR, price, baseline score and rank).
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._slices import site_segments
from asin_platform.core.predict import PREDICTIONS_RANK_DAILY, predict_with
from asin_platform.core.ranker import LATEST, load_model
from asin_platform.partitions import partitions_of_context
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings

EXPORT_TOP = 100  # rows per (site, date) in the export file, as the baseline's top candidates


def export_frame(warehouse: Warehouse, site: str, day: Any, limit: int = EXPORT_TOP) -> pl.DataFrame:
    """The export's rows through the view, so the file and the dashboards cannot disagree."""
    return warehouse.query(
        "SELECT * FROM vw_pred_rank_daily WHERE site = ? AND date = ? AND rank_in_site <= ? ORDER BY rank_in_site",
        [site, day, limit],
    )


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``predictions_rank_daily`` over ``partitions_def`` (directories come from the settings resource)."""
    return [
        dg.asset(
            name="predictions_rank_daily",
            partitions_def=partitions_def,
            deps=["features_daily", "ranker_model", "dim_asin"],
            group_name="model",
            kinds={"lightgbm", "table", "csv", "parquet"},
            backfill_policy=dg.BackfillPolicy.single_run(),
            tags={"layer": "inference"},
        )(predictions_rank_daily)
    ]


def predictions_rank_daily(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Model score of every ASIN of the (date, site) and its rank in the site and in its category
    (1 = most likely to explode), with the model version; joinable with dim_asin on (site, asin).
    Exported as exports/<site>/pred_rank_daily_YYYYMMDD.csv/.parquet beside top_candidates."""
    try:
        model = load_model(Path(settings.artifacts_dir) / "models", LATEST)
    except FileNotFoundError as exc:
        raise dg.Failure(f"no promoted model: materialise ranker_model first ({exc})") from exc
    written: list[pl.DataFrame] = []
    for site, start, end in site_segments(context):
        features = warehouse.read("features_daily", sites=[site], start=start, end=end)
        frame = predict_with(model, features)
        rows = warehouse.replace_slices("predictions_rank_daily", frame, sites=[site], start=start, end=end)
        context.log.info(f"{site} {start}..{end}: {rows} predictions with model {model.version}")
        written.append(frame)
    frame = pl.concat(written) if written else PREDICTIONS_RANK_DAILY.empty()

    files = 0
    for part in partitions_of_context(context):
        export = export_frame(warehouse, part.site, part.day)
        out_dir = Path(settings.exports_dir) / part.site
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"pred_rank_daily_{part.day:%Y%m%d}"
        export.write_csv(stem.with_suffix(".csv"))
        export.write_parquet(stem.with_suffix(".parquet"))
        files += 1

    last = partitions_of_context(context)[-1]
    top = export_frame(warehouse, last.site, last.day, 10)
    lines = [
        f"**{last.site} {last.day}**, model {model.version}",
        "",
        "| rank | asin | title | category | score | baseline rank |",
        "|---|---|---|---|---|---|",
    ]
    for r in top.iter_rows(named=True):
        title = (r["title"] or "")[:40].replace("|", "/")
        lines.append(
            f"| {r['rank_in_site']} | {r['asin']} | {title} | {r['category_id']} | {r['model_score']:.3f} "
            f"| {r['baseline_rank_in_site'] if r['baseline_rank_in_site'] is not None else ''} |"
        )
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "model_version": model.version,
            "export_files": files,
            "exports_dir": str(Path(settings.exports_dir)),
            "top_10": dg.MetadataValue.md("\n".join(lines)),
        }
    )
