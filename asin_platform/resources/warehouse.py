"""Warehouse resource: an embedded DuckDB file by default, PostgreSQL when given a ``postgresql://`` URL.

Every table is described by ``asin_platform.schemas.TABLES``: reads are cast to the table's polars
schema, writes are conformed to it (``Table.conform``), so a table registered by a later layer works
with no change here. The DDL lives in ordered migration files, one directory per backend::

    asin_platform/sql/duckdb/NNN_name.sql      asin_platform/sql/postgres/NNN_name.sql

``setup()`` applies the pending ones in order (each in its own transaction) and records them in
``schema_migrations(version, name, applied_at)``; every public method calls it lazily once per process
and location.

Writing a partition replaces exactly its (site, date) slice: DELETE the slice and bulk-load the frame in
one transaction, so a failure leaves the old slice in place. Bulk loads never go row by row: DuckDB
ingests the Arrow table zero-copy; PostgreSQL gets the frame as CSV through ``COPY ... FROM STDIN``.

SQL passed to ``query`` / ``execute`` uses ``?`` placeholders on both backends (translated to psycopg's
``%s`` for PostgreSQL). Consequence: PostgreSQL's jsonb ``?`` operators cannot be written when params are
given; use ``jsonb_exists()`` instead.

Secrets: pass the URL as ``dg.EnvVar("ASIN_PLATFORM_WAREHOUSE_URL")`` (or keep the password in
``PGPASSWORD``) so it never lands in run config; ``describe()``, ``repr()`` and connection errors
never show the password.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import dagster as dg
import duckdb
import polars as pl
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader
from pydantic import Field

from asin_platform.schemas import TABLES, Table

log = logging.getLogger(__name__)

Backend = Literal["duckdb", "postgres"]

#: Root of the migration directories (``<root>/<backend>/NNN_name.sql``); tests point it elsewhere.
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
MIGRATIONS_TABLE = "schema_migrations"

# Rows per COPY chunk: bounds the CSV buffer held in memory while keeping round trips few.
_COPY_CHUNK_ROWS = 50_000
_PG_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ARROW_VIEW = "_warehouse_incoming"
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")  # $$ or $tag$, not the parameter $1


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the warehouse but never its password."""


class WarehouseLockedError(WarehouseError):
    """The DuckDB file stayed locked by another process for longer than ``lock_timeout``."""


# --------------------------------------------------------------------------------------------------
# polars dtype <-> SQL type: the one place both backends' column types are decided
# --------------------------------------------------------------------------------------------------

# Spelled as information_schema.columns.data_type reports them, so the same names serve the DDL
# generator and the schema comparison. PostgreSQL has no 1-byte or unsigned integers: the next wider
# signed type holds every value and reads are cast back to the table's dtype.
SQL_TYPES: dict[type[pl.DataType], tuple[str, str]] = {
    pl.String: ("VARCHAR", "text"),
    pl.Boolean: ("BOOLEAN", "boolean"),
    pl.Int8: ("TINYINT", "smallint"),
    pl.Int16: ("SMALLINT", "smallint"),
    pl.Int32: ("INTEGER", "integer"),
    pl.Int64: ("BIGINT", "bigint"),
    pl.UInt8: ("UTINYINT", "smallint"),
    pl.UInt16: ("USMALLINT", "integer"),
    pl.UInt32: ("UINTEGER", "bigint"),
    pl.Float32: ("FLOAT", "real"),
    pl.Float64: ("DOUBLE", "double precision"),
    pl.Date: ("DATE", "date"),
}
_TIMESTAMP_TYPES = {
    True: ("TIMESTAMP WITH TIME ZONE", "timestamp with time zone"),
    False: ("TIMESTAMP", "timestamp without time zone"),
}


def sql_type(dtype: pl.DataType | type[pl.DataType], backend: Backend) -> str:
    """The column type a polars dtype is stored as on ``backend`` (information_schema spelling)."""
    index = 0 if backend == "duckdb" else 1
    if dtype == pl.Datetime:
        # Any time unit: PostgreSQL stores microseconds, so the table schemas use "us".
        return _TIMESTAMP_TYPES[getattr(dtype, "time_zone", None) is not None][index]
    pair = SQL_TYPES.get(dtype.base_type())
    if pair is None:
        raise TypeError(f"no SQL type for polars dtype {dtype}; add it to SQL_TYPES in {__name__}")
    return pair[index]


def create_table_sql(table: Table, backend: Backend) -> str:
    """DDL for ``table`` following the conventions of ``sql/<backend>/001_ingest.sql``: a starting point
    for the migration that adds a newly registered table (and what tests use for throwaway tables).

    PostgreSQL: primary key = the unique key, plus a (site, date) index when the key does not start
    with them. DuckDB: no primary key or index (slice deletes on ART indexes are slow), key columns
    NOT NULL. Not run by ``setup()``: migrations are files, so what ran is on record.
    """
    key = unique_key(table)
    not_null = set(key) | ({"site", "date"} if table.partitioned else set())
    lines = [
        f"    {_q(name)} {sql_type(dtype, backend)}{' NOT NULL' if name in not_null else ''}"
        for name, dtype in table.schema.items()
    ]
    statements = []
    if backend == "postgres" and key:
        lines.append(f"    PRIMARY KEY ({', '.join(_q(k) for k in key)})")
    statements.append(f"CREATE TABLE {_q(table.name)} (\n" + ",\n".join(lines) + "\n);")
    if backend == "postgres" and table.partitioned and tuple(key[:2]) != ("site", "date"):
        statements.append(f"CREATE INDEX {_q(table.name + '_site_date')} ON {_q(table.name)} (site, date);")
    return "\n".join(statements) + "\n"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _q(identifier: str) -> str:
    """Quote an identifier (both backends use SQL-standard double quotes)."""
    return '"' + identifier.replace('"', '""') + '"'


def _table(name: str) -> Table:
    # Looked up at call time, so tables registered after import are found.
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


#: Tables whose ``Table.key`` identifies rows for reading but is not unique (no primary key in the
#: PostgreSQL DDL): two rejected records of one ASIN, payload and reason are both kept.
NON_UNIQUE_KEY_TABLES = frozenset({"quarantine"})


def unique_key(table: Table) -> tuple[str, ...]:
    """The columns that must be unique in ``table`` (its key), or () when it has none."""
    return () if table.name in NON_UNIQUE_KEY_TABLES else table.key


def _check_unique(table: str, data: pl.DataFrame, key: tuple[str, ...]) -> None:
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


def _as_date(value: date) -> date:
    # datetime is a date subclass; comparing it with a DATE column would compare timestamps.
    return value.date() if isinstance(value, datetime) else value


def _site_list(sites: Sequence[str] | str) -> list[str]:
    # A bare "US" would otherwise iterate as ["U", "S"].
    return [sites] if isinstance(sites, str) else list(sites)


def qmark_to_pyformat(sql: str) -> str:
    """Translate ``?`` placeholders to psycopg's ``%s`` and escape literal ``%`` as ``%%``.

    ``?`` inside string literals, quoted identifiers, dollar quotes and comments is left alone; ``%`` is
    doubled everywhere because psycopg scans the whole statement, literals included.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # doubled quote inside the literal
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            end = n if end < 0 else end + len(tag.group(0))
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        else:
            out.append("%s" if c == "?" else "%%" if c == "%" else c)
            i += 1
    return "".join(out)


def _url_secrets(url: str) -> list[str]:
    """The password of a URL as written and percent-decoded (either may show up in a message)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or ""]
    found.extend(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "password")
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]
    return [s for s in {*found, raw, unquote(raw)} if s]


def _redact_url(url: str) -> str:
    """The URL with any password (userinfo or ``password=`` query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable url>"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(backend: Backend, root: Path | None = None) -> list[Migration]:
    """The migration files of ``backend`` in version order (files not ending in .sql are ignored)."""
    directory = (root or SQL_DIR) / backend
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            # Skipping it silently would leave a schema change unapplied with nothing to show for it.
            raise WarehouseError(f"migration file {path} is not named NNN_lower_case_name.sql")
        version = int(match.group(1))
        if version in found:
            raise WarehouseError(
                f"two migrations with version {version}: {found[version].path.name}, {path.name}"
            )
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


# Locations already set up by this process: setup() is idempotent, but running it before every
# operation would cost a round trip each time.
_SETUP_DONE: set[str] = set()
_SETUP_LOCK = threading.Lock()
# Connections held by an open ``Warehouse.session()`` block, by location (see its docstring).
_SESSION: ContextVar[dict[str, Any] | None] = ContextVar("warehouse_session", default=None)


# --------------------------------------------------------------------------------------------------
# backends: connection handling, statement execution, bulk load, typed fetch
# --------------------------------------------------------------------------------------------------


class _Driver:
    """What differs between the backends. ``conn`` is a DuckDB or psycopg connection."""

    backend: Backend

    def describe(self) -> str:
        """Where the data lives, without secrets."""
        raise NotImplementedError

    def location_key(self) -> str:
        raise NotImplementedError

    def connect(self, *, autocommit: bool = False) -> Any:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        raise NotImplementedError

    def execute(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def fetch(self, conn: Any, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run an arbitrary query; dtypes follow the result's column types."""
        raise NotImplementedError

    def order_expr(self, column: str, dtype: pl.DataType) -> str:
        """An ORDER BY term sorting like polars does (strings by code point)."""
        return _q(column)

    def select_list(self, schema: dict[str, pl.DataType]) -> str:
        """The SELECT list that fetch_typed expects for ``schema``."""
        return ", ".join(_q(c) for c in schema)

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

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A ``column IN values`` predicate that stays one parameter however long the list is."""
        raise NotImplementedError

    def prepare_setup(self, conn: Any) -> None:
        """Serialise concurrent setups and create the namespace the migrations run in."""

    def finish_setup(self, conn: Any) -> None:
        """Undo what prepare_setup took (locks)."""


class _DuckDB(_Driver):
    backend: Backend = "duckdb"

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
        columns = ", ".join(_q(c) for c in frame.columns)
        conn.register(_ARROW_VIEW, frame.to_arrow())
        try:
            if conflict_key:
                # What a primary key would refuse (the DuckDB tables have none: see 001_ingest.sql).
                on = " AND ".join(f"t.{_q(k)} = n.{_q(k)}" for k in conflict_key)
                clash = conn.sql(
                    f"SELECT {', '.join('n.' + _q(k) for k in conflict_key)} FROM {_ARROW_VIEW} AS n "
                    f"JOIN {_q(table)} AS t ON {on} LIMIT 5"
                ).fetchall()
                if clash:
                    raise ValueError(
                        f"rows for {table} repeat keys {conflict_key} already stored outside the slice: "
                        f"e.g. {clash}"
                    )
            conn.execute(f"INSERT INTO {_q(table)} ({columns}) SELECT {columns} FROM {_ARROW_VIEW}")
        finally:
            conn.unregister(_ARROW_VIEW)

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if not values:  # an empty list parameter has no element type to unnest
            return "FALSE", []
        return f"{_q(column)} IN (SELECT unnest(?))", [list(values)]


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


class _Postgres(_Driver):
    backend: Backend = "postgres"

    def __init__(self, url: str, schema: str) -> None:
        if not _PG_SCHEMA_NAME.match(schema):
            raise ValueError(f"pg_schema must be a lower-case SQL identifier, got {schema!r}")
        self.schema = schema
        scheme, _, rest = url.partition("://")
        # SQLAlchemy-style driver suffixes (postgresql+psycopg://) mean nothing to libpq.
        self.url = "postgresql://" + rest if scheme.lower() != "postgres" else url
        # Collected before parsing so that even a parse error can be scrubbed.
        self._secrets = _url_secrets(self.url) + [os.environ.get("PGPASSWORD", "")]
        try:
            self.params: dict[str, Any] = conninfo_to_dict(self.url)
        except psycopg.Error as exc:
            raise WarehouseError(
                f"invalid PostgreSQL URL {_redact_url(self.url)}: {self.scrub(str(exc))}"
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

    def begin(self, conn: psycopg.Connection[Any]) -> None:
        pass  # psycopg opens a transaction at the first statement of a non-autocommit connection

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
        return f'{_q(column)} COLLATE "C"' if dtype == pl.String else _q(column)

    def select_list(self, schema: dict[str, pl.DataType]) -> str:
        return ", ".join(f"{self._transport_expr(c, t)} AS {_q(c)}" for c, t in schema.items())

    @staticmethod
    def _transport_expr(column: str, dtype: pl.DataType) -> str:
        if dtype == pl.Boolean:
            return f"{_q(column)}::int"
        if dtype == pl.Datetime:
            # extract(epoch) is numeric (exact) since PostgreSQL 14.
            return f"(extract(epoch from {_q(column)}) * 1000000)::bigint"
        return _q(column)

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
        # CSV through COPY FROM STDIN, a chunk at a time. quote_style="non_numeric" quotes every text
        # value, so "" stays an empty string (a bare empty field is NULL), and a value that reads
        # "\." can never be taken for COPY's end-of-data marker. The primary key does the conflict
        # check; its error is turned into the ValueError the DuckDB backend raises.
        columns = ", ".join(_q(c) for c in frame.columns)
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {_q(table)} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                    for chunk in frame.iter_slices(_COPY_CHUNK_ROWS):
                        buffer = io.BytesIO()
                        chunk.write_csv(buffer, include_header=False, quote_style="non_numeric")
                        copy.write(buffer.getvalue())
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise ValueError(
                f"rows for {table} repeat keys already stored outside the slice: {detail}"
            ) from exc

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{_q(column)} = ANY(?)", [list(values)]  # one array parameter, however many values

    def prepare_setup(self, conn: psycopg.Connection[Any]) -> None:
        # Several processes may start on a fresh database at once: one migrates, the others wait and
        # then find nothing pending. The session lock is released in finish_setup.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"asin_platform.migrations.{self.schema}"])
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")

    def finish_setup(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"asin_platform.migrations.{self.schema}"])


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


class WarehouseTx:
    """Writes inside one open transaction (from ``Warehouse.transaction()``)."""

    def __init__(self, driver: _Driver, conn: Any) -> None:
        self._driver = driver
        self._conn = conn

    def replace_slices(
        self, table: str, frame: pl.DataFrame, *, sites: Sequence[str], start: date, end: date
    ) -> int:
        """Replace the rows of ``sites`` x ``[start, end]`` (both ends included) by ``frame``.

        Raises ValueError, before touching the database, if a row of ``frame`` lies outside the slice
        (or has no site/date), so a bug cannot overwrite a neighbouring partition. Returns rows inserted.
        """
        spec = _table(table)
        if not spec.partitioned or not {"site", "date"} <= set(spec.schema):
            raise ValueError(f"{table} is not partitioned by (site, date); use upsert()")
        site_list, start, end = _site_list(sites), _as_date(start), _as_date(end)
        if start > end:
            raise ValueError(f"empty date range: start {start} is after end {end}")
        data = spec.conform(frame)
        inside = pl.col("site").is_in(site_list) & pl.col("date").is_between(start, end, closed="both")
        outside = data.filter(inside.not_().fill_null(True))
        if outside.height:
            sample = (
                outside.select("site", "date").unique().sort("site", "date", nulls_last=True).head(5).rows()
            )
            raise ValueError(
                f"{outside.height} row(s) of the {table} frame lie outside the slice sites={site_list} "
                f"dates=[{start}, {end}]; e.g. (site, date) {sample}"
            )
        key = unique_key(spec)
        _check_unique(table, data, key)
        if not site_list:
            return 0
        site_marks = ", ".join("?" for _ in site_list)
        self._driver.execute(
            self._conn,
            f"DELETE FROM {_q(table)} WHERE site IN ({site_marks}) AND date BETWEEN ? AND ?",
            [*site_list, start, end],
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
        spec = _table(table)
        key = unique_key(spec)
        if not key:
            raise ValueError(f"{table} has no unique key to upsert by")
        data = spec.conform(frame)
        _check_unique(table, data, key)
        if data.height == 0:
            return 0
        # Only the columns the caller supplied are updated: a partial frame must not null the rest.
        updated = [c for c in data.columns if c in frame.columns and c not in key]
        if self._driver.backend == "postgres":
            self._upsert_postgres(table, data, key, updated)
        else:
            self._upsert_duckdb(table, data, key, updated)
        return data.height

    @staticmethod
    def _merged_value(column: str, old: str, new: str) -> str:
        # The one place the merge rule of upsert lives, shared by both backends' statements.
        if column == "first_seen":
            return f"least({old}.{_q(column)}, {new}.{_q(column)})"
        if column == "last_seen":
            return f"greatest({old}.{_q(column)}, {new}.{_q(column)})"
        return f"{new}.{_q(column)}"

    def _upsert_postgres(
        self, table: str, data: pl.DataFrame, key: tuple[str, ...], updated: list[str]
    ) -> None:
        # COPY cannot say ON CONFLICT: load a temporary copy of the table, then merge it with
        # INSERT ... ON CONFLICT, which stays correct under concurrent upserts of the same keys.
        stage = f"_upsert_{table}"
        self._driver.execute(
            self._conn, f"CREATE TEMPORARY TABLE {_q(stage)} (LIKE {_q(table)}) ON COMMIT DROP"
        )
        self._bulk_insert(stage, data)
        columns = ", ".join(_q(c) for c in data.columns)
        updates = [f"{_q(c)} = {self._merged_value(c, _q(table), 'EXCLUDED')}" for c in updated]
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        self._driver.execute(
            self._conn,
            f"INSERT INTO {_q(table)} ({columns}) SELECT {columns} FROM pg_temp.{_q(stage)} "
            f"ON CONFLICT ({', '.join(_q(k) for k in key)}) {action}",
        )
        self._driver.execute(self._conn, f"DROP TABLE pg_temp.{_q(stage)}")

    def _upsert_duckdb(
        self, table: str, data: pl.DataFrame, key: tuple[str, ...], updated: list[str]
    ) -> None:
        # The DuckDB tables carry no primary key (see sql/duckdb/001_ingest.sql), so no ON CONFLICT:
        # merge new rows with the stored ones, delete the stored ones, insert the merged ones.
        conn = self._conn
        assert isinstance(conn, duckdb.DuckDBPyConnection)
        on = " AND ".join(f"old.{_q(k)} = new.{_q(k)}" for k in key)

        def value(column: str) -> str:
            if column in key:
                return f"new.{_q(column)}"
            if column in updated:
                return self._merged_value(column, "old", "new")
            # Not supplied: the stored value, or NULL for a new row (as ON CONFLICT would leave it).
            return f"old.{_q(column)}"

        select = ", ".join(f"{value(c)} AS {_q(c)}" for c in data.columns)
        conn.register(_ARROW_VIEW, data.to_arrow())
        try:
            merged = conn.sql(
                f"SELECT {select} FROM {_ARROW_VIEW} AS new LEFT JOIN {_q(table)} AS old ON {on}"
            ).to_arrow_table()
            conn.execute(f"DELETE FROM {_q(table)} AS old USING {_ARROW_VIEW} AS new WHERE {on}")
        finally:
            conn.unregister(_ARROW_VIEW)
        result = pl.from_arrow(merged)
        assert isinstance(result, pl.DataFrame)
        self._bulk_insert(table, result.cast(data.schema))  # type: ignore[arg-type]

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run a statement in this transaction (``?`` placeholders)."""
        self._driver.execute(self._conn, sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query in this transaction, seeing its uncommitted writes (``?`` placeholders)."""
        return self._driver.fetch(self._conn, sql, params)

    def _bulk_insert(self, table: str, frame: pl.DataFrame, conflict_key: tuple[str, ...] = ()) -> None:
        # One seam for the bulk loader of either backend (tests make it fail to prove atomicity).
        self._driver.bulk_insert(self._conn, table, frame, conflict_key)


class Warehouse(dg.ConfigurableResource):
    """The platform's tables: a DuckDB file by default, PostgreSQL when ``url`` is a postgresql:// URL.

    ``url`` forms: ``data/warehouse.duckdb``, ``duckdb:///relative/path.duckdb``,
    ``duckdb:////absolute/path.duckdb``, ``postgresql://user@host:5432/db`` (also ``postgres://`` and
    ``postgresql+psycopg://``; the password may be in the URL or in ``PGPASSWORD``).
    """

    url: str = Field(
        "data/warehouse.duckdb",
        description="DuckDB file path (or duckdb:///path) or a postgresql:// URL; prefer dg.EnvVar for URLs "
        "holding a password",
    )
    pg_schema: str = Field("public", description="PostgreSQL schema holding the tables")
    lock_timeout: float = Field(
        60.0, ge=0, description="seconds to wait for another process's lock on the DuckDB file"
    )

    # ----------------------------------------------------------------------------------- plumbing

    @property
    def backend(self) -> Backend:
        scheme = self.url.partition("://")[0].lower() if "://" in self.url else ""
        if scheme.startswith("postgres"):
            return "postgres"
        if scheme in ("", "duckdb"):
            return "duckdb"
        raise ValueError(f"unsupported warehouse URL scheme {scheme!r}: use a DuckDB path or postgresql://")

    def _driver(self) -> _Driver:
        if self.backend == "postgres":
            return _Postgres(self.url, self.pg_schema)
        return _DuckDB(self.url, self.lock_timeout)

    def __repr_args__(self) -> Any:
        # pydantic's repr (and str) would print the URL verbatim, password included.
        for name, value in super().__repr_args__():
            yield name, (_redact_url(value) if name == "url" and isinstance(value, str) else value)

    def describe(self) -> str:
        """Where the data lives, for logs and metadata; never includes the password."""
        return self._driver().describe()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one DuckDB connection for the block: every read, query and transaction inside it
        reuses that connection.

        An asset step does dozens of warehouse operations, and opening a DuckDB file costs tens of
        milliseconds (closing it checkpoints), which dominated ingestion of short days. Other
        processes wait for the file lock only while the block runs, so wrap one step's work, not a
        whole run. Nested blocks share the outer connection. PostgreSQL connections are cheap and
        stay per operation (a held one would carry implicit transactions between operations).
        """
        driver = self._driver()
        held = _SESSION.get() or {}
        key = driver.location_key()
        if not isinstance(driver, _DuckDB) or key in held:
            yield
            return
        self._ensure_setup(driver)
        conn = driver.connect()
        token = _SESSION.set({**held, key: conn})
        try:
            yield
        finally:
            _SESSION.reset(token)
            conn.close()

    @contextmanager
    def _connection(self, driver: _Driver, *, autocommit: bool = False) -> Iterator[Any]:
        held = (_SESSION.get() or {}).get(driver.location_key())
        if held is not None:
            yield held  # owned by the enclosing session(): it closes it
            return
        conn = driver.connect(autocommit=autocommit)
        try:
            yield conn
        finally:
            conn.close()

    # -------------------------------------------------------------------------------- migrations

    def setup(self) -> None:
        """Create the migrations table and apply pending migrations in version order (idempotent)."""
        driver = self._driver()
        with _SETUP_LOCK:
            self._migrate(driver)
            _SETUP_DONE.add(driver.location_key())

    def _ensure_setup(self, driver: _Driver) -> None:
        key = driver.location_key()
        # A DuckDB file deleted behind our back (tests, a manual reset) needs setting up again.
        if key in _SETUP_DONE and not (isinstance(driver, _DuckDB) and not driver.path.exists()):
            return
        with _SETUP_LOCK:
            self._migrate(driver)
            _SETUP_DONE.add(key)

    def _migrate(self, driver: _Driver) -> list[Migration]:
        pending_all = migrations(driver.backend)
        applied_now: list[Migration] = []
        with self._connection(driver, autocommit=True) as conn:
            driver.prepare_setup(conn)
            try:
                driver.execute(
                    conn,
                    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())",
                )
                applied = set(
                    driver.fetch(conn, f"SELECT version FROM {MIGRATIONS_TABLE}")["version"].to_list()
                )
                for migration in pending_all:
                    if migration.version in applied:
                        continue
                    # Each file and its record commit together: a failing file leaves no trace.
                    with self._transaction_on(driver, conn):
                        driver.execute(conn, migration.sql)
                        driver.execute(
                            conn,
                            f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (?, ?)",
                            [migration.version, migration.name],
                        )
                    applied_now.append(migration)
                    log.info(
                        "warehouse %s: applied migration %03d_%s",
                        self.describe(),
                        migration.version,
                        migration.name,
                    )
            finally:
                driver.finish_setup(conn)
        return applied_now

    @contextmanager
    def _transaction_on(self, driver: _Driver, conn: Any) -> Iterator[None]:
        if isinstance(conn, psycopg.Connection):
            with conn.transaction():
                yield
            return
        conn.begin()
        try:
            yield
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            raise
        conn.commit()

    # -------------------------------------------------------------------------------------- writes

    @contextmanager
    def transaction(self) -> Iterator[WarehouseTx]:
        """One transaction: committed when the block exits, rolled back if it raises."""
        driver = self._driver()
        self._ensure_setup(driver)
        with self._connection(driver) as conn:
            driver.begin(conn)
            try:
                yield WarehouseTx(driver, conn)
            except BaseException:
                # A failing rollback (connection already gone) must not hide the original error;
                # closing the connection discards the transaction anyway.
                with suppress(Exception):
                    conn.rollback()
                raise
            conn.commit()

    def replace_slices(
        self, table: str, frame: pl.DataFrame, *, sites: Sequence[str], start: date, end: date
    ) -> int:
        """``WarehouseTx.replace_slices`` in its own transaction."""
        with self.transaction() as tx:
            return tx.replace_slices(table, frame, sites=sites, start=start, end=end)

    def upsert(self, table: str, frame: pl.DataFrame) -> int:
        """``WarehouseTx.upsert`` in its own transaction."""
        with self.transaction() as tx:
            return tx.upsert(table, frame)

    # --------------------------------------------------------------------------------------- reads

    def _where(
        self,
        driver: _Driver,
        spec: Table,
        sites: Sequence[str] | None,
        start: date | None,
        end: date | None,
        asins: Sequence[str] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def need(column: str) -> None:
            if column not in spec.schema:
                raise ValueError(f"{spec.name} has no {column} column to filter on")

        if sites is not None:
            need("site")
            site_list = _site_list(sites)
            if not site_list:
                clauses.append("FALSE")
            else:
                clauses.append(f"site IN ({', '.join('?' for _ in site_list)})")
                params.extend(site_list)
        if start is not None:
            need("date")
            clauses.append("date >= ?")
            params.append(_as_date(start))
        if end is not None:
            need("date")
            clauses.append("date <= ?")
            params.append(_as_date(end))
        if asins is not None:
            need("asin")
            clause, extra = driver.in_list("asin", asins)
            clauses.append(clause)
            params.extend(extra)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def read(
        self,
        table: str,
        *,
        sites: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
        columns: Sequence[str] | None = None,
        asins: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of ``table`` (dates inclusive), cast to its schema and ordered by its key."""
        spec = _table(table)
        wanted = list(columns) if columns is not None else spec.columns
        unknown = [c for c in wanted if c not in spec.schema]
        if unknown:
            raise ValueError(f"{table} has no column(s) {unknown}; columns: {spec.columns}")
        schema = {c: spec.schema[c] for c in wanted}
        driver = self._driver()
        self._ensure_setup(driver)
        where, params = self._where(driver, spec, sites, start, end, asins)
        order = (
            f" ORDER BY {', '.join(driver.order_expr(k, spec.schema[k]) for k in spec.key)}"
            if spec.key
            else ""
        )
        sql = f"SELECT {driver.select_list(schema)} FROM {_q(table)}{where}{order}"
        with self._connection(driver) as conn:
            return driver.fetch_typed(conn, sql, params, schema)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query (``?`` placeholders) and return its rows; dtypes follow the result columns."""
        driver = self._driver()
        self._ensure_setup(driver)
        with self._connection(driver) as conn:
            return driver.fetch(conn, sql, params)

    def count(
        self,
        table: str,
        *,
        sites: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> int:
        """Number of rows of ``table`` in the given sites / date range (dates inclusive)."""
        spec = _table(table)
        driver = self._driver()
        self._ensure_setup(driver)
        where, params = self._where(driver, spec, sites, start, end)
        with self._connection(driver) as conn:
            frame = driver.fetch(conn, f"SELECT count(*) AS n FROM {_q(table)}{where}", params)
        return int(frame["n"][0])

    def schema_mismatches(self, tables: Sequence[str] | None = None) -> list[str]:
        """Differences between the database and ``schemas.TABLES`` (missing tables, columns out of order,
        wrong types); empty when they agree. Reused by the schema check and test_schemas."""
        driver = self._driver()
        self._ensure_setup(driver)
        names = list(tables) if tables is not None else sorted(TABLES)

        def here(alias: str) -> str:
            # This warehouse's schema only (DuckDB also lists attached catalogs, e.g. temp).
            clause = f"{alias}table_schema = current_schema()"
            if driver.backend == "duckdb":
                clause += f" AND {alias}table_catalog = current_database()"
            return clause

        found = self.query(
            f"SELECT table_name, column_name, data_type FROM information_schema.columns WHERE {here('')} "
            "ORDER BY table_name, ordinal_position"
        )
        keys = self.query(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints AS tc "
            "JOIN information_schema.key_column_usage AS kcu ON kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
            f"WHERE tc.constraint_type = 'PRIMARY KEY' AND {here('tc.')} "
            "ORDER BY tc.table_name, kcu.ordinal_position"
        )
        problems: list[str] = []
        for name in names:
            spec = _table(name)
            rows = found.filter(pl.col("table_name") == name)
            if rows.height == 0:
                problems.append(f"{name}: table missing (add a migration under sql/{driver.backend}/)")
                continue
            actual = list(zip(rows["column_name"].to_list(), rows["data_type"].to_list(), strict=True))
            expected = [(c, sql_type(t, driver.backend)) for c, t in spec.schema.items()]
            if [c for c, _ in actual] != [c for c, _ in expected]:
                problems.append(
                    f"{name}: columns {[c for c, _ in actual]} != schema {[c for c, _ in expected]}"
                )
            for (column, got), (_, want) in zip(actual, expected, strict=False):
                if got.lower() != want.lower():
                    problems.append(f"{name}.{column}: database type {got} != {want} (schemas.py)")
            # Primary key policy (see create_table_sql): the unique key on PostgreSQL, none on DuckDB.
            stored_key = tuple(keys.filter(pl.col("table_name") == name)["column_name"].to_list())
            want_key = unique_key(spec) if driver.backend == "postgres" else ()
            if stored_key != want_key:
                problems.append(f"{name}: primary key {stored_key or 'none'} != {want_key or 'none'}")
        return problems
