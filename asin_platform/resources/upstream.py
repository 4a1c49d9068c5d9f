"""Upstream client resource: fetch one (site, day) of the unified product API.

``UpstreamClient`` is the interface the ingest assets depend on; ``UnifiedApiClient`` implements it
over httpx against the contract in ``docs/upstream_api.md``; ``SimulatedUpstreamClient`` serves the
same code path from the in-process simulator through ``httpx.ASGITransport`` (no sockets), for tests
and the embedded demo.

What one ``fetch_day`` does (the contract's "What ingestion calls"):

1. the ASIN universe of the day, every page; without it there is nothing to do, so failing to get it
   after the retry budget raises ``UpstreamError``;
2. ``products``, ``timeseries`` (start = end = day), ``reviews`` (since = until = day, every page)
   and ``keywords`` in batches of <= ``batch_size`` ASINs, at most ``concurrency`` in flight, all on
   one ``httpx.AsyncClient``.

A batch that fails for good does not raise: it becomes a ``RawResponse`` with ``error`` set and its
ASINs are reported missing, so one bad batch loses only itself and a backfill keeps going. Only a
rejected token (401) aborts, since every later call would fail the same way.

Every request passes a client-side token bucket shared by all instances using the same
(base_url, token) in the process (``ratelimit.py``), so the client keeps itself under the quota;
429s are still handled (``Retry-After`` honoured, the shared bucket drained). The token is sent
only in the ``Authorization`` header: it never appears in errors, reprs, params or stored payloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import queue
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlencode

import dagster as dg
import httpx

from asin_platform.resources.ratelimit import TokenBucket, bucket_params, shared_bucket

if TYPE_CHECKING:
    from asin_platform.settings import Settings

# Route templates: stored as ``raw_payloads.endpoint`` so payloads group by route, not by site.
UNIVERSE = "/v1/sites/{site}/asins"
PRODUCTS = "/v1/sites/{site}/products"
TIMESERIES = "/v1/sites/{site}/timeseries"
REVIEWS = "/v1/sites/{site}/reviews"
KEYWORDS = "/v1/sites/{site}/keywords"

# Batch kinds in the order they are queued (the contract's order), with their route.
BATCH_ENDPOINTS: dict[str, str] = {
    "products": PRODUCTS,
    "timeseries": TIMESERIES,
    "reviews": REVIEWS,
    "keywords": KEYWORDS,
}
# Kinds whose successful body names every requested ASIN it answers: coverage is measured on these.
# Reviews are not: an ASIN without a review that day is simply absent.
COVERAGE_KINDS = ("products", "timeseries", "keywords")

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

_MASK = "***"
_DONE = object()  # end of fetch_days' results
_T = TypeVar("_T")
# Bounds a pagination that never ends (a server bug would otherwise loop forever).
_MAX_PAGES = 100_000


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class RawResponse:
    """One logical request as it ended (after retries): becomes one ``raw_payloads`` row."""

    endpoint: str  # route template, e.g. "/v1/sites/{site}/timeseries"
    params: dict[str, str]  # query params (never the token)
    status: int  # last attempt's HTTP status, 0 if no response (timeout / connection error)
    attempts: int
    fetched_at: datetime  # UTC, tz-aware: when the last attempt ended
    body: str  # body text as received ("" if none)
    error: str | None  # None if the body is usable; else why not, e.g. "HTTP 503 after 5 attempts"
    asins: tuple[str, ...] = ()  # ASINs this request asked for (empty for universe pages)

    @property
    def ok(self) -> bool:
        return self.error is None

    def __repr__(self) -> str:
        # Short: bodies run to tens of kB and end up in logs and tracebacks (asyncio even reprs a
        # finished task's result on the SIGINT-handler path of every asyncio.run).
        return (
            f"RawResponse({self.endpoint!r}, status={self.status}, attempts={self.attempts}, "
            f"asins={len(self.asins)}, body={len(self.body)} chars, error={self.error!r})"
        )


@dataclass
class FetchReport:
    """What one ``fetch_day`` got and what it cost; ``as_metadata`` flattens it for Dagster.

    ``requests`` counts logical requests (one per ``RawResponse``); the HTTP calls made are
    ``requests + retries``. ``failed_requests`` counts those that ended with an error.
    """

    site: str
    day: date
    source: str
    tracked_asins: int
    received_asins: dict[str, int] = field(default_factory=dict)
    missing_asins: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429s seen
    server_errors: int = 0  # 5xx seen
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0  # 200s whose body was not the JSON the contract promises
    failed_requests: int = 0
    elapsed_s: float = 0.0

    @property
    def http_calls(self) -> int:
        return self.requests + self.retries

    def as_metadata(self) -> dict[str, int | float | str]:
        """Flat key -> scalar mapping for ``MaterializeResult(metadata=...)``."""
        meta: dict[str, int | float | str] = {
            "site": self.site,
            "day": self.day.isoformat(),
            "source": self.source,
            "tracked_asins": self.tracked_asins,
        }
        # Counts only, no ratios: callers fetching several days sum these values key by key.
        for kind in COVERAGE_KINDS:
            meta[f"received_{kind}"] = self.received_asins.get(kind, 0)
        for kind in BATCH_ENDPOINTS:
            meta[f"missing_{kind}"] = len(self.missing_asins.get(kind, []))
        sample = sorted({a for asins in self.missing_asins.values() for a in asins})[:10]
        meta["missing_sample"] = ",".join(sample)
        meta.update(
            requests=self.requests,
            http_calls=self.http_calls,
            retries=self.retries,
            throttled=self.throttled,
            server_errors=self.server_errors,
            timeouts=self.timeouts,
            connection_errors=self.connection_errors,
            malformed=self.malformed,
            failed_requests=self.failed_requests,
            elapsed_s=round(self.elapsed_s, 3),
        )
        return meta


@dataclass(repr=False)
class DayFetch:
    """Everything one (site, day) returned: the universe, every response, and the report."""

    site: str
    day: date
    universe: list[str]
    responses: list[RawResponse]
    report: FetchReport

    def __repr__(self) -> str:
        return (
            f"DayFetch({self.site!r}, {self.day.isoformat()}, universe={len(self.universe)}, "
            f"responses={len(self.responses)}, failed={self.report.failed_requests})"
        )


class UpstreamError(RuntimeError):
    """A call that cannot be worked around: the universe is unavailable, or the token is rejected.

    The message names the route, site, status and attempts, never the token.
    """

    def __init__(
        self, endpoint: str, status: int, attempts: int, *, site: str = "", detail: str = ""
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        self.site = site
        self.detail = detail
        what = f"HTTP {status}" if status else "no response"
        where = endpoint.format(site=site) if site else endpoint
        plural = "" if attempts == 1 else "s"
        message = f"upstream {where} failed: {what} after {attempts} attempt{plural}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments defeat the default exception pickling (executors, multiprocessing).
        return (_upstream_error, (self.endpoint, self.status, self.attempts, self.site, self.detail))


def _upstream_error(endpoint: str, status: int, attempts: int, site: str, detail: str) -> UpstreamError:
    return UpstreamError(endpoint, status, attempts, site=site, detail=detail)


# ------------------------------------------------------------------------------------------- resources
class UpstreamClient(dg.ConfigurableResource):
    """Interface of an upstream source as the ingest assets see it."""

    # raw_payloads.source of what this client fetches
    source: ClassVar[str] = "unified"

    def fetch_day(self, site: str, day: date, progress: Callable[[str], None] | None = None) -> DayFetch:
        """Fetch everything ingestion needs for one (site, day); see the module docstring."""
        raise NotImplementedError

    def fetch_days(
        self, partitions: Iterable[tuple[str, date]], progress: Callable[[str], None] | None = None
    ) -> Iterator[DayFetch]:
        """``fetch_day`` for each (site, day), yielded in order. Implementations may fetch ahead
        (a ranged run then keeps the quota busy while it stores the previous partition)."""
        for site, day in partitions:
            yield self.fetch_day(site, day, progress)


class UnifiedApiClient(UpstreamClient):
    """The unified product API over httpx, with rate limiting, retries, batching and paging."""

    base_url: str = "http://127.0.0.1:8765"
    token: str  # wired from dg.EnvVar("ASIN_PLATFORM_API_TOKEN") in definitions
    qpm: int = 6000
    burst: int = 50
    timeout: float = 10.0
    max_attempts: int = 5
    base_delay: float = 0.5
    jitter: float = 0.25
    max_delay: float = 30.0
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
    def from_settings(cls, settings: Settings, token: str) -> UnifiedApiClient:
        """Build from typed settings; ``token`` is a string or ``dg.EnvVar`` (never in settings)."""
        limit = settings.rate_limit("unified")
        retry = settings.retry_policy
        up = settings.upstream
        return cls(
            base_url=up.base_url,
            token=token,
            qpm=limit.qpm,
            burst=limit.burst,
            timeout=limit.timeout,
            max_attempts=retry.max_attempts,
            base_delay=retry.base_delay,
            jitter=retry.jitter,
            max_delay=retry.max_delay,
            batch_size=up.batch_size,
            page_size=up.page_size,
            concurrency=up.concurrency,
        )

    # The token must not leak through repr/str (pydantic prints every field by default), which
    # Dagster, debuggers and error reports all use.
    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield (name, _MASK if name == "token" else value)

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        """Transport for the one AsyncClient of a call; None = the real network."""
        return None

    def _token_value(self) -> str:
        token: Any = self.token
        if isinstance(token, dg.EnvVar):  # used outside a Dagster run: resolve it ourselves
            token = token.get_value()
            if not token:
                raise ValueError(
                    f"upstream API token: environment variable {self.token.env_var_name} is not set"
                )
        if not token:
            raise ValueError("upstream API token is empty")
        return str(token)

    def _validate(self) -> None:
        # Checked at call time (not in a validator) to keep the resource a plain Dagster config class.
        problems = []
        if self.batch_size < 1 or self.batch_size > 100:
            problems.append(f"batch_size must be 1..100 (contract limit), got {self.batch_size}")
        if self.page_size < 1 or self.page_size > 5000:
            problems.append(f"page_size must be 1..5000, got {self.page_size}")
        if self.concurrency < 1:
            problems.append(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.overlap < 1:
            problems.append(f"overlap must be >= 1, got {self.overlap}")
        if self.qpm < 1 or self.burst < 1:
            problems.append(f"qpm and burst must be >= 1, got {self.qpm}, {self.burst}")
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
        return _run_sync(lambda: self._fetch_day_async(site, day, progress))

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

    def _http(self, token: str) -> httpx.AsyncClient:
        """The one HTTP client of a call (connection pool sized to ``concurrency``)."""
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "asin-platform"},
            timeout=httpx.Timeout(self.timeout),
            limits=limits,
            transport=self._transport(),
        )

    async def _fetch_day_async(
        self, site: str, day: date, progress: Callable[[str], None] | None
    ) -> DayFetch:
        token = self._token_value()
        async with self._http(token) as http:
            return await self._fetch_one(
                http, asyncio.Semaphore(self.concurrency), token, site, day, progress
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
                for site, day in partitions:
                    coro = self._fetch_one(http, semaphore, token, site, day, labelled(site, day))
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
    ) -> DayFetch:
        started = time.perf_counter()
        session = _Session(self, http, self.bucket(), token, semaphore, progress)
        universe, responses = await self._fetch_universe(session, site, day)
        batches = [tuple(universe[i : i + self.batch_size]) for i in range(0, len(universe), self.batch_size)]
        tracker = _Progress(progress, {kind: len(batches) for kind in BATCH_ENDPOINTS}, session, started)
        tracker.universe(len(universe), len(responses))
        jobs = [
            self._fetch_batch(session, tracker, kind, site, day, batch)
            for kind in BATCH_ENDPOINTS
            for batch in batches
        ]
        results = await _gather_or_cancel(jobs)

        received: dict[str, set[str]] = {kind: set() for kind in COVERAGE_KINDS}
        missing: dict[str, list[str]] = {kind: [] for kind in BATCH_ENDPOINTS}
        for kind, batch, batch_responses, got, failed in results:
            responses.extend(batch_responses)
            if kind in received:
                received[kind] |= got
                missing[kind].extend(a for a in batch if a not in got)
            elif failed:  # reviews: only a failed batch loses ASINs
                missing[kind].extend(batch)
        counters = session.counters
        report = FetchReport(
            site=site,
            day=day,
            source=self.source,
            tracked_asins=len(universe),
            received_asins={kind: len(got) for kind, got in received.items()},
            missing_asins=missing,
            requests=len(responses),
            retries=counters.retries,
            throttled=counters.throttled,
            server_errors=counters.server_errors,
            timeouts=counters.timeouts,
            connection_errors=counters.connection_errors,
            malformed=counters.malformed,
            failed_requests=sum(1 for r in responses if r.error is not None),
            elapsed_s=time.perf_counter() - started,
        )
        tracker.finished(report)
        return DayFetch(site=site, day=day, universe=universe, responses=responses, report=report)

    async def _fetch_universe(
        self, session: _Session, site: str, day: date
    ) -> tuple[list[str], list[RawResponse]]:
        base = {"date": day.isoformat(), "page_size": str(self.page_size)}
        responses: list[RawResponse] = []
        asins: list[str] = []
        async for raw, body in session.pages(UNIVERSE, site, base, ()):
            responses.append(raw)
            if body is None:
                raise UpstreamError(UNIVERSE, raw.status, raw.attempts, site=site, detail=raw.error or "")
            asins.extend(a for a in body["asins"] if isinstance(a, str))
        # A page boundary moving under us can repeat an ASIN; keep the first occurrence, in order.
        return list(dict.fromkeys(asins)), responses

    async def _fetch_batch(
        self,
        session: _Session,
        tracker: _Progress,
        kind: str,
        site: str,
        day: date,
        batch: tuple[str, ...],
    ) -> tuple[str, tuple[str, ...], list[RawResponse], set[str], bool]:
        """One batch of one kind: (kind, batch, responses, ASINs received, failed for good)."""
        endpoint = BATCH_ENDPOINTS[kind]
        iso = day.isoformat()
        params: dict[str, str] = {"asins": ",".join(batch)}
        if kind == "timeseries":
            params.update(start=iso, end=iso)
        elif kind == "reviews":
            params.update(since=iso, until=iso, page_size=str(self.page_size))
        else:
            params["date"] = iso
        responses: list[RawResponse] = []
        got: set[str] = set()
        failed = False
        async for raw, body in session.pages(endpoint, site, params, batch, paginated=kind == "reviews"):
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


class SimulatedUpstreamClient(UnifiedApiClient):
    """The same client, served by the in-process simulator over ``httpx.ASGITransport`` (no sockets).

    Everything above the transport is the production code path (bucket, retries, paging, batching),
    so tests and the embedded demo exercise what runs against a real vendor. The simulator app is
    built once per distinct configuration and kept for the process: like a real server, its quota
    state and ``stats`` persist across ``fetch_day`` calls (``simulator_app().state.stats``).
    Fault knobs mirror ``asin_platform.simulator.FaultConfig``; the client defaults to the server's
    quota (``qpm`` / ``burst`` = ``server_qpm`` / ``server_burst``) like a well-configured client.
    """

    base_url: str = "http://simulator.local"  # only names the host in URLs; nothing is resolved
    token: str = "simulated-token"
    # the market
    sim_seed: int = 7
    sim_asins_per_site: int = 2000
    sim_epoch: str = "2025-01-01"
    sim_sites: list[str] = ["US", "UK", "DE", "JP"]
    # the server's quota for ``token``
    server_qpm: int = 6000
    server_burst: int = 50
    # faults (FaultConfig)
    fault_seed: int = 0
    error_5xx_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    malformed_rate: float = 0.0
    duplicate_rows_rate: float = 0.0
    missing_rows_rate: float = 0.0
    out_of_range_rate: float = 0.0
    extra_fields: bool = False

    @classmethod
    def from_simulator_settings(cls, settings: Settings, **overrides: Any) -> SimulatedUpstreamClient:
        """The simulator of ``settings.simulator`` for ``settings.sites``, with the client's retry,
        batching and paging from settings and its quota equal to the simulator's."""
        sim = settings.simulator
        retry = settings.retry_policy
        up = settings.upstream
        config: dict[str, Any] = dict(
            sim_seed=sim.seed,
            sim_asins_per_site=sim.asins_per_site,
            sim_epoch=sim.epoch.isoformat(),
            sim_sites=list(settings.sites),
            server_qpm=sim.qpm,
            server_burst=sim.burst,
            qpm=sim.qpm,
            burst=sim.burst,
            timeout=settings.rate_limit("unified").timeout,
            max_attempts=retry.max_attempts,
            base_delay=retry.base_delay,
            jitter=retry.jitter,
            max_delay=retry.max_delay,
            batch_size=up.batch_size,
            page_size=up.page_size,
            concurrency=up.concurrency,
        )
        config.update(overrides)
        return cls(**config)

    def _app_key(self) -> tuple[Any, ...]:
        return (
            self._market_key(),
            # hashed: the cache key must not hold the token in clear
            hashlib.sha256(self._token_value().encode()).hexdigest(),
            self.server_qpm,
            self.server_burst,
            tuple(sorted(self._fault_kwargs().items())),
        )

    def _market_key(self) -> tuple[Any, ...]:
        return (self.sim_seed, tuple(self.sim_sites), self.sim_asins_per_site, self.sim_epoch)

    def _fault_kwargs(self) -> dict[str, Any]:
        return dict(
            seed=self.fault_seed,
            error_5xx_rate=self.error_5xx_rate,
            latency_ms=self.latency_ms,
            timeout_rate=self.timeout_rate,
            timeout_seconds=self.timeout_seconds,
            malformed_rate=self.malformed_rate,
            duplicate_rows_rate=self.duplicate_rows_rate,
            missing_rows_rate=self.missing_rows_rate,
            out_of_range_rate=self.out_of_range_rate,
            extra_fields=self.extra_fields,
        )

    def simulator_app(self) -> Any:
        """The (cached) Starlette app serving this configuration; ``.state.stats`` for counters."""
        # Imported here: the simulator (numpy market generation) is only needed when simulating.
        from asin_platform.simulator import FaultConfig, Market, MarketConfig, Quota, create_app

        key = self._app_key()
        with _SIM_LOCK:
            app = _SIM_APPS.get(key)
            if app is None:
                market_key = self._market_key()
                market = _SIM_MARKETS.get(market_key)
                if market is None:
                    market = _SIM_MARKETS[market_key] = Market(
                        MarketConfig(
                            seed=self.sim_seed,
                            sites=tuple(self.sim_sites),
                            asins_per_site=self.sim_asins_per_site,
                            epoch=date.fromisoformat(self.sim_epoch),
                        )
                    )
                app = _SIM_APPS[key] = create_app(
                    market,
                    tokens={self._token_value(): Quota(self.server_qpm, self.server_burst)},
                    faults=FaultConfig(**self._fault_kwargs()),
                )
        return app

    def _quota_scope(self) -> str:
        # One simulated server per configuration, so one client bucket per configuration too: two
        # simulators with different quotas must not share a bucket because they share a base URL.
        return f"{self.base_url}#{hash(self._app_key()) & 0xFFFFFFFF:08x}"

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        # raise_app_exceptions=False: a simulator bug answers 500 like a real server would, and is
        # retried / recorded instead of crashing the run.
        return httpx.ASGITransport(app=self.simulator_app(), raise_app_exceptions=False)


# Simulated servers and markets of this process, by configuration (markets are costly to build
# and shared by apps that differ only in faults or quota).
_SIM_APPS: dict[tuple[Any, ...], Any] = {}
_SIM_MARKETS: dict[tuple[Any, ...], Any] = {}
_SIM_LOCK = threading.Lock()


def reset_simulators() -> None:
    """Forget the cached simulator apps and markets (tests that need a fresh server)."""
    with _SIM_LOCK:
        _SIM_APPS.clear()
        _SIM_MARKETS.clear()


# ------------------------------------------------------------------------------------------ machinery
@dataclass
class _Counters:
    http_calls: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0


@dataclass
class _Attempt:
    status: int
    body: str
    headers: httpx.Headers | None
    failure: str | None  # "timeout" / "connection error" when there was no response


class _Session:
    """One fetch_day's shared state: the HTTP client, bucket, semaphore, counters, retry policy.

    Lives on one event loop, so the counters need no lock.
    """

    def __init__(
        self,
        cfg: UnifiedApiClient,
        http: httpx.AsyncClient,
        bucket: TokenBucket,
        token: str,
        semaphore: asyncio.Semaphore,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self.http = http
        self.bucket = bucket
        self.token = token
        self.base = str(http.base_url).rstrip("/")
        self.semaphore = semaphore
        self.counters = _Counters()
        self.random = random.Random()

    def backoff(self, attempt: int) -> float:
        cfg = self.cfg
        return backoff_delay(attempt, cfg.base_delay, cfg.max_delay, cfg.jitter, self.random.random())

    def scrub(self, text: str) -> str:
        # Belt and braces: a server (or proxy) echoing the Authorization header must not carry the
        # token into an error message or the warehouse.
        return text.replace(self.token, _MASK) if self.token and self.token in text else text

    async def _send(self, path: str, params: dict[str, str]) -> _Attempt:
        async with self.semaphore:
            # Take the token only once a slot is ours, so a request never sits on a spent token
            # and the bucket's spacing is the spacing the server sees.
            await self.bucket.acquire()
            self.counters.http_calls += 1
            try:
                # asyncio.timeout as well as httpx's: transports without network timeouts
                # (ASGI, mocks) must not hang a run either.
                async with asyncio.timeout(self.cfg.timeout):
                    response = await self.http.get(self._url(path, params))
            except (httpx.TimeoutException, TimeoutError):
                return _Attempt(0, "", None, "timeout")
            except httpx.TransportError:
                return _Attempt(0, "", None, "connection error")
        self._observe_quota(response.headers)
        return _Attempt(response.status_code, response.text, response.headers, None)

    def _url(self, path: str, params: dict[str, str]) -> httpx.URL:
        """The absolute URL, parsed once. Handing httpx a relative path plus ``params`` makes it
        parse and validate the ~1 kB query of a 100-ASIN batch three times per request, which
        was half the client's CPU per request."""
        return httpx.URL(f"{self.base}{path}?{urlencode(params, safe=',')}")

    def _observe_quota(self, headers: httpx.Headers) -> None:
        """Follow the server's quota headers: never spend faster than its advertised qpm, never
        hold more tokens than it says remain (another process may share the token)."""
        try:
            limit = headers.get("X-RateLimit-Limit")
            if limit is not None:
                qpm = float(limit)
                if self.bucket.observe_limit(qpm * (1.0 - self.cfg.headroom) / 60.0) and self.progress:
                    self.progress(
                        f"server quota is {qpm:g} qpm, below the configured {self.cfg.qpm}: following it"
                    )
            remaining = headers.get("X-RateLimit-Remaining")
            if remaining is not None:
                self.bucket.sync_remaining(float(remaining))
        except ValueError:
            pass  # a malformed header is not worth failing a request over

    async def call(
        self, endpoint: str, site: str, params: dict[str, str], asins: tuple[str, ...]
    ) -> tuple[RawResponse, dict[str, Any] | None]:
        """One logical request with retries: (its RawResponse, the parsed body if usable)."""
        path = endpoint.format(site=site)
        attempt = 0
        while True:
            attempt += 1
            result = await self._send(path, params)
            fetched_at = datetime.now(UTC)
            delay = 0.0
            retryable = True
            if result.failure is not None:
                what = result.failure
                if result.failure == "timeout":
                    self.counters.timeouts += 1
                else:
                    self.counters.connection_errors += 1
                delay = self.backoff(attempt)
            elif result.status == 200:
                body, problem = _parse_body(result.body, _LIST_KEY[endpoint])
                if body is not None:
                    raw = RawResponse(
                        endpoint, params, 200, attempt, fetched_at, self.scrub(result.body), None, asins
                    )
                    return raw, body
                what = problem
                self.counters.malformed += 1
                delay = self.backoff(attempt)
            elif result.status == 429:
                what = "HTTP 429"
                self.counters.throttled += 1
                wait = _retry_after(result.headers)
                # The quota is the token's: block every request of this token, not just this one.
                # The retry then waits in bucket.acquire, so there is no separate sleep.
                self.bucket.penalize(wait if wait is not None else self.backoff(attempt))
            elif result.status >= 500:
                what = f"HTTP {result.status}"
                self.counters.server_errors += 1
                delay = self.backoff(attempt)
            elif result.status == 401:
                # Every later call would fail the same way: stop the whole fetch now.
                raise UpstreamError(endpoint, 401, attempt, site=site, detail="token rejected")
            else:  # 400, 404, anything unexpected: the same request would fail again
                what = f"HTTP {result.status}" + self.scrub(_error_detail(result.body))
                retryable = False

            if retryable and attempt < self.cfg.max_attempts:
                self.counters.retries += 1
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            plural = "" if attempt == 1 else "s"
            error = f"{what} after {attempt} attempt{plural}"
            raw = RawResponse(
                endpoint, params, result.status, attempt, fetched_at, self.scrub(result.body), error, asins
            )
            return raw, None

    async def pages(
        self,
        endpoint: str,
        site: str,
        params: dict[str, str],
        asins: tuple[str, ...],
        paginated: bool = True,
    ) -> AsyncIterator[tuple[RawResponse, dict[str, Any] | None]]:
        """Yield each page's (RawResponse, body); stops after the last page or the first failure."""
        seen: set[str] = set()
        page_token: str | None = None
        for _ in range(_MAX_PAGES):
            page_params = dict(params)
            if page_token is not None:
                page_params["page_token"] = page_token
            raw, body = await self.call(endpoint, site, page_params, asins)
            if body is not None and paginated:
                next_token = body.get("next_page_token")
                if next_token is not None and (
                    not isinstance(next_token, str | int) or str(next_token) in seen
                ):
                    # A token that repeats would page forever: keep what we have, flag the page.
                    raw = _replace_error(raw, f"pagination loop at page token {next_token!r}")
                    yield raw, None
                    return
                yield raw, body
                if next_token is None or next_token == "":
                    return
                page_token = str(next_token)
                seen.add(page_token)
                continue
            yield raw, body
            return


class _Progress:
    """Calls ``progress`` with a short line about every 10% of the batches."""

    def __init__(
        self,
        callback: Callable[[str], None] | None,
        totals: dict[str, int],
        session: _Session,
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


def backoff_delay(attempt: int, base_delay: float, max_delay: float, jitter: float, u: float) -> float:
    """Delay before retry number ``attempt`` (1-based): min(max_delay, base_delay * 2**(attempt-1))
    * (1 + jitter * u), ``u`` uniform in [0, 1). The jitter spreads retries of concurrent batches
    that failed together so they do not return together."""
    return min(max_delay, base_delay * 2 ** (attempt - 1)) * (1.0 + jitter * u)


def _parse_body(text: str, list_key: str) -> tuple[dict[str, Any] | None, str]:
    """(parsed body, "") if ``text`` is a JSON object carrying ``list_key`` as a list, else
    (None, what is wrong)."""
    try:
        body = json.loads(text)
    except ValueError:  # JSONDecodeError and bad unicode alike
        return None, "malformed JSON"
    if not isinstance(body, dict) or not isinstance(body.get(list_key), list):
        return None, f"malformed body (no {list_key!r} list)"
    return body, ""


def _retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from ``Retry-After``: a (possibly fractional) number, or an HTTP date."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_detail(text: str) -> str:
    """ " (code: message)" from the contract's error body, "" if it has none."""
    try:
        err = json.loads(text).get("error", {})
        code, message = err.get("code"), err.get("message")
    except (ValueError, AttributeError):
        return ""
    parts = [str(p) for p in (code, message) if p]
    return f" ({': '.join(parts)[:200]})" if parts else ""


def _replace_error(raw: RawResponse, error: str) -> RawResponse:
    return RawResponse(
        raw.endpoint, raw.params, raw.status, raw.attempts, raw.fetched_at, raw.body, error, raw.asins
    )


async def _gather_or_cancel(coros: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run all; if one raises (a 401), cancel the rest and re-raise that error as is (TaskGroup
    would wrap it in an ExceptionGroup, which callers should not have to unpack)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, whether or not a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a Dagster op thread, a script, a test
        return asyncio.run(factory())
    # Called from inside a running loop (notebook, async op): asyncio.run would refuse, and blocking
    # that loop on itself would deadlock, so run ours on a private thread and wait for it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="upstream") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
