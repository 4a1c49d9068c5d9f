"""The PostgreSQL driver: one schema of a server, COPY in and out, secrets scrubbed from every error.

Connections are per operation (cheap on PostgreSQL) with ``search_path`` set to the schema alone, the
session in UTC and ISO dates. Bulk loads send binary COPY (``pgbinary``; CSV for a table with a column
type it does not encode) through ``COPY ... FROM STDIN``; typed reads come back as CSV through
``COPY ... TO STDOUT`` parsed by polars.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader

from asin_platform.resources.warehouse import pgbinary
from asin_platform.resources.warehouse.driver import Driver
from asin_platform.resources.warehouse.errors import WarehouseError
from asin_platform.resources.warehouse.sqltext import q, qmark_to_pyformat
from asin_platform.resources.warehouse.urls import Backend, redact_url, url_secrets

# Rows per COPY chunk: bounds the CSV / binary buffer held in memory while keeping round trips few.
_COPY_CHUNK_ROWS = 50_000
_PG_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# PostgreSQL type oids -> polars dtypes for query(); anything else is left to polars' inference.
_PG_OID_DTYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    700: pl.Float32(),
    701: pl.Float64(),
    1700: pl.Float64(),  # numeric, loaded as float
    18: pl.String(),
    19: pl.String(),
    25: pl.String(),
    1042: pl.String(),
    1043: pl.String(),
    114: pl.String(),  # json, loaded as text
    3802: pl.String(),  # jsonb, loaded as text
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}


class PostgresDriver(Driver):
    backend: Backend = "postgres"

    def __init__(self, url: str, schema: str) -> None:
        if not _PG_SCHEMA_NAME.match(schema):
            raise ValueError(f"pg_schema must be a lower-case SQL identifier, got {schema!r}")
        self.schema = schema
        scheme, _, rest = url.partition("://")
        # SQLAlchemy-style driver suffixes (postgresql+psycopg://) mean nothing to libpq.
        self.url = "postgresql://" + rest if scheme.lower() != "postgres" else url
        # Collected before parsing so that even a parse error can be scrubbed.
        self._secrets = url_secrets(self.url) + [os.environ.get("PGPASSWORD", "")]
        try:
            self.params: dict[str, Any] = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise WarehouseError(
                f"invalid PostgreSQL URL {redact_url(self.url)}: {self.scrub(str(exc))}"
            ) from None
        self._secrets.append(str(self.params.get("password") or ""))

    def scrub(self, text: str) -> str:
        """``text`` with every known password replaced by ``***``."""
        for secret in sorted({s for s in self._secrets if s}, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def describe(self) -> str:
        host = self.params.get("host") or "localhost"
        port = self.params.get("port") or "5432"
        dbname = self.params.get("dbname") or self.params.get("user") or os.environ.get("USER", "")
        return f"postgresql {host}:{port}/{dbname} schema {self.schema}"

    def location_key(self) -> str:
        p = self.params
        return f"postgres:{p.get('user')}@{p.get('host')}:{p.get('port')}/{p.get('dbname')}/{self.schema}"

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        params = dict(self.params)
        # search_path = the schema alone: unqualified DDL and queries land there, and a stale table in
        # public can never be read by mistake. UTC and ISO dates keep text I/O unambiguous.
        session = f"-c search_path={self.schema} -c TimeZone=UTC -c DateStyle=ISO,YMD"
        params["options"] = f"{params['options']} {session}" if params.get("options") else session
        params.setdefault("connect_timeout", "10")
        params.setdefault("application_name", "asin_platform")
        try:
            conn = psycopg.connect(autocommit=autocommit, **params)
        except psycopg.Error as exc:
            # from None: the chained libpq error would be printed verbatim in tracebacks.
            raise WarehouseError(f"cannot connect to {self.describe()}: {self.scrub(str(exc))}") from None
        # Text for json and float for numeric: polars has no use for dict / Decimal objects.
        for name in ("json", "jsonb"):
            conn.adapters.register_loader(name, TextLoader)
        conn.adapters.register_loader("numeric", FloatLoader)
        return conn

    @contextmanager
    def atomic(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        # A non-autocommit connection opens its transaction at the first statement; an autocommit
        # one (setup's) needs an explicit block.
        if conn.autocommit:
            with conn.transaction():
                yield
            return
        with super().atomic(conn):
            yield

    def execute(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] | None = None) -> None:
        if params is None:
            conn.execute(sql.encode())  # no params: psycopg sends it verbatim (multi-statement allowed)
        else:
            conn.execute(qmark_to_pyformat(sql), list(params))

    def fetch(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] | None = None
    ) -> pl.DataFrame:
        with conn.cursor() as cur:
            if params is None:
                cur.execute(sql.encode())
            else:
                cur.execute(qmark_to_pyformat(sql), list(params))
            if cur.description is None:
                return pl.DataFrame()
            rows = cur.fetchall()
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in cur.description]
            return pl.DataFrame(
                [
                    pl.Series(col.name, list(values), dtype=_PG_OID_DTYPES.get(col.type_code), strict=False)
                    for col, values in zip(cur.description, columns, strict=True)
                ]
            )

    def fetch_typed(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any], schema: dict[str, pl.DataType]
    ) -> pl.DataFrame:
        # COPY TO as CSV parsed by polars reads about twice as fast as cursor.fetchall() plus building
        # the frame (200k x 25 mart rows: ~1.1 s vs ~2.4 s). CSV keeps "" and NULL apart (quoted vs bare
        # empty field), which polars honours. Booleans travel as 0/1 and timestamps as epoch
        # microseconds so no text format has to be parsed.
        statement = f"COPY ({sql}) TO STDOUT (FORMAT csv)"
        buffer = io.BytesIO()
        with conn.cursor() as cur:
            with cur.copy(qmark_to_pyformat(statement), list(params)) as copy:
                for chunk in copy:
                    buffer.write(chunk)
        if buffer.tell() == 0:
            return pl.DataFrame(schema=schema)
        buffer.seek(0)
        transport = {c: self._transport_dtype(t) for c, t in schema.items()}
        frame = pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema=transport)
        return frame.with_columns(self._restore_expr(c, t) for c, t in schema.items())

    def order_expr(self, column: str, dtype: pl.DataType) -> str:
        # The database's collation (en_US.UTF-8, say) would order text differently from DuckDB and
        # polars; "C" is byte order, which for UTF-8 is code-point order.
        return f'{q(column)} COLLATE "C"' if dtype == pl.String else q(column)

    def select_list(self, schema: dict[str, pl.DataType]) -> str:
        return ", ".join(f"{self._transport_expr(c, t)} AS {q(c)}" for c, t in schema.items())

    @staticmethod
    def _transport_expr(column: str, dtype: pl.DataType) -> str:
        if dtype == pl.Boolean:
            return f"{q(column)}::int"
        if dtype == pl.Datetime:
            # extract(epoch) is numeric (exact) since PostgreSQL 14.
            return f"(extract(epoch from {q(column)}) * 1000000)::bigint"
        return q(column)

    @staticmethod
    def _transport_dtype(dtype: pl.DataType) -> pl.DataType:
        if dtype == pl.Boolean:
            return pl.Int32()
        if dtype == pl.Datetime:
            return pl.Int64()
        return dtype

    @staticmethod
    def _restore_expr(column: str, dtype: pl.DataType) -> pl.Expr:
        if dtype == pl.Datetime:
            tz = getattr(dtype, "time_zone", None)
            instant = pl.from_epoch(pl.col(column), time_unit="us")
            if tz is not None:
                instant = instant.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
            return instant.cast(dtype).alias(column)
        return pl.col(column).cast(dtype)

    def bulk_insert(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        frame: pl.DataFrame,
        conflict_key: tuple[str, ...] = (),
    ) -> None:
        # Binary COPY when every column's type can be encoded (pgbinary: the server decodes values
        # instead of parsing text, about half its CPU); otherwise CSV, a chunk at a time.
        # quote_style="non_numeric" quotes every text value, so "" stays an empty string (a bare empty
        # field is NULL), and a value that reads "\." can never be taken for COPY's end-of-data
        # marker. Either way the primary key does the conflict check; its error is turned into the
        # ValueError the DuckDB backend raises.
        columns = ", ".join(q(c) for c in frame.columns)
        encoded = self._binary_frame(conn, table, frame)
        try:
            with conn.cursor() as cur:
                if encoded is not None:
                    data, types = encoded
                    with cur.copy(f"COPY {q(table)} ({columns}) FROM STDIN (FORMAT binary)") as copy:
                        copy.write(pgbinary.HEADER)
                        for chunk in data.iter_slices(_COPY_CHUNK_ROWS):
                            for piece in pgbinary.encode_rows(chunk, types):
                                copy.write(memoryview(piece))
                        copy.write(pgbinary.TRAILER)
                    return
                with cur.copy(f"COPY {q(table)} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                    for chunk in frame.iter_slices(_COPY_CHUNK_ROWS):
                        buffer = io.BytesIO()
                        chunk.write_csv(buffer, include_header=False, quote_style="non_numeric")
                        copy.write(buffer.getvalue())
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise ValueError(
                f"rows for {table} repeat keys already stored outside the slice: {detail}"
            ) from exc

    @staticmethod
    def _binary_frame(
        conn: psycopg.Connection[Any], table: str, frame: pl.DataFrame
    ) -> tuple[pl.DataFrame, dict[str, str]] | None:
        """``frame`` cast for binary COPY into ``table`` and its columns' target types, or None when
        the load has to go as CSV (a column type pgbinary does not encode, a frame dtype of another
        kind, an integer too wide for its column: the server's text input then decides)."""
        if not frame.width or conn.info.encoding != "utf-8":
            return None  # binary text is sent in the client encoding: UTF-8 is what polars holds
        types = pgbinary.binary_types(frame.schema, pgbinary.table_types(conn, q(table)))
        if types is None:
            return None
        try:
            return pgbinary.conform(frame, types), types
        except pl.exceptions.PolarsError:
            return None

    def upsert(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        data: pl.DataFrame,
        key: tuple[str, ...],
        updated: list[str],
    ) -> None:
        # COPY cannot say ON CONFLICT: load a temporary copy of the table, then merge it with
        # INSERT ... ON CONFLICT, which stays correct under concurrent upserts of the same keys.
        stage = f"_upsert_{table}"
        self.execute(conn, f"CREATE TEMPORARY TABLE {q(stage)} (LIKE {q(table)}) ON COMMIT DROP")
        self.bulk_insert(conn, stage, data)
        columns = ", ".join(q(c) for c in data.columns)
        updates = [f"{q(c)} = {self.merged_value(c, q(table), 'EXCLUDED')}" for c in updated]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        self.execute(
            conn,
            f"INSERT INTO {q(table)} ({columns}) SELECT {columns} FROM pg_temp.{q(stage)} "
            f"ON CONFLICT ({', '.join(q(k) for k in key)}) {action}",
        )
        self.execute(conn, f"DROP TABLE pg_temp.{q(stage)}")

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{q(column)} = ANY(?)", [list(values)]  # one array parameter, however many values

    def prepare_setup(self, conn: psycopg.Connection[Any]) -> None:
        # Several processes may start on a fresh database at once: one migrates, the others wait and
        # then find nothing pending. The session lock is released in finish_setup.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"asin_platform.migrations.{self.schema}"])
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q(self.schema)}")

    def finish_setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"asin_platform.migrations.{self.schema}"])
