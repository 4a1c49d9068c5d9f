"""Backfills through the real machinery: dagster-webserver and dagster-daemon as subprocesses on a
PostgreSQL-backed instance (deploy/dagster.postgres.yaml), driven through the GraphQL API as the UI
drives it. Fixtures: conftest.py (``dagster_stack``, ``backfilled``), stack.py."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
from dagster._core.events import DagsterEventType

from asin_platform.resources.warehouse import Warehouse
from asin_platform.simulator import Market, MarketConfig
from asin_platform_tests.ops.conftest import INGEST_KEYS, in_process_run_config
from asin_platform_tests.ops.stack import ASINS_PER_SITE, SITES, wait

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PARTITIONED_CHECKS = {
    "raw_payloads": {"raw_payloads_complete"},
    "mart_timeseries_daily": {
        "mart_coverage",
        "mart_no_duplicate_keys",
        "mart_schema_conformance",
        "mart_quarantine_rate",
    },
}

TABLE_CHECKS = {"mart_freshness"}


def _tracked(site: str, day: date) -> set[str]:
    return set(Market(MarketConfig(sites=SITES, asins_per_site=ASINS_PER_SITE)).universe(site, day))


def _materialized_partitions(stack, key: str) -> set[str]:
    data = stack.gql(
        """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
             ... on Asset { assetMaterializations(limit: 500) { partition runId } } } }""",
        {"key": {"path": [key]}},
    )
    return {m["partition"] for m in data["assetOrError"]["assetMaterializations"]}


def test_backfill_materialises_every_partition_with_its_checks(dagster_stack, backfilled) -> None:
    backfill = backfilled["backfill"]
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["numPartitions"] == len(SITES) * 2
    runs = backfill["runs"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs)

    # every (date, site) of every selected asset is materialised
    for key in INGEST_KEYS:
        assert _materialized_partitions(dagster_stack, key) >= set(backfilled["partitions"]), key

    # every run evaluated the partitioned checks of what it materialised, and they passed
    instance = dagster_stack.instance()
    seen: dict[str, set[str]] = {"raw_payloads": set(), "mart_timeseries_daily": set()}
    for run in runs:
        evaluations = [
            r.event_log_entry.dagster_event.event_specific_data
            for r in instance.get_records_for_run(
                run["runId"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION
            ).records
        ]
        assert evaluations, f"run {run['runId']} evaluated no checks"
        for evaluation in evaluations:
            if evaluation.check_name in TABLE_CHECKS:
                continue  # whole-table freshness rides along; 2025 data is stale today, rightly
            assert evaluation.passed, (evaluation.check_name, evaluation.metadata)
            seen.setdefault(evaluation.asset_key.to_user_string(), set()).add(evaluation.check_name)
    for asset, checks in PARTITIONED_CHECKS.items():
        assert checks <= seen[asset], asset

    # the warehouse holds exactly one mart row per tracked ASIN of every partition
    warehouse = Warehouse(url=dagster_stack.warehouse_url)
    mart = warehouse.read("mart_timeseries_daily", columns=["site", "date", "asin"])
    assert mart.select("site", "date", "asin").is_unique().all()
    for day in (date(2025, 3, 10), date(2025, 3, 11)):
        for site in SITES:
            got = set(mart.filter((pl.col("site") == site) & (pl.col("date") == day))["asin"])
            assert got == _tracked(site, day), (site, day)


def test_stack_schedules_are_stopped(dagster_stack) -> None:
    """Only the tests launch runs on the stack: the ingest schedule's hourly tick would fetch
    yesterday's partitions from the simulator in the middle of a test that counts requests."""
    states = dagster_stack.schedule_states()
    assert "ingest_schedule" in states
    assert {n: s["status"] for n, s in states.items()} == dict.fromkeys(states, "STOPPED")


def test_failed_partition_reexecuted_from_failure_without_duplicates(
    dagster_stack, backfilled, alert_receiver
) -> None:
    """One partition's ingest run fetches its raw payloads, then its mart step fails (the warehouse's
    fact_keywords table is offline). After the fix, the UI's "Re-execute from failure" runs the mart
    from the stored payloads: the fetch is not repeated and nothing is duplicated."""
    day, site = date(2025, 3, 12), "US"
    partition = f"{day}|{site}"
    warehouse = Warehouse(url=dagster_stack.warehouse_url)
    dagster_stack.warehouse_sql('ALTER TABLE "fact_keywords" RENAME TO "fact_keywords_offline"')
    try:
        # ingest_job = raw_payloads + the mart multi-asset + their checks, one run
        parent_id = dagster_stack.launch_partition_run("ingest_job", partition, in_process_run_config())
        parent = dagster_stack.wait_for_run(parent_id)
    finally:
        dagster_stack.warehouse_sql('ALTER TABLE "fact_keywords_offline" RENAME TO "fact_keywords"')
    assert parent["status"] == "FAILURE", parent
    steps = {s["stepKey"]: s["status"] for s in parent["stepStats"]}
    assert steps["raw_payloads"] == "SUCCESS" and steps["mart_timeseries_daily"] == "FAILURE", steps

    raw_before = warehouse.read("raw_payloads", sites=[site], start=day, end=day)
    assert raw_before.height > 0 and set(raw_before["run_id"]) == {parent_id}
    assert warehouse.read("mart_timeseries_daily", sites=[site], start=day, end=day).is_empty()
    requests_before = dagster_stack.simulator.stats.snapshot()

    child_id = dagster_stack.reexecute(parent_id, "FROM_FAILURE")
    child = dagster_stack.wait_for_run(child_id)
    assert child["status"] == "SUCCESS", dagster_stack.logs("daemon")
    assert child["parentRunId"] == parent_id
    executed = {s["stepKey"] for s in child["stepStats"]}
    assert "mart_timeseries_daily" in executed
    assert "raw_payloads" not in executed  # it succeeded in the parent: not fetched again

    # nothing fetched again, nothing duplicated
    assert dagster_stack.simulator.stats.snapshot() == requests_before
    raw_after = warehouse.read("raw_payloads", sites=[site], start=day, end=day)
    assert sorted(raw_after["payload_id"]) == sorted(raw_before["payload_id"])
    mart = warehouse.read("mart_timeseries_daily", sites=[site], start=day, end=day)
    assert mart["asin"].is_unique().all()
    assert set(mart["asin"]) == _tracked(site, day)
    for key in INGEST_KEYS:
        assert partition in _materialized_partitions(dagster_stack, key), key

    # the daemon's run-failure sensor alerted the failure, with the partition, the cause and a link
    def alerted() -> list[dict]:
        return [
            r.body
            for r in alert_receiver.received
            if "Run failed" in r.body.get("text", "") and partition in r.body.get("text", "")
        ]

    bodies = wait(alerted, 90, lambda: str([r.body.get("text") for r in alert_receiver.received]))
    assert f"/runs/{parent_id}" in bodies[0]["text"]
    assert "fact_keywords" in bodies[0]["blocks"][2]["text"]["text"]


# ------------------------------------------------------------------ one check evaluation per partition

CHECK_DAYS = ("2025-03-20", "2025-03-21")
CLI_DAYS = ("2025-03-24", "2025-03-25")
CHECK_SITES = ("US", "DE")
CHECKED_LAYERS = {"raw_payloads", "mart_timeseries_daily", "features_daily", "score_baseline_daily"}


def _partitioned_checks(assets: set[str]) -> list:
    from asin_platform.commands.checks import partitioned_check_keys
    from asin_platform.definitions import defs

    return [k for k in partitioned_check_keys(defs) if k.asset_key.path[0] in assets]


def _executions(stack, key) -> list[dict]:
    return stack.gql(
        """query($key: AssetKeyInput!, $name: String!) {
             assetCheckExecutions(assetKey: $key, checkName: $name, limit: 500) { runId status partition } }""",
        {"key": {"path": key.asset_key.path}, "name": key.name},
    )["assetCheckExecutions"]


def _assert_one_evaluation_per_partition(stack, keys: list, partitions: list[str], run_ids: set[str]) -> None:
    """Through GraphQL: each check has exactly one execution per partition, from these runs, none
    SKIPPED (a completed evaluation with its partition key), and none without a partition."""
    for key in keys:
        executions = _executions(stack, key)
        ours = [e for e in executions if e["runId"] in run_ids]
        assert sorted(e["partition"] for e in ours) == sorted(partitions), (key, ours)
        for_partitions = [e for e in executions if e["partition"] in partitions]
        assert len(for_partitions) == len(partitions), (key, for_partitions)
        assert {e["status"] for e in for_partitions} <= {"SUCCEEDED", "FAILED"}, (key, for_partitions)


def test_ui_backfill_reports_one_check_evaluation_per_partition(dagster_stack) -> None:
    partitions = [f"{day}|{site}" for day in CHECK_DAYS for site in CHECK_SITES]
    keys = [*INGEST_KEYS, "features_daily", "score_baseline_daily"]
    backfill_id = dagster_stack.launch_backfill(
        partitions, keys, "ops test: checks per partition", run_config=in_process_run_config()
    )
    backfill = dagster_stack.wait_for_backfill(backfill_id, timeout=300)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    checks = _partitioned_checks(CHECKED_LAYERS)
    assert len(checks) == 8  # raw 1, mart 4, features 1, score 2
    run_ids = {r["runId"] for r in backfill["runs"]}
    _assert_one_evaluation_per_partition(dagster_stack, checks, partitions, run_ids)


def test_ranged_cli_run_reports_one_check_evaluation_per_partition(dagster_stack) -> None:
    import subprocess

    from asin_platform_tests.ops.stack import BIN

    command = [str(BIN / "asin-platform"), "ingest-raw", "--start", CLI_DAYS[0], "--end", CLI_DAYS[1]]
    done = subprocess.run(
        [*command, "--sites", *CHECK_SITES],
        env=dagster_stack.env,
        cwd=dagster_stack.workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    partitions = [f"{day}|{site}" for day in CLI_DAYS for site in CHECK_SITES]
    instance = dagster_stack.instance()
    try:
        run_ids = {
            record.dagster_run.run_id
            for site in CHECK_SITES
            for record in instance.get_run_records(
                filters=dg.RunsFilter(tags={"dagster/asset_partition_range_start": f"{CLI_DAYS[0]}|{site}"})
            )
        }
    finally:
        instance.dispose()
    assert len(run_ids) == 2  # one ranged run per site
    checks = _partitioned_checks({"raw_payloads", "mart_timeseries_daily"})
    _assert_one_evaluation_per_partition(dagster_stack, checks, partitions, run_ids)
