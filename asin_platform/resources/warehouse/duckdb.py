"""The DuckDB driver: an embedded file, one writing process at a time, Arrow in and out.

A DuckDB file admits one process holding it open for writing; every operation opens its own
connection and waits (with backoff, up to ``lock_timeout``) while another process holds the file, so
Dagster steps in several processes take turns. ``Warehouse.session()`` holds one connection for a
block because opening the file costs tens of milliseconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from asin_platform.resources.warehouse.driver import ARROW_VIEW, Driver
from asin_platform.resources.warehouse.errors import WarehouseLockedError
from asin_platform.resources.warehouse.sqltext import q
from asin_platform.resources.warehouse.urls import Backend


class DuckDBDriver(Driver):
    backend: Backend = "duckdb"
    holds_session = True

    def __init__(self, url: str, lock_timeout: float) -> None:
        raw = url
        for prefix in ("duckdb:///", "duckdb://"):
            if url.startswith(prefix):
                raw = url[len(prefix) :]
                break
        if raw in ("", ":memory:") or raw.startswith(":memory:"):
            # A connection per operation would hand every operation its own empty database.
            raise ValueError(
                "the warehouse needs a DuckDB file path; ':memory:' would lose data between operations"
            )
        self.display = raw
        self.path = Path(raw).expanduser()
        self.lock_timeout = lock_timeout

    def describe(self) -> str:
        return f"duckdb file {self.display}"

    def location_key(self) -> str:
        return f"duckdb:{self.path.resolve()}"

    def is_gone(self) -> bool:
        # A DuckDB file deleted behind our back (tests, a manual reset) needs setting up again.
        return not self.path.exists()

    def connect(self, *, autocommit: bool = False) -> duckdb.DuckDBPyConnection:
        # A DuckDB file admits one writing process at a time and Dagster may run steps in several:
        # each operation opens its own connection and waits (with backoff) while another holds the lock.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(
                        f"DuckDB file {self.display} stayed locked by another process for {self.lock_timeout:g} s "
                        f"({exc}). A DuckDB file allows one writer process: run the steps in-process, "
                        "serialise them (a Dagster pool), or use a postgresql:// warehouse."
                    ) from exc
                time.sleep(min(remaining, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, 2.0)
        try:
            # Arrow timestamps come out in the session time zone: pin it so reads are UTC.
            conn.execute("SET TimeZone = 'UTC'")
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, conn: duckdb.DuckDBPyConnection) -> None:
        conn.begin()

    def execute(self, conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> None:
        conn.execute(sql, list(params) if params is not None else None)

    def fetch(
        self, conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
    ) -> pl.DataFrame:
        # con.sql(...).to_arrow_table() skips the extra copy a DB-API cursor result makes in duckdb 2.
        relation = conn.sql(sql, params=list(params) if params is not None else None)
        if relation is None:  # a statement without a result
            return pl.DataFrame()
        result = pl.from_arrow(relation.to_arrow_table())
        assert isinstance(result, pl.DataFrame)
        return result

    def fetch_typed(
        self, conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any], schema: dict[str, pl.DataType]
    ) -> pl.DataFrame:
        return self.fetch(conn, sql, params).cast(schema)  # type: ignore[arg-type]

    def bulk_insert(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        frame: pl.DataFrame,
        conflict_key: tuple[str, ...] = (),
    ) -> None:
        # Arrow in: DuckDB scans the registered Arrow table directly, no per-row work in Python.
        columns = ", ".join(q(c) for c in frame.columns)
        conn.register(ARROW_VIEW, frame.to_arrow())
        try:
            if conflict_key:
                # What a primary key would refuse (the DuckDB tables have none: see 001_ingest.sql).
                on = " AND ".join(f"t.{q(k)} = n.{q(k)}" for k in conflict_key)
                clash = conn.sql(
                    f"SELECT {', '.join('n.' + q(k) for k in conflict_key)} FROM {ARROW_VIEW} AS n "
                    f"JOIN {q(table)} AS t ON {on} LIMIT 5"
                ).fetchall()
                if clash:
                    raise ValueError(
                        f"rows for {table} repeat keys {conflict_key} already stored outside the slice: "
                        f"e.g. {clash}"
                    )
            conn.execute(f"INSERT INTO {q(table)} ({columns}) SELECT {columns} FROM {ARROW_VIEW}")
        finally:
            conn.unregister(ARROW_VIEW)

    def upsert(
        self,
        conn: duckdb.DuckDBPyConnection,
        table: str,
        data: pl.DataFrame,
        key: tuple[str, ...],
        updated: list[str],
    ) -> None:
        # The DuckDB tables carry no primary key (see sql/duckdb/001_ingest.sql), so no ON CONFLICT:
        # merge new rows with the stored ones, delete the stored ones, insert the merged ones.
        on = " AND ".join(f"old.{q(k)} = new.{q(k)}" for k in key)

        def value(column: str) -> str:
            if column in key:
                return f"new.{q(column)}"
            if column in updated:
                return self.merged_value(column, "old", "new")
            # Not supplied: the stored value, or NULL for a new row (as ON CONFLICT would leave it).
            return f"old.{q(column)}"

        select = ", ".join(f"{value(c)} AS {q(c)}" for c in data.columns)
        conn.register(ARROW_VIEW, data.to_arrow())
        try:
            merged = conn.sql(
                f"SELECT {select} FROM {ARROW_VIEW} AS new LEFT JOIN {q(table)} AS old ON {on}"
            ).to_arrow_table()
            conn.execute(f"DELETE FROM {q(table)} AS old USING {ARROW_VIEW} AS new WHERE {on}")
        finally:
            conn.unregister(ARROW_VIEW)
        result = pl.from_arrow(merged)
        assert isinstance(result, pl.DataFrame)
        self.bulk_insert(conn, table, result.cast(data.schema))  # type: ignore[arg-type]

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if not values:  # an empty list parameter has no element type to unnest
            return "FALSE", []
        return f"{q(column)} IN (SELECT unnest(?))", [list(values)]

    def here(self, alias: str = "") -> str:
        # DuckDB also lists attached catalogs (temp, ...): this file's catalog only.
        return f"{super().here(alias)} AND {alias}table_catalog = current_database()"
