"""The demo's faster SQLite event writes store what Dagster's own storage stores: a plain instance
on the same directory sees one planned event and one materialisation (with its own metadata) per partition."""

import os
import warnings
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from asin_platform.sqlite_events import PooledSqliteEventLogStorage, speed_up_event_writes

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

PARTS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for key in context.partition_keys:
        context.add_asset_metadata({"day": key}, partition_key=key)
    return dg.MaterializeResult()


def test_pooled_writes_are_read_by_a_plain_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "")  # restored after the test
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert speed_up_event_writes(instance)
        assert type(instance.event_log_storage) is PooledSqliteEventLogStorage

        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
        keys = PARTS.get_partition_keys()
        result = dg.materialize(
            [daily],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        assert result.success
    with dg.instance_for_test(temp_dir=str(tmp_path)) as plain:
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        records = plain.fetch_materializations(dg.AssetKey("daily"), limit=100).records
        by_day = {r.partition_key: r.asset_materialization.metadata["day"].value for r in records}
        assert by_day == {k: k for k in keys}
        assert plain.get_materialized_partitions(dg.AssetKey("daily")) == set(keys)
        planned = plain.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        assert sorted(e.dagster_event.event_specific_data.partition for e in planned) == keys


def test_other_storages_are_left_alone(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.__class__ = type("CustomStorage", (SqliteEventLogStorage,), {})
        assert not speed_up_event_writes(instance)
        assert type(instance.event_log_storage).__name__ == "CustomStorage"
