"""The only wiring: assets, checks, resources, jobs, schedules and sensors."""

from __future__ import annotations

import os

import dagster as dg

from asin_platform.assets import exports, features, inference, ingest, mart, scoring, training
from asin_platform.automation import build_automation
from asin_platform.checks import features as feature_checks
from asin_platform.checks import ingest as ingest_checks
from asin_platform.checks import model as model_checks
from asin_platform.resources.upstream import TOKEN_ENV, build_upstream_resources  # noqa: F401 - TOKEN_ENV re-exported
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings, get_settings

WAREHOUSE_URL_ENV = "ASIN_PLATFORM_WAREHOUSE_URL"


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Production resources from settings; secrets stay in the environment (EnvVar), so they are
    resolved at run time and never shown in the UI's resource config."""
    # The URL may carry a password, so when it comes from the environment it stays an EnvVar.
    url = dg.EnvVar(WAREHOUSE_URL_ENV) if os.environ.get(WAREHOUSE_URL_ENV) else settings.warehouse_url
    return {**build_upstream_resources(settings), "warehouse": Warehouse(url=url)}


ASSETS = [
    ingest.raw_payloads,
    mart.mart_timeseries_daily,
    features.features_daily,
    scoring.score_baseline_daily,
    exports.top_candidates,
    *training.TRAINING_ASSETS,
    *inference.INFERENCE_ASSETS,
]
CHECKS = [*ingest_checks.INGEST_CHECKS, *feature_checks.FEATURE_CHECKS, *model_checks.MODEL_CHECKS]

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("raw_payloads").downstream(depth=1),
    description="Fetch a (date, site) partition and build its mart tables.",
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    # Schedules, sensors, alerting and the automation conditions of the daily chain (docs/operations.md).
    automation = build_automation(ASSETS, CHECKS, settings)
    return dg.Definitions(
        assets=automation.assets,
        asset_checks=CHECKS,
        jobs=[ingest_job, *automation.jobs],
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources=build_resources(settings),
        # One process per run: a multiprocess step re-imports the code location (~10 s a step here)
        # and a DuckDB file admits one writer process anyway. Scale-out is by runs (docs/scaling.md).
        executor=dg.in_process_executor,
    )


defs = build_definitions()
