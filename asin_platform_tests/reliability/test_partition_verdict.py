"""Green means true at the CLI: a partition holding a request failed for good is not ok. The command
exits 1 and names the partitions, the endpoints and the command that re-fetches just those; the
re-fetch, once the upstream heals, exits 0."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from asin_platform.cli import main
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import FailedPartition, rerun_commands
from asin_platform.settings import get_settings
from asin_platform.simulator import FaultConfig, Market, MarketConfig, Quota, start_in_thread

TOKEN = "verdict-test-token-2d9e"


def test_rerun_commands_cover_runs_of_consecutive_days_per_site() -> None:
    def part(site: str, day: int) -> FailedPartition:
        return FailedPartition(site, date(2025, 3, day), {"products": (1, 100)})

    failed = [part("US", 1), part("US", 2), part("US", 4), part("DE", 2)]
    assert rerun_commands(failed) == [
        "asin-platform ingest-raw --start 2025-03-02 --end 2025-03-02 --sites DE",
        "asin-platform ingest-raw --start 2025-03-01 --end 2025-03-02 --sites US",
        "asin-platform ingest-raw --start 2025-03-04 --end 2025-03-04 --sites US",
    ]


def test_a_request_failed_for_good_fails_the_command_and_names_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    market = Market(MarketConfig(sites=("US", "DE"), asins_per_site=60))
    faults = FaultConfig(fail_for_good=("keywords:US:2025-03-02:*:503",))
    broken = start_in_thread(market, tokens={TOKEN: Quota(600_000, 5000)}, faults=faults)
    healed = start_in_thread(market, tokens={TOKEN: Quota(600_000, 5000)})
    warehouse_url = str(tmp_path / "warehouse.duckdb")
    for name, value in {
        "DAGSTER_HOME": str(tmp_path),
        "ASIN_PLATFORM_API_TOKEN": TOKEN,
        "ASIN_PLATFORM__SITES": "[US, DE]",
        "ASIN_PLATFORM__UPSTREAM__BASE_URL": broken.url,
        "ASIN_PLATFORM__WAREHOUSE_URL": warehouse_url,
        "ASIN_PLATFORM__RETRY__BUDGET_S": "0.5",
        "ASIN_PLATFORM__RETRY_POLICY__BASE_DELAY": "0.05",
        "ASIN_PLATFORM__ASSET_RETRY__MAX_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ASIN_PLATFORM_WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["ingest-raw", "--start", "2025-03-01", "--end", "2025-03-03"])
        err = capsys.readouterr().err
        assert code == 1, err[-3000:]
        lines = [ln for ln in err.splitlines() if ln.startswith("asin-platform:")]
        # the blocking coverage check fails the run first (naming mart_coverage), then the verdict
        assert lines[0].startswith("asin-platform: run ") and "mart_coverage" in lines[0], lines
        lines = lines[1:]
        assert lines[0].startswith(
            "asin-platform: 1 partition(s) incomplete, requests failed for good: US 2025-03-02 (keywords "
        )
        assert lines[1:] == [
            "asin-platform: re-fetch them with: asin-platform ingest-raw --start 2025-03-02 --end 2025-03-02 --sites US"
        ]
        raw = Warehouse(url=warehouse_url).read("raw_payloads")
        failed = raw.filter(raw["error"].is_not_null())
        assert set(failed["site"]) == {"US"} and set(failed["date"].cast(str)) == {"2025-03-02"}
        assert set(failed["endpoint"]) == {"/v1/sites/{site}/keywords"}
        assert f"keywords {failed.height} request(s), " in lines[0]

        # the printed command, once the upstream is back, re-fetches just that partition: exit 0
        monkeypatch.setenv("ASIN_PLATFORM__UPSTREAM__BASE_URL", healed.url)
        get_settings.cache_clear()
        argv = lines[1].split("with: ", 1)[1].split()[1:]
        assert main(argv) == 0, capsys.readouterr().err[-3000:]
        # the re-run asked only for that partition: every request it sent is a payload it stored
        # for US 2025-03-02 (the day's history too, which the first run held in its range payload)
        after = Warehouse(url=warehouse_url).read("raw_payloads")
        rerun = after.filter(~after["run_id"].is_in(raw["run_id"].unique().to_list()))
        assert set(rerun["site"]) == {"US"} and set(rerun["date"].cast(str)) == {"2025-03-02"}
        assert healed.stats.snapshot()["requests"] == rerun.height + 1  # + our health probe
    finally:
        get_settings.cache_clear()
        broken.stop()
        healed.stop()
    raw = Warehouse(url=warehouse_url).read("raw_payloads")
    assert raw["error"].null_count() == raw.height
