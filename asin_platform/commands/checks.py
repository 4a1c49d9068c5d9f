"""`asin-platform checks`: the check dashboard at a glance, read from the Dagster instance.

Per asset and check over a (date range x sites): how many partitions passed, warned, failed or
were not evaluated (never checked, skipped, or checked before the partition's latest
materialisation), and the worst partitions with what their evaluation said. It reads the same
per-partition status the UI's check Partitions view shows (``get_asset_check_partition_info``),
so the two never disagree. :func:`summary_line` is the one-line version the demo prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import dagster as dg

from asin_platform.commands._args import check_sites, check_start_end, parse_date
from asin_platform.partitions import date_range, to_partition_key
from asin_platform.settings import Settings

STATES = ("passed", "warned", "failed", "not evaluated")
WORST_FIRST = ("failed", "warned")
WORST_SHOWN = 3


@dataclass
class CheckSummary:
    asset: str
    check: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    worst: list[tuple[str, str, str]] = field(default_factory=list)  # (partition, state, description)


def _state(info, severity: str | None) -> str:
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    if info is None or info.latest_execution_status == Status.PLANNED:
        return "not evaluated"
    target, latest = info.latest_target_materialization_storage_id, info.latest_materialization_storage_id
    if target is not None and latest is not None and target < latest:
        return "not evaluated"  # the partition was re-materialised after this result
    if info.latest_execution_status == Status.SUCCEEDED:
        return "passed"
    return "warned" if severity == "WARN" else "failed"


def _evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey, partition: str | None):
    """The newest completed evaluation of ``key`` (for one partition), or None."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    records = instance.event_log_storage.get_asset_check_execution_history(
        key,
        limit=1,
        status={Status.SUCCEEDED, Status.FAILED},
        partition_filter=PartitionKeyFilter(key=partition) if partition else None,
    )
    event = records[0].event if records else None
    return event.dagster_event.event_specific_data if event and event.dagster_event else None


def summarise_checks(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], partition_keys: Sequence[str]
) -> list[CheckSummary]:
    """One summary per check over ``partition_keys``; the worst partitions (failed, then warned,
    with their evaluation's description."""
    wanted = set(partition_keys)
    summaries = []
    for key in check_keys:
        infos = {
            i.partition_key: i
            for i in instance.event_log_storage.get_asset_check_partition_info(
                [key], partition_keys=list(wanted)
            )
        }
        newest = _evaluation(instance, key, None)
        severity = newest.severity.value if newest else None
        summary = CheckSummary(key.asset_key.to_user_string(), key.name)
        bad: list[tuple[str, str]] = []
        for partition in sorted(wanted):
            state = _state(infos.get(partition), severity)
            summary.counts[state] += 1
            if state in WORST_FIRST:  # "not evaluated" is counted, not listed: it is often most of a range
                bad.append((partition, state))
        bad.sort(key=lambda item: (WORST_FIRST.index(item[1]), item[0]))
        for partition, state in bad[:WORST_SHOWN]:
            evaluation = _evaluation(instance, key, partition)
            summary.worst.append((partition, state, (evaluation.description or "") if evaluation else ""))
        summaries.append(summary)
    return summaries


def partitioned_check_keys(defs: dg.Definitions) -> list[dg.AssetCheckKey]:
    keys = []
    for checks_def in defs.asset_checks or []:
        for spec in checks_def.check_specs:
            if spec.partitions_def is not None:
                keys.append(spec.key)
    return sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name))


def range_partition_keys(sites: Sequence[str], start: date, end: date) -> list[str]:
    return [str(to_partition_key(day, site)) for site in sites for day in date_range(start, end)]


def summary_line(
    instance: dg.DagsterInstance, defs: dg.Definitions, sites: Sequence[str], start: date, end: date
) -> str:
    """One line for the demo: partitions x checks, and which checks warned / failed / went unchecked."""
    partitions = range_partition_keys(sites, start, end)
    summaries = summarise_checks(instance, partitioned_check_keys(defs), partitions)
    totals = {state: sum(s.counts[state] for s in summaries) for state in STATES}
    notes = [
        f"{s.check} {state} x{s.counts[state]}" for s in summaries for state in STATES[1:] if s.counts[state]
    ]
    return (
        f"checks: {len(summaries)} partitioned checks x {len(partitions)} partitions: "
        + ", ".join(f"{totals[state]} {state}" for state in STATES)
        + (f" ({'; '.join(notes)})" if notes else "")
    )


def format_table(summaries: Sequence[CheckSummary]) -> str:
    header = f"{'asset':<24} {'check':<26} {'passed':>6} {'warned':>6} {'failed':>6} {'not eval.':>9}"
    lines = [header, "-" * len(header)]
    for s in summaries:
        c = s.counts
        lines.append(
            f"{s.asset:<24} {s.check:<26} {c['passed']:>6} {c['warned']:>6} {c['failed']:>6} "
            f"{c['not evaluated']:>9}"
        )
    worst = [(s, w) for s in summaries for w in s.worst]
    if worst:
        lines.append("\nworst partitions:")
        lines += [f"  {s.check} {p} {state}: {text}".rstrip(": ") for s, (p, state, text) in worst]
    return "\n".join(lines)


def cmd_checks(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.definitions import build_definitions

    check_start_end(args.start, args.end)
    defs = build_definitions(settings)
    sites = check_sites(args.sites, settings)
    with dg.DagsterInstance.get() as instance:
        summaries = summarise_checks(
            instance, partitioned_check_keys(defs), range_partition_keys(sites, args.start, args.end)
        )
    print(f"asset checks over {args.start}..{args.end} x {', '.join(sites)}:")
    print(format_table(summaries))
    return 1 if any(s.counts["failed"] for s in summaries) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "checks",
        help="per asset check: partitions passed / warned / failed / not evaluated over a range, worst first",
    )
    p.add_argument("--start", type=parse_date, required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--end", type=parse_date, required=True, help="last day (YYYY-MM-DD)")
    p.add_argument("--sites", nargs="+", help="sites (default: all configured)")
    p.set_defaults(func=cmd_checks)
