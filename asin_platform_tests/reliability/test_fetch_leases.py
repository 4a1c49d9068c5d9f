"""One fetch per partition at a time, across processes: two CLI ingests of the same range at once
on the PostgreSQL warehouse spend the API quota once; the second fails before any request, saying
which run holds the partitions."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from asin_platform.resources.warehouse import Warehouse
from asin_platform.simulator import Market, MarketConfig, Quota, create_app
from asin_platform_tests.reliability.harness import Gate, Served, cli_env, start_cli

TOKEN = "lease-test-token-81c4d0"
RANGE = ["--start", "2025-03-01", "--end", "2025-03-03", "--sites", "US"]


def _wait(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.postgres
def test_two_ingests_of_one_range_at_once_fetch_it_once(tmp_path: Path, pg_database_url: str) -> None:
    app = create_app(
        Market(MarketConfig(sites=("US",), asins_per_site=120)), tokens={TOKEN: Quota(600_000, 5000)}
    )
    gate = Gate(app)
    served = Served(gate)
    env = cli_env(
        tmp_path / "home",
        {
            "ASIN_PLATFORM_API_TOKEN": TOKEN,
            "ASIN_PLATFORM_WAREHOUSE_URL": pg_database_url,
            "ASIN_PLATFORM__SITES": "US",
            "ASIN_PLATFORM__UPSTREAM__BASE_URL": served.url,
            # the first ingest's requests wait at the gate while the second one runs: no timeouts
            "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__TIMEOUT": "300",
        },
    )
    (tmp_path / "home").mkdir()
    first = start_cli(["ingest-raw", "--raw-only", *RANGE], env, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while gate.arrived == 0:  # the first one holds its leases and is fetching
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first ingest sent no request"
            time.sleep(0.05)
        second = start_cli(["ingest-raw", "--raw-only", *RANGE], env, tmp_path)
        _, err = _wait(second, 180)
        assert not gate.open.is_set()  # decided while the first one was still fetching
        gate.open.set()
        out, first_err = _wait(first, 180)
    finally:
        gate.open.set()
        served.stop()
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 1, err[-3000:]

    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        runs = {r.status: r.run_id for r in instance.get_runs()}
    holder = runs[dg.DagsterRunStatus.SUCCESS]
    [line] = [ln for ln in err.splitlines() if ln.startswith("asin-platform: run ")]
    assert "failed: raw_payloads: Failure: not fetched, no request sent: 3 partition(s)" in line
    assert f"US 2025-03-01, US 2025-03-02, US 2025-03-03 by run {holder}" in line
    assert "Traceback" not in err

    # the quota was spent once: every API request that reached the simulator is one stored payload
    # of the first run (no faults here, so one attempt each)
    raw = Warehouse(url=pg_database_url).read("raw_payloads")
    assert raw.height > 3 and set(raw["run_id"]) == {holder} and raw["error"].null_count() == raw.height
    assert gate.arrived == raw["attempts"].sum() == raw.height
    assert sorted(set(raw["date"].cast(str))) == ["2025-03-01", "2025-03-02", "2025-03-03"]
    # the leases were released: a later ingest of the range is not refused
    assert Warehouse(url=pg_database_url).query("SELECT count(*) AS n FROM ingest_leases")["n"][0] == 0
