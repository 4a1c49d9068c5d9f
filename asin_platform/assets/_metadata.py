"""Materialisation metadata of the assets: typed tables, and each partition's own figures.

``metadata_table`` is the one way an asset shows rows in the UI: a typed ``dg.MetadataValue.table``
(the UI renders it as a sortable table and GraphQL returns it as records, where a Markdown string is
only text). ``add_partition_metadata`` gives every partition of a ranged run its own figures through
``context.add_asset_metadata(..., partition_key=...)``: Dagster copies a ``MaterializeResult``'s
metadata onto every partition of the run, so run-wide totals must not go there (they go to the run's
log). See docs/architecture.md, "Per-partition metadata".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

from asin_platform.partitions import DateSite, partitions_of_context


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.Date, pl.Datetime):
        return "date"
    return "string"


def _cell(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if value is None or isinstance(value, int | str | bool):
        return value
    return str(value)


def metadata_table(frame: pl.DataFrame, *, digits: int = 4) -> dg.TableMetadataValue:
    """A small frame as a typed table for materialisation or check metadata (floats rounded)."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _column_type(dtype)) for name, dtype in frame.schema.items()]
    )
    records = [
        dg.TableRecord({k: _cell(v, digits) for k, v in row.items()}) for row in frame.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def figures_by_partition(frame: pl.DataFrame, figures: Sequence[pl.Expr]) -> dict[DateSite, dict[str, Any]]:
    """``{(site, date): {name: value}}`` of ``figures`` (named polars aggregations) in one group-by."""
    if frame.is_empty():
        return {}
    grouped = frame.group_by("site", "date").agg(figures)
    return {DateSite(row.pop("date"), row.pop("site")): row for row in grouped.iter_rows(named=True)}


def top_by_partition(
    frame: pl.DataFrame, *, by: str, columns: Sequence[str], n: int = 10, digits: int = 4
) -> dict[DateSite, dg.TableMetadataValue]:
    """The ``n`` rows with the highest ``by`` of every (site, date), as a table each."""
    if frame.is_empty():
        return {}
    top = (
        frame.sort(by, descending=True, nulls_last=True).group_by("site", "date", maintain_order=True).head(n)
    )
    return {
        DateSite(day, site): metadata_table(part.select(columns), digits=digits)
        for (site, day), part in top.partition_by("site", "date", as_dict=True).items()
    }


def add_partition_metadata(
    context: dg.AssetExecutionContext,
    figures: Mapping[DateSite, Mapping[str, Any]],
    *,
    empty: Mapping[str, Any],
    asset_key: str | None = None,
) -> None:
    """Every partition of the run gets its own figures; ``empty`` is what a partition without rows
    shows (so a day that produced nothing says 0, not the figures of another day)."""
    add_metadata_by_partition(
        context,
        {part.key: {**empty, **figures.get(part, {})} for part in partitions_of_context(context)},
        asset_key=asset_key,
    )


def add_metadata_by_partition(
    context: dg.AssetExecutionContext,
    metadata: Mapping[str, Mapping[str, Any]],
    *,
    asset_key: str | None = None,
) -> None:
    """``context.add_asset_metadata(metadata[key], partition_key=key)`` for every partition key,
    in one step. Dagster's call, per partition, lists every partition of the run's range (to check
    the key is targeted) and copies and re-validates the metadata of every partition already added,
    so a ranged run paid a quadratic cost: ~12 ms per partition for a 240-day run, ~100 s of the
    demo. Here the keys are checked once against the run's partitions and the step's metadata is
    replaced once; without that internal (another Dagster version), partition by partition."""
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not isinstance(accumulator, OutputMetadataAccumulator):
        for key, values in metadata.items():
            context.add_asset_metadata(values, asset_key=asset_key, partition_key=key)
        return
    key_of_asset = dg.AssetKey.from_coercible(asset_key) if asset_key else context.assets_def.key
    if key_of_asset not in context.assets_def.keys:
        raise dg.DagsterInvariantViolationError(f"{key_of_asset} is not materialised by this step")
    untargeted = set(metadata) - set(context.partition_keys)
    if untargeted:
        raise dg.DagsterInvariantViolationError(f"partitions not targeted by this run: {sorted(untargeted)}")
    merged = dict(accumulator.per_output_metadata)
    for key, values in metadata.items():
        handle = AssetMetadataHandle(asset_key=key_of_asset, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **values}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # type: ignore[union-attr]
