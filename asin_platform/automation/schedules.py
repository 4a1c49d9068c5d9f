"""Schedules, jobs and the declarative automation of the daily asset graph (all UTC).

Who moves a day forward
-----------------------
* ``raw_payloads``: the ingest schedule (the seed's hourly cron at :00). Ingestion is the only step
  that spends API quota, so it runs at a known time, one run per (yesterday, site), and never twice
  for a partition that succeeded or is in flight.
* mart -> features -> score -> top candidates (and predictions when they exist): declarative
  automation, ``eager`` over the newest ``follow_lookback_days`` days and gated on the upstream
  blocking checks. The seed ran these at fixed times (01:30, 02:00, 02:20) that guessed when the step
  before would be done; ``eager`` starts each one when its inputs *are* done (earlier on a good day,
  later on a slow one) and never on an input whose blocking check failed.
* realised_outcomes: the same follow condition, looking back the label horizon further (partition
  T depends on the mart of T + H, the day that realises it).
* the ranker: a weekly schedule (training reads the whole history, not a partition; doing it at a
  known quiet time keeps it away from the daily chain).
* whole-table checks (mart freshness): a daily schedule, since they belong to no partition.
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from asin_platform.automation.config import TIMEZONE, AutomationSettings
from asin_platform.partitions import to_partition_key

TRIGGER_TAG = "asin_platform/trigger"
INGEST_ASSET = dg.AssetKey("raw_payloads")
# Assets that follow their inputs (the mart multi-asset's keys come along with mart_timeseries_daily).
FOLLOW_KEYS = (
    "mart_timeseries_daily",
    "dim_asin",
    "fact_reviews",
    "fact_keywords",
    "quarantine",
    "features_daily",
    "score_baseline_daily",
    "top_candidates",
    "predictions_rank_daily",
    "realised_outcomes",
)
# Followed keys whose partition T is realised by an input of T + horizon (the mart day that
# realises its labels): they look back the horizon further, or the day that lands would be too old.
REALISED_KEYS = ("realised_outcomes",)
# The weekly retraining chain, in dependency order; whichever of them exist are retrained together.
RETRAIN_KEYS = (
    "train_samples",
    "train_samples_bin",
    "train_samples_rank",
    "train_samples_reg",
    "ranker_model",
    "model_evaluation",
)
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def follow_condition(lookback_days: int) -> dg.AutomationCondition:
    """``eager`` over the newest ``lookback_days`` days, and only on inputs whose blocking checks passed.

    Plain ``eager`` only looks at the newest day: a day whose ingestion finished after midnight
    would then never flow downstream. The blocking-check gate matters across runs: inside one run a
    failed blocking check already stops the children, but automation starts the child in a new run."""
    return (
        dg.AutomationCondition.eager().replace(
            dg.AutomationCondition.in_latest_time_window(),
            dg.AutomationCondition.in_latest_time_window(timedelta(days=lookback_days)),
        )
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(f"follow inputs (newest {lookback_days} days, blocking checks passed)")


def asset_keys(assets: Sequence[dg.AssetsDefinition]) -> set[str]:
    return {key.to_user_string() for a in assets for key in a.keys}


def apply_automation(
    assets: Sequence[dg.AssetsDefinition], cfg: AutomationSettings, *, horizon: int = 0
) -> list[dg.AssetsDefinition]:
    """The assets with the follow condition on every key of FOLLOW_KEYS they hold; REALISED_KEYS
    look back ``horizon`` days more (partition T follows the mart of T + horizon).

    A multi-asset is treated as one unit: if any of its keys follows, all of them do (a
    non-subsettable multi-asset is always executed whole anyway)."""
    updated = []
    for asset in assets:
        keys = {k.to_user_string() for k in asset.keys}
        if not keys & set(FOLLOW_KEYS):
            updated.append(asset)
            continue
        reach = horizon if keys & set(REALISED_KEYS) else 0
        condition = follow_condition(cfg.follow_lookback_days + reach)
        updated.append(
            asset.map_asset_specs(
                lambda spec, condition=condition: spec.replace_attributes(automation_condition=condition)
            )
        )
    return updated


def ingest_raw_job(present: set[str]) -> UnresolvedAssetJobDefinition | None:
    """raw_payloads (and its checks) only: the mart follows by automation, so the API pool is held
    for the fetch alone. In-process: one step of async I/O gains nothing from a subprocess and a
    multiprocess run costs ~3 s more."""
    if INGEST_ASSET.to_user_string() not in present:
        return None
    return dg.define_asset_job(
        "ingest_raw_job",
        selection=dg.AssetSelection.assets(INGEST_ASSET),
        executor_def=dg.in_process_executor,
        description="Fetch one (date, site) of raw payloads from the upstream API (the ingest schedule's job).",
        tags={TRIGGER_TAG: "ingest_schedule"},
    )


def ingest_decision(
    instance: dg.DagsterInstance, job_name: str, partition_key: str, max_attempts: int
) -> tuple[bool, str]:
    """Whether the schedule should launch ``partition_key`` now, and why (shown on the tick)."""
    materialized = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=INGEST_ASSET, asset_partitions=[partition_key]), limit=1
    )
    if materialized.records:
        return False, f"{partition_key}: already materialised"
    runs = instance.get_runs(dg.RunsFilter(job_name=job_name, tags={"dagster/partition": partition_key}))
    if any(r.status in UNFINISHED for r in runs):
        return False, f"{partition_key}: a run is queued or in progress"
    failed = sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    if failed >= max_attempts:
        return False, f"{partition_key}: gave up after {failed} failed run(s); re-run it by hand (runbook)"
    return True, f"{partition_key}: launching (attempt {failed + 1} of {max_attempts})"


def build_ingest_schedule(
    job: UnresolvedAssetJobDefinition,
    sites: Sequence[str],
    cfg: AutomationSettings,
    status: dg.DefaultScheduleStatus,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="ingest_schedule",
        cron_schedule=cfg.ingest_cron,
        execution_timezone=TIMEZONE,
        job=job,
        default_status=status,
        description="Yesterday's (date, site) partitions of raw_payloads, one run per site per day; "
        "later ticks of the day launch only what is missing and not in flight (up to "
        "automation.ingest_max_attempts per partition).",
    )
    def ingest_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        tick = context.scheduled_execution_time or datetime.now(UTC)
        # A day's data is complete once the day is over: the newest partition is yesterday (UTC).
        day = tick.astimezone(UTC).date() - timedelta(days=1)
        reasons = []
        launched = 0
        for site in sites:
            key = str(to_partition_key(day, site))
            launch, reason = ingest_decision(context.instance, job.name, key, cfg.ingest_max_attempts)
            reasons.append(reason)
            if launch:
                launched += 1
                yield dg.RunRequest(
                    partition_key=key,
                    # unique per tick: a retry one hour later must not be deduplicated away
                    run_key=f"{key}@{tick.isoformat()}",
                    tags={TRIGGER_TAG: "ingest_schedule"},
                )
        context.log.info("; ".join(reasons))
        if not launched:
            yield dg.SkipReason("; ".join(reasons))

    return ingest_schedule


def retrain_job(assets: Sequence[dg.AssetsDefinition]) -> UnresolvedAssetJobDefinition | None:
    """The ranker retraining chain that exists in ``assets`` (None before the ML layer lands)."""
    present = [k for k in RETRAIN_KEYS if k in asset_keys(assets)]
    if "ranker_model" not in present:
        return None
    return dg.define_asset_job(
        "retrain_ranker_job",
        selection=dg.AssetSelection.assets(*present),
        # A chain of dependent steps: a subprocess per step would add start-up time, not parallelism.
        executor_def=dg.in_process_executor,
        description="Rebuild the training samples, retrain the LightGBM ranker and evaluate it against the "
        "baseline score (weekly).",
        tags={TRIGGER_TAG: "retrain_schedule"},
    )


def table_checks_job(checks: Sequence[dg.AssetChecksDefinition]) -> UnresolvedAssetJobDefinition | None:
    """The unpartitioned checks (freshness and other whole-table checks): they belong to no partition
    run, so they run on their own."""
    keys = [k for c in checks if getattr(c, "partitions_def", None) is None for k in c.check_keys]
    if not keys:
        return None
    return dg.define_asset_job(
        "table_checks_job",
        selection=dg.AssetSelection.checks(*keys),
        executor_def=dg.in_process_executor,
        description="Whole-table checks (mart freshness, ...).",
        tags={TRIGGER_TAG: "table_checks_schedule"},
    )


def cron_schedule(
    name: str,
    job: UnresolvedAssetJobDefinition,
    cron: str,
    status: dg.DefaultScheduleStatus,
    description: str,
) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone=TIMEZONE,
        default_status=status,
        description=description,
    )
