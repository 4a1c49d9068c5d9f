"""Ingestion layer: upstream API -> ``raw_payloads``.

Each site has one source (settings ``upstream.source_by_site``: ``unified``, the default, or
``keepa``); the asset fetches a partition through that source's client and stores every response with
the source it came from, so the mart's parsers route each row to the right parser.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_partition_metadata
from asin_platform.core import ranges
from asin_platform.core.raw import payload_frame
from asin_platform.partitions import DateSite, partitions_of_context
from asin_platform.resources.upstream import (
    DayFetch,
    KeepaClient,
    UpstreamClient,
    UpstreamUnreachable,
    fetch_partitions,
)
from asin_platform.resources.warehouse import LeaseGrant, Warehouse
from asin_platform.settings import Settings


def retry_policy(settings: Settings) -> dg.RetryPolicy | None:
    """The Dagster retry policy of the assets that call the API (settings ``asset_retry``)."""
    retry = settings.asset_retry
    if retry.max_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=retry.max_retries,
        delay=retry.delay,
        backoff=dg.Backoff.EXPONENTIAL if retry.backoff == "exponential" else dg.Backoff.LINEAR,
        jitter=None if retry.jitter == "none" else dg.Jitter(retry.jitter.upper()),
    )


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``raw_payloads`` over ``partitions_def``, in the settings' API pool and with their retry policy."""
    return [
        dg.asset(
            name="raw_payloads",
            partitions_def=partitions_def,
            group_name="ingest",
            kinds={"python", "httpx"},
            # One shared pool for every run that calls the API: concurrent runs (backfills, retries)
            # cannot overrun the per-token quota together. Limit it with `dagster instance concurrency`.
            pool=settings.api_pool,
            retry_policy=retry_policy(settings),
            # Several days of one site per run: per-run overhead is seconds, a day's fetch is not.
            backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=31),
            tags={"layer": "raw"},
        )(raw_payloads)
    ]


def raw_payloads(
    context: dg.AssetExecutionContext,
    upstream: UpstreamClient,
    keepa: KeepaClient,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Every upstream response for the partition's site and day, stored as received.

    Unified sites: the tracked universe, product core, the day's timeseries, new reviews and keyword
    ranks (see docs/upstream_api.md). Keepa sites: the tracked universe and Keepa's ``/product`` for
    it (docs/upstream_api.md, "Keepa"). Each body is kept with its source, endpoint, params, status,
    fetch time and hash, so the mart can be rebuilt without calling the API again. Requests that
    fail after the retry budget are stored too (with the error), never dropped."""
    quota = _Quota()
    # One fetch per partition at a time, across processes: leases taken outside the session (a
    # DuckDB session holds the file, so another process would wait for it instead of learning who
    # fetches), and a conflict fails before any request, spending no quota.
    keys = [(p.site, p.day) for p in partitions_of_context(context)]
    ttl_s = settings.leases.ttl_s
    with (
        warehouse.leases("raw_payloads", keys, holder=context.run.run_id, ttl_s=ttl_s) as got,
        _session_if_leased(context, warehouse, got, ttl_s),
    ):
        context.log.info(f"raw_payloads: holding {len(got.acquired)} partition lease(s) for {ttl_s:g}s")
        carried = _carried_range_payloads(context, warehouse)
        cut: list[DateSite] = []  # stored with the requests an unreachable upstream stopped
        try:
            for part, fetched in _fetch_partitions(context, upstream, keepa, warehouse, settings):
                frame = _payload_rows(fetched, part, context.run.run_id, carried.get(part))
                written = warehouse.replace_slices(
                    "raw_payloads", frame, sites=[part.site], start=part.day, end=part.day
                )
                quota.add(context, part, fetched, frame, written)
                if fetched.unreachable is not None:
                    cut.append(part)
        except UpstreamUnreachable as exc:
            raise _unreachable_failure(exc, partitions_of_context(context), quota, cut) from None
    quota.report(context)
    return dg.MaterializeResult(metadata={"warehouse": warehouse.describe()})


def _unreachable_failure(
    exc: UpstreamUnreachable, partitions: list[DateSite], quota: "_Quota", cut: list[DateSite]
) -> dg.Failure:
    """The run's one error for an upstream nothing reached (``reachability.Breaker``). Not retried by the
    asset's retry policy: its requests already gave up on the host, and a re-run would wait 60 s +
    120 s for the same answer (the ingest schedule's next tick, or a person, re-runs it). What was
    stored stays stored (``cut``: with the requests it lacks marked failed, so its checks and the
    CLI name them); the partitions never fetched keep whatever they held."""
    incomplete = [(p.site, p.day) for p in cut]
    complete = [(p.site, p.day) for p in partitions if p in quota.figures and p not in cut]
    not_written = [(p.site, p.day) for p in partitions if p not in quota.figures]
    return dg.Failure(
        description=exc.run_failure(not_written, incomplete, complete),
        metadata={
            "upstream": exc.base_url,
            "consecutive_unreached_requests": exc.requests,
            "last_failure": exc.last,
            "partitions_not_written": len(not_written),
            "partitions_stored_incomplete": len(incomplete),
            "partitions_stored_complete": len(complete),
        },
        allow_retries=False,
    )


class _Quota:
    """Each partition's fetch figures and what it spent (requests; Keepa tokens), and the run's.

    A range payload's requests and tokens count on the partition it is stored in (its first day), so
    the partitions of a run add up to what the run spent (docs/architecture.md, "Range payloads")."""

    def __init__(self) -> None:
        self.figures: dict[DateSite, dict[str, Any]] = {}
        self.products: set[tuple[str, str]] = set()  # (site, ASIN) of the Keepa fetches

    def add(
        self,
        context: dg.AssetExecutionContext,
        part: DateSite,
        fetched: DayFetch,
        frame: pl.DataFrame,
        written: int,
    ) -> None:
        report = fetched.report
        missing = sum(len(v) for v in report.missing_asins.values())
        fresh = frame.filter(pl.col("run_id") == context.run.run_id)  # not the carried range payloads
        self.figures[part] = {
            **report.as_metadata(),
            "payloads": written,
            "missing_asins": missing,
            "range_requests": ranges.range_payload_ids(fresh).len(),
            "tokens_consumed": getattr(report, "tokens_consumed", 0),
        }
        if report.source == "keepa":
            self.products.update((part.site, asin) for asin in fetched.universe)
        if len(context.partition_keys) > 1:
            # Every log line is an event the instance stores (~10 ms each on SQLite): a ranged run's
            # partitions have their figures in their own metadata, the run's totals go to the log.
            return
        context.log.info(
            f"{part.site} {part.day}: {written} payloads, {report.tracked_asins} tracked ASINs, "
            f"{missing} missing, {report.requests} requests, {report.retries} retries, "
            f"{self.figures[part]['tokens_consumed']} tokens, {report.elapsed_s:.1f}s"
        )

    def report(self, context: dg.AssetExecutionContext) -> None:
        """Every partition its own figures; the run's totals to the log (they belong to no partition)."""
        empty = {"payloads": 0, "requests": 0, "http_calls": 0, "tokens_consumed": 0, "range_requests": 0}
        add_partition_metadata(context, self.figures, empty=empty)
        totals: dict[str, float] = {}
        for figures in self.figures.values():
            for key, value in figures.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
        context.log.info(
            "raw_payloads run total: " + ", ".join(f"{k} {v:g}" for k, v in sorted(totals.items()))
        )
        parts = max(len(self.figures), 1)
        per_product = totals.get("tokens_consumed", 0) / max(len(self.products), 1)
        context.log.info(
            f"raw_payloads quota: {totals.get('requests', 0):g} requests for {len(self.figures)} site-days "
            f"({totals.get('requests', 0) / parts:.2f} per site-day, {totals.get('range_requests', 0):g} "
            f"of them ranges), {totals.get('tokens_consumed', 0):g} Keepa tokens for "
            f"{len(self.products)} products ({per_product:.2f} per product)"
        )


@contextmanager
def _session_if_leased(
    context: dg.AssetExecutionContext, warehouse: Warehouse, got: LeaseGrant, ttl_s: float
) -> Iterator[None]:
    """The warehouse session of the fetch, or a ``dg.Failure`` (not retried: a retry would fetch
    what the holder is fetching) naming the partitions another run holds. Leases of a run this
    instance knows has ended (killed with kill -9 and swept, failed, cancelled) are taken over: that
    run fetches nothing any more, and its partitions must not wait for the lease to expire."""
    ended: dict[str, list[Any]] = {}
    for key, lease in got.held_by_others.items():
        run = context.instance.get_run_by_id(lease.holder)
        if run is not None and run.is_finished:
            ended.setdefault(lease.holder, []).append(key)
    for holder, keys in ended.items():
        warehouse.release_leases("raw_payloads", keys, holder=holder)
        retry = warehouse.acquire_leases("raw_payloads", keys, holder=context.run.run_id, ttl_s=ttl_s)
        got.acquired = sorted({*got.acquired, *retry.acquired})  # released on exit with the rest
        got.held_by_others = {k: v for k, v in got.held_by_others.items() if k not in retry.acquired}
        context.log.warning(f"took over {len(retry.acquired)} lease(s) of run {holder}, which has ended")
    if got.held_by_others:
        by_holder: dict[str, list[str]] = {}
        for (site, day), lease in sorted(got.held_by_others.items()):
            by_holder.setdefault(lease.holder, []).append(f"{site} {day}")
        held = "; ".join(f"{', '.join(ps)} by run {run}" for run, ps in by_holder.items())
        raise dg.Failure(
            description=f"not fetched, no request sent: {len(got.held_by_others)} partition(s) are "
            f"being fetched by another run ({held}); wait for it to finish, then re-run",
            allow_retries=False,
        )
    with warehouse.session():
        yield


def _fetch_partitions(
    context: dg.AssetExecutionContext,
    upstream: UpstreamClient,
    keepa: KeepaClient,
    warehouse: Warehouse,
    settings: Settings,
) -> Iterator[tuple[DateSite, DayFetch]]:
    """(partition, fetch) for every partition of the run, each through its site's source (the
    routing lives with the clients). Per-batch progress goes to DEBUG (kept in the run's event log);
    INFO gets one line per partition, so a year-long ranged run stays readable."""
    return fetch_partitions(
        partitions_of_context(context),
        settings,
        upstream=upstream,
        keepa=keepa,
        progress=context.log.debug,
        info=context.log.info,
        known_asins=lambda part: _known_asins(warehouse, part),
    )


def _carried_range_payloads(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dict[DateSite, pl.DataFrame]:
    """Stored range payloads this run's slice replacements must write back (``core.ranges.to_carry``):
    a range stored in a partition of the run that also covers days the run does not re-fetch."""
    out: dict[DateSite, pl.DataFrame] = {}
    parts = partitions_of_context(context)
    for site in sorted({p.site for p in parts}):
        days = [p.day for p in parts if p.site == site]
        stored = warehouse.read(
            "raw_payloads",
            sites=[site],
            start=min(days),
            end=max(days),
            columns=["payload_id", "date", "request_params"],
        )
        keep = ranges.to_carry(stored.filter(pl.col("date").is_in(days)), days)
        if keep.is_empty():
            continue
        rows = warehouse.read("raw_payloads", sites=[site], start=keep["date"].min(), end=keep["date"].max())
        rows = rows.filter(pl.col("payload_id").is_in(keep["payload_id"].implode()))
        for (day,), frame in rows.group_by("date"):
            out[DateSite(day, site)] = frame
    return out


def _payload_rows(
    fetched: DayFetch, part: DateSite, run_id: str, carried: pl.DataFrame | None = None
) -> pl.DataFrame:
    """``raw_payloads`` rows of one fetch, each with the source it came from, plus the stored range
    payloads of the partition that cover days this run does not re-fetch (``carried``, kept as stored).

    A Keepa fetch also stores the unified API's universe pages it used (those responses name their
    ``source``); every other response carries the fetch's source."""
    by_source: dict[str, list[Any]] = {}
    for response in fetched.responses:
        by_source.setdefault(getattr(response, "source", fetched.report.source), []).append(response)
    frames = [
        payload_frame(responses, site=part.site, day=part.day, source=source, run_id=run_id)
        for source, responses in by_source.items()
    ]
    if carried is not None and carried.height:
        frames.append(carried.select(frames[0].columns if frames else carried.columns))
    if not frames:
        return payload_frame([], site=part.site, day=part.day, source=fetched.report.source, run_id=run_id)
    return pl.concat(frames, how="vertical")


def _known_asins(warehouse: Warehouse, part: DateSite) -> list[str]:
    """The site's ASINs already in ``dim_asin``, first seen on or before the partition day: tracked
    products stay tracked when a site moves to Keepa, and a backfill never takes its universe from
    the future."""
    dim = warehouse.read("dim_asin", sites=[part.site], columns=["asin", "first_seen"])
    return dim.filter(pl.col("first_seen") <= part.day)["asin"].to_list()
