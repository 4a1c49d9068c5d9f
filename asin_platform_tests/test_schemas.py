"""The DDL under asin_platform/sql/ agrees with the column contracts of asin_platform/schemas.py.

Runs once per warehouse backend (fixtures in conftest.py). The polars -> SQL type map lives in one
place, ``SQL_TYPES`` / ``sql_type`` in asin_platform/resources/warehouse/ddl.py; when a table is added to
``schemas.TABLES`` without its migration, the failure names it and ``create_table_sql`` drafts the DDL.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from asin_platform.core.parsed import PRODUCTS_SCHEMA
from asin_platform.resources.warehouse import (
    NON_UNIQUE_KEY_TABLES,
    Warehouse,
    create_table_sql,
    sql_type,
    unique_key,
)
from asin_platform.schemas import FEATURES_DAILY, INGEST_TABLES, LISTING_SCHEMA, TABLES, Table


def test_every_column_dtype_has_a_sql_type() -> None:
    for table in TABLES.values():
        for column, dtype in table.schema.items():
            for backend in ("duckdb", "postgres"):
                assert sql_type(dtype, backend), f"{table.name}.{column}"  # raises TypeError if unmapped


def test_keys_are_columns_and_partitioned_tables_have_site_and_date() -> None:
    for table in TABLES.values():
        assert set(table.key) <= set(table.schema), table.name
        if table.partitioned:
            assert {"site", "date"} <= set(table.schema), table.name
    assert NON_UNIQUE_KEY_TABLES <= set(TABLES)


def test_listing_columns_have_one_dtype_wherever_they_are_stored() -> None:
    """LISTING_SCHEMA is the record: the parsed products frame carries all of it, in order, and every
    table storing a listing column stores it with the record's dtype."""
    assert [c for c in PRODUCTS_SCHEMA if c in LISTING_SCHEMA] == list(LISTING_SCHEMA)
    assert {c: PRODUCTS_SCHEMA[c] for c in LISTING_SCHEMA} == LISTING_SCHEMA
    stored = {
        (table.name, column): dtype
        for table in (*INGEST_TABLES, FEATURES_DAILY)
        for column, dtype in table.schema.items()
        if column in LISTING_SCHEMA
    }
    assert {("dim_asin", "category_path"), ("mart_timeseries_daily", "listed_since")} <= set(stored)
    assert {key: dtype for key, dtype in stored.items() if dtype != LISTING_SCHEMA[key[1]]} == {}


def test_database_matches_schemas(warehouse: Warehouse, backend: str) -> None:
    problems = warehouse.schema_mismatches()
    hints = [
        f"-- draft DDL for {name}:\n{create_table_sql(TABLES[name], backend)}"  # type: ignore[arg-type]
        for name in sorted(TABLES)
        if any(p.startswith(f"{name}: table missing") for p in problems)
    ]
    assert problems == [], "\n".join(problems + hints)


def test_ingest_tables_exist_after_setup(warehouse: Warehouse) -> None:
    assert warehouse.schema_mismatches([t.name for t in INGEST_TABLES]) == []


def test_mismatches_are_reported(
    warehouse_factory: Callable[[], Warehouse], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = warehouse_factory()
    wh.setup()
    contract = Table(
        "test_drift", {"site": pl.Utf8, "date": pl.Date, "n": pl.Int64, "x": pl.Float64}, key=("site",)
    )
    monkeypatch.setitem(TABLES, contract.name, contract)
    assert wh.schema_mismatches([contract.name]) == [
        f"test_drift: table missing (add a migration under sql/{backend}/)"
    ]
    # Wrong type for n, x missing, and the opposite primary-key policy of the backend.
    key = "" if backend == "postgres" else ", PRIMARY KEY (site)"
    with wh.transaction() as tx:
        tx.execute(f"CREATE TABLE test_drift (site VARCHAR NOT NULL, date DATE, n INTEGER{key})")
    problems = wh.schema_mismatches([contract.name])
    assert any("columns ['site', 'date', 'n'] != schema ['site', 'date', 'n', 'x']" in p for p in problems)
    assert any(p.startswith("test_drift.n: database type") for p in problems)
    assert any("primary key" in p for p in problems)
    assert unique_key(contract) == ("site",)
