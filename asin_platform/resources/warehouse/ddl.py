"""Column types, generated DDL and the migration files of both backends.

The DDL lives in ordered migration files, one directory per backend::

    asin_platform/sql/duckdb/NNN_name.sql      asin_platform/sql/postgres/NNN_name.sql

``Warehouse.setup()`` applies the pending ones in order (each in its own transaction) and records them
in ``schema_migrations(version, name, applied_at)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from asin_platform.resources.warehouse.errors import WarehouseError
from asin_platform.resources.warehouse.sqltext import q
from asin_platform.resources.warehouse.urls import Backend
from asin_platform.schemas import TABLES, Table

#: Root of the migration directories (``<root>/<backend>/NNN_name.sql``); tests point it elsewhere.
SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
_MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")
MIGRATIONS_TABLE = "schema_migrations"

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


#: Tables whose ``Table.key`` identifies rows for reading but is not unique (no primary key in the
#: PostgreSQL DDL): two rejected records of one ASIN, payload and reason are both kept.
NON_UNIQUE_KEY_TABLES = frozenset({"quarantine"})


def unique_key(table: Table) -> tuple[str, ...]:
    """The columns that must be unique in ``table`` (its key), or () when it has none."""
    return () if table.name in NON_UNIQUE_KEY_TABLES else table.key


def table_spec(name: str) -> Table:
    """The registered table ``name``; ValueError naming the known ones otherwise."""
    # Looked up at call time, so tables registered after import are found.
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None


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
        f"    {q(name)} {sql_type(dtype, backend)}{' NOT NULL' if name in not_null else ''}"
        for name, dtype in table.schema.items()
    ]
    statements = []
    if backend == "postgres" and key:
        lines.append(f"    PRIMARY KEY ({', '.join(q(k) for k in key)})")
    statements.append(f"CREATE TABLE {q(table.name)} (\n" + ",\n".join(lines) + "\n);")
    if backend == "postgres" and table.partitioned and tuple(key[:2]) != ("site", "date"):
        statements.append(f"CREATE INDEX {q(table.name + '_site_date')} ON {q(table.name)} (site, date);")
    return "\n".join(statements) + "\n"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(backend: Backend, root: Path | None = None) -> list[Migration]:
    """The migration files of ``backend`` in version order.

    A migration's name starts with its version number. Other files are not migrations and are
    ignored: files not ending in .sql, and .sql files not starting with a digit (scripts an operator
    runs by hand, such as ``sql/postgres/roles.sql``).
    """
    directory = (root or SQL_DIR) / backend
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        if not path.name[:1].isdigit():
            continue
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


def schema_mismatches(
    columns: pl.DataFrame, primary_keys: pl.DataFrame, names: list[str], backend: Backend
) -> list[str]:
    """Differences between the database and ``schemas.TABLES`` for the tables ``names``.

    ``columns`` holds information_schema ``(table_name, column_name, data_type)`` in ordinal order,
    ``primary_keys`` the ``(table_name, column_name)`` of every primary key in key order.
    """
    problems: list[str] = []
    for name in names:
        spec = table_spec(name)
        rows = columns.filter(pl.col("table_name") == name)
        if rows.height == 0:
            problems.append(f"{name}: table missing (add a migration under sql/{backend}/)")
            continue
        actual = list(zip(rows["column_name"].to_list(), rows["data_type"].to_list(), strict=True))
        expected = [(c, sql_type(t, backend)) for c, t in spec.schema.items()]
        if [c for c, _ in actual] != [c for c, _ in expected]:
            problems.append(f"{name}: columns {[c for c, _ in actual]} != schema {[c for c, _ in expected]}")
        for (column, got), (_, want) in zip(actual, expected, strict=False):
            if got.lower() != want.lower():
                problems.append(f"{name}.{column}: database type {got} != {want} (schemas.py)")
        # Primary key policy (see create_table_sql): the unique key on PostgreSQL, none on DuckDB.
        stored_key = tuple(primary_keys.filter(pl.col("table_name") == name)["column_name"].to_list())
        want_key = unique_key(spec) if backend == "postgres" else ()
        if stored_key != want_key:
            problems.append(f"{name}: primary key {stored_key or 'none'} != {want_key or 'none'}")
    return problems


def _stored_dtypes(backend: Backend) -> dict[str, pl.DataType]:
    # information_schema type name -> polars dtype. Where several dtypes share a type (PostgreSQL's
    # smallint holds Int8, Int16 and UInt8), the signed dtype of that width wins: what a view's column
    # is read as when no table schema says otherwise.
    index = 0 if backend == "duckdb" else 1
    narrow_or_unsigned = (pl.Int8, pl.UInt8, pl.UInt16, pl.UInt32)
    found: dict[str, pl.DataType] = {}
    for dtype in sorted(SQL_TYPES, key=lambda t: t in narrow_or_unsigned):
        found.setdefault(SQL_TYPES[dtype][index].lower(), dtype())
    found[_TIMESTAMP_TYPES[True][index].lower()] = pl.Datetime("us", "UTC")
    found[_TIMESTAMP_TYPES[False][index].lower()] = pl.Datetime("us")
    return found


def view_spec(name: str, columns: list[tuple[str, str]], backend: Backend) -> Table:
    """A view read like a table: ``columns`` are its (name, information_schema data_type) in order.

    Its key (the read order) is whichever of site, date, asin it has, which identifies a row of every
    view the migrations define; it counts as partitioned when it has site and date to filter on.
    """
    known = _stored_dtypes(backend)
    unknown = [(c, t) for c, t in columns if t.lower() not in known]
    if unknown:
        raise ValueError(f"view {name} has columns of types no polars dtype is mapped from: {unknown}")
    schema = {c: known[t.lower()] for c, t in columns}
    key = tuple(c for c in ("site", "date", "asin") if c in schema)
    return Table(name, schema, key=key, partitioned={"site", "date"} <= set(schema))
