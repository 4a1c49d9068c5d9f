"""The Warehouse resource, run against every backend (fixtures in asin_platform_tests/conftest.py).

DuckDB always runs; PostgreSQL runs when ASIN_PLATFORM_TEST_POSTGRES_URL is set (``.ci/run`` does).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import asin_platform.resources.warehouse.ddl as ddl_module
from asin_platform.resources.warehouse import (
    Warehouse,
    WarehouseError,
    WarehouseLockedError,
    WarehouseTx,
    create_table_sql,
    migrations,
    qmark_to_pyformat,
)
from asin_platform.schemas import INGEST_TABLES, MART_TIMESERIES_DAILY, TABLES, UTC_TS, Table

MART = TABLES["mart_timeseries_daily"]
D1 = date(2025, 1, 6)
INGEST_NAMES = [t.name for t in INGEST_TABLES]


def days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def mart_frame(site: str, dates: Sequence[date], asins: Sequence[str], version: int = 0) -> pl.DataFrame:
    """A conformed mart frame, one row per (date, asin); ``version`` changes every value column."""
    rows = []
    for d in dates:
        for i, asin in enumerate(asins):
            rows.append(
                {
                    "site": site,
                    "date": d,
                    "asin": asin,
                    "category_id": f"cat{i % 3}",
                    "price": 10.0 + i + version / 100,
                    "bsr_root": 1000 * (i + 1) + version,
                    "review_count": i * 7 + version,
                    "has_aplus": (i + version) % 2 == 0,
                    "listed_since": date(2024, 1, 1) + timedelta(days=i),
                    "flag_price_spike": False,
                    "source": "unified",
                    "payload_id": f"p-{site}-{d}-{version}",
                    "fetched_at": datetime(2025, 1, 1, 12, tzinfo=UTC) + timedelta(days=version),
                }
            )
    return MART.conform(pl.DataFrame(rows, infer_schema_length=None)).sort(list(MART.key))


def sort_key(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.sort(list(TABLES[table].key), nulls_last=False)


# ------------------------------------------------------------------------------------------ setup


def snapshot(wh: Warehouse) -> tuple[list[tuple], list[tuple]]:
    columns = wh.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    recorded = wh.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    return columns.rows(), recorded.rows()


def test_setup_is_idempotent_and_records_migrations(
    warehouse_factory: Callable[[], Warehouse], backend: str
) -> None:
    wh = warehouse_factory()
    wh.setup()
    first = snapshot(wh)
    wh.setup()
    assert snapshot(wh) == first
    recorded = wh.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [(v, n) for v, n, _ in recorded.rows()] == [(m.version, m.name) for m in migrations(backend)]
    assert recorded["version"].to_list()[0] == 1 and recorded["name"][0] == "ingest"
    assert recorded["applied_at"].null_count() == 0
    assert wh.schema_mismatches(INGEST_NAMES) == []


def test_first_use_sets_up_lazily(warehouse_factory: Callable[[], Warehouse]) -> None:
    wh = warehouse_factory()  # no setup() call: every public method sets up on first use
    assert wh.count("mart_timeseries_daily") == 0
    assert wh.read("fact_keywords").schema == TABLES["fact_keywords"].empty().schema


def test_migrations_run_in_order_once_and_atomically(
    warehouse_factory: Callable[[], Warehouse], backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "sql"
    folder = root / backend
    folder.mkdir(parents=True)
    (folder / "001_first.sql").write_text("CREATE TABLE t_one (x INTEGER);\n")
    (folder / "002_second.sql").write_text(
        "INSERT INTO t_one VALUES (1);\nCREATE VIEW v_one AS SELECT x + 1 AS y FROM t_one;\n"
    )
    (folder / "README.md").write_text("not a migration")
    monkeypatch.setattr(ddl_module, "SQL_DIR", root)
    wh = warehouse_factory()
    wh.setup()
    recorded = wh.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert recorded.rows() == [(1, "first"), (2, "second")]
    assert wh.query("SELECT y FROM v_one")["y"].to_list() == [2]

    # A later release adds 003: only it runs (002's INSERT is not repeated).
    (folder / "003_third.sql").write_text("INSERT INTO t_one VALUES (10);\n")
    wh.setup()
    assert wh.query("SELECT count(*) AS n FROM t_one")["n"][0] == 2
    assert len(wh.query("SELECT version FROM schema_migrations")) == 3

    # A failing file leaves neither its earlier statements nor a record behind.
    (folder / "004_broken.sql").write_text("CREATE TABLE t_two (x INTEGER);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(Exception, match="no_such_table"):
        wh.setup()
    tables = wh.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )["table_name"].to_list()
    assert "t_two" not in tables
    assert wh.query("SELECT max(version) AS v FROM schema_migrations")["v"][0] == 3


# ------------------------------------------------------------------------------------- round trip


TRICKY_TEXT = [
    'he said "hi", then left',
    "two\nlines\r\nand a tab\there",
    "",  # empty string, not NULL
    "Crème brûlée — 日本語 ✓ 😀",
    "\\N",  # PostgreSQL's text-format NULL marker
    "\\.",  # COPY's end-of-data marker, alone
    "first\n\\.\nlast",  # ... and alone on a line inside a value
    "NULL",
    "  padded  ",
    "back\\slash,comma;semi",
]


def test_round_trip_of_every_dtype(warehouse: Warehouse) -> None:
    n = len(TRICKY_TEXT)
    stamps = [
        datetime(2025, 1, 6, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),  # before the epoch
        datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    ]
    floats = [0.1 + 0.2, 1e-300, 1.7976931348623157e308, float("inf"), float("-inf"), -1.5, 3.0]
    mart = MART.conform(
        pl.DataFrame(
            {
                "site": ["US"] * (n + 1),
                "date": [D1] * (n + 1),
                "asin": [f"B{i:09d}" for i in range(n + 1)],
                "category_id": [*TRICKY_TEXT, None],
                "buybox_seller": [*reversed(TRICKY_TEXT), None],
                "price": [floats[i % len(floats)] for i in range(n)] + [None],
                "rating": [float("nan")] + [4.5] * (n - 1) + [None],
                "bsr_root": [2**63 - 1, -(2**63)] + list(range(n - 2)) + [None],
                "new_offer_count": [2**31 - 1, -(2**31)] + list(range(n - 2)) + [None],
                "has_aplus": [i % 2 == 0 for i in range(n)] + [None],
                "listed_since": [date(1900, 1, 1), date(2099, 12, 31)] + [D1] * (n - 2) + [None],
                "fetched_at": [stamps[i % 3] for i in range(n)] + [None],
            },
            schema_overrides={"fetched_at": UTC_TS, "bsr_root": pl.Int64},
        )
    )
    bodies = [
        json.dumps({"title": text, "nested": {"list": [1, None, 2.5]}}, ensure_ascii=False, indent=2)
        for text in TRICKY_TEXT
    ]
    raw = TABLES["raw_payloads"].conform(
        pl.DataFrame(
            {
                "payload_id": [f"p{i}" for i in range(n)],
                "site": ["US"] * n,
                "date": [D1] * n,
                "request_params": ['{"asins": ["B1", "B2"], "q": "a \\"quoted\\" word"}'] * n,
                "status": [200, 0] + [429] * (n - 2),
                "fetched_at": stamps[:1] * n,
                "body": bodies[:-1] + ['{"truncated": "no closing brace\n'],  # malformed JSON survives too
                "error": [None] * (n - 1) + ["malformed_json"],
            },
            schema_overrides={"fetched_at": UTC_TS},
        )
    )
    reviews = TABLES["fact_reviews"].conform(
        pl.DataFrame(
            {
                "site": ["US"] * 4,
                "date": [D1] * 4,
                "asin": ["B1"] * 4,
                "review_id": ["R1", "R2", "R3", "R4"],
                "rating": [-128, 127, 5, None],
                "verified": [True, False, None, True],
            }
        )
    )
    frames = {"mart_timeseries_daily": mart, "raw_payloads": raw, "fact_reviews": reviews}
    with warehouse.transaction() as tx:
        for table, frame in frames.items():
            assert tx.replace_slices(table, frame, sites=["US"], start=D1, end=D1) == frame.height
    for table, frame in frames.items():
        got = warehouse.read(table, sites=["US"], start=D1, end=D1)
        assert got.schema == TABLES[table].empty().schema
        assert_frame_equal(got, sort_key(frame, table), check_exact=True)
    # Empty string and NULL stay apart.
    got = warehouse.read("mart_timeseries_daily", columns=["asin", "category_id"])
    assert got.filter(pl.col("category_id") == "").height == 1
    assert got["category_id"].null_count() == 1


# ---------------------------------------------------------------------------------------- replace


def test_replace_is_idempotent(warehouse: Warehouse) -> None:
    frame = mart_frame("US", [D1], ["B3", "B1", "B2"])
    for _ in range(2):
        assert warehouse.replace_slices("mart_timeseries_daily", frame, sites=["US"], start=D1, end=D1) == 3
    assert warehouse.count("mart_timeseries_daily") == 3
    assert_frame_equal(warehouse.read("mart_timeseries_daily"), frame)


def test_replace_touches_only_its_slice(warehouse: Warehouse) -> None:
    d2 = D1 + timedelta(days=1)
    seed = pl.concat(
        [
            mart_frame("US", [D1, d2], ["B1", "B2", "B3"]),
            mart_frame("DE", [D1], ["B1", "B2"]),
        ]
    )
    warehouse.replace_slices("mart_timeseries_daily", seed, sites=["US", "DE"], start=D1, end=d2)
    neighbours_before = warehouse.read("mart_timeseries_daily").filter(
        (pl.col("site") != "US") | (pl.col("date") != D1)
    )

    new = mart_frame("US", [D1], ["B9"], version=1)  # fewer rows: stale ones must go
    warehouse.replace_slices("mart_timeseries_daily", new, sites=["US"], start=D1, end=D1)

    assert_frame_equal(warehouse.read("mart_timeseries_daily", sites=["US"], start=D1, end=D1), new)
    after = warehouse.read("mart_timeseries_daily").filter((pl.col("site") != "US") | (pl.col("date") != D1))
    assert_frame_equal(after, neighbours_before)
    assert warehouse.count("mart_timeseries_daily") == 1 + 3 + 2


def test_range_replace_many_dates_one_site(warehouse: Warehouse) -> None:
    ten = days(D1, 10)
    warehouse.replace_slices(
        "mart_timeseries_daily",
        mart_frame("US", [*ten, D1 + timedelta(days=10)], ["B1", "B2"]),
        sites=["US"],
        start=D1,
        end=D1 + timedelta(days=10),
    )
    warehouse.replace_slices(
        "mart_timeseries_daily", mart_frame("DE", ten, ["B1"]), sites=["DE"], start=D1, end=ten[-1]
    )
    # The new range frame lacks two days: after the replace those days hold nothing.
    kept = [d for d in ten if d not in (ten[2], ten[3])]
    new = mart_frame("US", kept, ["B1", "B2", "B3"], version=2)
    assert warehouse.replace_slices("mart_timeseries_daily", new, sites=["US"], start=D1, end=ten[-1]) == 24
    assert_frame_equal(warehouse.read("mart_timeseries_daily", sites=["US"], start=D1, end=ten[-1]), new)
    assert warehouse.count("mart_timeseries_daily", sites=["US"], start=ten[2], end=ten[3]) == 0
    assert warehouse.count("mart_timeseries_daily", sites=["US"], start=ten[-1] + timedelta(days=1)) == 2
    assert warehouse.count("mart_timeseries_daily", sites=["DE"]) == 10


def test_failed_bulk_load_keeps_the_old_slice(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    old = mart_frame("US", [D1], ["B1", "B2"])
    warehouse.replace_slices("mart_timeseries_daily", old, sites=["US"], start=D1, end=D1)
    deleted: list[int] = []

    def crash(self: WarehouseTx, table: str, frame: pl.DataFrame, conflict_key: tuple[str, ...] = ()) -> None:
        # Runs after the DELETE of the slice: the crash must take that delete back with it.
        deleted.append(self.query("SELECT count(*) AS n FROM mart_timeseries_daily")["n"][0])
        raise RuntimeError("disk full halfway through the load")

    monkeypatch.setattr(WarehouseTx, "_bulk_insert", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        warehouse.replace_slices(
            "mart_timeseries_daily", mart_frame("US", [D1], ["B7"], 1), sites=["US"], start=D1, end=D1
        )
    assert deleted == [0]  # the delete had happened inside the transaction
    monkeypatch.undo()
    assert_frame_equal(warehouse.read("mart_timeseries_daily"), old)


def test_exception_in_a_transaction_rolls_back_every_write(warehouse: Warehouse) -> None:
    old = mart_frame("US", [D1], ["B1", "B2"])
    warehouse.replace_slices("mart_timeseries_daily", old, sites=["US"], start=D1, end=D1)
    with pytest.raises(RuntimeError, match="later step failed"):
        with warehouse.transaction() as tx:
            tx.replace_slices(
                "mart_timeseries_daily", mart_frame("US", [D1], ["B5"], 1), sites=["US"], start=D1, end=D1
            )
            tx.upsert("dim_asin", pl.DataFrame({"site": ["US"], "asin": ["B5"]}))
            raise RuntimeError("a later step failed")
    assert_frame_equal(warehouse.read("mart_timeseries_daily"), old)
    assert warehouse.count("dim_asin") == 0


def test_key_violations_raise_and_write_nothing(warehouse: Warehouse) -> None:
    old = mart_frame("US", [D1], ["B1", "B2"])
    warehouse.replace_slices("mart_timeseries_daily", old, sites=["US"], start=D1, end=D1)
    twice = pl.concat([mart_frame("US", [D1], ["B3"]), mart_frame("US", [D1], ["B3"], 1)])
    with pytest.raises(ValueError, match="repeats keys"):
        warehouse.replace_slices("mart_timeseries_daily", twice, sites=["US"], start=D1, end=D1)
    no_asin = mart_frame("US", [D1], ["B3"]).with_columns(asin=pl.lit(None, pl.Utf8))
    with pytest.raises(ValueError, match="null in the key"):
        warehouse.replace_slices("mart_timeseries_daily", no_asin, sites=["US"], start=D1, end=D1)
    assert_frame_equal(warehouse.read("mart_timeseries_daily"), old)

    # fact_reviews is keyed without the date: a review stored under another day is a clash too, found
    # only after the delete, so the transaction must undo that delete.
    d2 = D1 + timedelta(days=1)
    review = {"site": "US", "asin": "B1", "rating": 5, "verified": True}
    warehouse.replace_slices(
        "fact_reviews",
        pl.DataFrame([{**review, "date": D1, "review_id": "R1"}]),
        sites=["US"],
        start=D1,
        end=D1,
    )
    warehouse.replace_slices(
        "fact_reviews",
        pl.DataFrame([{**review, "date": d2, "review_id": "R2"}]),
        sites=["US"],
        start=d2,
        end=d2,
    )
    with pytest.raises(ValueError, match="already stored"):
        warehouse.replace_slices(
            "fact_reviews",
            pl.DataFrame([{**review, "date": d2, "review_id": "R1"}]),
            sites=["US"],
            start=d2,
            end=d2,
        )
    assert warehouse.read("fact_reviews", columns=["date", "review_id"]).rows() == [(D1, "R1"), (d2, "R2")]

    # quarantine's key is not unique: identical rejections are all kept.
    rejected = pl.DataFrame([{"site": "US", "date": D1, "asin": "B1", "reason": "bsr_non_positive"}] * 2)
    assert warehouse.replace_slices("quarantine", rejected, sites=["US"], start=D1, end=D1) == 2


@pytest.mark.parametrize(
    ("site", "day", "why"),
    [
        ("DE", D1, "other site"),
        ("US", D1 + timedelta(days=1), "day after"),
        ("US", D1 - timedelta(days=1), "day before"),
        (None, D1, "no site"),
        ("US", None, "no date"),
    ],
)
def test_rows_outside_the_slice_raise_before_anything_changes(
    warehouse: Warehouse, site: str | None, day: date | None, why: str
) -> None:
    old = mart_frame("US", [D1], ["B1"])
    warehouse.replace_slices("mart_timeseries_daily", old, sites=["US"], start=D1, end=D1)
    stray = mart_frame("US", [D1], ["B2"]).with_columns(site=pl.lit(site, pl.Utf8), date=pl.lit(day, pl.Date))
    frame = pl.concat([mart_frame("US", [D1], ["B3"]), stray])
    with pytest.raises(ValueError, match="outside the slice"):
        warehouse.replace_slices("mart_timeseries_daily", frame, sites=["US"], start=D1, end=D1)
    assert_frame_equal(warehouse.read("mart_timeseries_daily"), old)


# ----------------------------------------------------------------------------------------- upsert


def test_upsert_dim_asin(warehouse: Warehouse) -> None:
    first = pl.DataFrame(
        {
            "site": ["US", "US", "DE"],
            "asin": ["B1", "B2", "B1"],
            "title": ["old title", "two", "eins"],
            "brand": ["Acme", "Acme", "Acme"],
            "first_seen": [date(2025, 1, 5), date(2025, 1, 5), None],
            "last_seen": [date(2025, 1, 5), date(2025, 1, 5), date(2025, 1, 3)],
        }
    )
    assert warehouse.upsert("dim_asin", first) == 3
    second = pl.DataFrame(
        {
            "site": ["US", "US", "DE"],
            "asin": ["B1", "B3", "B1"],
            "title": ["new title", "three", "eins"],
            "brand": [None, "Other", "Acme"],
            "first_seen": [date(2025, 1, 2), date(2025, 1, 9), date(2025, 1, 1)],
            "last_seen": [date(2025, 1, 4), date(2025, 1, 9), None],
        }
    )
    with warehouse.transaction() as tx:
        assert tx.upsert("dim_asin", second) == 3
    got = warehouse.read("dim_asin", columns=["site", "asin", "title", "brand", "first_seen", "last_seen"])
    assert got.rows() == [
        # ordered by the key (site, asin)
        ("DE", "B1", "eins", "Acme", date(2025, 1, 1), date(2025, 1, 3)),  # NULL never wins least/greatest
        ("US", "B1", "new title", None, date(2025, 1, 2), date(2025, 1, 5)),  # other columns: the new value
        ("US", "B2", "two", "Acme", date(2025, 1, 5), date(2025, 1, 5)),  # untouched
        ("US", "B3", "three", "Other", date(2025, 1, 9), date(2025, 1, 9)),  # inserted
    ]
    assert warehouse.read("dim_asin").schema == TABLES["dim_asin"].empty().schema

    # A partial frame updates only the columns it has; the others keep their stored value.
    seen = pl.DataFrame({"site": ["US", "US"], "asin": ["B2", "B4"], "last_seen": [date(2025, 2, 1)] * 2})
    warehouse.upsert("dim_asin", seen)
    got = warehouse.read("dim_asin", sites=["US"], asins=["B2", "B4"], columns=["asin", "title", "last_seen"])
    assert got.rows() == [("B2", "two", date(2025, 2, 1)), ("B4", None, date(2025, 2, 1))]
    with pytest.raises(ValueError, match="repeats keys"):
        warehouse.upsert("dim_asin", pl.concat([second, second]))
    with pytest.raises(ValueError, match="null in the key"):
        warehouse.upsert(
            "dim_asin", pl.DataFrame({"site": ["US"], "asin": [None]}, schema_overrides={"asin": pl.Utf8})
        )
    with pytest.raises(ValueError, match="no unique key"):
        warehouse.upsert("quarantine", pl.DataFrame({"site": ["US"], "date": [D1]}))
    with pytest.raises(ValueError, match="not partitioned"):
        warehouse.replace_slices("dim_asin", first, sites=["US"], start=D1, end=D1)
    assert warehouse.count("dim_asin") == 5


# ------------------------------------------------------------------------------------------- reads


def test_read_filters_columns_and_order(warehouse: Warehouse) -> None:
    three = days(D1, 3)
    for site in ("US", "DE"):
        warehouse.replace_slices(
            "mart_timeseries_daily",
            mart_frame(site, three, ["B3", "B1", "B2"]).sample(fraction=1.0, shuffle=True, seed=1),
            sites=[site],
            start=three[0],
            end=three[-1],
        )
    everything = warehouse.read("mart_timeseries_daily")
    assert everything.height == 18
    assert everything.select("site", "date", "asin").rows() == sorted(
        everything.select("site", "date", "asin").rows()
    )
    # Text keys sort by code point on both backends (as polars does), whatever the database collation.
    odd = ["b1", "B2", "_x", "a", "Ä", "A"]
    warehouse.replace_slices(
        "fact_keywords",
        pl.DataFrame({"site": "JP", "date": D1, "asin": odd, "keyword": "k"}),
        sites=["JP"],
        start=D1,
        end=D1,
    )
    assert warehouse.read("fact_keywords")["asin"].to_list() == sorted(odd)

    us_late = warehouse.read("mart_timeseries_daily", sites="US", start=three[1])
    assert set(us_late["site"]) == {"US"} and us_late["date"].min() == three[1] and us_late.height == 6
    early = warehouse.read("mart_timeseries_daily", end=three[0])
    assert set(early["date"]) == {three[0]} and early.height == 6

    picked = warehouse.read(
        "mart_timeseries_daily",
        sites=["DE"],
        asins=["B2", "B3"],
        columns=["asin", "date", "has_aplus", "fetched_at"],
    )
    assert picked.columns == ["asin", "date", "has_aplus", "fetched_at"]
    assert picked.schema == pl.Schema({c: MART.schema[c] for c in picked.columns})
    assert picked.height == 6 and set(picked["asin"]) == {"B2", "B3"}

    assert warehouse.read("mart_timeseries_daily", asins=[]).height == 0
    assert warehouse.read("mart_timeseries_daily", sites=[]).schema == MART.empty().schema
    assert warehouse.count("mart_timeseries_daily", sites=["US"], start=three[1], end=three[1]) == 3
    assert warehouse.count("mart_timeseries_daily", sites=["JP"]) == 0

    with pytest.raises(ValueError, match="no date column"):
        warehouse.read("dim_asin", start=D1)
    with pytest.raises(ValueError, match="no column"):
        warehouse.read("mart_timeseries_daily", columns=["asin", "nonsense"])
    with pytest.raises(ValueError, match="unknown table"):
        warehouse.read("no_such_table")


def test_query_translates_placeholders(warehouse: Warehouse) -> None:
    warehouse.replace_slices(
        "mart_timeseries_daily", mart_frame("US", [D1], ["B01", "B02", "X03"]), sites=["US"], start=D1, end=D1
    )
    got = warehouse.query(
        "SELECT asin, '?' AS mark, 'a%b' AS pct, bsr_root FROM mart_timeseries_daily "
        "WHERE site = ? AND asin LIKE ? AND date = ? -- a comment with ? and %\nORDER BY asin",
        ["US", "B0%", D1],
    )
    assert got.rows() == [("B01", "?", "a%b", 1000), ("B02", "?", "a%b", 2000)]
    assert got.schema["bsr_root"] == pl.Int64
    assert warehouse.query("SELECT 'x%' AS v")["v"].to_list() == ["x%"]
    with warehouse.transaction() as tx:
        tx.execute("DELETE FROM mart_timeseries_daily WHERE asin = ?", ["X03"])
        assert tx.query("SELECT count(*) AS n FROM mart_timeseries_daily")["n"][0] == 2  # sees its own write
    assert warehouse.count("mart_timeseries_daily") == 2


def test_migration_files_must_be_well_named(tmp_path: Path) -> None:
    (tmp_path / "duckdb").mkdir()
    (tmp_path / "duckdb" / "001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "duckdb" / "notes.txt").write_text("ignored")
    (tmp_path / "duckdb" / "roles.sql").write_text("CREATE ROLE x;")  # run by hand, not a migration
    assert [(m.version, m.name) for m in migrations("duckdb", tmp_path)] == [(1, "ok")]
    (tmp_path / "duckdb" / "2-Features.sql").write_text("SELECT 1;")
    with pytest.raises(WarehouseError, match="2-Features.sql"):
        migrations("duckdb", tmp_path)
    (tmp_path / "duckdb" / "2-Features.sql").unlink()
    (tmp_path / "duckdb" / "002_Features.sql").write_text("SELECT 1;")  # upper case: refused too
    with pytest.raises(WarehouseError, match="002_Features.sql"):
        migrations("duckdb", tmp_path)


def test_qmark_translation() -> None:
    assert qmark_to_pyformat("a = ? AND b LIKE 'x%?' AND \"we?ird\" = ?") == (
        "a = %s AND b LIKE 'x%%?' AND \"we?ird\" = %s"
    )
    assert qmark_to_pyformat("'it''s ?' || ? /* ? */ $$ ? $$ -- ?") == "'it''s ?' || %s /* ? */ $$ ? $$ -- ?"
    assert qmark_to_pyformat("$fn$ ? $fn$, $1, ?") == "$fn$ ? $fn$, $1, %s"


# -------------------------------------------------------------------------------------------- bulk


def test_bulk_load_200k_rows(warehouse: Warehouse) -> None:
    dates = days(D1, 20)
    asins = [f"B{i:09d}" for i in range(10_000)]
    n = len(dates) * len(asins)
    frame = MART.conform(
        pl.DataFrame({"date": dates})
        .join(pl.DataFrame({"asin": asins}), how="cross")
        .with_row_index("i")
        .with_columns(
            site=pl.lit("US"),
            price=pl.col("i").cast(pl.Float64) / 7,
            bsr_root=pl.col("i").cast(pl.Int64) * 3 + 1,
            has_aplus=pl.col("i") % 2 == 0,
            buybox_seller=pl.format('seller "{}"', pl.col("i")),
            fetched_at=pl.lit(datetime(2025, 2, 1, tzinfo=UTC)),
        )
    )
    started = time.perf_counter()
    assert (
        warehouse.replace_slices("mart_timeseries_daily", frame, sites=["US"], start=dates[0], end=dates[-1])
        == n
    )
    loaded = time.perf_counter() - started
    assert warehouse.count("mart_timeseries_daily") == n
    assert warehouse.count("mart_timeseries_daily", start=dates[3], end=dates[3]) == len(asins)
    # Replacing the whole range again exercises the delete at the same scale.
    assert (
        warehouse.replace_slices("mart_timeseries_daily", frame, sites=["US"], start=dates[0], end=dates[-1])
        == n
    )
    back = warehouse.read(
        "mart_timeseries_daily", columns=["date", "asin", "price", "bsr_root", "buybox_seller"]
    )
    assert back.height == n
    assert back["bsr_root"].sum() == frame["bsr_root"].sum()
    print(f"{warehouse.describe()}: loaded {n:,} rows in {loaded:.2f} s")


# ----------------------------------------------------------------------------------- registration


def test_a_table_registered_later_works_unchanged(
    warehouse_factory: Callable[[], Warehouse], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = Table(
        "test_extra_daily",
        {
            "site": pl.Utf8,
            "date": pl.Date,
            "asin": pl.Utf8,
            "f32": pl.Float32,
            "i16": pl.Int16,
            "i8": pl.Int8,
            "naive": pl.Datetime("us"),
            "flag": pl.Boolean,
        },
        key=("site", "date", "asin"),
    )
    monkeypatch.setitem(TABLES, extra.name, extra)
    wh = warehouse_factory()
    with wh.transaction() as tx:  # what a later migration file would hold
        tx.execute(create_table_sql(extra, backend))
    frame = extra.conform(
        pl.DataFrame(
            {
                "site": ["US", "US"],
                "date": [D1, D1],
                "asin": ["B2", "B1"],
                "f32": [1.5, None],
                "i16": [-32768, 32767],
                "i8": [7, None],
                "naive": [datetime(2025, 1, 6, 8, 30), None],
                "flag": [None, False],
            }
        )
    )
    assert wh.replace_slices(extra.name, frame, sites=["US"], start=D1, end=D1) == 2
    assert_frame_equal(wh.read(extra.name), frame.sort("asin"))
    assert wh.schema_mismatches([extra.name]) == []


# ---------------------------------------------------------------------------------------- dagster


def test_works_as_a_dagster_resource(warehouse: Warehouse) -> None:
    @dg.asset
    def keywords(warehouse: Warehouse) -> dg.MaterializeResult:
        frame = pl.DataFrame(
            {"site": ["US"], "date": [D1], "asin": ["B1"], "keyword": ["serum"], "rank": [3]}
        )
        written = warehouse.replace_slices("fact_keywords", frame, sites=["US"], start=D1, end=D1)
        return dg.MaterializeResult(metadata={"rows": written, "warehouse": warehouse.describe()})

    result = dg.materialize([keywords], resources={"warehouse": warehouse})
    assert result.success
    assert warehouse.read("fact_keywords", columns=["keyword", "rank"]).rows() == [("serum", 3)]


# ------------------------------------------------------------------------- URLs, secrets, locking


def test_url_forms(tmp_path: Path) -> None:
    assert Warehouse().backend == "duckdb"
    assert Warehouse().describe() == "duckdb file data/warehouse.duckdb"
    assert Warehouse(url=f"duckdb:///{tmp_path}/w.duckdb").describe() == f"duckdb file {tmp_path}/w.duckdb"
    for url in (
        "postgresql://u@db.internal:6543/asin",
        "postgres://u@db.internal:6543/asin",
        "postgresql+psycopg://u@db.internal:6543/asin",
    ):
        wh = Warehouse(url=url, pg_schema="analytics")
        assert wh.backend == "postgres"
        assert wh.describe() == "postgresql db.internal:6543/asin schema analytics"
    with pytest.raises(ValueError, match="memory"):
        Warehouse(url=":memory:").describe()
    with pytest.raises(ValueError, match="unsupported"):
        Warehouse(url="mysql://u@h/db").describe()
    with pytest.raises(ValueError, match="pg_schema"):
        Warehouse(url="postgresql://u@h/db", pg_schema="Robert'); DROP").describe()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://asin:Sup3r-S3cret@127.0.0.1:1/asin",
        "postgres://asin:Sup3r%40S3cret@127.0.0.1:1/asin",  # percent-encoded "@"
        "postgresql://asin@127.0.0.1:1/asin?password=Sup3r-S3cret",
        "postgresql://asin:Sup3r-S3cret@127.0.0.1:notaport/asin",  # unparseable port
    ],
)
def test_secrets_never_shown(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "Env-S3cret")
    wh = Warehouse(url=url)
    shown = [wh.describe(), repr(wh), str(wh)]
    with pytest.raises(WarehouseError) as failure:
        wh.count("mart_timeseries_daily")  # nothing listens on port 1
    shown.append("".join(traceback.format_exception(failure.value)))
    for text in shown:
        assert "S3cret" not in text and "S3cret".lower() not in text.lower(), text
    assert "127.0.0.1:" in str(failure.value)


def test_duckdb_lock_waits_then_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    Warehouse(url=str(path)).setup()

    def hold(seconds: float) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
                "time.sleep(float(sys.argv[2]))",
                str(path),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return holder

    holder = hold(60)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError, match="locked by another process") as failure:
            Warehouse(url=str(path), lock_timeout=0.5).count("mart_timeseries_daily")
        assert 0.5 <= time.monotonic() - started < 10
        assert "postgresql://" in str(failure.value)  # the message says what to do about it
    finally:
        holder.kill()
        holder.wait()

    holder = hold(1.0)  # released after a second: a patient writer gets through
    try:
        started = time.monotonic()
        assert Warehouse(url=str(path), lock_timeout=30).count("mart_timeseries_daily") == 0
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()
        holder.wait()


def test_session_reuses_one_duckdb_connection_and_releases_it(tmp_path: Path) -> None:
    import duckdb

    from asin_platform.resources.warehouse.duckdb import DuckDBDriver

    warehouse = Warehouse(url=str(tmp_path / "session.duckdb"))
    warehouse.setup()
    opened: list[object] = []
    real_connect = DuckDBDriver.connect

    def counting_connect(self, *, autocommit: bool = False):
        conn = real_connect(self, autocommit=autocommit)
        opened.append(conn)
        return conn

    day = date(2025, 1, 2)
    frame = MART_TIMESERIES_DAILY.conform(
        pl.DataFrame({"site": ["US"], "date": [day], "asin": ["B0AAAAAAA1"], "bsr_root": [5]})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DuckDBDriver, "connect", counting_connect)
        with warehouse.session():
            warehouse.replace_slices("mart_timeseries_daily", frame, sites=["US"], start=day, end=day)
            with warehouse.session():  # nested: same connection
                assert warehouse.count("mart_timeseries_daily") == 1
            with pytest.raises(ValueError):
                # a row outside the slice: the transaction rolls back and the session stays usable
                warehouse.replace_slices("mart_timeseries_daily", frame, sites=["DE"], start=day, end=day)
            assert warehouse.read("mart_timeseries_daily")["bsr_root"].to_list() == [5]
        assert len(opened) == 1
    # released: another connection can take the file now
    other = duckdb.connect(str(tmp_path / "session.duckdb"))
    assert other.execute("SELECT count(*) FROM mart_timeseries_daily").fetchone() == (1,)
    other.close()
