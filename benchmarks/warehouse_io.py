"""PostgreSQL writes and reads at ~1M rows per partition: CSV COPY vs binary COPY (issue 13).

Writes ``--days`` x ``--asins`` rows of ``features_daily`` and of ``score_baseline_daily`` through
``Warehouse.replace_slices`` (one transaction: DELETE of the slice + bulk load into a table with its
primary key) into an empty table, once with the CSV path and once with binary COPY, ``--repeat``
times alternating, then reads them back with ``Warehouse.read`` (CSV through ``COPY TO``; reads have
no binary path). The binary-loaded rows are compared with the frame written.

Frames: random values of the real schemas (features: normal floats, ~5% nulls per column, small
ints, booleans, 40 category ids, ``B%09d`` ASINs; scores: ``core.score.score_baseline`` of those
features, so ``reason`` is the real JSON text, ~600 bytes).

Per case: wall s, client CPU s (this process, every thread: ``time.process_time``), server CPU s
(utime + stime of every backend this process connected to, from ``/proc/<pid>/stat``, read just
before each connection closes) and the 1-minute load average before and after.

``--without-key`` adds the same loads into a copy of each table without its primary key.

Reproduce (repo root; needs a PostgreSQL URL, uses the schema ``--schema`` and drops it at the end):
    .venv/bin/python benchmarks/warehouse_io.py --url postgresql://postgres@127.0.0.1:5432/db
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asin_platform.resources.warehouse import Warehouse  # noqa: E402
from asin_platform.resources.warehouse.postgres import PostgresDriver  # noqa: E402
from asin_platform.schemas import FEATURES_DAILY  # noqa: E402

SITE = "US"
START = date(2026, 6, 1)
_TICK = os.sysconf("SC_CLK_TCK")


def features_frame(n_asins: int, n_days: int, seed: int = 13) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_asins * n_days
    columns: dict[str, Any] = {
        "site": np.full(n, SITE),
        "date": np.repeat(np.datetime64(START, "D") + np.arange(n_days), n_asins),
        "asin": np.tile(np.array([f"B{i:09d}" for i in range(n_asins)]), n_days),
        "category_id": np.tile(rng.integers(0, 40, n_asins), n_days).astype(str),
    }
    for name, dtype in FEATURES_DAILY.schema.items():
        if name in columns:
            continue
        if dtype == pl.Float64:
            columns[name] = rng.normal(size=n) * 10.0 ** rng.integers(-3, 3)
        elif dtype == pl.Int32:
            columns[name] = rng.integers(0, 400, n).astype(np.int32)
        elif dtype == pl.Boolean:
            columns[name] = rng.random(n) < 0.3
    frame = pl.DataFrame(columns).with_columns(pl.format("cat{}", "category_id").alias("category_id"))
    nulls = {c: rng.random(n) < 0.05 for c in FEATURES_DAILY.schema if c not in ("site", "date", "asin")}
    frame = frame.with_columns(
        pl.when(pl.Series(mask)).then(None).otherwise(pl.col(c)).alias(c) for c, mask in nulls.items()
    )
    return FEATURES_DAILY.conform(frame).sort("site", "date", "asin")


class BackendMeter:
    """CPU of every PostgreSQL backend the driver opens, read just before its connection closes."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @staticmethod
    def cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)

    @contextmanager
    def installed(self) -> Iterator[None]:
        original = PostgresDriver.connect
        meter = self

        def connect(driver: PostgresDriver, *, autocommit: bool = False) -> Any:
            conn = original(driver, autocommit=autocommit)
            pid = conn.info.backend_pid
            start = meter.cpu(pid)
            close = conn.close

            def metered_close() -> None:
                try:
                    meter.seconds += meter.cpu(pid) - start
                except OSError:
                    pass
                close()

            conn.close = metered_close  # type: ignore[method-assign]
            return conn

        PostgresDriver.connect = connect  # type: ignore[method-assign]
        try:
            yield
        finally:
            PostgresDriver.connect = original  # type: ignore[method-assign]


@contextmanager
def csv_only(enabled: bool) -> Iterator[None]:
    original = PostgresDriver.__dict__["_binary_frame"]  # the staticmethod itself
    if enabled:
        PostgresDriver._binary_frame = staticmethod(lambda conn, table, frame: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        PostgresDriver._binary_frame = original  # type: ignore[method-assign]


def load_bare(warehouse: Warehouse, table: str, frame: pl.DataFrame) -> None:
    """A bulk load into a table the schema registry does not know (no replace_slices checks)."""
    driver = warehouse._driver()
    with warehouse._connection(driver) as conn, driver.atomic(conn):
        driver.bulk_insert(conn, table, frame)


def measure(name: str, fn: Any) -> tuple[dict[str, Any], Any]:
    meter = BackendMeter()
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with meter.installed():
        out = fn()
    row = {
        "case": name,
        "wall": time.perf_counter() - wall,
        "client": time.process_time() - cpu,
        "server": meter.seconds,
        "load": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
    }
    print(
        f"{name:<40} wall {row['wall']:6.1f} s  client CPU {row['client']:5.1f} s  "
        f"server CPU {row['server']:5.1f} s  load {row['load']}",
        flush=True,
    )
    return row, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("ASIN_PLATFORM_TEST_POSTGRES_URL"))
    parser.add_argument("--schema", default="bench_warehouse_io")
    parser.add_argument("--asins", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--without-key",
        action="store_true",
        help="also load into a copy of each table without its primary key",
    )
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or ASIN_PLATFORM_TEST_POSTGRES_URL) is required")

    from asin_platform.core.score import score_baseline
    from asin_platform.settings import ScoreWeights

    features = features_frame(args.asins, args.days)
    scores = score_baseline(features, ScoreWeights())
    end = START + timedelta(days=args.days - 1)
    frames = {"features_daily": features, "score_baseline_daily": scores}
    for table, frame in frames.items():
        print(f"{table}: {frame.height:,} rows, {frame.estimated_size() / 1e6:.0f} MB in polars", flush=True)

    warehouse = Warehouse(url=args.url, pg_schema=args.schema)
    warehouse.setup()
    rows: list[dict[str, Any]] = []
    try:
        for table, frame in frames.items():
            for rep in range(args.repeat):
                for fmt in ("csv", "binary"):
                    with warehouse.transaction() as tx:  # empty table, outside the clock
                        tx.execute(f'TRUNCATE "{table}"')
                    with csv_only(fmt == "csv"):
                        row, _ = measure(
                            f"{table} write {fmt} #{rep + 1}",
                            lambda t=table, f=frame: warehouse.replace_slices(
                                t, f, sites=[SITE], start=START, end=end
                            ),
                        )
                    rows.append(row)
            if args.without_key:
                # Same load into a copy without the primary key: how much of the server's CPU is the
                # index (what a keyless, partitioned layout would save).
                bare = f"{table}_no_key"
                with warehouse.transaction() as tx:
                    tx.execute(f'CREATE TABLE "{bare}" (LIKE "{table}")')
                for fmt in ("csv", "binary"):
                    with warehouse.transaction() as tx:
                        tx.execute(f'TRUNCATE "{bare}"')
                    with csv_only(fmt == "csv"):
                        row, _ = measure(
                            f"{table} write {fmt}, no primary key",
                            lambda b=bare, f=frame: load_bare(warehouse, b, f),
                        )
                    rows.append(row)
            row, back = measure(
                f"{table} read (CSV) #1",
                lambda t=table: warehouse.read(t, sites=[SITE], start=START, end=end),
            )
            rows.append(row)
            mismatch = "equal" if back.equals(frame.sort("site", "date", "asin")) else "DIFFERENT"
            print(f"{table}: binary-written rows read back {mismatch} to the frame", flush=True)
    finally:
        with warehouse.transaction() as tx:
            tx.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')

    print("\n| case | wall s | client CPU s | server CPU s | client + server CPU s | load (1-min) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        total = r["client"] + r["server"]
        print(
            f"| {r['case']} | {r['wall']:.1f} | {r['client']:.1f} | {r['server']:.1f} | {total:.1f} | {r['load']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
