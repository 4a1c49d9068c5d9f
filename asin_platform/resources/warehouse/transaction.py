"""Writes inside one open transaction: replace a (site, date) slice, upsert by key, raw SQL.

Writing a partition replaces exactly its (site, date) slice: DELETE the slice and bulk-load the frame in
one transaction, so a failure leaves the old slice in place. Every frame is checked (inside its slice,
no null or repeated key) before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from asin_platform.resources.warehouse.ddl import table_spec, unique_key
from asin_platform.resources.warehouse.driver import Driver
from asin_platform.resources.warehouse.sqltext import as_date, q, site_list

#: Tables whose (site, date) slices may have a parquet copy recorded in ``columnar_slices``
#: (migration 008, ``storage/columnar.py``). Any replace of such a slice deletes its record in the
#: same transaction, so a copy the replace did not also write is never read in place of the slice.
COLUMNAR_TABLES = ("mart_timeseries_daily", "fact_keywords")
COLUMNAR_SLICES_TABLE = "columnar_slices"


def check_unique(table: str, data: pl.DataFrame, key: tuple[str, ...]) -> None:
    """ValueError if ``data`` has a null in ``key`` or repeats a key."""
    # Checked in Python on both backends: a clear message before anything is written, and the only
    # uniqueness guard on DuckDB, whose tables carry no primary key.
    if not key or data.height == 0:
        return
    null_keys = data.filter(pl.any_horizontal(pl.col(list(key)).is_null()))
    if null_keys.height:
        raise ValueError(f"{null_keys.height} row(s) of the {table} frame have a null in the key {key}")
    duplicated = data.filter(pl.struct(list(key)).is_duplicated())
    if duplicated.height:
        sample = duplicated.select(list(key)).unique().head(5).rows()
        raise ValueError(f"the {table} frame repeats keys {key}: e.g. {sample}")


def _check_inside(table: str, data: pl.DataFrame, sites: list[str], start: date, end: date) -> None:
    inside = pl.col("site").is_in(sites) & pl.col("date").is_between(start, end, closed="both")
    outside = data.filter(inside.not_().fill_null(True))
    if outside.height:
        sample = outside.select("site", "date").unique().sort("site", "date", nulls_last=True).head(5).rows()
        raise ValueError(
            f"{outside.height} row(s) of the {table} frame lie outside the slice sites={sites} "
            f"dates=[{start}, {end}]; e.g. (site, date) {sample}"
        )


class WarehouseTx:
    """Writes inside one open transaction (from ``Warehouse.transaction()``)."""

    def __init__(self, driver: Driver, conn: Any) -> None:
        self._driver = driver
        self._conn = conn

    def replace_slices(
        self, table: str, frame: pl.DataFrame, *, sites: Sequence[str], start: date, end: date
    ) -> int:
        """Replace the rows of ``sites`` x ``[start, end]`` (both ends included) by ``frame``.

        Raises ValueError, before touching the database, if a row of ``frame`` lies outside the slice
        (or has no site/date), so a bug cannot overwrite a neighbouring partition. Returns rows inserted.
        """
        spec = table_spec(table)
        if not spec.partitioned or not {"site", "date"} <= set(spec.schema):
            raise ValueError(f"{table} is not partitioned by (site, date); use upsert()")
        sites_, start, end = site_list(sites), as_date(start), as_date(end)
        if start > end:
            raise ValueError(f"empty date range: start {start} is after end {end}")
        data = spec.conform(frame)
        _check_inside(table, data, sites_, start, end)
        key = unique_key(spec)
        check_unique(table, data, key)
        if not sites_:
            return 0
        site_marks = ", ".join("?" for _ in sites_)
        self._driver.execute(
            self._conn,
            f"DELETE FROM {q(table)} WHERE site IN ({site_marks}) AND date BETWEEN ? AND ?",
            [*sites_, start, end],
        )
        if table in COLUMNAR_TABLES:
            self._driver.execute(
                self._conn,
                f"DELETE FROM {COLUMNAR_SLICES_TABLE} WHERE table_name = ? AND site IN ({site_marks}) "
                "AND date BETWEEN ? AND ?",
                [table, *sites_, start, end],
            )
        if data.height:
            # A key without site and date can collide with rows of other slices, which survive the
            # delete; a key with both can only collide inside the frame (checked above).
            self._bulk_insert(table, data, conflict_key=() if {"site", "date"} <= set(key) else key)
        return data.height

    def upsert(self, table: str, frame: pl.DataFrame) -> int:
        """Insert rows, or update every non-key column of rows whose ``Table.key`` is stored.

        Columns named ``first_seen`` / ``last_seen`` keep the earliest / latest of old and new
        (NULL-ignoring), so re-loading an old day never shrinks an ASIN's seen range. Columns absent
        from ``frame`` keep their stored value (NULL in new rows). Raises ValueError for null or
        repeated keys in ``frame``. Returns the rows written.
        """
        spec = table_spec(table)
        key = unique_key(spec)
        if not key:
            raise ValueError(f"{table} has no unique key to upsert by")
        data = spec.conform(frame)
        check_unique(table, data, key)
        if data.height == 0:
            return 0
        # Only the columns the caller supplied are updated: a partial frame must not null the rest.
        updated = [c for c in data.columns if c in frame.columns and c not in key]
        self._driver.upsert(self._conn, table, data, key, updated)
        return data.height

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement in this transaction (``?`` placeholders)."""
        self._driver.execute(self._conn, sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query in this transaction, seeing its uncommitted writes (``?`` placeholders)."""
        return self._driver.fetch(self._conn, sql, params)

    def _bulk_insert(self, table: str, frame: pl.DataFrame, conflict_key: tuple[str, ...] = ()) -> None:
        # One seam for the bulk loader of either backend (tests make it fail to prove atomicity).
        self._driver.bulk_insert(self._conn, table, frame, conflict_key)
