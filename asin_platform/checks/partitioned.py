"""One check evaluation per (date, site) partition, in every kind of run.

Dagster 1.13 records a *planned* execution row per partition of a run for each partitioned check,
but an ``AssetCheckResult`` returned from a run that covers a range gets no partition
(``AssetCheckResult.to_asset_check_evaluation`` takes the partition from the step's single partition
key only), so the planned rows stay unanswered and show as Skipped. A check step may instead
yield ``AssetCheckEvaluation`` events itself, each with its ``partition``: the event log storage
matches each to the planned row of (run, check, partition) and turns it into SUCCEEDED / FAILED,
and the step still fails after all of them when a blocking ERROR evaluation failed
(``execute_step.core_dagster_event_sequence_for_step``), so downstream steps do not run. The check's
own (Nothing) output is yielded last so the step is complete. See docs/architecture.md,
"Per-partition checks".

A check computes a :class:`Verdict` per partition key and hands them to :func:`evaluations`; a key
of the run without a verdict is reported failed ("not evaluated"), never left Skipped.
:func:`partition_check` builds such a check from a function of (warehouse, partitions) to verdicts;
checks of one run that judge the same rows read them once through :func:`shared_read`.
"""

from collections.abc import Callable, Hashable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from asin_platform.partitions import DateSite, parse_partition_key, to_partition_key
from asin_platform.resources.warehouse import Warehouse

CheckEvent = dg.AssetCheckEvaluation | dg.Output

# The run whose check is computing its verdicts (set by partition_check), and the reads of that run.
_RUN_ID: ContextVar[str | None] = ContextVar("asin_platform_check_run_id", default=None)
_RUN_READS: dict[tuple[Hashable, ...], pl.DataFrame] = {}


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check for one partition."""

    passed: bool
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def context_parts(context: dg.AssetCheckExecutionContext) -> list[DateSite]:
    """The (date, site) partitions of the run, by site then day."""
    return sorted((parse_partition_key(k) for k in context.partition_keys), key=lambda p: (p.site, p.day))


def keys_frame(parts: list[DateSite]) -> pl.DataFrame:
    return pl.DataFrame(
        {"site": [p.site for p in parts], "date": [p.day for p in parts]},
        schema={"site": pl.Utf8, "date": pl.Date},
    )


def shared_read(key: tuple[Hashable, ...], read: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """``read()`` once per run and ``key``: the checks of a run that judge the same rows share one
    read (the in-process executor runs a run's check steps in one process; another executor reads
    once per process). Only the newest run's reads are held. Outside a check run it just reads."""
    run_id = _RUN_ID.get()
    if run_id is None:
        return read()
    full = (run_id, *key)
    if full not in _RUN_READS:
        if any(k[0] != run_id for k in _RUN_READS):
            _RUN_READS.clear()
        _RUN_READS[full] = read()
    return _RUN_READS[full]


def _metadata_value(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None or isinstance(value, dg.MetadataValue):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return dg.MetadataValue.json(value)


def verdicts_from_frame(
    frame: pl.DataFrame, describe: Callable[[dict[str, Any]], str], columns: list[str]
) -> dict[str, Verdict]:
    """A verdict per row of ``frame`` (site, date, passed, *columns): one row per partition, so
    this loops over partitions, not over data rows."""
    verdicts = {}
    for row in frame.iter_rows(named=True):
        key = str(to_partition_key(row["date"], row["site"]))
        verdicts[key] = Verdict(
            passed=bool(row["passed"]),
            description=describe(row),
            metadata={c: _metadata_value(row[c]) for c in columns},
        )
    return verdicts


def _targets(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, keys: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The newest materialisation of each partition: what each evaluation judged (the UI compares
    it with the partition's latest materialisation to tell a current result from a stale one)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys),
        # newest first; headroom for partitions materialised again since this run's materialisation
        limit=max(1, 4 * len(keys)),
        ascending=False,
    ).records
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:
        if record.partition_key and record.partition_key not in targets:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
            )
    return targets


def evaluations(
    context: dg.AssetCheckExecutionContext,
    verdicts: Mapping[str, Verdict],
    *,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[CheckEvent]:
    """One ``AssetCheckEvaluation`` per partition key of the run, then the check's output.

    Logs one line for the run (counts and the failing partitions); the per-partition details are in
    each evaluation's metadata."""
    spec = context.check_specs[0]
    keys = [str(k) for k in context.partition_keys]
    targets = _targets(context, spec.asset_key, keys)
    failed = []
    for key in keys:
        verdict = verdicts.get(key) or Verdict(False, "not evaluated: no data for this partition")
        if not verdict.passed:
            failed.append(key)
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=verdict.passed,
            metadata=dict(verdict.metadata),
            target_materialization_data=targets.get(key),
            severity=severity,
            description=verdict.description,
            blocking=spec.blocking,
            partition=key,
        )
    shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
    context.log.info(
        f"{spec.name}: {len(keys) - len(failed)} of {len(keys)} partition(s) passed"
        + (f"; {severity.value.lower()} in {len(failed)}: {shown}" if failed else "")
    )
    yield dg.Output(None, output_name=context.op_def.output_defs[0].name)


def partition_check(
    verdicts: Callable[[Warehouse, list[DateSite]], Mapping[str, Verdict]],
    *,
    name: str,
    asset: str,
    partitions_def: dg.PartitionsDefinition,
    description: str,
    blocking: bool = False,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetChecksDefinition:
    """A per-partition check on ``asset``: ``verdicts(warehouse, the run's partitions)`` judged,
    one evaluation per partition of the run (:func:`evaluations`) at ``severity``."""

    @dg.asset_check(
        asset=asset,
        name=name,
        partitions_def=partitions_def,
        blocking=blocking,
        description=description,
    )
    def check(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> Iterator[CheckEvent]:
        token = _RUN_ID.set(context.run.run_id)
        try:
            judged = verdicts(warehouse, context_parts(context))
        finally:
            _RUN_ID.reset(token)
        yield from evaluations(context, judged, severity=severity)

    return check
