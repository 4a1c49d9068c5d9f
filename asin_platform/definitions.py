"""The only wiring: assets, checks, resources, jobs, schedules and sensors.

``build_definitions(settings)`` is the one place the Dagster shell reads settings: it builds the
partitions, every asset and check from them and registers the Settings object as the resource
``"settings"`` (``dg.ResourceParam[Settings]``), from which assets take their run-time values.
``defs = build_definitions()`` is the code location (the process-wide settings).
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from asin_platform.assets import exports, features, inference, ingest, mart, outcomes, scoring, training
from asin_platform.automation import build_automation
from asin_platform.checks import build_checks
from asin_platform.partitions import build_date_site_partitions
from asin_platform.resources.upstream import TOKEN_ENV, build_upstream_resources  # noqa: F401 - TOKEN_ENV re-exported
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings, get_settings

WAREHOUSE_URL_ENV = "ASIN_PLATFORM_WAREHOUSE_URL"


def build_resources(settings: Settings) -> dict[str, Any]:
    """Production resources from settings; secrets stay in the environment (EnvVar), so they are
    resolved at run time and never shown in the UI's resource config."""
    # The URL may carry a password, so when it comes from the environment it stays an EnvVar.
    url = dg.EnvVar(WAREHOUSE_URL_ENV) if os.environ.get(WAREHOUSE_URL_ENV) else settings.warehouse_url
    return {**build_upstream_resources(settings), "warehouse": Warehouse(url=url), "settings": settings}


# In graph order; each exposes build_assets(settings, partitions_def) -> list[dg.AssetsDefinition].
ASSET_MODULES = (ingest, mart, features, scoring, exports, training, inference, outcomes)


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every asset of the graph, partitioned by ``partitions_def``."""
    return [asset for module in ASSET_MODULES for asset in module.build_assets(settings, partitions_def)]


ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("raw_payloads").downstream(depth=1),
    description="Fetch a (date, site) partition and build its mart tables.",
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The code location for ``settings`` (default: the process-wide settings, read here once)."""
    settings = settings or get_settings()
    partitions_def = build_date_site_partitions(settings)
    checks = build_checks(settings, partitions_def)
    # Schedules, sensors, alerting and the automation conditions of the daily chain (docs/operations.md).
    automation = build_automation(build_assets(settings, partitions_def), checks, settings)
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


def __getattr__(name: str) -> Any:
    # ASSETS / CHECKS: the lists of the process-wide settings, for tests and tools that take them
    # whole; built on access so importing this module reads settings only for `defs`.
    if name in ("ASSETS", "CHECKS"):
        settings = get_settings()
        partitions_def = build_date_site_partitions(settings)
        build = build_assets if name == "ASSETS" else build_checks
        return build(settings, partitions_def)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
