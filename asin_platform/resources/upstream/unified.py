"""The unified product API as an upstream source: its routes, its batches, its body format.

``UnifiedApiClient`` fetches one (site, day) against the contract in ``docs/upstream_api.md``; all
HTTP machinery (rate limiting, retries, time budget, paging, counters, secret scrubbing) is the shared
core in ``http.py``. What one ``fetch_day`` does (the contract's "What ingestion calls"):

1. the ASIN universe of the day, every page; without it there is nothing to do, so failing to get it
   raises ``UpstreamError``;
2. ``products``, ``timeseries`` (start = end = day), ``reviews`` (since = until = day, every page)
   and ``keywords`` in batches of <= ``batch_size`` ASINs, at most ``concurrency`` in flight, all on
   one ``httpx.AsyncClient``.

A batch that fails for good does not raise: it becomes a ``RawResponse`` with ``error`` set, its
ASINs are reported missing and it is listed in ``FetchReport.failures``, so one bad batch loses only
itself and a backfill keeps going. Only a rejected token (401) aborts, since every later call would
fail the same way. The token is a ``dg.EnvVar`` resolved at run time and sent only in the
``Authorization`` header: it never appears in errors, reprs, params or stored payloads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg
import httpx

from asin_platform.resources.upstream.base import (
    BATCH_KINDS,
    COVERAGE_KINDS,
    DayFetch,
    FetchReport,
    RawResponse,
    UpstreamError,
)
from asin_platform.resources.upstream.http import (
    MASK,
    Exchange,
    HttpCore,
    HttpUpstreamClient,
    Request,
    gather_or_cancel,
    resolve_secret,
    run_sync,
)
from asin_platform.resources.upstream.ratelimit import TokenBucket, bucket_params, shared_bucket
from asin_platform.resources.upstream.reachability import Breaker

if TYPE_CHECKING:
    from asin_platform.settings import Settings

TOKEN_ENV = "ASIN_PLATFORM_API_TOKEN"

# Route templates: stored as ``raw_payloads.endpoint`` so payloads group by route, not by site.
UNIVERSE = "/v1/sites/{site}/asins"
PRODUCTS = "/v1/sites/{site}/products"
TIMESERIES = "/v1/sites/{site}/timeseries"
REVIEWS = "/v1/sites/{site}/reviews"
KEYWORDS = "/v1/sites/{site}/keywords"

# Batch kinds with their route, in the order they are queued.
BATCH_ENDPOINTS: dict[str, str] = dict(
    zip(BATCH_KINDS, (PRODUCTS, TIMESERIES, REVIEWS, KEYWORDS), strict=True)
)

# The list a successful body must carry, per route; a 200 without it is as useless as bad JSON.
_LIST_KEY = {
    UNIVERSE: "asins",
    PRODUCTS: "products",
    TIMESERIES: "items",
    REVIEWS: "reviews",
    KEYWORDS: "items",
}
# Entries of these lists that name an ASIN (universe entries are bare strings).
_ENTRY_ASIN_KEY = "asin"
_DONE = object()  # end of fetch_days' results
_EXCHANGES = {
    endpoint: type("_Unified", (Exchange,), {"list_key": key})() for endpoint, key in _LIST_KEY.items()
}


async def fetch_universe(
    core: HttpCore, site: str, day: date, page_size: int, source: str | None = None
) -> tuple[list[str], list[RawResponse]]:
    """The unified API's universe of (site, day), every page, first occurrence of each ASIN kept in
    order (a page boundary moving under us can repeat one). Raises ``UpstreamError`` when a page
    fails for good: without the universe there is nothing to fetch."""
    params = {"date": day.isoformat(), "page_size": str(page_size)}
    req = Request(UNIVERSE, site, params, source=source, essential=True)
    responses: list[RawResponse] = []
    asins: list[str] = []
    async for raw, body in core.pages(req, _EXCHANGES[UNIVERSE]):
        responses.append(raw)
        if body is None:
            raise UpstreamError(UNIVERSE, raw.status, raw.attempts, site=site, detail=raw.error or "")
        asins.extend(a for a in body["asins"] if isinstance(a, str))
    return list(dict.fromkeys(asins)), responses


def bearer_client(
    base_url: str, token: str, timeout: float, connections: int, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """An HTTP client of the unified API: the token in the Authorization header only."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}", "User-Agent": "asin-platform"},
        timeout=httpx.Timeout(timeout),
        limits=limits,
        transport=transport,
    )


class UnifiedApiClient(HttpUpstreamClient):
    """The unified product API over httpx, with rate limiting, retries, batching and paging."""

    base_url: str = "http://127.0.0.1:8765"
    token: str  # a dg.EnvVar (from_settings), resolved at run time
    batch_size: int = 100
    page_size: int = 1000
    concurrency: int = 4
    # Margins that keep latency jitter from pushing the server over the quota (ratelimit.bucket_params):
    # share of qpm left unspent, and share of the burst never spent back to back.
    headroom: float = 0.02
    burst_reserve: float = 0.5
    # Partitions fetch_days keeps in flight: a partition ends with a tail (the last retries wait out
    # their backoff) that would leave the quota idle if the next one waited for it.
    overlap: int = 2

    @classmethod
    def from_settings(
        cls, settings: Settings, token: str | None = None, **overrides: Any
    ) -> UnifiedApiClient:
        """Build from typed settings; the token is ``dg.EnvVar(TOKEN_ENV)`` unless given (never in
        settings)."""
        up = settings.upstream
        config: dict[str, Any] = dict(
            base_url=up.base_url,
            token=token if token is not None else dg.EnvVar(TOKEN_ENV),
            **cls.http_config(settings, "unified"),
            batch_size=up.batch_size,
            page_size=up.page_size,
            concurrency=up.concurrency,
        )
        config.update(overrides)
        return cls(**config)

    # The token must not leak through repr/str (pydantic prints every field by default), which
    # Dagster, debuggers and error reports all use.
    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield (name, MASK if name == "token" else value)

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        """Transport for the one AsyncClient of a call; None = the real network."""
        return None

    def _token_value(self) -> str:
        return resolve_secret(self.token, "upstream API token")

    def _validate(self) -> None:
        # Checked at call time (not in a validator) to keep the resource a plain Dagster config class.
        problems = []
        if self.batch_size < 1 or self.batch_size > 100:
            problems.append(f"batch_size must be 1..100 (contract limit), got {self.batch_size}")
        if self.page_size < 1 or self.page_size > 5000:
            problems.append(f"page_size must be 1..5000, got {self.page_size}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be >= 1, got {self.concurrency}")
        if self.overlap < 1:
            problems.append(f"overlap must be >= 1, got {self.overlap}")
        problems += self._validate_http()
        if problems:
            raise ValueError("invalid upstream client config: " + "; ".join(problems))

    def _quota_scope(self) -> str:
        """Who owns the quota besides the token: the server, named by its base URL."""
        return self.base_url

    def bucket(self) -> TokenBucket:
        """The shared token bucket of this (server, token)."""
        rate, capacity = bucket_params(self.qpm, self.burst, self.headroom, self.burst_reserve)
        return shared_bucket(self._quota_scope(), self._token_value(), rate, capacity)

    def fetch_day(self, site: str, day: date, progress: Callable[[str], None] | None = None) -> DayFetch:
        self._validate()
        return run_sync(lambda: self._fetch_day_async(site, day, progress))

    def fetch_days(
        self, partitions: Iterable[tuple[str, date]], progress: Callable[[str], None] | None = None
    ) -> Iterator[DayFetch]:
        """Like ``fetch_day`` per partition, in order, with up to ``overlap`` partitions in flight.

        Fetching runs on one event loop in a helper thread (``progress`` is called from it, with
        lines prefixed by site and day), sharing one HTTP client, the bucket and the ``concurrency``
        limit; results are handed over one at a time, so at most ``overlap + 1`` partitions are held.
        An ``UpstreamError`` is raised when its partition's turn comes, after the ones before it.
        Stopping early (``break``, an exception in the caller) cancels what is still in flight.
        """
        if self.overlap <= 1:
            yield from super().fetch_days(partitions, progress)
            return
        self._validate()
        out: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()
        worker = threading.Thread(
            target=lambda: asyncio.run(self._produce(iter(partitions), progress, out, stop)),
            name="upstream-fetch-days",
            daemon=True,
        )
        worker.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def fetch_range(
        self, site: str, days: list[date], progress: Callable[[str], None] | None = None
    ) -> list[DayFetch]:
        """One ``DayFetch`` per day of ``days`` (consecutive, at most 400): snapshot kinds per day,
        ``timeseries`` and ``reviews`` once per ASIN batch for the whole range (``ranged.py``)."""
        from asin_platform.resources.upstream.ranged import fetch_range

        self._validate()

        async def run() -> list[DayFetch]:
            token = self._token_value()
            async with self._http(token) as http:
                semaphore = asyncio.Semaphore(self.concurrency)
                breaker = self.breaker()
                return await fetch_range(self, http, semaphore, token, site, days, progress, breaker)

        return run_sync(run)

    def _http(self, token: str) -> httpx.AsyncClient:
        """The one HTTP client of a call (connection pool sized to ``concurrency``)."""
        return bearer_client(self.base_url, token, self.timeout, self.concurrency, self._transport())

    def breaker(self) -> Breaker:
        """The breaker of one fetch: shared by all its sessions (every partition of a ranged run)."""
        return Breaker(self.unreachable_after, self.base_url)

    def _core(
        self,
        http: httpx.AsyncClient,
        token: str,
        semaphore: asyncio.Semaphore,
        progress: Callable[[str], None] | None,
        breaker: Breaker | None = None,
    ) -> HttpCore:
        return HttpCore(
            http,
            self.bucket(),
            self.retry_policy(),
            secrets=(token,),
            semaphore=semaphore,
            headroom=self.headroom,
            progress=progress,
            timeout=self.timeout,
            breaker=breaker,
        )

    async def _fetch_day_async(
        self, site: str, day: date, progress: Callable[[str], None] | None
    ) -> DayFetch:
        token = self._token_value()
        async with self._http(token) as http:
            return await self._fetch_one(
                http, asyncio.Semaphore(self.concurrency), token, site, day, progress, self.breaker()
            )

    async def _produce(
        self,
        partitions: Iterator[tuple[str, date]],
        progress: Callable[[str], None] | None,
        out: queue.Queue[Any],
        stop: threading.Event,
    ) -> None:
        """fetch_days' producer: keep ``overlap`` partitions in flight, hand results over in order."""

        def hand_over(item: Any) -> bool:
            # Blocking put, polled so that a consumer who stopped listening cannot strand us.
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def labelled(site: str, day: date) -> Callable[[str], None] | None:
            if progress is None:
                return None
            return lambda line: progress(f"{site} {day.isoformat()}: {line}")

        pending: deque[asyncio.Task[DayFetch]] = deque()
        try:
            token = self._token_value()
            async with self._http(token) as http:
                semaphore = asyncio.Semaphore(self.concurrency)  # shared: the limit is per client
                breaker = self.breaker()  # shared: an unreachable upstream stops every partition
                for site, day in partitions:
                    coro = self._fetch_one(http, semaphore, token, site, day, labelled(site, day), breaker)
                    pending.append(asyncio.ensure_future(coro))
                    while len(pending) >= self.overlap:
                        if not await self._deliver(pending.popleft(), hand_over):
                            return
                    if stop.is_set():
                        return
                while pending:
                    if not await self._deliver(pending.popleft(), hand_over):
                        return
            await asyncio.to_thread(hand_over, _DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which raises it
            await asyncio.to_thread(hand_over, exc)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    @staticmethod
    async def _deliver(task: asyncio.Task[DayFetch], hand_over: Callable[[Any], bool]) -> bool:
        """Wait for ``task`` and hand its result (or error) over; False once the consumer is gone."""
        try:
            result: Any = await task
        except Exception as exc:  # noqa: BLE001 - an UpstreamError belongs to its partition's turn
            result = exc
        delivered = await asyncio.to_thread(hand_over, result)
        return delivered and not isinstance(result, Exception)

    async def _fetch_one(
        self,
        http: httpx.AsyncClient,
        semaphore: asyncio.Semaphore,
        token: str,
        site: str,
        day: date,
        progress: Callable[[str], None] | None,
        breaker: Breaker | None = None,
    ) -> DayFetch:
        started = time.perf_counter()
        session = self._core(http, token, semaphore, progress, breaker)
        universe, responses = await fetch_universe(session, site, day, self.page_size)
        batches = [tuple(universe[i : i + self.batch_size]) for i in range(0, len(universe), self.batch_size)]
        tracker = _Progress(progress, {kind: len(batches) for kind in BATCH_ENDPOINTS}, session, started)
        tracker.universe(len(universe), len(responses))
        jobs = [
            self._fetch_batch(session, tracker, kind, site, day, batch)
            for kind in BATCH_ENDPOINTS
            for batch in batches
        ]
        results = await gather_or_cancel(jobs)

        received: dict[str, set[str]] = {kind: set() for kind in COVERAGE_KINDS}
        missing: dict[str, list[str]] = {kind: [] for kind in BATCH_ENDPOINTS}
        for kind, batch, batch_responses, got, failed in results:
            responses.extend(batch_responses)
            if kind in received:
                received[kind] |= got
                missing[kind].extend(a for a in batch if a not in got)
            elif failed:  # reviews: only a failed batch loses ASINs
                missing[kind].extend(batch)
        report = FetchReport(
            site=site,
            day=day,
            source=self.source,
            tracked_asins=len(universe),
            received_asins={kind: len(got) for kind, got in received.items()},
            missing_asins=missing,
        )
        session.counters.fill(report, responses)
        report.elapsed_s = time.perf_counter() - started
        tracker.finished(report)
        unreachable = session.breaker.error() if session.breaker.open else None
        return DayFetch(
            site=site, day=day, universe=universe, responses=responses, report=report, unreachable=unreachable
        )

    async def _fetch_batch(
        self,
        session: HttpCore,
        tracker: _Progress,
        kind: str,
        site: str,
        day: date,
        batch: tuple[str, ...],
        until: date | None = None,
    ) -> tuple[str, tuple[str, ...], list[RawResponse], set[str], bool]:
        """One batch of one kind: (kind, batch, responses, ASINs received, failed for good).

        ``until`` (history kinds only: timeseries, reviews) asks for ``day..until`` in one request."""
        endpoint = BATCH_ENDPOINTS[kind]
        iso, last = day.isoformat(), (until or day).isoformat()
        params: dict[str, str] = {"asins": ",".join(batch)}
        if kind == "timeseries":
            params.update(start=iso, end=last)
        elif kind == "reviews":
            params.update(since=iso, until=last, page_size=str(self.page_size))
        else:
            params["date"] = iso
        responses: list[RawResponse] = []
        got: set[str] = set()
        failed = False
        req = Request(endpoint, site, params, batch)
        async for raw, body in session.pages(req, _EXCHANGES[endpoint], paginated=kind == "reviews"):
            responses.append(raw)
            if body is None:
                failed = True
                break
            for entry in body[_LIST_KEY[endpoint]]:
                if isinstance(entry, dict) and isinstance(entry.get(_ENTRY_ASIN_KEY), str):
                    got.add(entry[_ENTRY_ASIN_KEY])
        requested = set(batch)
        tracker.batch_done(kind)
        return kind, batch, responses, got & requested, failed


class _Progress:
    """Calls ``progress`` with a short line about every 10% of the batches."""

    def __init__(
        self,
        callback: Callable[[str], None] | None,
        totals: dict[str, int],
        session: HttpCore,
        started: float,
    ) -> None:
        self.callback = callback
        self.totals = totals
        self.done = dict.fromkeys(totals, 0)
        self.total = sum(totals.values())
        self.session = session
        self.started = started
        self.last_decile = 0

    def _rate(self) -> float:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return self.session.counters.http_calls / elapsed * 60.0

    def universe(self, n_asins: int, n_pages: int) -> None:
        if self.callback is not None:
            plural = "" if n_pages == 1 else "s"
            self.callback(f"universe {n_asins} ASINs in {n_pages} page{plural}, {self.total} batches queued")

    def batch_done(self, kind: str) -> None:
        self.done[kind] += 1
        if self.callback is None or not self.total:
            return
        decile = sum(self.done.values()) * 10 // self.total
        if decile > self.last_decile:
            self.last_decile = decile
            self.callback(
                f"{kind} {self.done[kind]}/{self.totals[kind]} batches, {self._rate():.1f} req/min, "
                f"{self.session.counters.retries} retries"
            )

    def finished(self, report: FetchReport) -> None:
        if self.callback is not None:
            missing = sum(len(v) for v in report.missing_asins.values())
            self.callback(
                f"done {report.site} {report.day.isoformat()}: {report.http_calls} calls in "
                f"{report.elapsed_s:.1f}s, {report.failed_requests} failed requests, {missing} missing ASIN rows"
            )
