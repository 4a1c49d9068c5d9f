"""Check on realised outcomes: is the model still doing better than the baseline, in hindsight?

* ``model_beats_baseline_realised`` (WARN): for each (date, site) of the run, the model's mean
  realised precision@k over the rolling window of ``settings.outcomes.window_days`` prediction
  dates ending on that day is not below the baseline's. A window with fewer than
  ``outcomes.min_days`` realised days passes and says so (too little hindsight to judge). A failed
  evaluation is a WARN: the alert sensor (automation/sensors.py) posts it to the webhook like any
  failed check, with the window's figures.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import metadata_table
from asin_platform.checks.partitioned import context_parts
from asin_platform.core.outcomes import rolling_comparison
from asin_platform.partitions import DateSite
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings


def judge(outcomes: pl.DataFrame, part: DateSite, settings: Settings) -> dict[str, Any]:
    """The window's comparison for one partition and whether it passes."""
    o = settings.outcomes
    start = part.day - timedelta(days=o.window_days - 1)
    window = outcomes.filter((pl.col("site") == part.site) & pl.col("date").is_between(start, part.day))
    figures = rolling_comparison(window, k=o.k)
    model, base = figures[f"model_precision@{o.k}"], figures[f"baseline_precision@{o.k}"]
    enough = figures["days"] >= o.min_days and model is not None and base is not None
    return {
        "site": part.site,
        "date": part.day,
        **figures,
        "judged": enough,
        "passed": (not enough) or model >= base,
    }


def build_checks(
    settings: Settings, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The realised-outcome check over ``partitions_def``."""

    @dg.asset_check(
        asset="realised_outcomes",
        partitions_def=partitions_def,
        description=(
            "WARN when the model's realised precision@k, averaged over the rolling window of "
            "prediction dates ending on the partition's day, is below the baseline's "
            "(settings.outcomes: window_days, k, min_days)."
        ),
    )
    def model_beats_baseline_realised(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
    ) -> dg.AssetCheckResult:
        parts = context_parts(context)
        o = settings.outcomes
        frames = [
            warehouse.read(
                "realised_outcomes",
                sites=[site],
                start=min(p.day for p in parts if p.site == site) - timedelta(days=o.window_days - 1),
                end=max(p.day for p in parts if p.site == site),
            )
            for site in sorted({p.site for p in parts})
        ]
        outcomes = pl.concat(frames) if frames else pl.DataFrame()
        verdicts = pl.DataFrame([judge(outcomes, p, settings) for p in parts])
        failing = verdicts.filter(~pl.col("passed"))
        judged = int(verdicts["judged"].sum())
        description = (
            f"{failing.height} of {len(parts)} partitions: the model's realised precision@{o.k} over "
            f"{o.window_days} days is below the baseline's"
            if failing.height
            else f"model >= baseline on realised precision@{o.k} in the {judged} partitions with >= "
            f"{o.min_days} realised days ({len(parts) - judged} too early to judge)"
        )
        return dg.AssetCheckResult(
            passed=failing.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                "failing_partitions": failing.height,
                "judged_partitions": judged,
                "window_days": o.window_days,
                "windows": metadata_table((failing if failing.height else verdicts).head(50)),
            },
        )

    return [model_beats_baseline_realised]
