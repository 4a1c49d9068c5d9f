"""Alerting sensors: failed runs, failed asset checks (ERROR and WARN), and the tracking alert.

All three post through :class:`~asin_platform.automation.webhook.Webhook`, which never raises, and
each evaluation is wrapped so that a bug or an unreachable warehouse is logged, not fatal: a sensor
that crashes every tick stops alerting about anything else.
"""

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.events import DagsterEventType

from asin_platform.automation.config import AlertSettings
from asin_platform.automation.messages import (
    asset_url,
    render_metadata,
    run_url,
    slack_message,
    summary_message,
)
from asin_platform.automation.webhook import Delivery, Webhook
from asin_platform.partitions import parse_partition_key
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
SCORE_ASSET = dg.AssetKey("score_baseline_daily")
RUNS_PER_TICK = 200
RUN_END_EVENTS = {"success": DagsterEventType.RUN_SUCCESS, "failure": DagsterEventType.RUN_FAILURE}
MATERIALIZATIONS_PER_TICK = 500


def run_partition_label(tags: dict[str, str]) -> str | None:
    """The partition (or range) a run covered, from its tags."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG):
        return f"{tags[RANGE_START_TAG]} .. {tags.get(RANGE_END_TAG, '?')}"
    return None


def _error_text(error: Any) -> str:
    """A SerializableErrorInfo as 'message' plus its causes' messages (no stack: it is in the UI)."""
    parts: list[str] = []
    while error is not None and len(parts) < 4:
        message = (getattr(error, "message", None) or str(error)).strip()
        if message:
            parts.append(message)
        error = getattr(error, "cause", None)
    return "\ncaused by: ".join(parts)


def _post_all(
    hook: Webhook, messages: Sequence[tuple[str, dict[str, Any]]], kind: str, alerts: AlertSettings
) -> list[Delivery]:
    """Post up to ``max_messages_per_tick``; the rest are summarised in one more message."""
    cap = alerts.max_messages_per_tick
    deliveries = [hook.post(message) for _, message in messages[:cap]]
    if len(messages) > cap:
        dropped = [label for label, _ in messages[cap:]]
        hook.log.warning(f"{len(dropped)} {kind} alerts over the per-tick cap: {', '.join(dropped[:100])}")
        deliveries.append(hook.post(summary_message(kind, dropped, alerts.ui_base_url)))
    return deliveries


# ------------------------------------------------------------------------------------ run failures


def run_failure_message(
    run: dg.DagsterRun,
    failure_event: dg.DagsterEvent | None,
    step_failures: Sequence[dg.DagsterEvent],
    ui: str,
) -> dict[str, Any]:
    """The alert for one failed run: job, partition, failed steps with their errors, run link."""
    tags = dict(run.tags)
    steps = [e.step_key for e in step_failures if e.step_key]
    details = []
    for event in step_failures[:5]:
        error = getattr(event.event_specific_data, "error", None)
        details.append(f"[{event.step_key}] {_error_text(error) if error else event.message or ''}")
    if not details and failure_event is not None:
        details.append(failure_event.message or "run failed")
    assets = sorted(k.to_user_string() for k in (run.asset_selection or ()))
    fields = {
        "Job": run.job_name,
        "Partition": run_partition_label(tags),
        "Failed steps": ", ".join(steps[:8]) + (" ..." if len(steps) > 8 else "") if steps else None,
        "Assets": ", ".join(assets[:8]) + (" ..." if len(assets) > 8 else "") if assets else None,
        "Backfill": tags.get(BACKFILL_TAG),
        "Run": run.run_id,
    }
    return slack_message(
        f"Run failed: {run.job_name}" + (f" {fields['Partition']}" if fields["Partition"] else ""),
        severity="ERROR",
        fields=fields,
        details="\n\n".join(details),
        links=[("Open run", run_url(ui, run.run_id))],
    )


def build_run_failure_sensor(
    default_status: dg.DefaultSensorStatus, alerts: AlertSettings
) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alert",
        default_status=default_status,
        minimum_interval_seconds=30,
        description="Posts every failed run of this code location (job, partition, failed steps and "
        "their errors, link to the run) to ASIN_PLATFORM_ALERT_WEBHOOK_URL; logs only when unset.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
        try:
            message = run_failure_message(
                context.dagster_run,
                context.failure_event,
                context.get_step_failure_events(),
                alerts.ui_base_url,
            )
            Webhook.from_settings(alerts, context.log).post(message)
        except Exception as exc:  # never let one bad run stop the alerts for the next ones
            context.log.error(f"run failure alert for {context.dagster_run.run_id} not built: {exc!r}")

    return run_failure_alert


# --------------------------------------------------------------------------------- asset checks


@dataclass(frozen=True)
class CheckOutcome:
    """One asset-check evaluation (one partition, or the whole asset), as the alerts need it."""

    asset_path: tuple[str, ...]
    check_name: str
    severity: str
    partition: str | None
    run_id: str
    passed: bool
    description: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def state_key(self) -> str:
        """What "newly failing" is tracked by: the check and its partition."""
        return f"{check_id(self.asset_path, self.check_name)}|{self.partition or ''}"


@dataclass(frozen=True)
class CheckAlert:
    """Partitions of one check, in one run, that newly failed (``kind="failed"``) or recovered."""

    kind: str
    outcomes: tuple[CheckOutcome, ...]

    @property
    def first(self) -> CheckOutcome:
        return self.outcomes[0]

    @property
    def partitions(self) -> list[str]:
        return [o.partition for o in self.outcomes if o.partition]

    @property
    def label(self) -> str:
        where = f" [{_span(self.partitions)}]" if self.partitions else ""
        first = self.first
        return f"{'/'.join(first.asset_path)}.{first.check_name}{where} ({self.kind} {first.severity})"


def check_id(asset_path: Sequence[str], check_name: str) -> str:
    return f"{'/'.join(asset_path)}:{check_name}"


def _span(partitions: Sequence[str]) -> str:
    if len(partitions) == 1:
        return partitions[0]
    ordered = sorted(partitions)
    return f"{len(ordered)} partitions: {ordered[0]} .. {ordered[-1]}"


def _outcomes_of_run(instance: dg.DagsterInstance, run_id: str) -> list[CheckOutcome]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    outcomes = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if evaluation is None:
            continue
        outcomes.append(
            CheckOutcome(
                asset_path=tuple(evaluation.asset_key.path),
                check_name=evaluation.check_name,
                severity=evaluation.severity.value,
                partition=evaluation.partition,
                run_id=run_id,
                passed=evaluation.passed,
                description=evaluation.description,
                metadata=dict(evaluation.metadata),
            )
        )
    return outcomes


def transitions(outcomes: Sequence[CheckOutcome], failing: set[str]) -> list[CheckAlert]:
    """The alerts for one run's outcomes, given the (check, partition) keys failing before it.

    A failed ERROR/WARN outcome alerts only when its key was not failing already (a check that
    stays failed across re-runs, e.g. freshness riding along in every run, alerts once); a passed
    outcome whose key was failing sends "resolved"; a passed one otherwise says nothing. Outcomes
    of one check in one run are grouped into one alert per kind. ``failing`` is updated in place."""
    groups: dict[tuple[str, str, str], list[CheckOutcome]] = {}
    for outcome in outcomes:
        key = outcome.state_key
        if not outcome.passed and outcome.severity in ("ERROR", "WARN"):
            if key not in failing:
                failing.add(key)
                groups.setdefault(("failed", outcome.check_name, "/".join(outcome.asset_path)), []).append(
                    outcome
                )
        elif outcome.passed and key in failing:
            failing.discard(key)
            groups.setdefault(("resolved", outcome.check_name, "/".join(outcome.asset_path)), []).append(
                outcome
            )
    return [CheckAlert(kind, tuple(items)) for (kind, _, _), items in groups.items()]


def check_alerts_since(
    instance: dg.DagsterInstance, cursor: dict[str, Any] | None, limit: int = RUNS_PER_TICK
) -> tuple[list[CheckAlert], dict[str, Any]]:
    """Check alerts (newly failed / resolved) of the runs that ended after ``cursor``, and the new cursor.

    Why walk run ends instead of querying ASSET_CHECK_EVALUATION events by storage id: on the
    embedded default (run-sharded SQLite) those events live in one database per run, so a global
    event-type query with a storage-id cursor is refused; run-end events are indexed globally on
    every storage. A run's events are all stored before its end event, so nothing is missed.

    The cursor also holds the (check, partition) keys failing so far, so only changes alert.
    ``cursor=None`` (a fresh sensor) starts from the newest run end: history is not replayed as a
    flood of alerts on the first tick of a new deployment."""
    cursor_in = cursor or {}
    failing = set(cursor_in.get("failing", []))
    new_cursor: dict[str, Any] = {}
    ended = []
    # imported here: the storage layer (SQLAlchemy) costs ~1 s to import, and the code location
    # is imported by every run worker, which never evaluates a sensor
    from dagster._core.storage.event_log.base import EventLogCursor

    for name, event_type in RUN_END_EVENTS.items():
        if cursor is None:
            latest = instance.fetch_run_status_changes(event_type, limit=1, ascending=False)
            new_cursor[name] = (
                EventLogCursor.from_storage_id(latest.records[0].storage_id).to_string()
                if latest.records
                else ""
            )
            continue
        result = instance.fetch_run_status_changes(
            event_type, limit=limit, cursor=cursor_in.get(name) or None, ascending=True
        )
        ended.extend(result.records)
        new_cursor[name] = result.cursor if result.records else cursor_in.get(name, "")
    alerts: list[CheckAlert] = []
    # run ends in the order they happened (their storage ids are global on every storage)
    for record in sorted(ended, key=lambda r: r.storage_id):
        alerts.extend(transitions(_outcomes_of_run(instance, record.event_log_entry.run_id), failing))
    new_cursor["failing"] = sorted(failing)
    return alerts, new_cursor


def check_alert_message(alert: CheckAlert, ui: str) -> dict[str, Any]:
    """One message per alert: asset, check, partition(s), what each partition said, the metadata
    that explains the first one, and links to the run and the check."""
    first = alert.first
    name = f"{'/'.join(first.asset_path)}.{first.check_name}"
    resolved = alert.kind == "resolved"
    where = _span(alert.partitions) if alert.partitions else None
    if len(alert.outcomes) == 1:
        details = (f"{first.description}\n\n" if first.description else "") + render_metadata(first.metadata)
    else:
        lines = [f"{o.partition}: {o.description or ''}" for o in alert.outcomes[:30]]
        if len(alert.outcomes) > 30:
            lines.append(f"... and {len(alert.outcomes) - 30} more")
        details = "\n".join(lines)
        if not resolved:
            details += f"\n\n{first.partition}:\n" + render_metadata(first.metadata)
    return slack_message(
        f"{'Resolved' if resolved else 'Check failed'}: {name}" + (f" {where}" if where else ""),
        severity="RESOLVED" if resolved else first.severity,
        fields={
            "Asset": "/".join(first.asset_path),
            "Check": first.check_name,
            "Severity": first.severity,
            "Partition": where,
            "Run": first.run_id,
        },
        details=details,
        links=[
            ("Open run", run_url(ui, first.run_id)),
            ("Asset checks", asset_url(ui, first.asset_path, view="checks")),
        ],
    )


def build_check_failure_sensor(
    default_status: dg.DefaultSensorStatus, alerts: AlertSettings
) -> dg.SensorDefinition:
    @dg.sensor(
        name="asset_check_alert",
        default_status=default_status,
        minimum_interval_seconds=30,
        description="Posts asset checks (ERROR and WARN) that newly fail, per partition and grouped per run, "
        "with the asset, check, partition(s), the metadata that explains the result and a link to the run; "
        "and a resolved message when a failing partition passes again. WARN checks never fail a run, so "
        "without this sensor nobody would hear of them.",
    )
    def asset_check_alert(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else None
        try:
            found, new_cursor = check_alerts_since(context.instance, cursor)
        except Exception as exc:  # event-log hiccup: try again next tick from the same cursor
            context.log.error(f"could not read check evaluations: {exc!r}")
            return dg.SkipReason("event log not readable; retrying next tick")
        if new_cursor != cursor:
            context.update_cursor(json.dumps(new_cursor, sort_keys=True))
        if cursor is None:
            return dg.SkipReason("first evaluation: watching the check results of runs that end from now on")
        if not found:
            return dg.SkipReason(
                "no check newly failed or recovered in the runs that ended since the last tick"
            )
        hook = Webhook.from_settings(alerts, context.log)
        messages = [(a.label, check_alert_message(a, alerts.ui_base_url)) for a in found]
        for label, _ in messages:
            context.log.debug(f"check alert: {label}")
        deliveries = _post_all(hook, messages, "asset check", alerts)
        sent = sum(d.delivered for d in deliveries)
        failed = sum(a.kind == "failed" for a in found)
        summary = (
            f"{failed} check alert(s) newly failing, {len(found) - failed} resolved "
            f"({sent} delivered to {hook.target})"
        )
        context.log.info(summary)
        return dg.SkipReason(summary)

    return asset_check_alert


# ----------------------------------------------------------------------------- tracking alert


def new_top_candidates(
    scores: pl.DataFrame, day: date, *, top_n: int, min_score: float
) -> pl.DataFrame | None:
    """ASINs in ``day``'s top candidates (rank_in_site <= top_n and explosive_score >= min_score)
    that were not top candidates the day before, best first. None when the day before has no
    scores: then every ASIN would be "new", which says nothing."""

    def top(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter((pl.col("rank_in_site") <= top_n) & (pl.col("explosive_score") >= min_score))

    today = scores.filter(pl.col("date") == day)
    before = scores.filter(pl.col("date") == day - timedelta(days=1))
    if before.is_empty() or today.is_empty():
        return None
    previous_rank = before.select("asin", pl.col("rank_in_site").alias("previous_rank"))
    return (
        top(today)
        .join(top(before).select("asin"), on="asin", how="anti")
        .join(previous_rank, on="asin", how="left")
        .sort("rank_in_site")
    )


def tracking_message(
    site: str, day: date, new: pl.DataFrame, titles: dict[str, str], ui: str, top_n: int
) -> dict[str, Any]:
    """The product-research alert: the ASINs that entered the site's top candidates today."""
    lines = [f"{'rank':>4}  {'asin':<12} {'score':>6}  {'was':>6}  title"]
    for row in new.head(25).iter_rows(named=True):
        was = str(row["previous_rank"]) if row.get("previous_rank") is not None else "-"
        title = (titles.get(row["asin"]) or "")[:60]
        lines.append(
            f"{row['rank_in_site']:>4}  {row['asin']:<12} {row['explosive_score']:>6.2f}  {was:>6}  {title}"
        )
    if new.height > 25:
        lines.append(f"... and {new.height - 25} more")
    partition = f"{day.isoformat()}|{site}"
    return slack_message(
        f"{new.height} new top candidate(s) in {site} on {day.isoformat()}",
        severity="INFO",
        fields={
            "Site": site,
            "Date": day.isoformat(),
            "New entries": str(new.height),
            "Rule": f"rank_in_site <= {top_n}, explosive_score >= threshold, not in yesterday's top",
            "Asset": "score_baseline_daily",
            "Partition": partition,
        },
        details="\n".join(lines),
        links=[
            (
                "Score partition",
                asset_url(ui, ["score_baseline_daily"], view="partitions", partition=partition),
            ),
            ("Top candidates export", asset_url(ui, ["top_candidates"])),
        ],
    )


def _titles(warehouse: Warehouse, site: str, asins: Iterable[str]) -> dict[str, str]:
    asins = list(asins)
    if not asins:
        return {}
    try:
        marks = ", ".join("?" for _ in asins)
        frame = warehouse.query(
            f"SELECT asin, title FROM dim_asin WHERE site = ? AND asin IN ({marks})", [site, *asins]
        )
    except Exception:  # titles are a nicety: the alert goes out without them
        return {}
    return {a: t for a, t in frame.iter_rows() if t}


def tracking_alerts(
    warehouse: Warehouse,
    partitions: Iterable[str],
    *,
    today: date,
    alerts: AlertSettings,
    min_score: float,
    log: Callable[[str], None],
) -> list[tuple[str, dict[str, Any]]]:
    """Messages for the (date|site) partitions whose score was just materialised."""
    messages = []
    oldest = today - timedelta(days=alerts.max_age_days)
    for key in sorted(set(partitions)):
        try:
            part = parse_partition_key(key)
        except (ValueError, KeyError):
            log(f"tracking alert: ignoring partition key {key!r}")
            continue
        if part.day < oldest:
            log(
                f"tracking alert: {key} is older than {alerts.max_age_days} day(s) (a backfill); not alerting"
            )
            continue
        try:
            scores = warehouse.read(
                "score_baseline_daily",
                sites=[part.site],
                start=part.day - timedelta(days=1),
                end=part.day,
                columns=["site", "date", "asin", "explosive_score", "rank_in_site"],
            )
        except Exception as exc:  # warehouse down or table missing: say so, try the other partitions
            log(f"tracking alert: cannot read scores of {key}: {exc}")
            continue
        new = new_top_candidates(scores, part.day, top_n=alerts.top_n, min_score=min_score)
        if new is None:
            log(f"tracking alert: {key} has no previous day of scores to compare with")
            continue
        if new.is_empty():
            log(f"tracking alert: no new top candidates in {key}")
            continue
        titles = _titles(warehouse, part.site, new["asin"].to_list())
        messages.append(
            (key, tracking_message(part.site, part.day, new, titles, alerts.ui_base_url, alerts.top_n))
        )
    return messages


def build_tracking_sensor(
    default_status: dg.DefaultSensorStatus, alerts: AlertSettings, min_score: float
) -> dg.SensorDefinition:
    @dg.sensor(
        name="tracking_alert",
        default_status=default_status,
        minimum_interval_seconds=60,
        description="Product-research tracking alert: after score_baseline_daily materialises a recent "
        "(date, site), posts the ASINs that entered the site's top candidates (rank_in_site <= "
        "alerts.top_n and explosive_score >= thresholds.alert_score_min) since the day before.",
    )
    def tracking_alert(context: dg.SensorEvaluationContext, warehouse: Warehouse) -> dg.SkipReason:
        state = json.loads(context.cursor) if context.cursor else {}
        try:
            result = context.instance.fetch_materializations(
                SCORE_ASSET, limit=MATERIALIZATIONS_PER_TICK, cursor=state.get("cursor"), ascending=True
            )
        except Exception as exc:
            context.log.error(f"could not read score materialisations: {exc!r}")
            return dg.SkipReason("event log not readable; retrying next tick")
        partitions = [r.partition_key for r in result.records if r.partition_key]
        if result.records:
            context.update_cursor(json.dumps({"cursor": result.cursor}))
        if not partitions:
            return dg.SkipReason("no new score partitions")
        messages = tracking_alerts(
            warehouse,
            partitions,
            today=datetime.now(UTC).date(),
            alerts=alerts,
            min_score=min_score,
            log=context.log.debug,  # one line per partition: details only; the tick's summary is below
        )
        if not messages:
            summary = f"{len(set(partitions))} score partition(s) checked, no new top candidates"
            context.log.info(summary)
            return dg.SkipReason(summary)
        hook = Webhook.from_settings(alerts, context.log)
        deliveries = _post_all(hook, messages, "tracking", alerts)
        sent = sum(d.delivered for d in deliveries)
        summary = (
            f"{len(set(partitions))} score partition(s) checked, {len(messages)} tracking alert(s) "
            f"({sent} delivered to {hook.target})"
        )
        context.log.info(summary)
        return dg.SkipReason(summary)

    return tracking_alert


def build_sensors(
    default_status: dg.DefaultSensorStatus, settings: Settings, *, with_tracking: bool
) -> list[dg.SensorDefinition]:
    """The alerting sensors, their knobs bound from ``settings`` (alerts, tracking threshold)."""
    sensors = [
        build_run_failure_sensor(default_status, settings.alerts),
        build_check_failure_sensor(default_status, settings.alerts),
    ]
    if with_tracking:
        sensors.append(
            build_tracking_sensor(default_status, settings.alerts, settings.thresholds.alert_score_min)
        )
    return sensors
