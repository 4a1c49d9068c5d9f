"""Keepa client resource: one (site, day) from Keepa's product API, behind the ``UpstreamClient`` interface.

What one ``fetch_day(site, day)`` does:

1. **Universe** (which ASINs to ask for; Keepa has no "tracked universe" route):
   ``universe_source="unified"`` asks the unified API's ``/v1/sites/{site}/asins?date=D`` (its pages
   are stored with ``source = "unified"``, so the coverage check counts every ASIN that should have
   been fetched, including the ones Keepa or the token budget lost); ``"file"`` reads
   ``tracked_asins_path`` (one ASIN a line, ``{site}`` substituted; nothing is stored for it, so the
   coverage check then sees only the products Keepa returned, and lost ASINs show in the fetch
   report's ``missing_products`` / ``budget_capped_asins`` metadata only). The ingest asset adds the
   site's ASINs already in ``dim_asin`` (first seen on or before the day) when ``track_known_asins``
   is set, so switching a site's source never drops a product.
2. **Products**: ``GET {base_url}/product?key=...&domain=<id>&asin=A,B,...`` in batches of <= 100 with
   ``stats``, ``rating=1``, ``history=1``, ``days=N``, ``aplus=1``, ``videos=1`` (``buybox=1`` only if
   configured: it costs 2 more tokens a product). ``days`` = ``max(history_days, days since the
   partition day + 2)``: Keepa keeps the last change before the window, so carried values survive.
   One request at a time: the token bucket is the bottleneck, and parallel requests would only race
   for it.

Tokens (Keepa's accounting is per key, server-side; ``docs/keepa.md``, "Token accounting"):

- Every response, a 429 included, carries ``tokensLeft`` (may be negative), ``refillIn`` (ms) and
  ``refillRate`` (per minute); the latest one is kept per (server, key) in the process and projected
  forward by the minute refills since it was seen. Before the first request of a process a free
  ``GET /token`` reads the status.
- **Cost model** (worst case, used for waits and the budget): per ASIN 1 token, +1 with ``rating=1``
  (Keepa charges it only when it refreshes the rating), +2 with ``buybox=1``; ``stats``, ``history``,
  ``days``, ``aplus`` and ``videos`` are free. The budget is then charged what the response's
  ``tokensConsumed`` says (the ground truth), or the estimate when a body is unreadable.
- Before a request costing n tokens: wait ``wait_seconds(status, n)`` (``core/keepa.py``): refillIn
  plus the deficit, overdraft included, at refillRate. A batch never costs more than an hour of refill
  (the bucket's size), or it could never be afforded. A wait longer than ``max_token_wait_s`` stops
  the fetch: the rest is reported missing.
- HTTP 429: the body's status is read and the same wait applies before the retry (so the wait is
  refillIn plus the deficit); 5xx, timeouts, connection errors and unreadable 200s back off
  exponentially with jitter like the unified client; all retries are bounded by ``max_attempts``.
- ``token_budget`` (settings ``upstream.keepa_token_budget``) caps the tokens of one Dagster run
  (reset in ``setup_for_execution``; outside Dagster, per client instance until ``reset_budget()``).
  A batch that could exceed it is shrunk, then the fetch stops: the rest is reported missing,
  never a crash.
- HTTP request pacing on top (``qpm`` / ``burst`` from settings ``rate_limits.keepa``), via the shared
  client-side bucket of ``ratelimit.py``.

The key is read from the environment variable named by ``api_key_env`` (default ``KEEPA_API_KEY``) at
fetch time, so the resource is built without it (most sites use the unified API) and only a Keepa
fetch fails, with a message naming the variable. Keepa wants the key in the query string: it is
masked (``key=***``) in stored ``request_params``, scrubbed from stored bodies and from any error text,
absent from reprs (the resource holds only the variable's name), and redacted from httpx's request
log lines by a filter on the ``httpx`` logger.

Each product response becomes a ``raw_payloads`` row with ``source = "keepa"`` and endpoint
``/product`` (``core/keepa.parse_keepa`` reads those). Its ``fetched_at`` is the response's
``timestamp`` (Keepa's clock: the instant the data is as of, which the parser's day cut-offs need),
or the local clock when a body has none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import dagster as dg
import httpx
from pydantic import PrivateAttr

from asin_platform.core.keepa import (
    PRODUCT_ENDPOINT,
    SITE_TO_DOMAIN,
    TokenStatus,
    parse_token_status,
    wait_seconds,
)
from asin_platform.resources.ratelimit import TokenBucket, shared_bucket
from asin_platform.resources.upstream import (
    BATCH_ENDPOINTS,
    UNIVERSE,
    DayFetch,
    FetchReport,
    RawResponse,
    UpstreamClient,
    UpstreamError,
    backoff_delay,
)

if TYPE_CHECKING:
    from asin_platform.settings import Settings

TOKEN_ENDPOINT = "/token"
KEEPA_API_KEY_ENV = "KEEPA_API_KEY"
UNIVERSE_SOURCES = ("unified", "file")
MAX_BATCH = 100  # Keepa's limit of ASINs per product request
_MASK = "***"
_T = TypeVar("_T")
_MAX_PAGES = 100_000


# ------------------------------------------------------------------------------------- key redaction
class _RedactKeyFilter(logging.Filter):
    """Masks ``key=...`` in httpx's "HTTP Request: GET <url>" log lines (Keepa's key is in the URL)."""

    _pattern = re.compile(r"([?&]key=)[^&\s\"']+")

    def _mask(self, value: Any) -> Any:
        # httpx passes the URL object itself; only its text form can carry the key.
        if isinstance(value, str | httpx.URL) and "key=" in str(value):
            return self._pattern.sub(r"\1" + _MASK, str(value))
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._mask(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._mask(record.msg)
        return True


_HTTPX_LOGGER = logging.getLogger("httpx")
if not any(isinstance(f, _RedactKeyFilter) for f in _HTTPX_LOGGER.filters):
    _HTTPX_LOGGER.addFilter(_RedactKeyFilter())


def _scrub(text: str, key: str) -> str:
    return text.replace(key, _MASK) if key and key in text else text


# ------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SourcedResponse(RawResponse):
    """A ``RawResponse`` that names its source: a Keepa fetch also stores the unified API's universe
    pages, which must be parsed as ``unified`` rows (the ingest asset groups rows by this)."""

    source: str = "keepa"


@dataclass
class KeepaFetchReport(FetchReport):
    """``FetchReport`` plus Keepa's token accounting (all counts, so a ranged run can sum them)."""

    tokens_consumed: int = 0
    token_wait_s: float = 0.0
    budget_capped: int = 0  # ASINs not requested: the run's token budget was spent
    wait_capped: int = 0  # ASINs not requested: the next token wait exceeded max_token_wait_s
    tokens_left: int | None = None  # the last status seen (not summed into metadata)
    stop_reason: str = ""

    def as_metadata(self) -> dict[str, int | float | str]:
        meta = super().as_metadata()
        meta.update(
            tokens_consumed=self.tokens_consumed,
            token_wait_s=round(self.token_wait_s, 3),
            budget_capped_asins=self.budget_capped,
            wait_capped_asins=self.wait_capped,
        )
        return meta


# ------------------------------------------------------------------------------------ token status
def project_status(status: TokenStatus, elapsed_s: float) -> TokenStatus:
    """``status`` as it should stand ``elapsed_s`` seconds after it was reported.

    Keepa adds ``refillRate`` tokens once a minute, the first time ``refillIn`` ms after the report,
    and lets tokens above an hour's refill expire; another consumer of the key can only make the real
    balance lower, which the next response (or 429) corrects.
    """
    if elapsed_s <= 0:
        return status
    first = status.refill_in_ms / 1000
    if elapsed_s < first:
        return TokenStatus(
            status.tokens_left, int(status.refill_in_ms - elapsed_s * 1000), status.refill_rate_per_min
        )
    ticks = 1 + int((elapsed_s - first) // 60)
    cap = status.refill_rate_per_min * 60
    tokens = status.tokens_left
    if tokens < cap:
        tokens = min(cap, tokens + ticks * status.refill_rate_per_min)
    next_in = 60.0 - ((elapsed_s - first) % 60.0)
    return TokenStatus(tokens, int(next_in * 1000), status.refill_rate_per_min)


class _StatusBoard:
    """Last token status per (server, key) in this process, with the clock time it was seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[TokenStatus, float]] = {}

    def get(self, scope: str, now: float) -> TokenStatus | None:
        with self._lock:
            entry = self._entries.get(scope)
        if entry is None:
            return None
        status, seen = entry
        return project_status(status, now - seen)

    def put(self, scope: str, status: TokenStatus, now: float) -> None:
        with self._lock:
            self._entries[scope] = (status, now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_STATUS = _StatusBoard()


def reset_token_status() -> None:
    """Forget every remembered Keepa token status (tests)."""
    _STATUS.clear()


# ------------------------------------------------------------------------------------------ resource
class KeepaMissingKeyError(ValueError):
    """The Keepa access key is not in the environment (the message names the variable, no value)."""


class KeepaClient(UpstreamClient):
    """Keepa's product API over httpx: token-aware waits, 429 recovery, a per-run token budget."""

    source: ClassVar[str] = "keepa"

    base_url: str = "https://api.keepa.com"
    api_key_env: str = KEEPA_API_KEY_ENV  # the key itself never enters config, settings or reprs
    token_budget: int = 10_000  # max tokens one run may spend
    batch_size: int = MAX_BATCH
    history_days: int = 3  # minimum ``days``: the partition day plus margin for carried values
    stats_days: int = 30  # ``stats`` (free): gives buyBoxIsPrimeEligible for attribute_flag_count
    rating: bool = True  # csv[16] rating, csv[17] review count (up to +1 token a product)
    aplus: bool = True  # has_aplus (free)
    videos: bool = True  # the video attribute flag (free)
    buybox: bool = False  # buybox_seller (+2 tokens a product)
    timeout: float = 30.0
    qpm: int = 60  # HTTP requests per minute (pacing only; tokens are the real limit)
    burst: int = 60
    max_attempts: int = 5
    base_delay: float = 0.5
    jitter: float = 0.25
    max_delay: float = 30.0
    max_token_wait_s: float = 3600.0  # a longer single wait stops the fetch (rest reported missing)
    universe_source: str = "unified"  # "unified" (the unified API's universe route) or "file"
    universe_base_url: str = "http://127.0.0.1:8765"
    universe_token_env: str = "ASIN_PLATFORM_API_TOKEN"
    universe_page_size: int = 1000
    tracked_asins_path: str = "config/tracked_asins/{site}.txt"
    track_known_asins: bool = True  # the ingest asset adds dim_asin's ASINs of the site

    _spent: int = PrivateAttr(default=0)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> KeepaClient:
        """From typed settings: base URL, budget, the ``keepa`` rate limit, the retry policy."""
        limit = settings.rate_limit("keepa")
        retry = settings.retry_policy
        config: dict[str, Any] = dict(
            base_url=settings.upstream.keepa_base_url,
            token_budget=settings.upstream.keepa_token_budget,
            timeout=limit.timeout,
            qpm=limit.qpm,
            burst=limit.burst,
            max_attempts=retry.max_attempts,
            base_delay=retry.base_delay,
            jitter=retry.jitter,
            max_delay=retry.max_delay,
            universe_base_url=settings.upstream.base_url,
            universe_page_size=settings.upstream.page_size,
        )
        config.update(overrides)
        return cls(**config)

    # -- run-scoped budget ---------------------------------------------------------------------
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster builds this resource once per run: the budget is per run.
        self._spent = 0

    @property
    def tokens_spent(self) -> int:
        """Tokens spent against ``token_budget`` since the run (or the last ``reset_budget``) began."""
        return self._spent

    def reset_budget(self) -> None:
        self._spent = 0

    # -- hooks (the simulated client overrides these) --------------------------------------------
    def api_key(self) -> str:
        """The access key from the environment; raises ``KeepaMissingKeyError`` when it is unset."""
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise KeepaMissingKeyError(
                f"Keepa access key: environment variable {self.api_key_env} is not set "
                "(needed only for sites whose upstream.source_by_site is 'keepa')"
            )
        return key

    def _universe_token(self) -> str:
        token = os.environ.get(self.universe_token_env, "").strip()
        if not token:
            raise ValueError(
                f"Keepa universe from the unified API: environment variable {self.universe_token_env} "
                "is not set (or use universe_source='file')"
            )
        return token

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        return None  # the real network

    def _universe_transport(self) -> httpx.AsyncBaseTransport | None:
        return None

    def _scope(self) -> str:
        """Who owns the token bucket besides the key: the server."""
        return self.base_url.rstrip("/")

    def _clock(self) -> float:
        return time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _headers(self, day: date) -> dict[str, str]:
        return {"User-Agent": "asin-platform", "Accept-Encoding": "gzip"}

    def _as_of(self, day: date) -> datetime:
        """The instant the server's data will be as of (the real service: now)."""
        return datetime.now(UTC)

    # -- request shape ---------------------------------------------------------------------------
    def cost_per_asin(self) -> int:
        """Worst-case tokens per product of one request (see the module docstring)."""
        return 1 + int(self.rating) + 2 * int(self.buybox)

    def request_params(self, site: str, day: date, asins: Sequence[str]) -> dict[str, str]:
        """The product request's query parameters, without the key."""
        as_of = self._as_of(day).date()
        days = max(self.history_days, (as_of - day).days + 2)
        params = {
            "domain": str(SITE_TO_DOMAIN[site]),
            "asin": ",".join(asins),
            "stats": str(self.stats_days),
            "history": "1",
            "days": str(days),
        }
        for name in ("rating", "aplus", "videos", "buybox"):
            if getattr(self, name):
                params[name] = "1"
        return params

    def _validate(self) -> None:
        problems = []
        if not 1 <= self.batch_size <= MAX_BATCH:
            problems.append(f"batch_size must be 1..{MAX_BATCH}, got {self.batch_size}")
        if self.token_budget < 0:
            problems.append(f"token_budget must be >= 0, got {self.token_budget}")
        if self.history_days < 1:
            problems.append(f"history_days must be >= 1, got {self.history_days}")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.qpm < 1 or self.burst < 1:
            problems.append(f"qpm and burst must be >= 1, got {self.qpm}, {self.burst}")
        if self.universe_source not in UNIVERSE_SOURCES:
            problems.append(
                f"universe_source must be one of {UNIVERSE_SOURCES}, got {self.universe_source!r}"
            )
        if problems:
            raise ValueError("invalid Keepa client config: " + "; ".join(problems))

    # -- fetch -----------------------------------------------------------------------------------
    def fetch_day(
        self,
        site: str,
        day: date,
        progress: Callable[[str], None] | None = None,
        *,
        extra_asins: Sequence[str] = (),
    ) -> DayFetch:
        """Fetch the products of the site's universe (plus ``extra_asins``) for ``day``."""
        self._validate()
        if site not in SITE_TO_DOMAIN:
            raise ValueError(f"site {site!r} has no Keepa domain; Keepa sites: {sorted(SITE_TO_DOMAIN)}")
        key = self.api_key()
        try:
            return _run_sync(lambda: self._fetch_day_async(site, day, progress, key, list(extra_asins)))
        except (UpstreamError, KeepaMissingKeyError):
            raise
        except Exception as exc:
            # Belt and braces: an exception text that somehow carries the URL must not leak the key.
            text = str(exc)
            if key in text:
                raise RuntimeError(f"Keepa fetch {site} {day} failed: {_scrub(text, key)}") from None
            raise

    async def _fetch_day_async(
        self,
        site: str,
        day: date,
        progress: Callable[[str], None] | None,
        key: str,
        extra_asins: list[str],
    ) -> DayFetch:
        started = time.perf_counter()
        ctx = _Context(self, key)
        universe, responses = await self._universe(ctx, site, day)
        universe = list(dict.fromkeys([*universe, *extra_asins]))
        report = KeepaFetchReport(site=site, day=day, source=self.source, tracked_asins=len(universe))
        if progress is not None:
            progress(f"keepa {site} {day}: {len(universe)} ASINs, {self.cost_per_asin()} tokens/ASIN at most")
        received: set[str] = set()
        missing: list[str] = []
        per_asin = self.cost_per_asin()
        async with httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(day),
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport(),
        ) as http:
            ctx.http = http
            position = 0
            last_decile = 0
            while position < len(universe):
                status = await ctx.status()
                size = min(self.batch_size, len(universe) - position)
                if status is not None and status.refill_rate_per_min > 0:
                    # Never ask for more than the bucket can hold (an hour of refill): it could never be paid.
                    size = min(size, max(1, status.refill_rate_per_min * 60 // per_asin))
                affordable = (self.token_budget - self._spent) // per_asin
                if affordable < 1:
                    rest = universe[position:]
                    report.budget_capped = len(rest)
                    report.stop_reason = (
                        f"token budget of {self.token_budget} spent; {len(rest)} ASINs not requested"
                    )
                    missing.extend(rest)
                    break
                batch = tuple(universe[position : position + min(size, affordable)])
                outcome = await ctx.product(site, day, batch, per_asin * len(batch))
                if outcome.stopped:
                    rest = universe[position:]
                    report.wait_capped = len(rest)
                    report.stop_reason = outcome.stopped
                    missing.extend(rest)
                    break
                position += len(batch)
                assert outcome.raw is not None
                responses.append(outcome.raw)
                got = {
                    p["asin"]
                    for p in outcome.products
                    if isinstance(p, dict) and isinstance(p.get("asin"), str)
                }
                got &= set(batch)
                received |= got
                missing.extend(a for a in batch if a not in got)
                if progress is not None and universe:
                    decile = position * 10 // len(universe)
                    if decile > last_decile:
                        last_decile = decile
                        progress(
                            f"keepa {site} {day}: {position}/{len(universe)} ASINs, "
                            f"{ctx.consumed} tokens, {ctx.counters.retries} retries, "
                            f"waited {ctx.waited:.1f}s for tokens"
                        )
        counters = ctx.counters
        report.received_asins = {"products": len(received)}
        report.missing_asins = {kind: [] for kind in BATCH_ENDPOINTS}
        report.missing_asins["products"] = list(dict.fromkeys(missing))
        report.requests = len(responses)
        report.retries = counters.retries
        report.throttled = counters.throttled
        report.server_errors = counters.server_errors
        report.timeouts = counters.timeouts
        report.connection_errors = counters.connection_errors
        report.malformed = counters.malformed
        report.failed_requests = sum(1 for r in responses if r.error is not None)
        report.token_wait_s = ctx.waited
        report.tokens_consumed = ctx.consumed
        last = await ctx.status(fetch=False)
        report.tokens_left = last.tokens_left if last is not None else None
        report.elapsed_s = time.perf_counter() - started
        if progress is not None:
            progress(
                f"keepa {site} {day} done: {len(received)}/{len(universe)} products, "
                f"{report.tokens_consumed} tokens, {report.http_calls} calls, {report.failed_requests} failed"
                + (f"; stopped: {report.stop_reason}" if report.stop_reason else "")
            )
        return DayFetch(site=site, day=day, universe=universe, responses=responses, report=report)

    # -- universe --------------------------------------------------------------------------------
    async def _universe(self, ctx: _Context, site: str, day: date) -> tuple[list[str], list[RawResponse]]:
        if self.universe_source == "file":
            return self._universe_from_file(site), []
        token = self._universe_token()
        responses: list[RawResponse] = []
        asins: list[str] = []
        params = {"date": day.isoformat(), "page_size": str(self.universe_page_size)}
        async with httpx.AsyncClient(
            base_url=self.universe_base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "asin-platform"},
            timeout=httpx.Timeout(self.timeout),
            transport=self._universe_transport(),
        ) as http:
            page_token: str | None = None
            seen: set[str] = set()
            for _ in range(_MAX_PAGES):
                page_params = dict(params)
                if page_token is not None:
                    page_params["page_token"] = page_token
                raw, body = await ctx.universe_page(http, site, page_params, token)
                responses.append(raw)
                if body is None:
                    raise UpstreamError(UNIVERSE, raw.status, raw.attempts, site=site, detail=raw.error or "")
                asins.extend(a for a in body["asins"] if isinstance(a, str))
                nxt = body.get("next_page_token")
                if nxt in (None, "") or str(nxt) in seen:
                    break
                page_token = str(nxt)
                seen.add(page_token)
        return list(dict.fromkeys(asins)), responses

    def _universe_from_file(self, site: str) -> list[str]:
        path = Path(self.tracked_asins_path.format(site=site))
        if not path.exists():
            raise ValueError(f"Keepa tracked-ASIN list for {site} not found: {path}")
        asins = []
        for line in path.read_text().splitlines():
            asin = line.split("#", 1)[0].strip()
            if asin:
                asins.append(asin)
        return list(dict.fromkeys(asins))


# ------------------------------------------------------------------------------------------ machinery
@dataclass
class _Counters:
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0


@dataclass
class _Outcome:
    raw: RawResponse | None
    products: list[Any] = field(default_factory=list)
    stopped: str = ""  # why the fetch must stop before this request (token wait too long)


class _Context:
    """One fetch_day's state: the key, the HTTP client, the pacer, counters and token status."""

    def __init__(self, cfg: KeepaClient, key: str) -> None:
        self.cfg = cfg
        self.key = key
        self.http: httpx.AsyncClient | None = None
        self.scope = hashlib.sha256(f"{cfg._scope()}\0{key}".encode()).hexdigest()
        self.counters = _Counters()
        self.random = random.Random()
        self.waited = 0.0
        self.consumed = 0
        rate = cfg.qpm / 60.0
        self.pacer: TokenBucket = shared_bucket(cfg._scope() + "#keepa", key, rate, float(cfg.burst))

    def backoff(self, attempt: int) -> float:
        cfg = self.cfg
        return backoff_delay(attempt, cfg.base_delay, cfg.max_delay, cfg.jitter, self.random.random())

    def charge(self, tokens: int) -> None:
        """Count ``tokens`` against this fetch and the run's budget."""
        self.consumed += tokens
        self.cfg._spent += tokens

    def observe(self, body: Any) -> None:
        """Remember the token status a Keepa body carries (every response does, 429s included)."""
        if not isinstance(body, dict):
            return
        try:
            status = parse_token_status(body)
        except ValueError:
            return
        _STATUS.put(self.scope, status, self.cfg._clock())

    async def status(self, *, fetch: bool = True) -> TokenStatus | None:
        """The projected token status; asks the free ``/token`` route when none is known yet."""
        status = _STATUS.get(self.scope, self.cfg._clock())
        if status is not None or not fetch or self.http is None:
            return status
        attempt = await self._send(TOKEN_ENDPOINT, {})
        if attempt.status == 200:
            try:
                self.observe(json.loads(attempt.text))
            except ValueError:
                pass
        return _STATUS.get(self.scope, self.cfg._clock())

    async def _send(self, path: str, params: dict[str, str]) -> _Attempt:
        assert self.http is not None
        await self.pacer.acquire()
        try:
            # asyncio.timeout as well as httpx's: transports without network timeouts (ASGI) must not
            # hang a run either.
            async with asyncio.timeout(self.cfg.timeout):
                response = await self.http.get(path, params={**params, "key": self.key})
        except (httpx.TimeoutException, TimeoutError):
            return _Attempt(0, "", "timeout")
        except httpx.TransportError:
            return _Attempt(0, "", "connection error")
        return _Attempt(response.status_code, response.text, None)

    async def product(self, site: str, day: date, batch: tuple[str, ...], cost: int) -> _Outcome:
        """One product request with token waits and retries."""
        cfg = self.cfg
        params = cfg.request_params(site, day, batch)
        stored = {**params, "key": _MASK}
        attempt = 0
        while True:
            status = await self.status()
            if status is not None:
                wait = wait_seconds(status, cost)
                if wait > cfg.max_token_wait_s:
                    return _Outcome(
                        None,
                        stopped=(
                            f"next batch needs {cost} tokens, {status.tokens_left} left at "
                            f"{status.refill_rate_per_min}/min: a {wait:.0f}s wait exceeds "
                            f"max_token_wait_s={cfg.max_token_wait_s:.0f}"
                        ),
                    )
                if wait > 0:
                    self.waited += wait
                    await cfg._sleep(wait)
            attempt += 1
            result = await self._send(PRODUCT_ENDPOINT, params)
            fetched_at = datetime.now(UTC)
            body: Any = None
            if result.failure is None:
                try:
                    body = json.loads(result.text)
                except ValueError:
                    body = None
                self.observe(body)
                if isinstance(body, dict) and isinstance(body.get("timestamp"), int):
                    fetched_at = datetime.fromtimestamp(body["timestamp"] / 1000, UTC)
            delay = 0.0
            retryable = True
            consumed = _consumed(body, 0)
            if result.failure is not None:
                what = result.failure
                if result.failure == "timeout":
                    self.counters.timeouts += 1
                else:
                    self.counters.connection_errors += 1
                delay = self.backoff(attempt)
            elif result.status == 200:
                if isinstance(body, dict) and isinstance(body.get("products"), list):
                    raw = SourcedResponse(
                        PRODUCT_ENDPOINT,
                        stored,
                        200,
                        attempt,
                        fetched_at,
                        _scrub(result.text, self.key),
                        None,
                        batch,
                    )
                    self.charge(_consumed(body, cost))
                    return _Outcome(raw, body["products"])
                # Charged but unreadable: the budget assumes the worst (the tokens may be gone).
                consumed = _consumed(body, cost)
                what = "malformed JSON" if body is None else "malformed body (no 'products' list)"
                self.counters.malformed += 1
                delay = self.backoff(attempt)
            elif result.status == 429:
                what = "HTTP 429"
                self.counters.throttled += 1
                # The body's status (just observed) makes the next loop wait refillIn + the deficit;
                # without one, back off.
                if not (isinstance(body, dict) and "tokensLeft" in body):
                    delay = self.backoff(attempt)
            elif result.status in (401, 402, 403):
                # Every later request would fail the same way: stop the fetch (never echo the key).
                raise UpstreamError(
                    PRODUCT_ENDPOINT, result.status, attempt, site=site, detail="access key rejected"
                )
            elif result.status >= 500:
                what = f"HTTP {result.status}"
                self.counters.server_errors += 1
                delay = self.backoff(attempt)
            else:  # 400 and the like: the same request would fail again
                what = f"HTTP {result.status}" + _error_detail(body, self.key)
                retryable = False
            self.charge(consumed)  # tokens charged by a failed attempt still count
            # A retry may be charged again (an unreadable 200 was): only retry what the budget can pay.
            affordable = cfg.token_budget - cfg._spent >= cost
            if retryable and attempt < cfg.max_attempts and affordable:
                self.counters.retries += 1
                if delay > 0:
                    await cfg._sleep(delay)
                continue
            if retryable and attempt < cfg.max_attempts:
                what += " (no token budget left to retry)"
            plural = "" if attempt == 1 else "s"
            raw = SourcedResponse(
                PRODUCT_ENDPOINT,
                stored,
                result.status,
                attempt,
                fetched_at,
                _scrub(result.text, self.key),
                f"{what} after {attempt} attempt{plural}",
                batch,
            )
            return _Outcome(raw, [])

    async def universe_page(
        self, http: httpx.AsyncClient, site: str, params: dict[str, str], token: str
    ) -> tuple[RawResponse, dict[str, Any] | None]:
        """One page of the unified API's universe route, with retries (stored as a ``unified`` row)."""
        path = UNIVERSE.format(site=site)
        attempt = 0
        while True:
            attempt += 1
            failure = None
            status, text, retry_after = 0, "", None
            try:
                async with asyncio.timeout(self.cfg.timeout):
                    response = await http.get(path, params=params)
                status, text = response.status_code, response.text
                retry_after = response.headers.get("Retry-After")
            except (httpx.TimeoutException, TimeoutError):
                failure = "timeout"
                self.counters.timeouts += 1
            except httpx.TransportError:
                failure = "connection error"
                self.counters.connection_errors += 1
            fetched_at = datetime.now(UTC)
            delay = self.backoff(attempt)
            what = failure or f"HTTP {status}"
            if failure is None and status == 200:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None
                if isinstance(body, dict) and isinstance(body.get("asins"), list):
                    raw = SourcedResponse(
                        UNIVERSE,
                        params,
                        200,
                        attempt,
                        fetched_at,
                        _scrub(text, token),
                        None,
                        (),
                        source="unified",
                    )
                    return raw, body
                what = "malformed body (no 'asins' list)"
                self.counters.malformed += 1
            elif status == 429:
                self.counters.throttled += 1
                try:
                    delay = max(0.0, float(retry_after)) if retry_after else delay
                except ValueError:
                    pass
            elif status == 401:
                raise UpstreamError(UNIVERSE, 401, attempt, site=site, detail="token rejected")
            elif status >= 500:
                self.counters.server_errors += 1
            elif failure is None:
                attempt_error = f"{what} after {attempt} attempt{'' if attempt == 1 else 's'}"
                return SourcedResponse(
                    UNIVERSE, params, status, attempt, fetched_at, _scrub(text, token), attempt_error, (),
                    source="unified",
                ), None  # fmt: skip
            if attempt < self.cfg.max_attempts:
                self.counters.retries += 1
                await self.cfg._sleep(delay)
                continue
            error = f"{what} after {attempt} attempt{'' if attempt == 1 else 's'}"
            return SourcedResponse(
                UNIVERSE,
                params,
                status,
                attempt,
                fetched_at,
                _scrub(text, token),
                error,
                (),
                source="unified",
            ), None


@dataclass
class _Attempt:
    status: int  # 0 when there was no response
    text: str
    failure: str | None  # "timeout" / "connection error" when there was no response


def _consumed(body: Any, default: int) -> int:
    """``tokensConsumed`` of a Keepa body (the ground truth), else ``default``."""
    if isinstance(body, dict):
        value = body.get("tokensConsumed")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default


def _error_detail(body: Any, key: str) -> str:
    """ " (type: message)" from Keepa's error object, scrubbed of the key."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return ""
    err = body["error"]
    parts = [str(p) for p in (err.get("type"), err.get("message")) if p]
    return f" ({_scrub(': '.join(parts), key)[:200]})" if parts else ""


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine from sync code, whether or not an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:  # outside the except block: a fetch error must not chain "no running event loop"
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="keepa") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


# ----------------------------------------------------------------------------------------- simulated
SIMULATED_KEEPA_KEY = "simulated-keepa-key"


class VirtualClock:
    """Simulated time for the token bucket: a sleep advances it instantly (tests wait minutes in ms)."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self.slept = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class SimulatedKeepaClient(KeepaClient):
    """The same client against the in-process simulator's Keepa mode over ``httpx.ASGITransport``.

    One app per configuration, kept for the process (so token balances persist across fetches, like a
    real key's): ``simulator_app().state.keepa`` holds the buckets, ``.state.stats`` the counters. The
    universe comes from the same app's unified route. With ``virtual_time`` the token bucket runs on a
    ``VirtualClock`` that the client's waits advance, so a test can wait "ten minutes" for tokens
    instantly and assert how long it waited (``virtual_clock().slept``). With ``sim_as_of="day_end"``
    each request asks for the market as of the last minute of the partition day (header
    ``X-Simulated-Now``), so a payload describes that day exactly as the unified API does; ``"clock"``
    uses the real clock like the real service. The key is ``api_key_env``'s value when set, else
    ``SIMULATED_KEEPA_KEY``.
    """

    base_url: str = "http://keepa.simulator.local"  # only names the host in URLs; nothing is resolved
    universe_base_url: str = "http://simulator.local"
    qpm: int = 60_000
    burst: int = 1_000
    sim_seed: int = 7
    sim_asins_per_site: int = 2000
    sim_epoch: str = "2025-01-01"
    sim_sites: list[str] = ["US", "UK", "DE", "JP"]
    sim_refill_rate: int = 6000  # the key's plan: tokens per minute (an hour's worth at most)
    sim_initial_tokens: int | None = None  # None: a full bucket
    sim_unified_token: str = "simulated-token"
    sim_as_of: str = "day_end"  # or "clock"
    virtual_time: bool = True
    fault_seed: int = 0
    error_5xx_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    malformed_rate: float = 0.0

    @classmethod
    def from_simulator_settings(cls, settings: Settings, **overrides: Any) -> SimulatedKeepaClient:
        """The simulator of ``settings.simulator`` for ``settings.sites``, retry and budget from settings."""
        sim = settings.simulator
        config: dict[str, Any] = dict(
            sim_seed=sim.seed,
            sim_asins_per_site=sim.asins_per_site,
            sim_epoch=sim.epoch.isoformat(),
            sim_sites=list(settings.sites),
            token_budget=settings.upstream.keepa_token_budget,
            max_attempts=settings.retry_policy.max_attempts,
            base_delay=settings.retry_policy.base_delay,
            jitter=settings.retry_policy.jitter,
            max_delay=settings.retry_policy.max_delay,
        )
        config.update(overrides)
        return cls(**config)

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "").strip() or SIMULATED_KEEPA_KEY

    def _universe_token(self) -> str:
        return self.sim_unified_token

    def _app_key(self) -> tuple[Any, ...]:
        return (
            (self.sim_seed, tuple(self.sim_sites), self.sim_asins_per_site, self.sim_epoch),
            hashlib.sha256(self.api_key().encode()).hexdigest(),  # never the key in clear
            self.sim_unified_token,
            self.sim_refill_rate,
            self.sim_initial_tokens,
            self.virtual_time,
            (
                self.fault_seed,
                self.error_5xx_rate,
                self.latency_ms,
                self.timeout_rate,
                self.timeout_seconds,
                self.malformed_rate,
            ),
        )

    def _simulation(self) -> tuple[Any, VirtualClock]:
        # Imported here: the simulator (numpy market generation) is only needed when simulating.
        from asin_platform.simulator import FaultConfig, KeepaPlan, Market, MarketConfig, Quota, create_app

        key = self._app_key()
        with _SIM_LOCK:
            entry = _SIM_APPS.get(key)
            if entry is None:
                market_key = key[0]
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
                vclock = VirtualClock()
                app = create_app(
                    market,
                    tokens={self.sim_unified_token: Quota(60_000, 1_000)},
                    faults=FaultConfig(
                        seed=self.fault_seed,
                        error_5xx_rate=self.error_5xx_rate,
                        latency_ms=self.latency_ms,
                        timeout_rate=self.timeout_rate,
                        timeout_seconds=self.timeout_seconds,
                        malformed_rate=self.malformed_rate,
                    ),
                    clock=vclock.now if self.virtual_time else time.monotonic,
                    keepa_keys={self.api_key(): KeepaPlan(self.sim_refill_rate, self.sim_initial_tokens)},
                )
                entry = _SIM_APPS[key] = (app, vclock)
        return entry

    def simulator_app(self) -> Any:
        """The (cached) Starlette app of this configuration: ``.state.keepa``, ``.state.stats``."""
        return self._simulation()[0]

    def virtual_clock(self) -> VirtualClock:
        return self._simulation()[1]

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        # raise_app_exceptions=False: a simulator bug answers 500 like a real server, and is retried.
        return httpx.ASGITransport(app=self.simulator_app(), raise_app_exceptions=False)

    def _universe_transport(self) -> httpx.AsyncBaseTransport | None:
        return self._transport()

    def _scope(self) -> str:
        # One simulated server per configuration, so one remembered token status per configuration.
        return f"{self.base_url.rstrip('/')}#{hash(self._app_key()) & 0xFFFFFFFF:08x}"

    def _clock(self) -> float:
        return self.virtual_clock().now() if self.virtual_time else time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        if self.virtual_time:
            await self.virtual_clock().sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def _headers(self, day: date) -> dict[str, str]:
        headers = super()._headers(day)
        if self.sim_as_of == "day_end":
            from asin_platform.simulator.keepa import SIMULATED_NOW_HEADER, day_end

            headers[SIMULATED_NOW_HEADER] = day_end(day).isoformat()
        return headers

    def _as_of(self, day: date) -> datetime:
        if self.sim_as_of == "day_end":
            from asin_platform.simulator.keepa import day_end

            return day_end(day)
        return super()._as_of(day)


_SIM_APPS: dict[tuple[Any, ...], tuple[Any, VirtualClock]] = {}
_SIM_MARKETS: dict[tuple[Any, ...], Any] = {}
_SIM_LOCK = threading.Lock()


def reset_simulated_keepa(*, keep_markets: bool = False) -> None:
    """Forget the cached simulated Keepa apps (so their token buckets), the remembered token statuses
    and, unless ``keep_markets``, the generated markets (tests that need a fresh key)."""
    with _SIM_LOCK:
        _SIM_APPS.clear()
        if not keep_markets:
            _SIM_MARKETS.clear()
    _STATUS.clear()
