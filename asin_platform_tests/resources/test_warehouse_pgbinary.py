"""Binary COPY into PostgreSQL (resources/warehouse/pgbinary.py and PostgresDriver.bulk_insert).

The encoding tests need no server; the round trips run when ASIN_PLATFORM_TEST_POSTGRES_URL is set
(fixtures in asin_platform_tests/conftest.py) and compare what binary COPY stored with what the CSV
path stores for the same frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import asin_platform.resources.warehouse.postgres as postgres_module
from asin_platform.resources.warehouse import pgbinary
from asin_platform.resources.warehouse.postgres import PostgresDriver

# ------------------------------------------------------------------------------ encoding, no server


def test_header_and_trailer_are_the_documented_bytes() -> None:
    assert pgbinary.HEADER == b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    assert pgbinary.TRAILER == b"\xff\xff"


def test_encoding_of_a_small_frame_is_byte_exact() -> None:
    frame = pl.DataFrame(
        {
            "n": pl.Series([1, None], dtype=pl.Int32),
            "s": ["é", ""],
            "d": [date(2000, 1, 2), date(1999, 12, 31)],
            "b": [True, None],
            "x": pl.Series([-2.5, float("inf")], dtype=pl.Float64),
            "t": [datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC), None],
        }
    )
    types = {"n": "int4", "s": "text", "d": "date", "b": "bool", "x": "float8", "t": "timestamptz"}
    encoded = pgbinary.encode(pgbinary.conform(frame, types), types)
    row1 = (
        b"\x00\x06"  # six fields
        + b"\x00\x00\x00\x04\x00\x00\x00\x01"  # int4 1
        + b"\x00\x00\x00\x02\xc3\xa9"  # "é": two UTF-8 bytes
        + b"\x00\x00\x00\x04\x00\x00\x00\x01"  # 2000-01-02: day 1
        + b"\x00\x00\x00\x01\x01"  # true
        + b"\x00\x00\x00\x08\xc0\x04\x00\x00\x00\x00\x00\x00"  # -2.5
        + b"\x00\x00\x00\x08\x00\x00\x00\x00\x00\x0f\x42\x40"  # 1 s after 2000-01-01 = 1,000,000 us
    )
    row2 = (
        b"\x00\x06"
        + b"\xff\xff\xff\xff"  # NULL
        + b"\x00\x00\x00\x00"  # "": zero bytes, not NULL
        + b"\x00\x00\x00\x04\xff\xff\xff\xff"  # 1999-12-31: day -1
        + b"\xff\xff\xff\xff"  # NULL
        + b"\x00\x00\x00\x08\x7f\xf0\x00\x00\x00\x00\x00\x00"  # +inf
        + b"\xff\xff\xff\xff"  # NULL
    )
    expected = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + row1 + row2 + b"\xff\xff"
    assert encoded == expected
    # Chunks concatenate: header alone, rows without header/trailer, trailer alone.
    parts = [pgbinary.HEADER]
    parts += [pgbinary.encode(c, types, header=False, trailer=False) for c in frame.iter_slices(1)]
    assert b"".join([*parts, pgbinary.TRAILER]) == expected


def test_null_strings_that_own_bytes_send_none() -> None:
    # when/then/otherwise leaves the original bytes under a NULL slot in the Arrow buffers.
    frame = pl.DataFrame({"s": ["abc", "de", "f"]}).with_columns(
        pl.when(pl.Series([False, True, False])).then(None).otherwise(pl.col("s")).alias("s")
    )
    rows = b"\x00\x01\x00\x00\x00\x03abc" + b"\x00\x01\xff\xff\xff\xff" + b"\x00\x01\x00\x00\x00\x01f"
    assert pgbinary.encode(frame, {"s": "text"}) == pgbinary.HEADER + rows + pgbinary.TRAILER


def test_long_strings_split_the_matrix_without_changing_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pl.DataFrame({"s": ["a" * (i % 37) for i in range(200)] + ["z" * 5000], "i": range(201)})
    types = {"s": "text", "i": "int8"}
    whole = pgbinary.encode(frame, types)
    monkeypatch.setattr(pgbinary, "MATRIX_BUDGET", 4096)
    assert pgbinary.encode(frame, types) == whole
    assert len(whole) == 19 + 201 * (2 + 4 + 4 + 8) + sum(len(s) for s in frame["s"]) + 2


def test_binary_types_refuses_what_it_cannot_encode() -> None:
    schema = pl.Schema({"a": pl.Int64(), "b": pl.String()})
    assert pgbinary.binary_types(schema, {"a": "int4", "b": "varchar"}) == {"a": "int4", "b": "varchar"}
    assert pgbinary.binary_types(schema, {"a": "numeric", "b": "text"}) is None  # unsupported type
    assert pgbinary.binary_types(schema, {"a": "int8", "b": "jsonb"}) is None
    assert pgbinary.binary_types(schema, {"a": "int8", "b": "int4"}) is None  # string into an int
    assert pgbinary.binary_types(schema, {"a": "int8", "b": None}) is None  # a domain or extension type
    assert pgbinary.binary_types(schema, {"a": "int8"}) is None  # b is not a column of the table
    assert pgbinary.binary_types(pl.Schema({"x": pl.Float64()}), {"x": "int8"}) is None


# -------------------------------------------------------------------------- round trips, on a server

ALL_TYPES_DDL = """
CREATE TABLE all_types (
    id int4 PRIMARY KEY, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, b bool, d date,
    ts timestamp, tstz timestamptz, t text, v varchar(20)
)
"""
ALL_TYPES_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int32(),
    "i2": pl.Int16(),
    "i4": pl.Int32(),
    "i8": pl.Int64(),
    "f4": pl.Float32(),
    "f8": pl.Float64(),
    "b": pl.Boolean(),
    "d": pl.Date(),
    "ts": pl.Datetime("us"),
    "tstz": pl.Datetime("us", "UTC"),
    "t": pl.String(),
    "v": pl.String(),
}


def all_types_frame() -> pl.DataFrame:
    nan, inf = float("nan"), float("inf")
    ist = timezone(timedelta(hours=5, minutes=30))
    rows = [
        (1, 1, 1, 1, 1.5, 1.25, True, date(2025, 3, 10), datetime(2025, 3, 10, 12, 30, 1, 123456),
         datetime(2025, 3, 10, 12, 0, tzinfo=UTC), "plain", "B000000001"),
        (2, None, None, None, None, None, None, None, None, None, None, None),
        (3, -32768, -(2**31), -(2**63), nan, nan, False, date(1999, 12, 31), datetime(1970, 1, 1),
         datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=ist), "", ""),
        (4, 32767, 2**31 - 1, 2**63 - 1, inf, -inf, True, date(1900, 2, 28), datetime(1899, 12, 31, 23, 59),
         datetime(1850, 6, 1, tzinfo=UTC), "naïve 東京 🚀 \"quoted\", comma\nnewline \\. tab\t", "ünï"),
        (5, 0, 0, 0, -0.0, 5e-324, None, date(2000, 1, 1), datetime(2000, 1, 1), None, "\\.", "NULL"),
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema=list(ALL_TYPES_SCHEMA), orient="row", infer_schema_length=None)
    return frame.with_columns(pl.col(c).cast(t) for c, t in ALL_TYPES_SCHEMA.items())


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[PostgresDriver]:
    schemas = request.getfixturevalue("pg_schemas")  # skips with the repo's message without a URL
    driver = PostgresDriver(schemas.url, schemas.new())
    with driver.connect(autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{driver.schema}"')
    yield driver


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows passed through pgbinary.encode_rows (proves the binary path ran)."""
    seen: list[int] = []
    real = pgbinary.encode_rows

    def spy(frame: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        seen.append(frame.height)
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(pgbinary, "encode_rows", spy)
    return seen


def load(driver: PostgresDriver, ddl: str, table: str, frame: pl.DataFrame, **kw: Any) -> None:
    with driver.connect() as conn:
        with driver.atomic(conn):
            driver.execute(conn, ddl)
            driver.bulk_insert(conn, table, frame, **kw)


def read(
    driver: PostgresDriver, table: str, schema: dict[str, pl.DataType], order: str = "id"
) -> pl.DataFrame:
    with driver.connect() as conn:
        sql = f'SELECT {driver.select_list(schema)} FROM "{table}" ORDER BY {order}'
        return driver.fetch_typed(conn, sql, [], schema)


def csv_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PostgresDriver, "_binary_frame", staticmethod(lambda conn, table, frame: None))


def test_round_trip_of_every_supported_type(
    driver: PostgresDriver, encodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = all_types_frame()
    load(driver, ALL_TYPES_DDL, "all_types", frame)
    assert sum(encodes) == frame.height
    assert_frame_equal(read(driver, "all_types", ALL_TYPES_SCHEMA), frame)
    with driver.connect() as conn:
        # Text survives byte for byte (fetch_typed reads back through CSV: check on the server too).
        stored = conn.execute("SELECT t, v, t IS NULL, octet_length(t) FROM all_types ORDER BY id").fetchall()
        assert stored[1] == (None, None, True, None)
        assert stored[2][:3] == ("", "", False)
        assert stored[3][0] == frame["t"][3] and stored[3][3] == len(frame["t"][3].encode())
        days = conn.execute("SELECT d - date '2000-01-01', tstz FROM all_types WHERE id = 3").fetchone()
        assert days == (-1, datetime(1999, 12, 31, 18, 29, 59, 999999, tzinfo=UTC))
    # The CSV path stores exactly the same values.
    csv_only(monkeypatch)
    load(driver, "CREATE TABLE all_types_csv (LIKE all_types)", "all_types_csv", frame)
    with driver.connect() as conn:
        differ = conn.execute(
            "SELECT count(*) FROM ((TABLE all_types EXCEPT ALL TABLE all_types_csv) "
            "UNION ALL (TABLE all_types_csv EXCEPT ALL TABLE all_types)) AS d"
        ).fetchone()
        assert differ == (0,)


def test_other_frame_dtypes_are_cast_to_the_column_type(
    driver: PostgresDriver, encodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # UInt8 into int2, Int64 into float4, a categorical into text, naive into timestamptz (UTC),
    # tz-aware into timestamp (polars holds it in UTC: its UTC wall clock, as the CSV path stores),
    # an all-null column.
    frame = pl.DataFrame(
        {
            "id": pl.Series([1, 2], dtype=pl.UInt8),
            "f4": pl.Series([3, None], dtype=pl.Int64),
            "t": pl.Series(["a", None], dtype=pl.Categorical),
            "tstz": [datetime(2025, 1, 1, 8), None],
            "ts": [datetime(2025, 1, 1, 8, tzinfo=timezone(timedelta(hours=2))), None],
            "v": [None, None],
        }
    )
    load(driver, ALL_TYPES_DDL, "all_types", frame)
    assert sum(encodes) == 2
    with driver.connect() as conn:
        rows = conn.execute("SELECT id, f4, t, tstz, ts, v FROM all_types ORDER BY id").fetchall()
    assert rows == [
        (1, 3.0, "a", datetime(2025, 1, 1, 8, tzinfo=UTC), datetime(2025, 1, 1, 6), None),
        (2, None, None, None, None, None),
    ]
    csv_only(monkeypatch)
    load(driver, "CREATE TABLE all_types_csv (LIKE all_types)", "all_types_csv", frame)
    with driver.connect() as conn:
        assert conn.execute("SELECT id, f4, t, tstz, ts, v FROM all_types_csv ORDER BY id").fetchall() == rows


def test_empty_frame_loads_nothing(driver: PostgresDriver) -> None:
    load(driver, ALL_TYPES_DDL, "all_types", all_types_frame().clear())
    assert read(driver, "all_types", ALL_TYPES_SCHEMA).height == 0


def test_frame_larger_than_one_chunk(
    driver: PostgresDriver, encodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_module, "_COPY_CHUNK_ROWS", 1000)
    monkeypatch.setattr(pgbinary, "MATRIX_BUDGET", 10_000)  # and each chunk encoded in pieces
    n = 4321
    frame = pl.DataFrame(
        {
            "id": pl.int_range(n, eager=True).cast(pl.Int32),
            "i8": pl.int_range(n, eager=True) * 1_000_003,
            "f8": pl.int_range(n, eager=True) / 7,
            "d": pl.date_range(date(1990, 1, 1), date(1990, 1, 1) + timedelta(days=n - 1), eager=True),
            "t": pl.Series(["x" * (i % 50) or None for i in range(n)], dtype=pl.String),
        }
    )
    load(driver, ALL_TYPES_DDL, "all_types", frame)
    assert encodes == [1000, 1000, 1000, 1000, 321]
    schema = {c: ALL_TYPES_SCHEMA[c] for c in frame.columns}
    assert_frame_equal(read(driver, "all_types", schema), frame)


def test_frame_larger_than_the_real_chunk(driver: PostgresDriver, encodes: list[int]) -> None:
    n = postgres_module._COPY_CHUNK_ROWS * 2 + 17
    ids = pl.int_range(n, eager=True)
    frame = pl.DataFrame({"id": ids.cast(pl.Int32), "f8": ids / 3}).with_columns(
        t=pl.when(pl.col("id") % 11 == 0).then(None).otherwise(pl.format("asin-{}", pl.col("id")))
    )
    load(driver, ALL_TYPES_DDL, "all_types", frame)
    assert encodes == [postgres_module._COPY_CHUNK_ROWS] * 2 + [17]
    assert_frame_equal(read(driver, "all_types", dict(frame.schema)), frame)


def test_conflict_with_a_stored_row_raises_value_error(driver: PostgresDriver, encodes: list[int]) -> None:
    frame = all_types_frame()
    load(driver, ALL_TYPES_DDL, "all_types", frame.head(2))
    with pytest.raises(ValueError, match=r"repeat keys already stored.*\(id\)=\(2\)"):
        with driver.connect() as conn, driver.atomic(conn):
            driver.bulk_insert(conn, "all_types", frame.slice(1), conflict_key=("id",))
    assert read(driver, "all_types", ALL_TYPES_SCHEMA).height == 2  # nothing of the failed load


@pytest.mark.parametrize(
    ("ddl", "frame", "expected"),
    [
        # numeric and jsonb have no encoder: the whole load goes as CSV.
        (
            "CREATE TABLE other (id int4, amount numeric(10, 2), doc jsonb, t text)",
            pl.DataFrame({"id": [1, 2], "amount": [1.5, None], "doc": ['{"a": [1]}', None], "t": ["", "é"]}),
            [(1, 1.5, '{"a": [1]}', ""), (2, None, None, "é")],
        ),
        # A string frame column into an integer column: the server's text input decides.
        (
            "CREATE TABLE other (id int4, n int8)",
            pl.DataFrame({"id": [1], "n": ["42"]}),
            [(1, 42)],
        ),
    ],
)
def test_unsupported_types_fall_back_to_csv(
    driver: PostgresDriver, encodes: list[int], ddl: str, frame: pl.DataFrame, expected: list[tuple]
) -> None:
    load(driver, ddl, "other", frame)
    assert encodes == []
    with driver.connect() as conn:
        assert (
            conn.execute(f"SELECT {', '.join(frame.columns)} FROM other ORDER BY id").fetchall() == expected
        )


def test_integer_too_wide_for_its_column_fails_as_before(driver: PostgresDriver, encodes: list[int]) -> None:
    import psycopg

    frame = pl.DataFrame({"id": [1], "i2": [70_000]})
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        load(driver, ALL_TYPES_DDL, "all_types", frame)
    assert encodes == []


def test_upsert_stage_table_goes_binary(driver: PostgresDriver, encodes: list[int]) -> None:
    # The upsert's temporary stage table is found in pg_temp by the catalogue lookup.
    frame = all_types_frame()
    load(driver, ALL_TYPES_DDL, "all_types", frame.head(3))
    changed = frame.with_columns(pl.col("t").fill_null("filled"))
    with driver.connect() as conn, driver.atomic(conn):
        driver.upsert(conn, "all_types", changed, ("id",), [c for c in frame.columns if c != "id"])
    assert encodes == [3, 5]
    assert_frame_equal(read(driver, "all_types", ALL_TYPES_SCHEMA), changed)
