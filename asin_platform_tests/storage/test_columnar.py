"""storage.columnar: the parquet copies of mart slices read in place of the warehouse, never unlike it.

Every test runs on DuckDB and, with ASIN_PLATFORM_TEST_POSTGRES_URL set, on PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.core.chunking import build_features_chunked
from asin_platform.resources.warehouse import Warehouse
from asin_platform.schemas import TABLES
from asin_platform.storage import columnar
from asin_platform.storage.store import ArtifactStore, shown
from asin_platform_tests.core.test_features import CAL, _random_market, day

MART, KEYWORDS = "mart_timeseries_daily", "fact_keywords"
SITE = "US"
FIRST, LAST = day(-40), day(0)


@pytest.fixture(scope="module")
def market() -> tuple[pl.DataFrame, pl.DataFrame]:
    mart, kw = _random_market(seed=11)
    return mart.collect(), kw.collect()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore.at(tmp_path / "artifacts")


def _day_rows(frame: pl.DataFrame, d: date, site: str = SITE) -> pl.DataFrame:
    return frame.filter((pl.col("site") == site) & (pl.col("date") == d))


def _write_days(
    warehouse: Warehouse, store: ArtifactStore | None, table: str, frame: pl.DataFrame, days: list[date]
) -> None:
    """As the mart asset writes: one transaction per day, the copy inside it."""
    for d in days:
        with columnar.copies(store) as copies, warehouse.transaction() as tx:
            copies.replace_slices(tx, table, _day_rows(frame, d), sites=[SITE], start=d, end=d)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _scanned(warehouse: Warehouse, store: ArtifactStore, table: str, first: date, last: date) -> pl.DataFrame:
    key = list(TABLES[table].key)
    return columnar.scan_window(warehouse, store, table, SITE, first, last).collect().sort(key)


def _records(warehouse: Warehouse) -> int:
    return int(warehouse.query("SELECT count(*) AS n FROM columnar_slices")["n"][0])


def _versions(store: ArtifactStore, table: str, d: date) -> list[str]:
    return [Path(u).stem for u in store.glob(f"{columnar.slice_dir(table, SITE, d)}/*.parquet")]


def test_the_scan_returns_exactly_the_warehouse_rows(
    warehouse: Warehouse, store: ArtifactStore, market: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    mart, kw = market
    _write_days(warehouse, store, MART, mart, _days(FIRST, LAST))
    _write_days(warehouse, store, KEYWORDS, kw, _days(FIRST, LAST))
    for table in (MART, KEYWORDS):
        expected = warehouse.read(table, sites=[SITE], start=FIRST, end=LAST)
        assert expected.height > 100
        assert_frame_equal(_scanned(warehouse, store, table, FIRST, LAST), expected)
        # every day of the window came from a copy (a recorded row count per day, empty days included)
        recorded = warehouse.query(
            "SELECT date, row_count FROM columnar_slices WHERE table_name = ? AND site = ? ORDER BY date",
            [table, SITE],
        )
        assert recorded["date"].to_list() == _days(FIRST, LAST)
        per_day = expected.group_by("date").len()
        assert dict(per_day.iter_rows()) == {d: n for d, n in recorded.iter_rows() if n}


def test_features_from_the_copies_equal_features_from_the_warehouse(
    warehouse: Warehouse, store: ArtifactStore, market: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    mart, kw = market
    # half the window copied, half written without a copy: both sources feed one result
    _write_days(warehouse, None, MART, mart, _days(FIRST, day(-20)))
    _write_days(warehouse, store, MART, mart, _days(day(-19), LAST))
    _write_days(warehouse, store, KEYWORDS, kw, _days(FIRST, LAST))
    targets = [day(-2), day(-1), day(0)]
    lo = day(-2) - timedelta(days=30)
    from_warehouse = build_features_chunked(
        warehouse.read(MART, sites=[SITE], start=lo, end=LAST).lazy(),
        warehouse.read(KEYWORDS, sites=[SITE], start=lo, end=LAST).lazy(),
        targets,
        calibration=CAL,
    )
    from_copies = build_features_chunked(
        columnar.scan_window(warehouse, store, MART, SITE, lo, LAST),
        columnar.scan_window(warehouse, store, KEYWORDS, SITE, lo, LAST),
        targets,
        calibration=CAL,
    )
    assert from_warehouse.height > 0
    assert_frame_equal(from_copies, from_warehouse)


def test_a_slice_without_a_usable_copy_is_read_from_the_warehouse(
    warehouse: Warehouse, store: ArtifactStore, market: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    mart, _ = market
    days = _days(day(-4), LAST)
    _write_days(warehouse, store, MART, mart, days)

    # 1. the recorded version's file is gone
    (gone,) = _versions(store, MART, day(-4))
    Path(shown(store.url(columnar.slice_key(MART, SITE, day(-4), gone)))).unlink()
    # 2. the record names a version that was never written
    with warehouse.transaction() as tx:
        tx.execute(
            "UPDATE columnar_slices SET version = 'no-such-version' WHERE table_name = ? AND date = ?",
            [MART, day(-3)],
        )
    # 3. the slice was replaced without its copy: the replace drops the record, the stale file stays
    changed = _day_rows(mart, day(-2)).with_columns(price=pl.col("price") + 1.0)
    warehouse.replace_slices(MART, changed, sites=[SITE], start=day(-2), end=day(-2))
    assert len(_versions(store, MART, day(-2))) == 1
    assert _records(warehouse) == len(days) - 1

    scanned = _scanned(warehouse, store, MART, day(-4), LAST)
    assert_frame_equal(scanned, warehouse.read(MART, sites=[SITE], start=day(-4), end=LAST))
    assert (
        scanned.filter(pl.col("date") == day(-2))["price"].to_list()
        == changed.sort("asin")["price"].to_list()
    )


def test_a_rematerialisation_writes_a_new_version_and_prunes_the_oldest(
    warehouse: Warehouse, store: ArtifactStore, market: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    mart, _ = market
    d = LAST
    rows = _day_rows(mart, d)
    _write_days(warehouse, store, MART, mart, [d])
    (first,) = _versions(store, MART, d)
    for bump in (1.0, 2.0):
        with columnar.copies(store) as copies, warehouse.transaction() as tx:
            copies.replace_slices(
                tx, MART, rows.with_columns(price=pl.col("price") + bump), sites=[SITE], start=d, end=d
            )
        if bump == 1.0:
            # the replaced version stays beside the new one (a reader may have just looked it up)
            versions = _versions(store, MART, d)
            assert len(versions) == 2 and first in versions
            second = next(v for v in versions if v != first)
    versions = _versions(store, MART, d)
    assert len(versions) == 2 and first not in versions and second in versions
    scanned = _scanned(warehouse, store, MART, d, d)
    assert_frame_equal(scanned, warehouse.read(MART, sites=[SITE], start=d, end=d))
    assert scanned["price"].to_list() == (rows.sort("asin")["price"] + 2.0).to_list()


def test_a_crash_between_the_parquet_write_and_the_commit_leaves_the_old_version(
    warehouse: Warehouse,
    store: ArtifactStore,
    market: tuple[pl.DataFrame, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mart, _ = market
    d = LAST
    rows = _day_rows(mart, d)
    _write_days(warehouse, store, MART, mart, [d])
    before = _scanned(warehouse, store, MART, d, d)
    (old,) = _versions(store, MART, d)

    # the step fails after the copy is written, before the commit: rolled back, the new file deleted
    with pytest.raises(RuntimeError, match="boom"):
        with columnar.copies(store) as copies, warehouse.transaction() as tx:
            copies.replace_slices(
                tx, MART, rows.with_columns(price=pl.lit(0.0)), sites=[SITE], start=d, end=d
            )
            raise RuntimeError("boom")
    assert _versions(store, MART, d) == [old]
    assert_frame_equal(_scanned(warehouse, store, MART, d, d), before)

    # the process dies instead (no cleanup runs): an orphan file, but the record still names the old one
    monkeypatch.setattr(columnar.ColumnarCopies, "discard", lambda self: None)
    with pytest.raises(RuntimeError, match="killed"):
        with columnar.copies(store) as copies, warehouse.transaction() as tx:
            copies.replace_slices(
                tx, MART, rows.with_columns(price=pl.lit(0.0)), sites=[SITE], start=d, end=d
            )
            raise RuntimeError("killed")
    assert len(_versions(store, MART, d)) == 2
    assert_frame_equal(_scanned(warehouse, store, MART, d, d), before)
    assert_frame_equal(before, warehouse.read(MART, sites=[SITE], start=d, end=d))

    # the next write of the slice prunes the orphan, keeps the version it replaced
    monkeypatch.undo()
    _write_days(warehouse, store, MART, mart, [d])
    versions = _versions(store, MART, d)
    assert len(versions) == 2 and old in versions


def test_with_the_setting_off_nothing_is_copied(
    warehouse: Warehouse, store: ArtifactStore, market: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    mart, _ = market
    _write_days(warehouse, None, MART, mart, [LAST])
    assert _records(warehouse) == 0
    assert store.glob("columnar/**/*.parquet") == []
    assert_frame_equal(
        _scanned(warehouse, store, MART, LAST, LAST), warehouse.read(MART, sites=[SITE], start=LAST, end=LAST)
    )


def test_a_copy_is_in_asin_order_in_bounded_row_groups(
    warehouse: Warehouse,
    store: ArtifactStore,
    market: tuple[pl.DataFrame, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ASIN block's scan decodes only the row groups its range overlaps: that needs the rows in
    ASIN order and row groups of ROW_GROUP_ROWS, each with its ASIN range in the statistics."""
    import pyarrow.parquet as pq

    mart, _ = market
    monkeypatch.setattr(columnar, "ROW_GROUP_ROWS", 5)
    d = LAST
    rows = _day_rows(mart, d)
    assert rows.height > 15
    _write_days(warehouse, store, MART, mart, [d])
    (version,) = _versions(store, MART, d)
    meta = pq.ParquetFile(shown(store.url(columnar.slice_key(MART, SITE, d, version)))).metadata
    asin = meta.schema.to_arrow_schema().get_field_index("asin")
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    full, rest = divmod(rows.height, 5)
    assert [g.num_rows for g in groups] == [5] * full + ([rest] if rest else [])
    ranges = [(g.column(asin).statistics.min, g.column(asin).statistics.max) for g in groups]
    assert all(lo <= hi for lo, hi in ranges)
    assert all(ranges[i][1] < ranges[i + 1][0] for i in range(len(ranges) - 1))  # disjoint, ascending
    assert ranges[0][0] == rows["asin"].min() and ranges[-1][1] == rows["asin"].max()
