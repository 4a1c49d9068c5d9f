"""The code location as Dagster loads it, and settings reaching the definitions built from them."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._cli.workspace.cli_target import get_workspace_from_cli_opts
from dagster_shared.cli import WorkspaceOpts

from asin_platform.definitions import build_assets, build_definitions
from asin_platform.partitions import build_date_site_partitions
from asin_platform.settings import AssetRetry, Settings

REPO = Path(__file__).resolve().parents[1]

ASSETS = {
    "raw_payloads", "mart_timeseries_daily", "dim_asin", "fact_reviews", "fact_keywords", "quarantine",
    "features_daily", "score_baseline_daily", "top_candidates", "train_samples", "ranker_model",
    "model_evaluation", "predictions_rank_daily", "realised_outcomes", "walk_forward_backtest",
}  # fmt: skip
CHECKS = {
    "raw_payloads:raw_payloads_complete",
    "mart_timeseries_daily:mart_coverage",
    "mart_timeseries_daily:mart_freshness",
    "mart_timeseries_daily:mart_no_duplicate_keys",
    "mart_timeseries_daily:mart_quarantine_rate",
    "mart_timeseries_daily:mart_schema_conformance",
    "features_daily:features_null_rate",
    "score_baseline_daily:score_rank_stability",
    "score_baseline_daily:score_sanity",
    "ranker_model:ranker_beats_baseline",
    "ranker_model:ranker_not_refused",
    "predictions_rank_daily:predictions_coverage",
    "predictions_rank_daily:prediction_feature_drift",
    "realised_outcomes:model_beats_baseline_realised",
}
SCHEDULES = {"ingest_schedule", "retrain_ranker_schedule", "table_checks_schedule"}
SENSORS = {"asset_check_alert", "daily_automation", "run_failure_alert", "tracking_alert"}


def test_code_location_loads_as_dagster_definitions_validate_loads_it() -> None:
    """workspace.yaml loaded in process the way `dagster definitions validate` does: no load error,
    valid partition mappings, and every asset, check, schedule and sensor by name."""
    with dg.instance_for_test() as instance:
        opts = WorkspaceOpts(workspace=[str(REPO / "workspace.yaml")])
        with get_workspace_from_cli_opts(instance, "", opts, allow_in_process=True) as workspace:
            entries = workspace.get_code_location_entries()
            assert list(entries) == ["asin_platform"]
            assert entries["asin_platform"].load_error is None
            workspace.asset_graph.validate_partitions()
            graph = workspace.asset_graph
            assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
            assert {k.to_user_string() for k in graph.asset_check_keys} == CHECKS
            repo = next(iter(workspace.get_code_location("asin_platform").get_repositories().values()))
            assert {s.name for s in repo.get_schedules()} == SCHEDULES
            assert {s.name for s in repo.get_sensors()} == SENSORS
            assert {r.name for r in repo.get_resources()} >= {"upstream", "keepa", "warehouse", "settings"}


def _asset(defs: dg.Definitions, key: str) -> dg.AssetsDefinition:
    return defs.resolve_assets_def(key)


def test_build_definitions_uses_the_settings_passed_in() -> None:
    settings = Settings(api_pool="custom_pool", top_candidates=7)
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)

    assert defs.resources["settings"] is settings
    assert _asset(defs, "raw_payloads").op.pool == "custom_pool"
    # the run-time use of a value (top_candidates) is in test_feature_assets


def test_assets_are_partitioned_by_the_sites_and_start_of_the_settings() -> None:
    settings = Settings(sites=("FR", "US"), partitions_start=date(2026, 2, 1))
    partitions = build_date_site_partitions(settings)
    assets = build_assets(settings, partitions)

    partitioned = {
        key.to_user_string(): a.partitions_def for a in assets if a.partitions_def for key in a.keys
    }
    assert set(partitioned) == {
        "raw_payloads", "mart_timeseries_daily", "dim_asin", "fact_reviews", "fact_keywords", "quarantine",
        "features_daily", "score_baseline_daily", "top_candidates", "predictions_rank_daily",
        "realised_outcomes",
    }  # fmt: skip
    for partitions_def in partitioned.values():
        assert partitions_def.get_partition_keys()[:3] == ["2026-02-01|FR", "2026-02-01|US", "2026-02-02|FR"]


def test_api_assets_retry_with_the_policy_of_the_settings() -> None:
    settings = Settings(asset_retry=AssetRetry(max_retries=4, delay=7.5, backoff="linear", jitter="full"))
    policy = _asset(build_definitions(settings), "raw_payloads").op.retry_policy
    assert policy == dg.RetryPolicy(
        max_retries=4, delay=7.5, backoff=dg.Backoff.LINEAR, jitter=dg.Jitter.FULL
    )
    default = _asset(build_definitions(Settings()), "raw_payloads").op.retry_policy
    assert default == dg.RetryPolicy(
        max_retries=2, delay=60.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )
    # assets that do not call the API are not retried: their failures are not transient
    defs = build_definitions(settings)
    assert _asset(defs, "features_daily").op.retry_policy is None
    off = build_definitions(Settings(asset_retry=AssetRetry(max_retries=0)))
    assert _asset(off, "raw_payloads").op.retry_policy is None


def test_asset_descriptions_render_as_written() -> None:
    """The UI renders descriptions as Markdown, where `<site>` outside a code span is an HTML tag and
    vanishes (`exports//top_candidates_YYYYMMDD.csv`)."""
    graph = build_definitions(Settings()).resolve_asset_graph()
    top = graph.get(dg.AssetKey("top_candidates")).description or ""
    assert "`exports/<site>/top_candidates_YYYYMMDD.csv`" in top
    for key in graph.get_all_asset_keys():
        prose = re.sub(r"`[^`]*`", "", graph.get(key).description or "")
        assert not re.search(r"<[A-Za-z_]\w*>", prose), key.to_user_string()
