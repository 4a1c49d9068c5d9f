"""Run asset selections over (date range x sites) through Dagster, in process.

Used by the demo and the pipeline subcommands of the CLI: one ranged run per site (per-run
overhead is seconds; a ranged run costs milliseconds per partition), recorded in the Dagster
instance so the UI shows the same runs, materialisations and check results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from asin_platform.partitions import to_partition_key

if TYPE_CHECKING:
    from asin_platform.resources.warehouse import Warehouse

# The runner passes explicit partition ranges, so which backfill policy Dagster would pick for a
# selection mixing raw_payloads (month-sized runs) with the single-run layers does not apply.
warnings.filterwarnings("ignore", message=r"Asset job .* materializes assets with varying BackfillPolicies")


@dataclass
class RunSummary:
    site: str
    start: date | None
    end: date | None
    run_id: str
    success: bool
    materializations: int
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)  # name -> (passed, severity)
    error: str | None = None


def range_tags(site: str, start: date, end: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": str(to_partition_key(start, site)),
        "dagster/asset_partition_range_end": str(to_partition_key(end, site)),
    }


def selection_with_checks(asset_keys: Sequence[str]) -> dg.AssetSelection:
    """The assets, the other outputs of their multi-assets, and their partitioned checks.

    Unpartitioned checks (freshness) are left out: they judge the whole table, not a run's
    partitions, and run on their own schedule."""
    assets = dg.AssetSelection.assets(*asset_keys).required_multi_asset_neighbors()
    return (assets | assets.checks()) - dg.AssetSelection.checks(*UNPARTITIONED_CHECKS)


# Checks that judge a whole table rather than the partitions of a run.
UNPARTITIONED_CHECKS = [dg.AssetCheckKey(dg.AssetKey("mart_timeseries_daily"), "mart_freshness")]


def materialize_range(
    defs: dg.Definitions,
    asset_keys: Sequence[str],
    *,
    sites: Sequence[str],
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    log: Callable[[str], None] = print,
    raise_on_error: bool = False,
    log_level: str = "INFO",
    tags: Mapping[str, str] | None = None,
) -> list[RunSummary]:
    """Materialise ``asset_keys`` (and their checks) for every day in [start, end] x sites;
    ``tags`` go on every run (the CLI marks its runs with its process)."""
    assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    selection = selection_with_checks(asset_keys)
    summaries = []
    for site in sites:
        run_tags = {**(tags or {}), **(range_tags(site, start, end) if start != end else {})}
        partition_key = str(to_partition_key(start, site)) if start == end else None
        result = dg.materialize(
            assets,
            selection=selection,
            resources=defs.resources,
            instance=instance,
            partition_key=partition_key,
            tags=run_tags,
            raise_on_error=raise_on_error,
            # progress and counts at INFO; DEBUG (every event) stays in the instance for the UI
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        summary = _summarise(result, site=site, start=start, end=end, log=log)
        summaries.append(summary)
        if summary.error and "Interrupted" in summary.error:
            # Ctrl-C / SIGTERM interrupts the current run only: do not start the next site's.
            raise KeyboardInterrupt(f"interrupted during {site} {start}..{end}")
    return summaries


def _summarise(
    result: dg.ExecuteInProcessResult,
    *,
    site: str,
    start: date | None,
    end: date | None,
    log: Callable[[str], None],
) -> RunSummary:
    checks: dict[str, tuple[bool, str]] = {}
    for e in result.get_asset_check_evaluations():  # one per partition: a check passed if all did
        checks[e.check_name] = (checks.get(e.check_name, (True, ""))[0] and e.passed, e.severity.value)
    error = None
    if not result.success:
        failures = [ev for ev in result.all_events if ev.is_step_failure]
        error = failures[0].step_failure_data.error.message.strip() if failures else "run failed"
    summary = RunSummary(
        site=site,
        start=start,
        end=end,
        run_id=result.run_id,
        success=result.success,
        materializations=len(result.get_asset_materialization_events()),
        checks=checks,
        error=error,
    )
    failed = [name for name, (ok, severity) in checks.items() if not ok and severity == "ERROR"]
    warned = [name for name, (ok, severity) in checks.items() if not ok and severity != "ERROR"]
    span = f"{start}..{end}" if start else "unpartitioned"
    log(
        f"  {site} {span}: {'ok' if result.success else 'FAILED'}, "
        f"{summary.materializations} materialisations, {len(checks)} checks"
        + (f", failing: {', '.join(failed)}" if failed else "")
        + (f", warnings: {', '.join(warned)}" if warned else "")
        + (f"\n    error: {error}" if error else "")
    )
    return summary


def materialize_unpartitioned(
    defs: dg.Definitions,
    asset_keys: Sequence[str],
    *,
    instance: dg.DagsterInstance,
    log: Callable[[str], None] = print,
    log_level: str = "INFO",
    tags: Mapping[str, str] | None = None,
) -> RunSummary:
    """Materialise unpartitioned assets (the model) and their checks in one run."""
    result = dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=selection_with_checks(asset_keys),
        resources=defs.resources,
        instance=instance,
        tags=dict(tags or {}),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    return _summarise(result, site="*", start=None, end=None, log=log)


# ------------------------------------------------------------------------- requests failed for good


@dataclass(frozen=True)
class FailedPartition:
    """A partition holding requests failed for good (``raw_payloads.error IS NOT NULL``): its data is
    incomplete, so the run that fetched it is not ok whatever its checks said."""

    site: str
    day: date
    endpoints: dict[str, tuple[int, int]]  # endpoint name -> (failed requests, ASINs they covered)

    def describe(self) -> str:
        parts = [
            f"{name} {n} request(s), {asins} ASIN(s)" for name, (n, asins) in sorted(self.endpoints.items())
        ]
        return f"{self.site} {self.day} ({'; '.join(parts)})"


def failed_partitions(
    warehouse: Warehouse, sites: Sequence[str], start: date, end: date
) -> list[FailedPartition]:
    """The partitions of (sites x [start, end]) whose stored fetch holds requests failed for good,
    with the endpoints that failed (docs/upstream_api.md, "Retry semantics")."""
    raw = warehouse.read(
        "raw_payloads",
        sites=list(sites),
        start=start,
        end=end,
        columns=["site", "date", "endpoint", "request_params", "error"],
    )
    failed = (
        raw.lazy()
        .filter(pl.col("error").is_not_null())
        .with_columns(
            name=pl.col("endpoint").str.split("/").list.last(),
            # the ASINs a request covered: unified "asins" (comma-separated) or Keepa "asin"
            asins=pl.coalesce(
                pl.col("request_params").str.json_path_match("$.asins"),
                pl.col("request_params").str.json_path_match("$.asin"),
            ),
        )
        .group_by("site", "date", "name")
        .agg(requests=pl.len(), asins=pl.col("asins").str.split(",").explode().drop_nulls().n_unique())
        .sort("site", "date", "name")
        .collect()
    )
    by_part: dict[tuple[str, date], dict[str, tuple[int, int]]] = {}
    for site, day, name, requests, asins in failed.iter_rows():
        by_part.setdefault((site, day), {})[name] = (requests, asins)
    return [FailedPartition(site, day, endpoints) for (site, day), endpoints in by_part.items()]


def rerun_commands(failed: Sequence[FailedPartition]) -> list[str]:
    """``asin-platform ingest-raw`` commands re-fetching exactly the failed partitions: one per site
    and run of consecutive days."""
    spans: list[tuple[str, date, date]] = []
    for part in sorted(failed, key=lambda p: (p.site, p.day)):
        if spans and spans[-1][0] == part.site and spans[-1][2] + timedelta(days=1) == part.day:
            spans[-1] = (part.site, spans[-1][1], part.day)
        else:
            spans.append((part.site, part.day, part.day))
    return [f"asin-platform ingest-raw --start {a} --end {b} --sites {site}" for site, a, b in spans]
