"""Partition leases (resources/warehouse/leases.py) on every backend, in one process and across two."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from asin_platform.resources.warehouse import LEASES_TABLE, Warehouse

RES = "raw_payloads"
D1 = date(2025, 3, 1)
KEYS = [("US", D1), ("UK", D1), ("US", D1 + timedelta(days=1))]


def stored(wh: Warehouse) -> list[tuple[str, str, date, str]]:
    return wh.query(
        f"SELECT resource, site, date, holder FROM {LEASES_TABLE} ORDER BY resource, site, date"
    ).rows()


def test_one_holder_per_key_and_the_loser_sees_who(warehouse: Warehouse) -> None:
    first = warehouse.acquire_leases(RES, KEYS, holder="run-a", ttl_s=60)
    assert first.acquired == sorted(KEYS) and not first.held_by_others and first
    second = warehouse.acquire_leases(RES, [*KEYS[:2], ("DE", D1)], holder="run-b", ttl_s=60)
    assert second.acquired == [("DE", D1)]
    assert {k: v.holder for k, v in second.held_by_others.items()} == {
        ("US", D1): "run-a",
        ("UK", D1): "run-a",
    }
    assert not second  # not every key asked for
    now = datetime.now(UTC)
    for lease in second.held_by_others.values():
        assert now + timedelta(seconds=50) < lease.expires_at < now + timedelta(seconds=70)
    # Another resource's lease on the same partition is independent.
    assert warehouse.acquire_leases("keepa_payloads", KEYS[:1], holder="run-b", ttl_s=60).acquired == KEYS[:1]
    assert len(stored(warehouse)) == 5


def test_the_holder_renews_and_releases_only_its_own(warehouse: Warehouse) -> None:
    warehouse.acquire_leases(RES, KEYS[:1], holder="run-a", ttl_s=1)
    before = warehouse.query(f"SELECT expires_at FROM {LEASES_TABLE}")["expires_at"][0]
    renewed = warehouse.acquire_leases(RES, KEYS[:1], holder="run-a", ttl_s=600)
    assert renewed.acquired == KEYS[:1]
    assert warehouse.query(f"SELECT expires_at FROM {LEASES_TABLE}")["expires_at"][0] > before + timedelta(
        seconds=500
    )
    warehouse.release_leases(RES, KEYS[:1], holder="run-b")  # not b's: left alone
    assert stored(warehouse) == [(RES, "US", D1, "run-a")]
    warehouse.release_leases(RES, KEYS, holder="run-a")  # keys it never held are ignored
    assert stored(warehouse) == []
    assert warehouse.acquire_leases(RES, KEYS[:1], holder="run-b", ttl_s=60).acquired == KEYS[:1]


def test_an_expired_lease_is_taken_over(warehouse: Warehouse) -> None:
    warehouse.acquire_leases(RES, KEYS, holder="dead-run", ttl_s=0.2)
    assert warehouse.acquire_leases(RES, KEYS, holder="run-b", ttl_s=60).held_by_others  # not yet
    time.sleep(0.3)
    taken = warehouse.acquire_leases(RES, KEYS, holder="run-b", ttl_s=60)
    assert taken.acquired == sorted(KEYS) and not taken.held_by_others
    assert {h for *_, h in stored(warehouse)} == {"run-b"}


def test_lease_block_releases_on_exit_and_on_error(warehouse: Warehouse) -> None:
    with warehouse.lease(RES, "US", D1, holder="run-a", ttl_s=60) as got:
        assert got and got.acquired == [("US", D1)] and not got.waited_for
        with warehouse.lease(RES, "US", D1, holder="run-b", ttl_s=60) as other:
            assert not other and other.held_by_others[("US", D1)].holder == "run-a"
            assert other.acquired == []
        assert stored(warehouse) == [(RES, "US", D1, "run-a")]  # b released nothing of a's
    assert stored(warehouse) == []
    with pytest.raises(RuntimeError, match="boom"):
        with warehouse.leases(RES, KEYS, holder="run-a", ttl_s=60):
            raise RuntimeError("boom")
    assert stored(warehouse) == []


def test_lease_waits_for_the_holder_then_gets_it(warehouse: Warehouse) -> None:
    warehouse.acquire_leases(RES, KEYS[:1], holder="run-a", ttl_s=0.5)
    started = time.monotonic()
    with warehouse.lease(RES, "US", D1, holder="run-b", ttl_s=60, wait_s=10, poll_s=0.05) as got:
        waited = time.monotonic() - started
        assert got and stored(warehouse) == [(RES, "US", D1, "run-b")]
        assert {k: h.holder for k, h in got.waited_for.items()} == {("US", D1): "run-a"}
    assert 0.3 < waited < 5
    warehouse.acquire_leases(RES, KEYS[:1], holder="run-a", ttl_s=60)
    started = time.monotonic()
    with warehouse.lease(RES, "US", D1, holder="run-b", ttl_s=60, wait_s=0.3, poll_s=0.05) as got:
        assert not got and got.held_by_others[("US", D1)].holder == "run-a"
    assert 0.25 < time.monotonic() - started < 5


def test_bad_arguments(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        warehouse.acquire_leases(RES, KEYS, holder="run-a", ttl_s=0)
    with pytest.raises(ValueError, match="holder"):
        warehouse.acquire_leases(RES, KEYS, holder="", ttl_s=10)
    assert warehouse.acquire_leases(RES, [], holder="run-a", ttl_s=10).acquired == []


# A contender: waits for the start signal, then takes the keys one at a time in its own order
# (most interleaving) and reports what it got and who held the rest.
_CONTENDER = """
import json, random, sys, time
from datetime import date, timedelta
from pathlib import Path
from asin_platform.resources.warehouse import Warehouse
url, schema, name, go, n = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
wh = Warehouse(url=url, pg_schema=schema)
keys = [(site, date(2025, 3, 1) + timedelta(days=i)) for site in ("US", "UK") for i in range(n)]
random.Random(name).shuffle(keys)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
won, lost = [], {}
for key in keys:
    grant = wh.acquire_leases("raw_payloads", [key], holder=name, ttl_s=300)
    won += [f"{s}/{d}" for s, d in grant.acquired]
    lost.update({f"{s}/{d}": h.holder for (s, d), h in grant.held_by_others.items()})
print(json.dumps({"won": won, "lost": lost}), flush=True)
"""


def test_two_processes_contending_each_key_has_exactly_one_winner(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    n_days = 15
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CONTENDER,
                warehouse.url,
                warehouse.pg_schema,
                name,
                str(go),
                str(n_days),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("proc-1", "proc-2")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        reports = {}
        for name, proc in zip(("proc-1", "proc-2"), procs, strict=True):
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out
            reports[name] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            proc.kill()
    won1, won2 = set(reports["proc-1"]["won"]), set(reports["proc-2"]["won"])
    assert won1.isdisjoint(won2)
    assert len(won1 | won2) == 2 * n_days  # every key has exactly one winner
    # Each loser saw the winner as the holder.
    assert reports["proc-1"]["lost"] == dict.fromkeys(won2, "proc-2")
    assert reports["proc-2"]["lost"] == dict.fromkeys(won1, "proc-1")
    rows = stored(warehouse)
    assert {f"{s}/{d}": h for _, s, d, h in rows} == {
        **dict.fromkeys(won1, "proc-1"),
        **dict.fromkeys(won2, "proc-2"),
    }
