"""From the demo to the UI as a new user goes: the demo in an empty directory, then the command its
last line prints, run with the venv not activated; the UI serves the demo's instance and warehouse,
and a backfill of one further day through GraphQL fetches the demo's market (same size and seed),
not another one."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from asin_platform_tests.ops.conftest import INGEST_KEYS
from asin_platform_tests.ops.stack import DagsterStack, free_port

pytestmark = pytest.mark.slow

END = date(2025, 3, 5)
FURTHER = END + timedelta(days=1)
SITE = "US"


def _bare_env() -> dict[str, str]:
    """A shell without the venv activated and without any platform settings."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASIN_PLATFORM", "DAGSTER_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    return {**env, "PATH": path or "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def _mart_count(project: Path, day: date) -> int:
    from asin_platform.resources.warehouse import Warehouse

    warehouse = Warehouse(url=str(project / "data" / "warehouse.duckdb"))
    return warehouse.count("mart_timeseries_daily", sites=[SITE], start=day, end=day)


def test_demo_then_the_printed_dev_command_serves_the_demo(tmp_path: Path) -> None:
    project = tmp_path / "my-demo"
    project.mkdir()
    env = _bare_env()
    script = Path(sys.executable).parent / "asin-platform"
    demo = subprocess.run(
        [str(script), "demo", "--days", "2", "--end", str(END), "--asins", "40"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert (project / ".dagster_home" / "dagster.yaml").exists()  # the project's pools and run limits
    command = demo.stdout.strip().splitlines()[-1].strip()
    assert command == f"{script} dev --project-dir {project}"

    # exactly that command, from the demo's directory; a free port because tests share the machine
    port = free_port()
    ui = DagsterStack(base_pg_url="", workdir=tmp_path)
    ui.port = port
    with open(tmp_path / "dev.log", "w") as log:
        ui.processes["dev"] = subprocess.Popen(
            [*shlex.split(command), "--port", str(port)],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        ui.wait_until_ready(timeout=180)
        assets = {
            tuple(n["assetKey"]["path"]) for n in ui.gql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        }
        assert {("raw_payloads",), ("mart_timeseries_daily",), ("score_baseline_daily",)} <= assets

        # the demo's materialisations are in the instance the UI serves
        partition = f"{END}|{SITE}"
        data = ui.gql(
            """query($p: [String!]) { assetOrError(assetKey: {path: ["mart_timeseries_daily"]}) {
                 ... on Asset { assetMaterializations(partitions: $p) { partition runId } } } }""",
            {"p": [partition]},
        )
        assert [m["partition"] for m in data["assetOrError"]["assetMaterializations"]][:1] == [partition]
        before = _mart_count(project, END)
        assert before > 0

        backfill_id = ui.launch_backfill([f"{FURTHER}|{SITE}"], INGEST_KEYS, "one further day")
        backfill = ui.wait_for_backfill(backfill_id, timeout=300)
        assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, ui.logs("dev", 80))
        after = _mart_count(project, FURTHER)
        # the same market as the demo's: 40 ASINs a site, not the default 2,000
        assert abs(after - before) <= 0.1 * before, (before, after)
    finally:
        process = ui.processes["dev"]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
