"""Exports for BI users: the day's top candidates per site as CSV + Parquet, typed with
dagster-pandas, with the top 10 and their BSR trajectories shown in the Dagster UI.

Files and plots go to the exports store (``storage.exports_url``: the local ``exports_dir`` by
default, ``s3://`` / ``gs://`` in production), so they outlive the run's pod; each partition's
metadata names its file (a local path, or the object's URL)."""

from datetime import date, timedelta
from typing import Any

import dagster as dg
import pandas as pd
import polars as pl
from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

from asin_platform.assets._metadata import add_metadata_by_partition, metadata_table
from asin_platform.assets._plots import line_plot_png, png_markdown
from asin_platform.assets._slices import ranged_asset
from asin_platform.partitions import DateSite, partitions_of_context
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.storage import ArtifactStore, exports_store, shown


def _summary(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "score_min": float(frame["explosive_score"].min()) if len(frame) else 0.0,
        "score_max": float(frame["explosive_score"].max()) if len(frame) else 0.0,
        "median_bsr": float(frame["bsr_root"].median()) if frame["bsr_root"].notna().any() else 0.0,
        "categories": int(frame["category_id"].nunique()),
    }


# The frame handed to BI users: the constraints are the export's promise to them.
TopCandidatesFrame = create_dagster_pandas_dataframe_type(
    name="TopCandidatesFrame",
    description="Top candidates of one (date, site) by baseline Explosive Score.",
    columns=[
        PandasColumn.string_column("site", non_nullable=True),
        PandasColumn.integer_column("rank", min_value=1, non_nullable=True, unique=True),
        PandasColumn.string_column("asin", non_nullable=True, unique=True),
        PandasColumn.string_column("title"),
        PandasColumn.string_column("brand"),
        PandasColumn.string_column("category_id"),
        PandasColumn.numeric_column("bsr_root", min_value=1, ignore_missing_vals=True),
        PandasColumn.numeric_column("price", min_value=0, ignore_missing_vals=True),
        PandasColumn.numeric_column("review_count", min_value=0, ignore_missing_vals=True),
        PandasColumn.float_column("explosive_score", non_nullable=True),
        PandasColumn.string_column("reason", non_nullable=True),
    ],
    metadata_fn=_summary,
)


EXPORT_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8, "date": pl.Date, "rank": pl.Int64, "asin": pl.Utf8, "title": pl.Utf8,
    "brand": pl.Utf8, "category_id": pl.Utf8, "category_path": pl.Utf8, "bsr_root": pl.Int64,
    "price": pl.Float64, "review_count": pl.Int64, "rating": pl.Float64,
    "explosive_score": pl.Float64, "reason": pl.Utf8,
}  # fmt: skip


def top_candidates_frame(warehouse: Warehouse, site: str, day: date, limit: int) -> pl.DataFrame:
    """The export's rows, read through the dashboard view ``vw_top_candidates_daily`` so the BI
    file and the dashboards cannot disagree."""
    frame = warehouse.query(
        "SELECT * FROM vw_top_candidates_daily WHERE site = ? AND date = ? AND rank <= ? ORDER BY rank",
        [site, day, limit],
    )
    return frame.select([pl.col(c).cast(t) for c, t in EXPORT_SCHEMA.items()])


def bsr_trajectory_png(history: pl.DataFrame, title: str) -> bytes:
    """Log-scale BSR over time, one line per ASIN (lower = better, so the axis is inverted)."""
    series = {
        asin: (rows["date"].to_list(), rows["bsr_root"].to_list())
        for (asin,), rows in history.sort("date").group_by("asin", maintain_order=True)
    }
    return line_plot_png([("BSR (log, lower = better)", series)], title, log_invert=[True])


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``top_candidates`` over ``partitions_def`` (size and directory come from the settings resource)."""
    return [
        ranged_asset(
            top_candidates,
            partitions_def,
            deps=["score_baseline_daily", "dim_asin"],
            group_name="exports",
            kinds={"pandas", "csv", "parquet"},
            layer="exports",
        )
    ]


def top_candidates(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """The day's top candidates per site (title, brand, category, BSR, price, reviews, score and
    reason) as `exports/<site>/top_candidates_YYYYMMDD.csv` and `.parquet` in the exports store, for
    BI users.

    Each partition's metadata describes that partition's file and its top 10; the BSR plot of the
    top 10 is drawn for the newest day of each site in the run only (a plot costs ~0.2 s)."""
    parts = partitions_of_context(context)
    newest = {part.site: part for part in parts}  # sorted by (site, day): the last one per site wins
    store = exports_store(settings)
    by_partition: dict[str, dict[str, Any]] = {}
    with warehouse.session():
        for part in parts:
            metadata = _export_partition(warehouse, settings, store, part)
            if newest[part.site] == part:
                metadata.update(_bsr_plot(warehouse, store, part))
            by_partition[part.key] = metadata
            context.log.debug(f"{part.site} {part.day} -> {metadata['path']}")
    add_metadata_by_partition(context, by_partition)
    context.log.info(f"top_candidates: {len(parts)} files under {store}")
    return dg.MaterializeResult()


TOP_10_COLUMNS = [
    "rank",
    "asin",
    "title",
    "brand",
    "category_id",
    "bsr_root",
    "price",
    "review_count",
    "explosive_score",
]


def _export_partition(
    warehouse: Warehouse, settings: Settings, store: ArtifactStore, part: DateSite
) -> dict[str, Any]:
    """Write one (date, site)'s CSV and Parquet; its metadata (typed summary, path, top 10)."""
    frame = top_candidates_frame(warehouse, part.site, part.day, settings.top_candidates)
    check = dg.check_dagster_type(TopCandidatesFrame, frame.to_pandas())
    if not check.success:
        raise dg.Failure(f"top candidates of {part.key} break the export contract: {check.description}")
    path = write_export(frame, store, part, "top_candidates")
    return {**check.metadata, "path": path, "top_10": top_10_table(frame, TOP_10_COLUMNS, digits=2)}


def write_export(frame: pl.DataFrame, store: ArtifactStore, part: DateSite, name: str) -> str:
    """``<exports>/<site>/<name>_YYYYMMDD.csv`` and ``.parquet`` in ``store``; returns where the CSV
    is (a local path, or the object's URL)."""
    stem = f"{part.site}/{name}_{part.day:%Y%m%d}"
    store.write_frame(f"{stem}.parquet", frame)
    return shown(store.write_frame(f"{stem}.csv", frame))


def top_10_table(frame: pl.DataFrame, columns: list[str], *, digits: int) -> dg.TableMetadataValue:
    """An export's first 10 rows as a typed table, titles cut to 40 characters."""
    top = frame.head(10).select(columns).with_columns(pl.col("title").str.slice(0, 40))
    return metadata_table(top, digits=digits)


def _bsr_plot(warehouse: Warehouse, store: ArtifactStore, part: DateSite) -> dict[str, Any]:
    """The top 10's BSR over the 30 days to the partition's day, as a PNG beside the export."""
    top10 = top_candidates_frame(warehouse, part.site, part.day, 10)["asin"].to_list()
    history = warehouse.read(
        "mart_timeseries_daily",
        sites=[part.site],
        start=part.day - timedelta(days=29),
        end=part.day,
        asins=top10,
        columns=["asin", "date", "bsr_root"],
    ).drop_nulls("bsr_root")
    if history.is_empty():
        return {}
    png = bsr_trajectory_png(history, f"BSR of the top 10, {part.site}, 30 days to {part.day}")
    plot = store.write_bytes(f"{part.site}/top_candidates_{part.day:%Y%m%d}_bsr.png", png)
    return {
        "bsr_trajectories": png_markdown(png, "BSR trajectories"),
        "bsr_plot": shown(plot),
    }
