"""The only wiring: assets, checks, resources, jobs, schedules and sensors."""

from __future__ import annotations

import os

import dagster as dg

from asin_platform.assets import exports, features, inference, ingest, mart, scoring, training
from asin_platform.automation import build_automation
from asin_platform.checks import build_checks
from asin_platform.partitions import date_site_partitions
from asin_platform.resources.keepa import KeepaClient
from asin_platform.resources.upstream import UnifiedApiClient
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings, get_settings

TOKEN_ENV = "ASIN_PLATFORM_API_TOKEN"
WAREHOUSE_URL_ENV = "ASIN_PLATFORM_WAREHOUSE_URL"


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Production resources from settings; secrets stay in the environment (EnvVar), so they are
    resolved at run time and never shown in the UI's resource config."""
    limit = settings.rate_limit("unified")
    retry = settings.retry_policy
    upstream = UnifiedApiClient(
        base_url=settings.upstream.base_url,
        token=dg.EnvVar(TOKEN_ENV),
        qpm=limit.qpm,
        burst=limit.burst,
        timeout=limit.timeout,
        max_attempts=retry.max_attempts,
        base_delay=retry.base_delay,
        jitter=retry.jitter,
        max_delay=retry.max_delay,
        batch_size=settings.upstream.batch_size,
        page_size=settings.upstream.page_size,
        concurrency=settings.upstream.concurrency,
    )
    # The URL may carry a password, so when it comes from the environment it stays an EnvVar.
    url = dg.EnvVar(WAREHOUSE_URL_ENV) if os.environ.get(WAREHOUSE_URL_ENV) else settings.warehouse_url
    # Keepa reads its key from KEEPA_API_KEY only when a Keepa site is fetched: building it needs none.
    keepa = KeepaClient.from_settings(settings)
    return {"upstream": upstream, "keepa": keepa, "warehouse": Warehouse(url=url)}


ASSETS = [
    ingest.raw_payloads,
    mart.mart_timeseries_daily,
    features.features_daily,
    scoring.score_baseline_daily,
    exports.top_candidates,
    *training.TRAINING_ASSETS,
    *inference.INFERENCE_ASSETS,
]
# Checks bind their thresholds when built (build_checks); this module-level list serves the tests.
CHECKS = build_checks(get_settings(), date_site_partitions)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("raw_payloads").downstream(depth=1),
    description="Fetch a (date, site) partition and build its mart tables.",
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or get_settings()
    # Schedules, sensors, alerting and the automation conditions of the daily chain (docs/operations.md).
    checks = build_checks(settings, date_site_partitions)
    automation = build_automation(ASSETS, checks, settings)
    return dg.Definitions(
        assets=automation.assets,
        asset_checks=checks,
        jobs=[ingest_job, *automation.jobs],
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources=build_resources(settings),
        # One process per run: a multiprocess step re-imports the code location (~10 s a step here)
        # and a DuckDB file admits one writer process anyway. Scale-out is by runs (docs/scaling.md).
        executor=dg.in_process_executor,
    )


defs = build_definitions()
