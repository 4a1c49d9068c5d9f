"""What differs between the backends, as one interface the resource and the transaction call.

A driver knows how to connect, run a statement, fetch typed rows, bulk-load a frame, upsert and
serialise setup on its backend; the resource above it never asks which backend it talks to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import polars as pl

from asin_platform.resources.warehouse.sqltext import q
from asin_platform.resources.warehouse.urls import Backend

#: Name under which a frame is registered for DuckDB to scan (bulk loads, upserts).
ARROW_VIEW = "_warehouse_incoming"


class Driver:
    """One backend. ``conn`` is a DuckDB or psycopg connection."""

    backend: Backend
    #: Whether ``Warehouse.session()`` holds one connection for its block (worth it when opening one
    #: is expensive, as for a DuckDB file).
    holds_session: bool = False

    def describe(self) -> str:
        """Where the data lives, without secrets."""
        raise NotImplementedError

    def location_key(self) -> str:
        """Identifies the database (and schema): setups and sessions are kept per location."""
        raise NotImplementedError

    def is_gone(self) -> bool:
        """True when the database vanished since it was set up (a deleted DuckDB file)."""
        return False

    def connect(self, *, autocommit: bool = False) -> Any:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        """Open a transaction on a connection that does not open one by itself."""

    @contextmanager
    def atomic(self, conn: Any) -> Iterator[None]:
        """One transaction on ``conn``: committed when the block exits, rolled back if it raises."""
        self.begin(conn)
        try:
            yield
        except BaseException:
            # A failing rollback (connection already gone) must not hide the original error;
            # closing the connection discards the transaction anyway.
            with suppress(Exception):
                conn.rollback()
            raise
        conn.commit()

    def execute(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def fetch(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run an arbitrary query; dtypes follow the result's column types."""
        raise NotImplementedError

    def order_expr(self, column: str, dtype: pl.DataType) -> str:
        """An ORDER BY term sorting like polars does (strings by code point)."""
        return q(column)

    def select_list(self, schema: dict[str, pl.DataType]) -> str:
        """The SELECT list that fetch_typed expects for ``schema``."""
        return ", ".join(q(c) for c in schema)

    def fetch_typed(
        self, conn: Any, sql: str, params: Sequence[Any], schema: dict[str, pl.DataType]
    ) -> pl.DataFrame:
        """Run ``sql`` (selecting ``select_list(schema)``); the frame is cast to ``schema``."""
        raise NotImplementedError

    def bulk_insert(
        self, conn: Any, table: str, frame: pl.DataFrame, conflict_key: tuple[str, ...] = ()
    ) -> None:
        """Append ``frame`` to ``table``; ValueError if a row repeats the ``conflict_key`` of a stored row."""
        raise NotImplementedError

    def upsert(
        self, conn: Any, table: str, data: pl.DataFrame, key: tuple[str, ...], updated: list[str]
    ) -> None:
        """Insert ``data`` or update the ``updated`` columns of rows whose ``key`` is stored
        (merge rule: ``merged_value``)."""
        raise NotImplementedError

    @staticmethod
    def merged_value(column: str, old: str, new: str) -> str:
        """The value an upsert writes to ``column`` from the stored (``old``) and incoming (``new``) row.

        The one place the merge rule lives, shared by both backends' statements: ``first_seen`` /
        ``last_seen`` keep the earliest / latest (NULL-ignoring), anything else takes the new value.
        """
        if column == "first_seen":
            return f"least({old}.{q(column)}, {new}.{q(column)})"
        if column == "last_seen":
            return f"greatest({old}.{q(column)}, {new}.{q(column)})"
        return f"{new}.{q(column)}"

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A ``column IN values`` predicate that stays one parameter however long the list is."""
        raise NotImplementedError

    def here(self, alias: str = "") -> str:
        """An information_schema predicate selecting this warehouse's schema only."""
        return f"{alias}table_schema = current_schema()"

    def prepare_setup(self, conn: Any) -> None:
        """Serialise concurrent setups and create the namespace the migrations run in."""

    def finish_setup(self, conn: Any) -> None:
        """Undo what prepare_setup took (locks)."""
