"""The ``Warehouse`` Dagster resource: setup on first use, transactions, typed reads, schema checks.

Every table is described by ``asin_platform.schemas.TABLES``: reads are cast to the table's polars
schema, writes are conformed to it (``Table.conform``), so a table registered by a later layer works
with no change here. Every public method runs ``setup()`` lazily once per process and location.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from pydantic import Field

from asin_platform.resources.warehouse import ddl
from asin_platform.resources.warehouse import leases as lease_rows
from asin_platform.resources.warehouse.driver import Driver
from asin_platform.resources.warehouse.duckdb import DuckDBDriver
from asin_platform.resources.warehouse.errors import WarehouseError
from asin_platform.resources.warehouse.leases import LeaseGrant, LeaseKey
from asin_platform.resources.warehouse.postgres import PostgresDriver
from asin_platform.resources.warehouse.sqltext import as_date, q, site_list
from asin_platform.resources.warehouse.transaction import WarehouseTx
from asin_platform.resources.warehouse.urls import Backend, backend_of, redact_url
from asin_platform.schemas import TABLES, Table

if TYPE_CHECKING:
    from asin_platform.settings import Settings

log = logging.getLogger(__name__)

#: Where the production warehouse URL comes from (it may carry a password, so not from settings).
WAREHOUSE_URL_ENV = "ASIN_PLATFORM_WAREHOUSE_URL"

# Locations already set up by this process: setup() is idempotent, but running it before every
# operation would cost a round trip each time.
_SETUP_DONE: set[str] = set()
_SETUP_LOCK = threading.Lock()
# Connections held by an open ``Warehouse.session()`` block, by location (see its docstring).
_SESSION: ContextVar[dict[str, Any] | None] = ContextVar("warehouse_session", default=None)


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

    # ---------------------------------------------------------------------------------- the URL

    @classmethod
    def from_env_or_settings(cls, settings: Settings, environ: dict[str, str] | None = None) -> Warehouse:
        """The effective warehouse: ``ASIN_PLATFORM_WAREHOUSE_URL`` when set (kept as a ``dg.EnvVar``,
        so it stays out of run config), else ``settings.warehouse_url``. Usable inside a Dagster run
        and outside one (the CLI) alike. An explicit ``environ`` (tests) is read now instead: an EnvVar
        would resolve against the process environment later."""
        if environ is not None:
            return cls(url=environ.get(WAREHOUSE_URL_ENV) or settings.warehouse_url)
        if os.environ.get(WAREHOUSE_URL_ENV):
            return cls(url=dg.EnvVar(WAREHOUSE_URL_ENV))
        return cls(url=settings.warehouse_url)

    def _plain_url(self) -> str:
        # Inside a run Dagster hands the resource the resolved string; outside one (the CLI, scripts,
        # tests) the field still holds the dg.EnvVar, which refuses str(): resolve it here.
        url = self.url
        if isinstance(url, dg.EnvVar):
            value = url.get_value()
            if not value:
                raise WarehouseError(
                    f"the warehouse URL comes from {url.env_var_name}, which is not set: export it "
                    "(e.g. postgresql://user@host:5432/db) or unset it to use settings.warehouse_url"
                )
            return value
        return url

    @property
    def url_origin(self) -> str:
        """Where the URL came from: ``env ASIN_PLATFORM_WAREHOUSE_URL`` or ``config``."""
        return f"env {self.url.env_var_name}" if isinstance(self.url, dg.EnvVar) else "config"

    @property
    def redacted_url(self) -> str:
        """The effective URL with any password replaced by ``***`` (safe to print)."""
        return redact_url(self._plain_url())

    @property
    def backend(self) -> Backend:
        return backend_of(self._plain_url())

    def _driver(self) -> Driver:
        url = self._plain_url()
        if backend_of(url) == "postgres":
            return PostgresDriver(url, self.pg_schema)
        return DuckDBDriver(url, self.lock_timeout)

    def __repr_args__(self) -> Any:
        # pydantic's repr (and str) would print the URL verbatim, password included.
        for name, value in super().__repr_args__():
            if name == "url" and isinstance(value, dg.EnvVar):
                yield name, f"EnvVar({value.env_var_name!r})"
            else:
                yield name, (redact_url(value) if name == "url" and isinstance(value, str) else value)

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
        if not driver.holds_session or key in held:
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
    def _connection(self, driver: Driver, *, autocommit: bool = False) -> Iterator[Any]:
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

    def _ensure_setup(self, driver: Driver) -> None:
        key = driver.location_key()
        if key in _SETUP_DONE and not driver.is_gone():
            return
        with _SETUP_LOCK:
            self._migrate(driver)
            _SETUP_DONE.add(key)

    def _migrate(self, driver: Driver) -> list[ddl.Migration]:
        pending_all = ddl.migrations(driver.backend)
        applied_now: list[ddl.Migration] = []
        with self._connection(driver, autocommit=True) as conn:
            driver.prepare_setup(conn)
            try:
                driver.execute(
                    conn,
                    f"CREATE TABLE IF NOT EXISTS {ddl.MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())",
                )
                applied = set(
                    driver.fetch(conn, f"SELECT version FROM {ddl.MIGRATIONS_TABLE}")["version"].to_list()
                )
                for migration in pending_all:
                    if migration.version in applied:
                        continue
                    # Each file and its record commit together: a failing file leaves no trace.
                    with driver.atomic(conn):
                        driver.execute(conn, migration.sql)
                        driver.execute(
                            conn,
                            f"INSERT INTO {ddl.MIGRATIONS_TABLE} (version, name) VALUES (?, ?)",
                            [migration.version, migration.name],
                        )
                    applied_now.append(migration)
                    log.info(
                        "warehouse %s: applied migration %03d_%s",
                        driver.describe(),
                        migration.version,
                        migration.name,
                    )
            finally:
                driver.finish_setup(conn)
        return applied_now

    # -------------------------------------------------------------------------------------- writes

    @contextmanager
    def transaction(self) -> Iterator[WarehouseTx]:
        """One transaction: committed when the block exits, rolled back if it raises."""
        driver = self._driver()
        self._ensure_setup(driver)
        with self._connection(driver) as conn, driver.atomic(conn):
            yield WarehouseTx(driver, conn)

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

    @staticmethod
    def _where(
        driver: Driver,
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
            wanted = site_list(sites)
            clauses.append(f"site IN ({', '.join('?' for _ in wanted)})" if wanted else "FALSE")
            params.extend(wanted)
        for column, bound, op in (("date", start, ">="), ("date", end, "<=")):
            if bound is not None:
                need(column)
                clauses.append(f"date {op} ?")
                params.append(as_date(bound))
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
        """Rows of ``table`` (dates inclusive), cast to its schema and ordered by its key.

        ``table`` may also name a view of the database (``relations()["views"]``): its columns are
        typed from the database's column types and it is ordered by its site, date and asin columns.
        """
        driver = self._driver()
        self._ensure_setup(driver)
        spec = self._relation(driver, table)
        wanted = list(columns) if columns is not None else spec.columns
        unknown = [c for c in wanted if c not in spec.schema]
        if unknown:
            raise ValueError(f"{table} has no column(s) {unknown}; columns: {spec.columns}")
        schema = {c: spec.schema[c] for c in wanted}
        where, params = self._where(driver, spec, sites, start, end, asins)
        order = (
            f" ORDER BY {', '.join(driver.order_expr(k, spec.schema[k]) for k in spec.key)}"
            if spec.key
            else ""
        )
        sql = f"SELECT {driver.select_list(schema)} FROM {q(spec.name)}{where}{order}"
        with self._connection(driver) as conn:
            return driver.fetch_typed(conn, sql, params, schema)

    def relations(self) -> dict[str, list[str]]:
        """What ``read`` and ``count`` accept: ``{"tables": [...], "views": [...]}``, sorted."""
        driver = self._driver()
        return {"tables": sorted(TABLES), "views": self._views(driver)}

    def _views(self, driver: Driver) -> list[str]:
        found = self.query(
            f"SELECT table_name FROM information_schema.tables WHERE {driver.here()} "
            "AND table_type = 'VIEW' ORDER BY table_name"
        )
        return found["table_name"].to_list() if found.height else []

    def _relation(self, driver: Driver, name: str) -> Table:
        """The registered table ``name``, else the database's view ``name`` (typed from its columns)."""
        if name in TABLES:
            return TABLES[name]
        views = self._views(driver)
        if name not in views:
            raise ValueError(
                f"unknown table or view {name!r}; tables: {', '.join(sorted(TABLES))}; "
                f"views: {', '.join(views) or 'none'}"
            )
        columns = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE {driver.here()} AND table_name = ? ORDER BY ordinal_position",
            [name],
        )
        return ddl.view_spec(name, columns.rows(), driver.backend)

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
        """Number of rows of ``table`` (or view) in the given sites / date range (dates inclusive)."""
        driver = self._driver()
        self._ensure_setup(driver)
        spec = self._relation(driver, table)
        where, params = self._where(driver, spec, sites, start, end)
        with self._connection(driver) as conn:
            frame = driver.fetch(conn, f"SELECT count(*) AS n FROM {q(spec.name)}{where}", params)
        return int(frame["n"][0])

    def schema_mismatches(self, tables: Sequence[str] | None = None) -> list[str]:
        """Differences between the database and ``schemas.TABLES`` (missing tables, columns out of order,
        wrong types); empty when they agree. Reused by the schema check and test_schemas."""
        driver = self._driver()
        self._ensure_setup(driver)
        columns = self.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE {driver.here()} ORDER BY table_name, ordinal_position"
        )
        keys = self.query(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints AS tc "
            "JOIN information_schema.key_column_usage AS kcu ON kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
            f"WHERE tc.constraint_type = 'PRIMARY KEY' AND {driver.here('tc.')} "
            "ORDER BY tc.table_name, kcu.ordinal_position"
        )
        names = list(tables) if tables is not None else sorted(TABLES)
        return ddl.schema_mismatches(columns, keys, names, driver.backend)

    # -------------------------------------------------------------------------------------- leases

    def acquire_leases(
        self, resource: str, keys: Sequence[LeaseKey], *, holder: str, ttl_s: float
    ) -> LeaseGrant:
        """Lease the (site, date) ``keys`` of ``resource`` to ``holder`` for ``ttl_s`` seconds where
        free, expired or already ``holder``'s (renewed); the grant lists who holds the others."""
        with self.transaction() as tx:
            return lease_rows.acquire(tx, resource, keys, holder, ttl_s)

    def release_leases(self, resource: str, keys: Sequence[LeaseKey], *, holder: str) -> None:
        """Release the leases of ``keys`` that ``holder`` holds."""
        with self.transaction() as tx:
            lease_rows.release(tx, resource, keys, holder)

    @contextmanager
    def leases(
        self,
        resource: str,
        keys: Sequence[LeaseKey],
        *,
        holder: str,
        ttl_s: float,
        wait_s: float = 0.0,
        poll_s: float = 1.0,
    ) -> Iterator[LeaseGrant]:
        """Hold the leases of ``keys`` for the block (see ``leases.py``): acquire what is free, wait up
        to ``wait_s`` for the rest, release what was acquired on exit. Work only ``grant.acquired``."""
        with lease_rows.held(
            lambda ks: self.acquire_leases(resource, ks, holder=holder, ttl_s=ttl_s),
            lambda ks: self.release_leases(resource, ks, holder=holder),
            keys,
            wait_s=wait_s,
            poll_s=poll_s,
        ) as grant:
            yield grant

    @contextmanager
    def lease(
        self,
        resource: str,
        site: str,
        day: date,
        *,
        holder: str,
        ttl_s: float,
        wait_s: float = 0.0,
        poll_s: float = 1.0,
    ) -> Iterator[LeaseGrant]:
        """``leases`` for one (site, date): the grant is truthy when the partition is ours."""
        with self.leases(
            resource, [(site, day)], holder=holder, ttl_s=ttl_s, wait_s=wait_s, poll_s=poll_s
        ) as grant:
            yield grant
