"""The analysts' UI: ``dagster-webserver --read-only`` on a demo instance with runs (issue 16).

Queries answer as on the operators' webserver (runs, materialisations, check results); every
mutation that launches, re-executes, deletes, wipes or switches automation is refused with
GraphQL's ``UnauthorizedError``, and afterwards the instance holds exactly what it held before.
The Helm values run this as the chart's read-only webserver (``dagsterWebserver.enableReadOnly``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asin_platform_tests.ops.stack import REPOSITORY as LOCATION
from asin_platform_tests.ops.stack import GraphQLError
from asin_platform_tests.ops.ui_harness import END, SITES, SecretDemo, Webserver, webserver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
MATERIALISED = """{ assetNodes { assetKey { path } assetMaterializations(limit: 50) { partition } } }"""


@pytest.fixture(scope="module")
def read_only(secret_demo: SecretDemo) -> Iterator[Webserver]:
    with webserver(secret_demo, read_only=True) as server:
        yield server


@pytest.fixture(scope="module")
def before(read_only: Webserver) -> dict[str, Any]:
    """The instance as the read-only UI shows it before any mutation is tried."""
    return {"runs": read_only.gql(RUNS), "materialised": read_only.gql(MATERIALISED)}


def test_queries_work(read_only: Webserver, before: dict[str, Any], secret_demo: SecretDemo) -> None:
    runs = before["runs"]["runsOrError"]["results"]
    assert sorted(r["runId"] for r in runs) == sorted(secret_demo.run_ids)
    assert {r["status"] for r in runs} == {"SUCCESS"}
    nodes = {tuple(n["assetKey"]["path"]): n for n in before["materialised"]["assetNodes"]}
    exported = {m["partition"] for m in nodes[("top_candidates",)]["assetMaterializations"]}
    assert exported == {f"{END}|{site}" for site in SITES}
    run = read_only.gql(
        """query($id: ID!) { runOrError(runId: $id) { ... on Run { runId stepStats { stepKey status } } } }""",
        {"id": secret_demo.run_ids[0]},
    )["runOrError"]
    assert run["runId"] == secret_demo.run_ids[0] and run["stepStats"]


def test_the_server_reports_no_permission(read_only: Webserver) -> None:
    permissions = read_only.gql("{ permissions { permission value } }")["permissions"]
    granted = {p["permission"]: p["value"] for p in permissions}
    assert granted["launch_pipeline_execution"] is False and granted["wipe_assets"] is False
    assert not any(granted.values()), [name for name, value in granted.items() if value]


def test_launching_a_run_is_refused(read_only: Webserver) -> None:
    with pytest.raises(GraphQLError, match="UnauthorizedError"):
        read_only.launch_partition_run("ingest_job", f"{END}|US")


def test_launching_a_backfill_is_refused(read_only: Webserver) -> None:
    with pytest.raises(GraphQLError, match="UnauthorizedError"):
        read_only.launch_backfill([f"{END}|US"], ["raw_payloads"], "not allowed")


MUTATIONS = {
    "wipe": (
        """mutation { wipeAssets(assetPartitionRanges: [{assetKey: {path: ["top_candidates"]}}]) {
             __typename } }""",
        {},
    ),
    "delete run": ("mutation($id: String!) { deleteRun(runId: $id) { __typename } }", "run"),
    # The execution-params form: runs launched in process (the demo's) carry no code-location
    # origin, and the parent-run form fails on that before it reaches the permission check.
    "re-execute": (
        """mutation($p: ExecutionParams!) { launchRunReexecution(executionParams: $p) { __typename } }""",
        "reexecute",
    ),
    "start schedule": (
        "mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename } }",
        {"s": {**LOCATION, "scheduleName": "ingest_schedule"}},
    ),
    "start sensor": (
        "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }",
        {"s": {**LOCATION, "sensorName": "run_failure_alert"}},
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutations_are_refused(read_only: Webserver, secret_demo: SecretDemo, name: str) -> None:
    query, variables = MUTATIONS[name]
    run_id = secret_demo.run_ids[0]
    if variables == "run":
        variables = {"id": run_id}
    elif variables == "reexecute":
        metadata = {"parentRunId": run_id, "rootRunId": run_id}
        selector = {**LOCATION, "jobName": "ingest_job"}
        variables = {"p": {"selector": selector, "runConfigData": {}, "executionMetadata": metadata}}
    [answer] = read_only.gql(query, variables).values()
    assert answer["__typename"] == "UnauthorizedError", answer


def test_nothing_changed(read_only: Webserver, before: dict[str, Any]) -> None:
    """Runs last in this module: after every refused mutation the instance is as it was."""
    assert read_only.gql(RUNS) == before["runs"]
    assert read_only.gql(MATERIALISED) == before["materialised"]
