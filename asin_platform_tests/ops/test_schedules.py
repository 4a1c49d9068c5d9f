"""Schedules and declarative automation: what the definitions hold, which ingest runs a tick
launches, and how a day moves downstream (evaluated with Dagster's own automation evaluator)."""

import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from asin_platform.automation import AutomationSettings, build_automation
from asin_platform.automation.schedules import FOLLOW_KEYS, TRIGGER_TAG, ingest_decision
from asin_platform.definitions import ASSETS, CHECKS, build_definitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient
from asin_platform_tests.ops.conftest import ingest_resources

TICK = datetime(2025, 3, 11, 0, 0, tzinfo=UTC)  # the first hourly tick of 11 March
DAY = "2025-03-10"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


def test_definitions_hold_the_automation(defs: dg.Definitions) -> None:
    repo = defs.get_repository_def()
    schedules = {s.name: s for s in repo.schedule_defs}
    assert {"ingest_schedule", "table_checks_schedule"} <= set(schedules)
    for schedule in schedules.values():
        assert schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedules["ingest_schedule"].cron_schedule == "0 * * * *"  # the seed: hourly at :00
    assert schedules["ingest_schedule"].job_name == "ingest_raw_job"
    sensors = {s.name for s in repo.sensor_defs}
    assert {"run_failure_alert", "asset_check_alert", "tracking_alert", "daily_automation"} <= sensors
    graph = defs.resolve_asset_graph()
    present = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for key in present:
        condition = graph.get(dg.AssetKey(key)).automation_condition
        if key in FOLLOW_KEYS:
            assert condition is not None and "follow inputs" in (condition.get_label() or ""), key
        else:
            assert condition is None, key  # scheduled instead (ingest, retraining)
    # the scheduled ingest job is raw_payloads alone, in process
    job = repo.get_job("ingest_raw_job")
    assert job.executor_def.name == "in_process"
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"raw_payloads"}


def test_retrain_and_stopped_status_follow_settings() -> None:
    class Stopped:
        """Settings with an ``automation`` section, as settings.py will hold it."""

        def __init__(self) -> None:
            self._base = get_settings()
            self.automation = AutomationSettings(default_status="stopped", retrain_cron="15 4 * * 0")

        def __getattr__(self, name: str):
            return getattr(self._base, name)

    ranker = dg.AssetSpec("ranker_model", deps=["score_baseline_daily"])

    @dg.multi_asset(specs=[ranker])
    def ranker_model() -> None: ...

    automation = build_automation([*ASSETS, ranker_model], CHECKS, Stopped())  # type: ignore[arg-type]
    schedules = {s.name: s for s in automation.schedules}
    assert schedules["retrain_ranker_schedule"].cron_schedule == "15 4 * * 0"
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in automation.schedules)
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in automation.sensors)


def test_cron_strings_are_validated() -> None:
    with pytest.raises(ValueError, match="not a valid cron"):
        AutomationSettings(ingest_cron="every hour")


def _requests(defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[list[dg.RunRequest], str]:
    schedule = defs.get_schedule_def("ingest_schedule")
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=TICK, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message or ""


def test_ingest_schedule_one_run_per_site_for_yesterday(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        requests, _ = _requests(defs, instance)
        assert [r.partition_key for r in requests] == [f"{DAY}|{s}" for s in get_settings().sites]
        assert all(r.tags[TRIGGER_TAG] == "ingest_schedule" for r in requests)
        assert len({r.run_key for r in requests}) == len(requests)


def test_ingest_schedule_skips_done_and_in_flight_partitions_and_gives_up(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        # US is done, UK is running, DE failed three times; JP failed once and is retried
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_payloads", partition=f"{DAY}|US"))
        for site, statuses in {
            "UK": [dg.DagsterRunStatus.STARTED],
            "DE": [dg.DagsterRunStatus.FAILURE] * 3,
            "JP": [dg.DagsterRunStatus.FAILURE],
        }.items():
            for status in statuses:
                instance.add_run(
                    dg.DagsterRun(
                        job_name="ingest_raw_job",
                        run_id=str(uuid.uuid4()),
                        status=status,
                        tags={"dagster/partition": f"{DAY}|{site}"},
                    )
                )
        requests, _ = _requests(defs, instance)
        assert [r.partition_key for r in requests] == [f"{DAY}|JP"]
        assert ingest_decision(instance, "ingest_raw_job", f"{DAY}|US", 3) == (
            False,
            f"{DAY}|US: already materialised",
        )
        assert "queued or in progress" in ingest_decision(instance, "ingest_raw_job", f"{DAY}|UK", 3)[1]
        assert "gave up after 3" in ingest_decision(instance, "ingest_raw_job", f"{DAY}|DE", 3)[1]
        assert "attempt 2 of 3" in ingest_decision(instance, "ingest_raw_job", f"{DAY}|JP", 3)[1]


def _requested(result, key: str) -> set[str]:
    return {str(p) for p in result.get_requested_partitions(dg.AssetKey(key))}


NOW = datetime(2025, 3, 11, 1, 0, tzinfo=UTC)
PART = f"{DAY}|US"
FOLLOWED = dg.AssetSelection.assets("mart_timeseries_daily", "features_daily")


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor):
    return dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=FOLLOWED, evaluation_time=NOW, cursor=cursor
    )


def test_raw_then_mart_follow(defs: dg.Definitions) -> None:
    """Raw lands -> the mart of that day is requested; an old day is left to backfills."""
    with dg.instance_for_test() as instance:
        result = _tick(defs, instance, None)
        assert result.total_requested == 0  # nothing ingested yet: nothing to follow
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_payloads", partition=PART))
        result = _tick(defs, instance, result.cursor)
        assert _requested(result, "mart_timeseries_daily") == {PART}
        assert _requested(result, "features_daily") == set()  # its input is not there yet
        # an old day (outside follow_lookback_days) is left to backfills
        instance.report_runless_asset_event(
            dg.AssetMaterialization("raw_payloads", partition="2025-02-01|US")
        )
        result = _tick(defs, instance, result.cursor)
        assert _requested(result, "mart_timeseries_daily") == set()


def _ingest(instance: dg.DagsterInstance, warehouse: Warehouse, **faults: float | int) -> bool:
    client = SimulatedUpstreamClient(
        sim_asins_per_site=60, sim_sites=["US", "UK", "DE", "JP"], base_delay=0.001, max_delay=0.01, **faults
    )
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection_with_checks(["raw_payloads", "mart_timeseries_daily"]),
        resources=ingest_resources(client, warehouse),
        partition_key=PART,
        instance=instance,
        raise_on_error=False,
    ).success


def test_features_wait_for_the_mart_blocking_checks(defs: dg.Definitions, tmp_path) -> None:
    """Real ingest runs: while the mart's blocking coverage check is failed, features are not built
    on it; once a re-run passes, they are requested. Dagster's evaluator, our conditions."""
    warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    warehouse.setup()
    with dg.instance_for_test() as instance:
        result = _tick(defs, instance, None)
        assert not _ingest(instance, warehouse, missing_rows_rate=1.0, batch_size=5, fault_seed=1)
        result = _tick(defs, instance, result.cursor)
        assert _requested(result, "features_daily") == set()  # coverage failed: nothing built on it
        assert _ingest(instance, warehouse)
        result = _tick(defs, instance, result.cursor)
        assert _requested(result, "features_daily") == {PART}


def _land(defs: dg.Definitions, instance: dg.DagsterInstance, key: str, partition: str) -> None:
    """``key``'s partition materialised and its blocking checks passed (what a good run records)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records[0]
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )
    graph = defs.resolve_asset_graph()
    for check in graph.asset_check_keys:
        if check.asset_key == dg.AssetKey(key) and graph.get(check).blocking:
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    check.asset_key,
                    check.name,
                    passed=True,
                    partition=partition,
                    target_materialization_data=target,
                )  # fmt: skip
            )


def test_realised_outcomes_follow_the_mart_day_that_realises_them(defs: dg.Definitions) -> None:
    """Partition T of realised_outcomes runs when the mart of T + H lands (H days after its
    predictions, further back than the other followed assets look)."""
    h = get_settings().windows.horizon
    realised = f"{date.fromisoformat(DAY) - timedelta(days=h)}|US"  # realised by the mart of DAY
    selection = dg.AssetSelection.assets("realised_outcomes")
    with dg.instance_for_test() as instance:

        def tick(cursor):
            return dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=selection, evaluation_time=NOW, cursor=cursor
            )

        result = tick(None)
        for key in ("predictions_rank_daily", "score_baseline_daily"):
            _land(defs, instance, key, realised)
        result = tick(result.cursor)
        assert _requested(result, "realised_outcomes") == set()  # the mart of T + H is not there yet
        _land(defs, instance, "mart_timeseries_daily", PART)
        result = tick(result.cursor)
        assert _requested(result, "realised_outcomes") == {realised}
        result = tick(result.cursor)
        assert _requested(result, "realised_outcomes") == set()  # requested once
    graph = defs.resolve_asset_graph()
    label = graph.get(dg.AssetKey("realised_outcomes")).automation_condition.get_label()  # type: ignore[union-attr]
    assert label == f"follow inputs (newest {2 + h} days, blocking checks passed)"
