"""Automation layer: schedules, declarative automation, sensors and alerting (see docs/operations.md).

``build_automation(ASSETS, CHECKS)`` returns everything ``definitions.py`` wires in. It selects by
asset key among what it is given, so it works whether or not the later layers (features, score,
exports, ML) are in the graph yet.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from asin_platform.automation.config import (
    AlertSettings,
    AutomationSettings,
    alert_settings,
    automation_settings,
)
from asin_platform.automation.schedules import (
    FOLLOW_KEYS,
    apply_automation,
    asset_keys,
    build_ingest_schedule,
    cron_schedule,
    follow_condition,
    ingest_raw_job,
    retrain_job,
    table_checks_job,
)
from asin_platform.automation.sensors import build_sensors
from asin_platform.settings import Settings

__all__ = [
    "AlertSettings",
    "Automation",
    "AutomationSettings",
    "alert_settings",
    "automation_settings",
    "build_automation",
    "follow_condition",
]

AUTOMATION_SENSOR = "daily_automation"


@dataclass(frozen=True)
class Automation:
    """What definitions.py wires: the assets (with automation conditions), jobs, schedules, sensors."""

    assets: list[dg.AssetsDefinition]
    jobs: list[UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(
    assets: Sequence[dg.AssetsDefinition],
    checks: Sequence[dg.AssetChecksDefinition],
    settings: Settings,
) -> Automation:
    cfg = automation_settings(settings)
    running = cfg.default_status == "running"
    schedule_status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
    sensor_status = dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
    present = asset_keys(assets)

    jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    ingest = ingest_raw_job(present)
    if ingest is not None:
        jobs.append(ingest)
        schedules.append(build_ingest_schedule(ingest, settings.sites, cfg, schedule_status))
    retrain = retrain_job(assets)
    if retrain is not None:
        jobs.append(retrain)
        schedules.append(
            cron_schedule(
                "retrain_ranker_schedule",
                retrain,
                cfg.retrain_cron,
                schedule_status,
                "Weekly retraining of the ranker on the whole history (automation.retrain_cron, UTC).",
            )
        )
    table_checks = table_checks_job(checks)
    if table_checks is not None:
        jobs.append(table_checks)
        schedules.append(
            cron_schedule(
                "table_checks_schedule",
                table_checks,
                cfg.freshness_cron,
                schedule_status,
                "Whole-table checks such as mart freshness (automation.freshness_cron, UTC).",
            )
        )

    followed = [k for k in FOLLOW_KEYS if k in present]
    sensors = build_sensors(sensor_status, settings, with_tracking="score_baseline_daily" in present)
    if followed:
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                AUTOMATION_SENSOR,
                target=dg.AssetSelection.assets(*followed),
                default_status=sensor_status,
                minimum_interval_seconds=cfg.automation_interval_seconds,
                run_tags={"asin_platform/trigger": "automation"},
                description="Moves each new day through mart -> features -> score -> exports/predictions as "
                "soon as its inputs are materialised and their blocking checks passed.",
            )
        )
    return Automation(
        assets=apply_automation(assets, cfg, horizon=settings.windows.horizon),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
    )
