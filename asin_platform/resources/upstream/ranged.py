"""Range-aware fetching of the unified API: history endpoints once per ASIN batch for a run of days.

A ranged run (a CLI range, the demo, a UI backfill run over many days) asks the history endpoints,
``timeseries`` (``start..end``, at most 400 days) and ``reviews`` (``since..until``), once per batch of
ASINs for the whole run of days instead of once per day; the snapshot endpoints (universe, product
core as of a day, keyword ranks of a day) stay per day because the contract has no history for them.

The batches of the range requests are the union of the days' universes: an ASIN tracked on any day of
the range is asked for the whole range, and the mart keeps only its points of the days it was tracked
(``core.ranges``), which is exactly what day-by-day requests would have returned.

Each day still gets its own ``DayFetch`` (its universe pages, products, keywords, report); the range
responses go with the FIRST day of the range: they are stored once, in that partition, with their
range in ``request_params`` (docs/architecture.md, "Range payloads"). Each day's report counts the
requests of that day; the first day's also counts the range requests, so summing the reports of a run
gives the requests it made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

from asin_platform.resources.upstream.base import COVERAGE_KINDS, DayFetch, FetchReport, RawResponse
from asin_platform.resources.upstream.http import gather_or_cancel

if TYPE_CHECKING:
    import asyncio

    import httpx

    from asin_platform.resources.upstream.reachability import Breaker
    from asin_platform.resources.upstream.unified import UnifiedApiClient

# The contract's longest timeseries range (docs/upstream_api.md, "Daily timeseries").
MAX_RANGE_DAYS = 400
# Days one unified range fetch covers at most: it holds every day's snapshot responses (product core
# and keyword pages, ~0.2 MB a day per 100 ASINs) until the range is done, so a year-long CLI range is
# cut into quarters; a 90-day backfill is still one range, and history costs 4 requests a batch a year.
UNIFIED_RANGE_DAYS = 92
HISTORY_KINDS = ("timeseries", "reviews")
SNAPSHOT_KINDS = ("products", "keywords")


def contiguous_runs(days: Iterable[date], max_days: int = MAX_RANGE_DAYS) -> list[list[date]]:
    """Sorted distinct ``days`` cut into runs of consecutive days, each at most ``max_days`` long."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and day - runs[-1][-1] == timedelta(days=1) and len(runs[-1]) < max_days:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _batches(asins: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(asins[i : i + size]) for i in range(0, len(asins), size)]


def _points_by_day(responses: Sequence[RawResponse]) -> dict[date, set[str]]:
    """ASINs with a point, per day, in the successful timeseries range responses."""
    out: dict[date, set[str]] = {}
    for response in responses:
        if not response.ok:
            continue
        for item in json.loads(response.body).get("items", []):
            asin = item.get("asin") if isinstance(item, dict) else None
            for point in item.get("points", []) if isinstance(asin, str) else []:
                try:
                    out.setdefault(date.fromisoformat(point["date"]), set()).add(asin)
                except (TypeError, KeyError, ValueError):
                    continue  # a bad point is the parser's to quarantine; coverage just lacks it
    return out


async def fetch_range(
    client: UnifiedApiClient,
    http: httpx.AsyncClient,
    semaphore: asyncio.Semaphore,
    token: str,
    site: str,
    days: list[date],
    progress: Callable[[str], None] | None,
    breaker: Breaker | None = None,
) -> list[DayFetch]:
    """One ``DayFetch`` per day of ``days`` (consecutive, <= 400), history kinds fetched as a range;
    the days' sessions share ``breaker`` (one of their own when None)."""
    from asin_platform.resources.upstream.unified import _Progress, fetch_universe

    started = time.perf_counter()
    breaker = breaker or client.breaker()
    cores = [client._core(http, token, semaphore, progress, breaker) for _ in days]
    fetched = await gather_or_cancel(
        [fetch_universe(core, site, day, client.page_size) for core, day in zip(cores, days, strict=True)]
    )
    universes = [asins for asins, _ in fetched]
    union = list(dict.fromkeys(a for asins in universes for a in asins))
    day_batches = [_batches(asins, client.batch_size) for asins in universes]
    range_batches = _batches(union, client.batch_size)
    totals = {kind: sum(len(b) for b in day_batches) for kind in SNAPSHOT_KINDS}
    totals.update({kind: len(range_batches) for kind in HISTORY_KINDS})
    tracker = _Progress(progress, totals, cores[0], started)
    tracker.universe(len(union), sum(len(pages) for _, pages in fetched))
    jobs = [
        client._fetch_batch(core, tracker, kind, site, day, batch)
        for core, day, batches in zip(cores, days, day_batches, strict=True)
        for kind in SNAPSHOT_KINDS
        for batch in batches
    ]
    jobs += [
        client._fetch_batch(cores[0], tracker, kind, site, days[0], batch, until=days[-1])
        for kind in HISTORY_KINDS
        for batch in range_batches
    ]
    results = await gather_or_cancel(jobs)

    by_day: dict[date, list[tuple[str, tuple[str, ...], list[RawResponse], set[str], bool]]] = {}
    snapshot_results = iter(results[: len(results) - len(HISTORY_KINDS) * len(range_batches)])
    for day, batches in zip(days, day_batches, strict=True):
        by_day[day] = [next(snapshot_results) for _ in range(len(SNAPSHOT_KINDS) * len(batches))]
    history = results[len(results) - len(HISTORY_KINDS) * len(range_batches) :]
    timeseries = [r for kind, _, responses, _, _ in history if kind == "timeseries" for r in responses]
    points = _points_by_day(timeseries)
    failed_reviews = {a for kind, batch, *_, failed in history if kind == "reviews" and failed for a in batch}
    range_responses = [r for _, _, responses, _, _ in history for r in responses]

    out = []
    for i, (day, core, (universe, pages)) in enumerate(zip(days, cores, fetched, strict=True)):
        responses = [*pages, *(r for _, _, rs, _, _ in by_day[day] for r in rs)]
        if i == 0:
            responses += range_responses
        received: dict[str, set[str]] = {kind: set() for kind in COVERAGE_KINDS}
        missing: dict[str, list[str]] = {kind: [] for kind in (*SNAPSHOT_KINDS, *HISTORY_KINDS)}
        for kind, batch, _, got, _ in by_day[day]:
            received[kind] |= got
            missing[kind].extend(a for a in batch if a not in got)
        tracked = set(universe)
        received["timeseries"] = points.get(day, set()) & tracked
        missing["timeseries"] = [a for a in universe if a not in received["timeseries"]]
        missing["reviews"] = [a for a in universe if a in failed_reviews]
        report = FetchReport(
            site=site,
            day=day,
            source=client.source,
            tracked_asins=len(universe),
            received_asins={kind: len(got) for kind, got in received.items()},
            missing_asins={kind: missing[kind] for kind in ("products", "timeseries", "reviews", "keywords")},
        )
        core.counters.fill(report, responses)
        report.elapsed_s = (time.perf_counter() - started) if i == 0 else 0.0
        out.append(DayFetch(site=site, day=day, universe=universe, responses=responses, report=report))
    if breaker.open:  # every day of the range stopped with it
        for fetch in out:
            fetch.unreachable = breaker.error()
    tracker.finished(out[0].report)
    return out
