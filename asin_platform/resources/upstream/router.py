"""Which client fetches which site: settings ``upstream.source_by_site`` routes each (site, day).

The ingest asset only asks "fetch these partitions" (``fetch_partitions``); ``build_upstream_resources``
builds every client from settings for ``definitions.build_resources``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import TYPE_CHECKING, Protocol, TypeVar

from asin_platform.resources.upstream.base import DayFetch, UpstreamClient
from asin_platform.resources.upstream.keepa import KeepaClient
from asin_platform.resources.upstream.ranged import UNIFIED_RANGE_DAYS, contiguous_runs
from asin_platform.resources.upstream.unified import UnifiedApiClient

if TYPE_CHECKING:
    from asin_platform.settings import Settings


class Partition(Protocol):
    @property
    def site(self) -> str: ...
    @property
    def day(self) -> date: ...


_P = TypeVar("_P", bound=Partition)


def build_upstream_resources(settings: Settings) -> dict[str, UpstreamClient]:
    """Resource key -> client of every source, secrets as ``dg.EnvVar`` resolved at run time."""
    return {
        "upstream": UnifiedApiClient.from_settings(settings),
        "keepa": KeepaClient.from_settings(settings),
    }


def fetch_partitions(
    partitions: Iterable[_P],
    settings: Settings,
    *,
    upstream: UpstreamClient,
    keepa: KeepaClient,
    progress: Callable[[str], None] | None = None,
    info: Callable[[str], None] | None = None,
    known_asins: Callable[[_P], list[str]] | None = None,
) -> Iterator[tuple[_P, DayFetch]]:
    """(partition, fetch) for every partition, each through its site's source.

    Keepa partitions go in runs of consecutive days of a site through ``fetch_range`` (each product
    bought once per run; each day's universe may grow by ``known_asins``, the site's ASINs already
    tracked, when the client's ``track_known_asins`` is set); unified partitions go
    in runs of consecutive days of a site through ``fetch_range`` (history endpoints once per range,
    ``ranged.py``), single days through ``fetch_days``, which keeps the next partitions in flight."""
    parts = list(partitions)
    keepa_parts = [p for p in parts if settings.upstream.source_for(p.site) == "keepa"]
    for site in sorted({p.site for p in keepa_parts}):
        by_day = {p.day: p for p in keepa_parts if p.site == site}
        for run in contiguous_runs(by_day):
            if info is not None:
                info(f"fetching {site} {run[0]}..{run[-1]} from keepa (each product once) ...")
            track = known_asins is not None and keepa.track_known_asins
            extra = {day: known_asins(by_day[day]) if track else [] for day in run}  # type: ignore[misc]
            fetches = keepa.fetch_range(site, run, progress=progress, extra_asins=extra)
            yield from _stop_if_unreachable(zip([by_day[day] for day in run], fetches, strict=True))
    unified = [p for p in parts if settings.upstream.source_for(p.site) != "keepa"]
    single: list[_P] = []
    fetch_range = getattr(upstream, "fetch_range", None)
    for site in sorted({p.site for p in unified}):
        by_day = {p.day: p for p in unified if p.site == site}
        for run in contiguous_runs(by_day, UNIFIED_RANGE_DAYS):
            if len(run) == 1 or fetch_range is None:
                single += [by_day[day] for day in run]
                continue
            if info is not None:
                info(f"fetching {site} {run[0]}..{run[-1]} (history as one range) ...")
            fetched = fetch_range(site, run, progress)
            yield from _stop_if_unreachable(zip([by_day[day] for day in run], fetched, strict=True))
    days = upstream.fetch_days(((p.site, p.day) for p in single), progress=progress)
    try:
        # one partition at a time: the ones still in flight are dropped (closing ``days`` cancels them)
        yield from _stop_if_unreachable(zip(single, days, strict=True), whole_call=False)
    finally:
        close = getattr(days, "close", None)
        if close is not None:
            close()


def _stop_if_unreachable(
    pairs: Iterable[tuple[_P, DayFetch]], *, whole_call: bool = True
) -> Iterator[tuple[_P, DayFetch]]:
    """``pairs`` until a fetch says its upstream was unreachable (``DayFetch.unreachable``): the
    partitions of that call (``whole_call``: a range, fetched together) or that one partition are
    still handed over, to be stored with the requests they lack marked failed; then the error is
    raised, so no further fetch starts against a host nothing reaches."""
    stopped = None
    for part, fetch in pairs:
        yield part, fetch
        if fetch.unreachable is not None:
            stopped = fetch.unreachable
            if not whole_call:
                break
    if stopped is not None:
        raise stopped
