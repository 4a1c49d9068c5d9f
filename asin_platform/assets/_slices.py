"""Helpers shared by the partitioned assets: which (site, date span) slices a run owns."""

from collections import defaultdict
from datetime import date, timedelta

import dagster as dg

from asin_platform.partitions import partitions_of_context


def contiguous_segments(days: list[date]) -> list[tuple[date, date]]:
    """Contiguous date runs, so a replace never deletes a day the run does not own."""
    segments: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if segments and day == segments[-1][1] + timedelta(days=1):
            segments[-1] = (segments[-1][0], day)
        else:
            segments.append((day, day))
    return segments


def site_segments(context: dg.AssetExecutionContext) -> list[tuple[str, date, date]]:
    """(site, first day, last day) for every contiguous slice of the run's partitions."""
    by_site: dict[str, list[date]] = defaultdict(list)
    for part in partitions_of_context(context):
        by_site[part.site].append(part.day)
    return [(site, a, b) for site, days in sorted(by_site.items()) for a, b in contiguous_segments(days)]
