"""The CLI's child processes and the runs of dead ones: the simulator child gets the token through
its environment (never its command line), and a run killed with kill -9 is marked failed, with the
reason, by the next CLI start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.events import DagsterEventType

from asin_platform.cli import main
from asin_platform.commands._stale import PROCESS_TAG
from asin_platform.commands.simulator import SimulatorProcess
from asin_platform.settings import get_settings

# Long enough that scrubbing it from stored bodies cannot touch the data (a 1-letter token would).
TOKEN = "cli-test-token-5f1c2a"


def test_simulator_child_gets_the_token_from_its_environment_not_its_argv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("ASIN_PLATFORM_API_TOKEN", token)
    monkeypatch.setenv("ASIN_PLATFORM__SIMULATOR__ASINS_PER_SITE", "20")
    with SimulatorProcess(0) as sim:
        argv = Path(f"/proc/{sim.pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[-3:-1] == ["simulator", "--port"] or "simulator" in argv
        assert not any(token in arg for arg in argv), argv
        assert "--token" not in argv
        # ... and the child accepts exactly that token, so it did receive it
        url = f"{sim.url}/v1/sites/US/asins"
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code != 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


@pytest.mark.slow
def test_run_killed_mid_run_is_marked_failed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asin_platform.simulator import Market, MarketConfig, Quota, start_in_thread

    sim = start_in_thread(
        Market(MarketConfig(sites=("US",), asins_per_site=200)), tokens={TOKEN: Quota(600_000, 5000)}
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASIN_PLATFORM")},
        "DAGSTER_HOME": str(home),
        "ASIN_PLATFORM_API_TOKEN": TOKEN,
        "ASIN_PLATFORM__SITES": "US",
        "ASIN_PLATFORM__UPSTREAM__BASE_URL": sim.url,
        "ASIN_PLATFORM__WAREHOUSE_URL": str(tmp_path / "warehouse.duckdb"),
    }
    script = Path(sys.executable).parent / "asin-platform"
    with open(tmp_path / "cli.log", "w") as log:
        cli = subprocess.Popen(
            [str(script), "ingest-raw", "--start", "2025-03-01", "--end", "2025-03-20"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # mid-run: the run is STARTED and the upstream has been answering for a moment
        while not (
            sim.stats.snapshot()["requests"] >= 5
            and any(r.status == dg.DagsterRunStatus.STARTED for r in _runs(home))
        ):
            assert cli.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the CLI run did not start"
            time.sleep(0.1)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    [stale] = _runs(home)
    assert stale.status == dg.DagsterRunStatus.STARTED  # nothing else would ever end it
    assert stale.tags[PROCESS_TAG].split(":")[1] == str(cli.pid)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["ingest-raw", "--start", "2025-03-01", "--end", "2025-03-01"]) == 0
    finally:
        get_settings.cache_clear()
        sim.stop()
    assert (
        f"marked 1 run(s) left STARTED by a dead process as failed: {stale.run_id}" in capsys.readouterr().out
    )

    with dg.DagsterInstance.from_config(str(home)) as instance:
        swept = instance.get_run_by_id(stale.run_id)
        assert swept is not None and swept.status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.all_logs(stale.run_id, of_type=DagsterEventType.RUN_FAILURE)
        assert f"(pid {cli.pid} on " in failure.message and "killed or crashed" in failure.message
        newest = instance.get_runs(limit=1)[0]
        assert newest.run_id != stale.run_id and newest.status == dg.DagsterRunStatus.SUCCESS
