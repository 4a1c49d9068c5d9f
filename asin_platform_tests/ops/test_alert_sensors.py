"""The alerting sensors, evaluated against a Dagster instance that holds a real failed ingest run
(the simulator losing rows and sending out-of-range values), posting to a loopback receiver."""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from dagster._core.events import DagsterEventType

from asin_platform.automation.config import WEBHOOK_URL_ENV, AlertSettings
from asin_platform.automation.sensors import (
    build_check_failure_sensor,
    build_run_failure_sensor,
    build_tracking_sensor,
    check_alerts_since,
    new_top_candidates,
)
from asin_platform.checks.partitioned import Verdict, evaluations
from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import selection_with_checks
from asin_platform.schemas import SCORE_BASELINE_DAILY
from asin_platform.simulator.clients import SimulatedUpstreamClient
from asin_platform_tests.ops.conftest import ingest_resources

DAY = date(2025, 3, 10)
PARTITION = f"{DAY}|JP"
RUNNING = dg.DefaultSensorStatus.RUNNING
# A cursor from before any run ended: the sensor reads every run end of the instance.
FROM_START = json.dumps({"failure": "", "success": ""})
ALERTS = AlertSettings()


@pytest.fixture(scope="module")
def failed_ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dg.DagsterInstance, str]]:
    """One real ingest run of (2025-03-10, JP) that fails its blocking coverage check (every batch of
    5 ASINs loses one) and its WARN quarantine-rate check (every value out of range)."""
    warehouse = Warehouse(url=str(tmp_path_factory.mktemp("wh") / "warehouse.duckdb"))
    warehouse.setup()
    client = SimulatedUpstreamClient(
        sim_asins_per_site=60,
        sim_sites=["US", "UK", "DE", "JP"],
        base_delay=0.001,
        max_delay=0.01,
        missing_rows_rate=1.0,
        out_of_range_rate=1.0,
        batch_size=5,
        fault_seed=1,
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection_with_checks(["raw_payloads", "mart_timeseries_daily"]),
            resources=ingest_resources(client, warehouse),
            partition_key=PARTITION,
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        yield instance, result.run_id


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch, receiver):
    """A receiver wired in as ASIN_PLATFORM_ALERT_WEBHOOK_URL; ``webhook(500)`` fails once first."""

    def make(*statuses: int):
        rec = receiver(*statuses)
        monkeypatch.setenv(WEBHOOK_URL_ENV, rec.url)
        return rec

    return make


def _texts(rec) -> list[str]:
    return [r.body["text"] for r in rec.received]


def test_run_failure_sensor_posts_job_partition_error_and_link(failed_ingest, webhook) -> None:
    instance, run_id = failed_ingest
    rec = webhook(500)  # the first POST fails: the alert is retried, not lost
    run = instance.get_run_by_id(run_id)
    [record] = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()
    build_run_failure_sensor(RUNNING, ALERTS)(context)

    assert len(rec.received) == 2
    body = rec.received[-1].body
    assert body["text"].startswith(":rotating_light: [ERROR] Run failed:")
    assert f"partition={PARTITION}" in body["text"]
    assert f"http://127.0.0.1:3000/runs/{run_id}" in body["text"]
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "mart_coverage" in fields  # the failed step: the blocking check
    details = body["blocks"][2]["text"]["text"]
    assert "blocking asset check failed" in details and "mart_coverage" in details


def test_check_sensor_posts_error_and_warn_results_with_metadata(failed_ingest, webhook) -> None:
    instance, run_id = failed_ingest
    rec = webhook()
    sensor = build_check_failure_sensor(RUNNING, ALERTS)
    result = sensor(dg.build_sensor_context(instance=instance, cursor=FROM_START))
    assert isinstance(result, dg.SkipReason)
    texts = _texts(rec)
    coverage = next(r.body for r in rec.received if "mart_coverage" in r.body["text"])
    quarantine = next(r.body for r in rec.received if "mart_quarantine_rate" in r.body["text"])
    assert coverage["text"].startswith(
        ":rotating_light: [ERROR] Check failed: mart_timeseries_daily.mart_coverage"
    )
    assert quarantine["text"].startswith(
        ":warning: [WARN] Check failed: mart_timeseries_daily.mart_quarantine_rate"
    )
    for body in (coverage, quarantine):
        assert f"partition={PARTITION}" in body["text"]
        assert f"/runs/{run_id}" in body["text"]
        assert "/assets/mart_timeseries_daily?view=checks" in json.dumps(body["blocks"])
    details = coverage["blocks"][2]["text"]["text"]
    # every batch of 5 loses one ASIN, products and timeseries batches independently
    assert "core 62.2%, timeseries 80.0% of 45 tracked ASINs (threshold 95%)" in details
    assert "min_coverage: 0.6222" in details and "threshold: 0.95" in details
    assert "quarantine_rate" in quarantine["blocks"][2]["text"]["text"]
    assert not any("mart_no_duplicate_keys" in t for t in texts)  # passed checks are not alerted


def test_check_sensor_cursor_first_tick_and_no_repeats(failed_ingest, webhook) -> None:
    instance, _ = failed_ingest
    rec = webhook()
    sensor = build_check_failure_sensor(RUNNING, ALERTS)
    first = dg.build_sensor_context(instance=instance)
    result = sensor(first)
    # a fresh sensor starts at the newest run end instead of replaying history as a flood
    assert "first evaluation" in result.skip_message
    assert json.loads(first.cursor)["failure"]
    again = dg.build_sensor_context(instance=instance, cursor=first.cursor)
    assert "no check newly failed" in sensor(again).skip_message
    assert rec.received == []
    alerts, cursor = check_alerts_since(instance, {})
    assert {a.first.check_name for a in alerts} == {"mart_coverage", "mart_quarantine_rate"}
    assert {a.kind for a in alerts} == {"failed"}
    assert cursor["failing"] == [
        f"mart_timeseries_daily:mart_coverage|{PARTITION}",
        f"mart_timeseries_daily:mart_quarantine_rate|{PARTITION}",
    ]
    first_cursor = json.loads(first.cursor)
    assert {k: cursor[k] for k in ("failure", "success")} == {
        k: first_cursor[k] for k in ("failure", "success")
    }


def test_check_sensor_survives_a_dead_webhook_and_caps_messages(failed_ingest, monkeypatch, dead_url) -> None:
    instance, _ = failed_ingest
    monkeypatch.setenv(WEBHOOK_URL_ENV, dead_url)
    alerts = AlertSettings(webhook_attempts=2, webhook_backoff=0.01, max_messages_per_tick=1)
    context = dg.build_sensor_context(instance=instance, cursor=FROM_START)
    result = build_check_failure_sensor(RUNNING, alerts)(context)
    # nothing delivered, nothing raised, and the cursor moved on
    assert "2 check alert(s) newly failing, 0 resolved (0 delivered" in result.skip_message
    assert json.loads(context.cursor)["failure"]


def _score_rows(site: str, day: date, ranking: list[tuple[str, float]]) -> pl.DataFrame:
    return SCORE_BASELINE_DAILY.conform(
        pl.DataFrame(
            {
                "site": [site] * len(ranking),
                "date": [day] * len(ranking),
                "asin": [a for a, _ in ranking],
                "category_id": ["c1"] * len(ranking),
                "explosive_score": [s for _, s in ranking],
                "rank_in_site": list(range(1, len(ranking) + 1)),
                "rank_in_category": list(range(1, len(ranking) + 1)),
                "scope": ["category"] * len(ranking),
                "reason": ["{}"] * len(ranking),
            }
        )
    )


def test_new_top_candidates_rule() -> None:
    before = _score_rows("US", DAY - timedelta(days=1), [("A", 5.0), ("B", 4.0), ("C", 1.0), ("D", 0.5)])
    today = _score_rows("US", DAY, [("C", 6.0), ("A", 5.0), ("E", 3.0), ("F", 1.5), ("B", 1.0)])
    new = new_top_candidates(pl.concat([before, today]), DAY, top_n=3, min_score=2.0)
    # C was ranked 3rd yesterday but under the score bar, E is new; A stays; F is under the bar
    assert new is not None
    assert new["asin"].to_list() == ["C", "E"]
    assert new["previous_rank"].to_list() == [3, None]
    assert new_top_candidates(today, DAY, top_n=3, min_score=2.0) is None  # no day before: no baseline


def test_tracking_sensor_alerts_new_entries_of_recent_days_only(tmp_path, webhook) -> None:
    rec = webhook()
    warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    warehouse.setup()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    old = date(2025, 3, 10)
    for day in (yesterday, old):
        previous = _score_rows("US", day - timedelta(days=1), [("B0OLD00001", 5.0), ("B0OLD00002", 4.0)])
        current = _score_rows("US", day, [("B0NEW00001", 7.5), ("B0OLD00001", 5.0), ("B0OLD00002", 1.0)])
        frame = pl.concat([previous, current])
        warehouse.replace_slices(
            "score_baseline_daily", frame, sites=["US"], start=day - timedelta(days=1), end=day
        )
    sensor = build_tracking_sensor(RUNNING, ALERTS, min_score=2.0)
    with dg.instance_for_test() as instance:
        for day in (yesterday, old):
            instance.report_runless_asset_event(
                dg.AssetMaterialization("score_baseline_daily", partition=f"{day}|US")
            )
        context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
        result = sensor(context)
        assert "1 tracking alert(s) (1 delivered" in result.skip_message
        [got] = rec.received
        assert f"1 new top candidate(s) in US on {yesterday}" in got.body["text"]
        assert "B0NEW00001" in got.body["blocks"][2]["text"]["text"]
        assert "B0OLD00001" not in got.body["blocks"][2]["text"]["text"]
        # the cursor holds: the same materialisations are not alerted twice
        again = dg.build_sensor_context(
            instance=instance, cursor=context.cursor, resources={"warehouse": warehouse}
        )
        assert "no new score partitions" in sensor(again).skip_message
        assert len(rec.received) == 1


def test_whole_table_checks_alert_when_they_start_failing_not_on_every_run() -> None:
    """A freshness-like check rides along in every run of its asset: while it stays failed, one alert."""
    state = {"fresh": False}

    @dg.asset
    def table() -> None: ...

    @dg.asset_check(asset=table)
    def is_fresh() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=state["fresh"], severity=dg.AssetCheckSeverity.WARN)

    with dg.instance_for_test() as instance:
        cursor = json.loads(FROM_START)
        alerted = []
        for fresh in (False, False, True, True, False):
            state["fresh"] = fresh
            assert dg.materialize([table, is_fresh], instance=instance).success
            found, cursor = check_alerts_since(instance, cursor)
            alerted.append([a.kind for a in found])
        # fails, still failing, recovered, still fine, fails again
        assert alerted == [["failed"], [], ["resolved"], [], ["failed"]]
        assert cursor["failing"] == ["table:is_fresh|"]


PARTS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date="2025-03-01"),
        "site": dg.StaticPartitionsDefinition(["US", "DE"]),
    }
)


def test_partition_alerts_are_grouped_per_run_and_resolve_per_partition(webhook) -> None:
    """A ranged run with two failing partitions sends one message naming both (none for the passing
    one); re-running one of them green sends "resolved" for that partition only."""
    failing = {"2025-03-01|US", "2025-03-02|US"}

    @dg.asset(partitions_def=PARTS)
    def daily() -> None: ...

    @dg.asset_check(asset=daily, partitions_def=PARTS, description="toy per-partition check")
    def rows_ok(context: dg.AssetCheckExecutionContext):
        verdicts = {
            k: Verdict(k not in failing, f"{'too few' if k in failing else 'enough'} rows", {"rows": 3})
            for k in context.partition_keys
        }
        yield from evaluations(context, verdicts, severity=dg.AssetCheckSeverity.WARN)

    rec = webhook()
    sensor = build_check_failure_sensor(RUNNING, ALERTS)
    with dg.instance_for_test() as instance:
        ranged = {
            "dagster/asset_partition_range_start": "2025-03-01|US",
            "dagster/asset_partition_range_end": "2025-03-03|US",
        }
        assert dg.materialize([daily, rows_ok], instance=instance, tags=ranged).success
        context = dg.build_sensor_context(instance=instance, cursor=FROM_START)
        assert "1 check alert(s) newly failing, 0 resolved" in sensor(context).skip_message
        [grouped] = rec.received
        text = grouped.body["text"]
        assert text.startswith(
            ":warning: [WARN] Check failed: daily.rows_ok 2 partitions: 2025-03-01|US .. 2025-03-02|US"
        )
        details = grouped.body["blocks"][2]["text"]["text"]
        assert "2025-03-01|US: too few rows" in details and "2025-03-02|US: too few rows" in details
        assert "2025-03-03|US" not in json.dumps(grouped.body)  # the passing partition: no message
        assert "rows: 3" in details and "/runs/" in text

        failing.discard("2025-03-02|US")
        assert dg.materialize([daily, rows_ok], instance=instance, partition_key="2025-03-02|US").success
        again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        assert "0 check alert(s) newly failing, 1 resolved" in sensor(again).skip_message
        resolved = rec.received[-1].body
        assert resolved["text"].startswith(
            ":white_check_mark: [RESOLVED] Resolved: daily.rows_ok 2025-03-02|US"
        )
        assert json.loads(again.cursor)["failing"] == ["daily:rows_ok|2025-03-01|US"]
