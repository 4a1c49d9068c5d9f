"""The date x site partitioning shared by every asset from raw payloads to predictions.

Built from settings by ``build_date_site_partitions`` (called once, in ``definitions.build_definitions``),
so nothing here reads settings at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from asin_platform.settings import Settings

DATE_DIM = "date"
SITE_DIM = "site"


def build_date_site_partitions(settings: Settings) -> dg.MultiPartitionsDefinition:
    """Days from ``settings.partitions_start`` x ``settings.sites``.

    A day's data exists once the day is over, so the newest partition is yesterday (UTC)."""
    daily = dg.DailyPartitionsDefinition(start_date=settings.partitions_start.isoformat(), timezone="UTC")
    sites = dg.StaticPartitionsDefinition(list(settings.sites))
    return dg.MultiPartitionsDefinition({DATE_DIM: daily, SITE_DIM: sites})


@dataclass(frozen=True)
class DateSite:
    day: date
    site: str

    @property
    def key(self) -> str:
        return to_partition_key(self.day, self.site)


def to_partition_key(day: date, site: str) -> str:
    """Multi-partition key string; dimensions are ordered by name (date, site)."""
    return dg.MultiPartitionKey({DATE_DIM: day.isoformat(), SITE_DIM: site})


def parse_partition_key(key: str | dg.MultiPartitionKey) -> DateSite:
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        day_str, site = str(key).split("|")
        dims = {DATE_DIM: day_str, SITE_DIM: site}
    return DateSite(date.fromisoformat(dims[DATE_DIM]), dims[SITE_DIM])


def partitions_of_context(context: dg.AssetExecutionContext) -> list[DateSite]:
    """Every (date, site) a run covers: one for a single-partition run, many for a ranged run."""
    return sorted((parse_partition_key(k) for k in context.partition_keys), key=lambda p: (p.site, p.day))


def date_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def contiguous_segments(days: list[date]) -> list[tuple[date, date]]:
    """Contiguous date runs, (sorted, repeats dropped): a replace then never
    deletes a day the run does not own, and a read asks once per run of days."""
    segments: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if segments and day == segments[-1][1] + timedelta(days=1):
            segments[-1] = (segments[-1][0], day)
        else:
            segments.append((day, day))
    return segments
