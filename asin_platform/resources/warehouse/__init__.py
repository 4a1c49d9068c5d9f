"""Warehouse: an embedded DuckDB file by default, PostgreSQL when given a ``postgresql://`` URL.

Modules (one concern each):

- ``resource``: the ``Warehouse`` Dagster resource (setup, sessions, transactions, typed reads).
- ``transaction``: ``WarehouseTx``, the writes of one transaction (slice replace, upsert).
- ``driver``: the interface both backends implement; ``duckdb`` and ``postgres`` implement it.
- ``leases``: one fetch per (resource, site, date) at a time, across processes (``ingest_leases``).
- ``ddl``: polars dtype <-> SQL type, generated DDL, the migration files, schema comparison.
- ``urls``: which backend a URL names, and the URL with its password redacted.
- ``sqltext``: identifier quoting and ``?`` -> ``%s`` placeholder translation.

SQL passed to ``query`` / ``execute`` uses ``?`` placeholders on both backends (translated to psycopg's
``%s`` for PostgreSQL). Consequence: PostgreSQL's jsonb ``?`` operators cannot be written when params are
given; use ``jsonb_exists()`` instead.

Secrets: pass the URL as ``dg.EnvVar("ASIN_PLATFORM_WAREHOUSE_URL")`` (or keep the password in
``PGPASSWORD``) so it never lands in run config; ``describe()``, ``repr()`` and connection errors
never show the password.
"""

from asin_platform.resources.warehouse.ddl import (
    MIGRATIONS_TABLE,
    NON_UNIQUE_KEY_TABLES,
    SQL_TYPES,
    Migration,
    create_table_sql,
    migrations,
    sql_type,
    unique_key,
)
from asin_platform.resources.warehouse.errors import WarehouseError, WarehouseLockedError
from asin_platform.resources.warehouse.leases import LEASES_TABLE, LeaseGrant, LeaseHolder, LeaseKey
from asin_platform.resources.warehouse.resource import WAREHOUSE_URL_ENV, Warehouse
from asin_platform.resources.warehouse.sqltext import qmark_to_pyformat
from asin_platform.resources.warehouse.transaction import WarehouseTx
from asin_platform.resources.warehouse.urls import Backend, redact_url

__all__ = [
    "LEASES_TABLE",
    "MIGRATIONS_TABLE",
    "NON_UNIQUE_KEY_TABLES",
    "SQL_TYPES",
    "WAREHOUSE_URL_ENV",
    "Backend",
    "LeaseGrant",
    "LeaseHolder",
    "LeaseKey",
    "Migration",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "WarehouseTx",
    "create_table_sql",
    "migrations",
    "qmark_to_pyformat",
    "redact_url",
    "sql_type",
    "unique_key",
]
