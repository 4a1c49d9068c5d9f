"""kill -9 in the middle of an ingest: the next start marks the dead run failed, takes over the
leases it held, and the rerun's tables equal a clean run's, cell for cell."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest

from asin_platform.cli import main
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import get_settings
from asin_platform.simulator import FaultConfig, Market, MarketConfig, Quota, start_in_thread
from asin_platform_tests.reliability.faults import FETCH_COLUMNS, TABLES
from asin_platform_tests.reliability.harness import cli_env, start_cli

TOKEN = "kill9-test-token-7a3b1e"
RANGE = ["--start", "2025-03-01", "--end", "2025-03-05"]


def _tables(path: Path) -> dict[str, pl.DataFrame]:
    warehouse = Warehouse(url=str(path))
    out = {}
    for name, key in {**TABLES, "quarantine": ("site", "date", "table_name", "asin", "reason")}.items():
        frame = warehouse.read(name)
        out[name] = frame.drop([c for c in (*FETCH_COLUMNS, "quarantined_at") if c in frame.columns]).sort(
            key
        )
    return out


@pytest.mark.slow
def test_rerun_after_kill9_equals_the_clean_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = start_in_thread(
        Market(MarketConfig(sites=("US",), asins_per_site=200)),
        tokens={TOKEN: Quota(600_000, 5000)},
        faults=FaultConfig(latency_ms=150),  # a run long enough to be killed in the middle
    )
    settings_env = {
        "ASIN_PLATFORM_API_TOKEN": TOKEN,
        "ASIN_PLATFORM__SITES": "US",
        "ASIN_PLATFORM__UPSTREAM__BASE_URL": sim.url,
    }
    (tmp_path / "killed").mkdir()
    (tmp_path / "clean").mkdir()
    env = cli_env(
        tmp_path / "killed", {**settings_env, "ASIN_PLATFORM__WAREHOUSE_URL": str(tmp_path / "killed.duckdb")}
    )
    try:
        cli = start_cli(["ingest-raw", *RANGE], env, tmp_path / "killed")
        deadline = time.monotonic() + 120
        while sim.stats.snapshot()["requests"] < 15:  # mid-run: a few partitions fetched and stored
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "the CLI run did not start"
            time.sleep(0.05)
        os.kill(cli.pid, signal.SIGKILL)
        cli.communicate(timeout=30)

        monkeypatch.delenv("ASIN_PLATFORM_WAREHOUSE_URL", raising=False)
        for run, home in (("killed", tmp_path / "killed"), ("clean", tmp_path / "clean")):
            for name, value in {
                **settings_env,
                "DAGSTER_HOME": str(home),
                "ASIN_PLATFORM__WAREHOUSE_URL": str(tmp_path / f"{run}.duckdb"),
            }.items():
                monkeypatch.setenv(name, value)
            monkeypatch.chdir(home)
            get_settings.cache_clear()
            assert main(["ingest-raw", *RANGE]) == 0, capsys.readouterr().err[-3000:]
            if run == "killed":
                out = capsys.readouterr()
                assert "marked 1 run(s) left STARTED by a dead process as failed" in out.out
                assert "took over 5 lease(s) of run " in out.err + out.out
    finally:
        get_settings.cache_clear()
        sim.stop()

    killed, clean = _tables(tmp_path / "killed.duckdb"), _tables(tmp_path / "clean.duckdb")
    for name, frame in clean.items():
        assert frame.height > 0 or name == "quarantine", name
        assert killed[name].equals(frame), name
