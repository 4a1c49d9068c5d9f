"""Parquet copies of the mart's (site, date) slices: the feature layer's window read (issue 13).

A 1M-ASIN partition's features read a 31-day window of the mart: 31M rows, which PostgreSQL serves
in minutes (docs/scaling.md, "Bounded memory at 1M ASINs per site"). So when
``settings.scale.columnar_mart`` is on, the mart asset also writes each (site, date) slice of the
tables the features read (``COLUMNAR_TABLES``) as one parquet file in the artifact store::

    <artifacts>/columnar/<table>/site=<site>/date=<date>/<version>.parquet

and ``features_daily`` scans those files lazily (``scan_window``), predicates pushed down. The
warehouse stays the system of record; the copy is only ever read in place of a slice it equals:

* **one transaction.** ``ColumnarCopies.replace_slices`` replaces the warehouse slice, writes the
  new files and records (table, site, date, version, rows) in ``columnar_slices`` (migration 008)
  inside the caller's transaction. The files are written before the commit, so a committed record
  always names a complete file; a rollback deletes them (``copies``), and a crash before the
  commit leaves the old record naming the old file, still in place.
* **versioned files.** A re-materialisation writes a new version beside the old one, never over a
  file a reader may be scanning. After the commit the versions older than the one just replaced are
  deleted (the replaced one stays for readers that looked it up just before the commit; orphans of a
  crashed write go at the next write of the slice).
* **any other replace invalidates.** ``WarehouseTx.replace_slices`` of these tables deletes the
  slice's record (``transaction.COLUMNAR_TABLES``), so a slice written without its copy (a test
  fixture, a script, the setting turned off) is read from the warehouse, never from a stale file.
* **fallback.** A day without a record, or whose recorded version's file is gone, is read from the
  warehouse: the window equals ``Warehouse.read`` row for row either way (tested).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from fsspec.core import url_to_fs

from asin_platform.partitions import contiguous_segments, date_range
from asin_platform.resources.warehouse.transaction import COLUMNAR_SLICES_TABLE, COLUMNAR_TABLES
from asin_platform.schemas import TABLES
from asin_platform.storage.store import ArtifactStore, shown

if TYPE_CHECKING:
    from asin_platform.resources.warehouse import Warehouse, WarehouseTx

log = logging.getLogger(__name__)

PREFIX = "columnar"
# Rows per parquet row group of a copy. The features read a 1M-ASIN day in ASIN blocks of ~97k
# (core.chunking), each scanning only the row groups its ASIN range overlaps: with polars' default
# of 262,144 rows a block decoded 2-4x its own rows. Reading the 31-day window of every block of a
# 1M-ASIN site (docs/benchmarks.md): 262,144 rows 7.0-7.8 CPU s, 65,536 5.2, 32,768 4.1-4.7,
# 16,384 4.6-5.0 (per-group overhead); files grow ~7% against the default, writes cost the same.
ROW_GROUP_ROWS = 32_768

__all__ = [
    "COLUMNAR_TABLES",
    "ROW_GROUP_ROWS",
    "ColumnarCopies",
    "copies",
    "scan_window",
    "slice_dir",
    "slice_key",
    "write_slice_parquet",
]


def slice_dir(table: str, site: str, day: date) -> str:
    """The store key of the folder holding every version of one slice's copy."""
    return f"{PREFIX}/{table}/site={site}/date={day.isoformat()}"


def slice_key(table: str, site: str, day: date, version: str) -> str:
    """The store key of one version of one slice's copy."""
    return f"{slice_dir(table, site, day)}/{version}.parquet"


def new_version() -> str:
    """Sortable by write time (UTC, microseconds), unique across writers."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def _local_path(store: ArtifactStore, key: str) -> str:
    return shown(store.url(key))


def write_slice_parquet(frame: pl.DataFrame, file: str | Path | io.BytesIO) -> None:
    """One slice's copy as parquet, in row groups of ``ROW_GROUP_ROWS`` with statistics. ``frame``
    must already be in key order (site, date, asin ...; ``replace_slices`` sorts it): only then does
    each group hold a narrow ASIN range that a block's scan can skip."""
    frame.write_parquet(file, statistics=True, row_group_size=ROW_GROUP_ROWS)


def _write_parquet(store: ArtifactStore, key: str, frame: pl.DataFrame) -> str:
    """One whole file at ``key`` (a local file is written beside its name and renamed); its URL."""
    if not store.is_local:
        buffer = io.BytesIO()
        write_slice_parquet(frame, buffer)
        return store.write_bytes(key, buffer.getvalue())
    target = Path(_local_path(store, key))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    write_slice_parquet(frame, partial)
    partial.replace(target)
    return store.url(key)


def _delete(url: str) -> None:
    fs, path = url_to_fs(url)
    try:
        fs.rm(path)
    except FileNotFoundError:
        pass


@dataclass
class ColumnarCopies:
    """The copies written inside one warehouse transaction (from ``copies``); ``store`` None = the
    setting is off: ``replace_slices`` is then the warehouse's alone."""

    store: ArtifactStore | None
    written: list[str] = field(default_factory=list)
    #: (table, site, day) -> the version the write replaced (None: there was none)
    replaced: dict[tuple[str, str, date], str | None] = field(default_factory=dict)
    current: dict[tuple[str, str, date], str] = field(default_factory=dict)

    def replace_slices(
        self,
        tx: WarehouseTx,
        table: str,
        frame: pl.DataFrame,
        *,
        sites: Sequence[str],
        start: date,
        end: date,
    ) -> int:
        """``tx.replace_slices`` and, for a ``COLUMNAR_TABLES`` table with the setting on, one parquet
        copy per (site, day) of the slice (empty days included) recorded in the same transaction."""
        if self.store is None or table not in COLUMNAR_TABLES:
            return tx.replace_slices(table, frame, sites=sites, start=start, end=end)
        site_marks = ", ".join("?" for _ in sites)
        before = tx.query(
            f"SELECT site, date, version FROM {COLUMNAR_SLICES_TABLE} WHERE table_name = ? "
            f"AND site IN ({site_marks}) AND date BETWEEN ? AND ?",
            [table, *sites, start, end],
        )
        previous = {(s, d): v for s, d, v in before.iter_rows()}
        rows = tx.replace_slices(table, frame, sites=sites, start=start, end=end)  # deletes the records
        spec = TABLES[table]
        data = spec.conform(frame).sort(list(spec.key))
        by_slice = data.partition_by("site", "date", as_dict=True) if data.height else {}
        empty = spec.empty()
        for site in sites:
            for day in date_range(start, end):
                part = by_slice.get((site, day), empty)
                version = new_version()
                url = _write_parquet(self.store, slice_key(table, site, day, version), part)
                self.written.append(url)
                tx.execute(
                    f"INSERT INTO {COLUMNAR_SLICES_TABLE} (table_name, site, date, version, row_count) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [table, site, day, version, part.height],
                )
                self.replaced[(table, site, day)] = previous.get((site, day))
                self.current[(table, site, day)] = version
        return rows

    def discard(self) -> None:
        """The transaction did not commit: delete the files it wrote (its records rolled back)."""
        for url in self.written:
            _delete(url)
        self.written.clear()

    def prune(self) -> None:
        """The transaction committed: delete each slice's versions other than the new one and the one
        it replaced (kept for a reader that looked it up just before the commit)."""
        assert self.store is not None or not self.current
        for (table, site, day), version in self.current.items():
            keep = {version, self.replaced.get((table, site, day))}
            for url in self.store.glob(f"{slice_dir(table, site, day)}/*.parquet"):  # type: ignore[union-attr]
                if Path(url).stem not in keep:
                    _delete(url)


@contextmanager
def copies(store: ArtifactStore | None) -> Iterator[ColumnarCopies]:
    """Wrap a ``Warehouse.transaction()`` block (outside it: the prune must follow the commit)::

    with columnar.copies(store) as cols, warehouse.transaction() as tx:
        cols.replace_slices(tx, "mart_timeseries_daily", frame, sites=[site], start=d, end=d)
    """
    writer = ColumnarCopies(store)
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise
    try:
        writer.prune()
    except Exception:  # a leftover file costs disk, not correctness: the next write prunes it
        log.warning("columnar copies: pruning old versions failed", exc_info=True)


def recorded_versions(warehouse: Warehouse, table: str, site: str, start: date, end: date) -> dict[date, str]:
    """The recorded copy version of each day of ``site`` ``start..end`` that has one."""
    found = warehouse.query(
        f"SELECT date, version FROM {COLUMNAR_SLICES_TABLE} WHERE table_name = ? AND site = ? "
        "AND date BETWEEN ? AND ?",
        [table, site, start, end],
    )
    return dict(found.iter_rows())


def scan_window(
    warehouse: Warehouse, store: ArtifactStore, table: str, site: str, start: date, end: date
) -> pl.LazyFrame:
    """The rows of ``table`` for ``site`` ``start..end`` (dates inclusive) as a lazy frame: a parquet
    scan of each day's recorded copy, and a warehouse read of each run of days without a usable one
    (no record, or its file is gone). Same rows and dtypes as ``Warehouse.read``; rows are not in key
    order (sort by the table's key when order matters)."""
    if table not in COLUMNAR_TABLES:
        raise ValueError(f"{table} has no columnar copy; copied tables: {', '.join(COLUMNAR_TABLES)}")
    versions = recorded_versions(warehouse, table, site, start, end)
    files: list[str] = []
    missing: list[date] = []
    for day in date_range(start, end):
        version = versions.get(day)
        key = slice_key(table, site, day, version) if version else None
        if key is not None and store.exists(key):
            files.append(_local_path(store, key) if store.is_local else store.url(key))
        else:
            missing.append(day)
    parts: list[pl.LazyFrame] = []
    if files:
        parts.append(pl.scan_parquet(files, hive_partitioning=False, schema=TABLES[table].schema))
    for first, last in contiguous_segments(missing):
        parts.append(warehouse.read(table, sites=[site], start=first, end=last).lazy())
    if missing:
        log.info(
            "%s %s: %d of %d days read from the warehouse (no columnar copy)",
            table,
            site,
            len(missing),
            len(missing) + len(files),
        )
    return pl.concat(parts, how="vertical") if parts else TABLES[table].empty().lazy()
