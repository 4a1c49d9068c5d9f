"""The one HTTP core every upstream source uses: send, rate-limit, retry, count, page, scrub.

A source module (``unified.py``, ``keepa.py``) knows its endpoints and its format; it describes a
request as a ``Request`` and how to read answers as an ``Exchange`` (parse a usable body, read an
error body, which statuses mean "the credential is refused"), and ``HttpCore.request`` does the rest:

- **Rate limiting**: every attempt takes a token from the shared client-side bucket
  (``ratelimit.py``), at most ``concurrency`` in flight; quota headers (``X-RateLimit-*``) are followed.
- **Retries**: timeouts, dropped connections, 5xx, 429 and unreadable 200s are retried; other 4xx are
  not (the same request would fail again); a refused credential raises ``UpstreamError`` at once.
  A 429 drains the bucket for ``Retry-After`` seconds (every request of the credential waits, and the
  bucket spends a smaller share of its rate for a while); other failures back off exponentially with
  jitter (``backoff_delay``).
- **Time budget**: with ``RetryPolicy.budget_s`` set, what the server asks us to wait for (429s,
  5xx, timeouts, drops) is retried for as long as the next wait still ends within ``budget_s`` of
  the request's first attempt, whatever the count; ``max_attempts`` then bounds only unreadable
  bodies. Without it (``None``), ``max_attempts`` bounds every retry.
- **Failed for good**: a request that still fails becomes a ``RawResponse`` with ``error`` saying
  what the last attempt got, how many attempts and how long it took, and why it stopped.
- **Unreachable upstream** (``reachability.Breaker``): a request whose last ``max_attempts`` attempts all failed
  before reaching the server (connection refused, DNS, connect timeout) counts against the fetch's
  breaker; after ``RetryPolicy.unreachable_after`` such requests in a row, with no attempt of any
  request reaching the server in between, the fetch makes no further attempt: its requests are
  failed for good (``not sent`` if they never made one) and the ``DayFetch`` says ``unreachable``
  (the universe, ``Request.essential``, opens it alone and raises ``UpstreamUnreachable``: nothing
  can be fetched without it). Any answer (a 200, a 429, a 5xx, a 4xx) and any failure after the
  connection was made (a drop, a read timeout) resets the count, so a flaky upstream never trips it;
  until it opens, every request keeps retrying within its budget as before.
- **Secrets**: every stored body, error text and log line is scrubbed of the credentials (``scrub``);
  URLs that carry a key in the query string are masked in httpx's log lines.
- **Clock**: ``clock`` and ``sleep`` are injectable, so tests wait out minutes of Retry-After in no time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import dagster as dg
import httpx

from asin_platform.resources.upstream.base import (
    MissingSecretError,
    RawResponse,
    SourcedResponse,
    UpstreamClient,
    UpstreamError,
)
from asin_platform.resources.upstream.exchange import (
    Attempt,
    Counters,
    Exchange,
    Outcome,
    Request,
    _Verdict,
)
from asin_platform.resources.upstream.ratelimit import TokenBucket
from asin_platform.resources.upstream.reachability import Breaker, ConnectPhase
from asin_platform.retrying import backoff_delay, parse_retry_after

if TYPE_CHECKING:
    from asin_platform.settings import Settings

MASK = "***"
# Shortest secret masked inside stored data bodies (``HttpCore.scrub``): 8 characters of a token do
# not occur in a JSON payload by chance.
MIN_DATA_SCRUB_CHARS = 8
# Bounds a pagination that never ends (a server bug would otherwise loop forever).
MAX_PAGES = 100_000
_T = TypeVar("_T")
log = logging.getLogger("asin_platform.upstream")


# ------------------------------------------------------------------------------------- configuration
class HttpUpstreamClient(UpstreamClient):
    """Fields every HTTP source shares (pacing, timeout, retry policy) and how secrets resolve."""

    timeout: float = 10.0
    qpm: int = 6000
    burst: int = 50
    max_attempts: int = 5
    base_delay: float = 0.5
    jitter: float = 0.25
    max_delay: float = 30.0
    # Per-request time budget for waits the server asks for (None: count-bounded, max_attempts).
    retry_budget_s: float | None = None
    # Requests in a row that gave up on reaching the server before a fetch stops (Breaker).
    unreachable_after: int = 3

    @staticmethod
    def retry_config(settings: Settings) -> dict[str, Any]:
        """The retry fields from settings ``retry_policy``: one place for every client's builder."""
        retry = settings.retry_policy
        return dict(
            max_attempts=retry.max_attempts,
            base_delay=retry.base_delay,
            jitter=retry.jitter,
            max_delay=retry.max_delay,
            retry_budget_s=settings.retry.budget_s,
            unreachable_after=retry.unreachable_after,
        )

    @classmethod
    def http_config(cls, settings: Settings, source: str) -> dict[str, Any]:
        """Pacing and timeout from settings ``rate_limits.<source>``, plus the retry fields."""
        limit = settings.rate_limit(source)
        return dict(timeout=limit.timeout, qpm=limit.qpm, burst=limit.burst, **cls.retry_config(settings))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts,
            self.base_delay,
            self.jitter,
            self.max_delay,
            self.retry_budget_s,
            self.unreachable_after,
        )

    def _validate_http(self) -> list[str]:
        problems = []
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.qpm < 1 or self.burst < 1:
            problems.append(f"qpm and burst must be >= 1, got {self.qpm}, {self.burst}")
        if self.retry_budget_s is not None and self.retry_budget_s <= 0:
            problems.append(f"retry_budget_s must be > 0, got {self.retry_budget_s}")
        if self.unreachable_after < 1:
            problems.append(f"unreachable_after must be >= 1, got {self.unreachable_after}")
        return problems


def resolve_secret(value: Any, what: str, env: str = "") -> str:
    """A secret field's value: a string, or a ``dg.EnvVar`` read now (outside a Dagster run, which
    otherwise resolves it). Raises ``MissingSecretError`` naming the variable, never a value."""
    if isinstance(value, dg.EnvVar):
        env = value.env_var_name
        value = (value.get_value() or "").strip()
    if not value:
        where = f"environment variable {env} is not set" if env else "not set"
        raise MissingSecretError(f"{what}: {where}")
    return str(value)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    jitter: float = 0.25
    max_delay: float = 30.0
    budget_s: float | None = None
    # Breaker: requests in a row that gave up on reaching the server before the fetch stops.
    unreachable_after: int = 3


# ------------------------------------------------------------------------------------------ the core
class HttpCore:
    """One fetch's HTTP machinery: client, bucket, concurrency, counters, retry policy, secrets.

    Lives on one event loop, so the counters need no lock.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        bucket: TokenBucket,
        policy: RetryPolicy,
        *,
        secrets: Sequence[str] = (),
        concurrency: int = 1,
        semaphore: asyncio.Semaphore | None = None,
        headroom: float = 0.0,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = 10.0,
        breaker: Breaker | None = None,
    ) -> None:
        self.http = http
        self.bucket = bucket
        self.policy = policy
        self.secrets = tuple(s for s in secrets if s)
        # A shared semaphore keeps one limit across the fetches of a ranged run.
        self.semaphore = semaphore or asyncio.Semaphore(concurrency)
        self.headroom = headroom
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.timeout = timeout
        self.base = str(http.base_url).rstrip("/")
        # One per fetch when the client shares it across its sessions; else this session's own.
        self.breaker = breaker or Breaker(policy.unreachable_after, self.base)
        self.counters = Counters()
        self.random = random.Random()

    def scrub(self, text: str, *, data: bool = False) -> str:
        """``text`` without any secret: a server (or proxy) echoing a credential must not carry it
        into an error message, a log line or the warehouse.

        ``data``: ``text`` is a body stored as data. There a secret is masked only when it is at least
        ``MIN_DATA_SCRUB_CHARS`` long: a shorter one (a 1-3 character test or demo token) occurs in
        numbers and ASINs by chance, and masking those occurrences would corrupt every payload into
        quarantine, while a long one can only be in a body that echoes it."""
        for secret in self.secrets:
            if data and len(secret) < MIN_DATA_SCRUB_CHARS:
                continue
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def backoff(self, attempt: int) -> float:
        p = self.policy
        return backoff_delay(attempt, p.base_delay, p.max_delay, p.jitter, self.random.random())

    async def send(self, path: str, params: Mapping[str, str]) -> Attempt:
        async with self.semaphore:
            # Take the token only once a slot is ours, so a request never sits on a spent token
            # and the bucket's spacing is the spacing the server sees.
            await self.bucket.acquire()
            self.counters.http_calls += 1
            phase = ConnectPhase()
            try:
                # asyncio.timeout as well as httpx's: transports without network timeouts
                # (ASGI, mocks) must not hang a run either.
                async with asyncio.timeout(self.timeout):
                    response = await self.http.get(self._url(path, params), extensions={"trace": phase})
            except (httpx.TimeoutException, TimeoutError) as exc:
                reached = phase.reached(exc)
                cause = self._cause(exc)
                if not reached and cause == "TimeoutError":  # the guard's: say what timed out
                    cause = f"TimeoutError: no connection within {self.timeout:g}s"
                attempt = Attempt(0, "", None, "timeout", reached, cause)
            except httpx.TransportError as exc:
                attempt = Attempt(0, "", None, "connection error", phase.reached(exc), self._cause(exc))
            else:
                attempt = Attempt(response.status_code, response.text, response.headers, None)
        if attempt.reached:
            self.breaker.reached()
        if attempt.headers is not None:
            self._observe_quota(attempt.headers)
        return attempt

    def _cause(self, exc: BaseException) -> str:
        """``ConnectError: All connection attempts failed (Connection refused)``: the exception's type
        and text, scrubbed, with the system error underneath when the text does not say it."""
        name = "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
        text = str(exc).strip()
        inner: BaseException | None = exc
        for _ in range(10):  # the chain httpx -> httpcore -> anyio -> the OSError
            if inner is None or (isinstance(inner, OSError) and inner.errno):
                break
            inner = inner.__cause__ or inner.__context__
        if isinstance(inner, OSError) and inner.errno:
            reason = os.strerror(inner.errno)
            if reason not in text:
                text = f"{text} ({reason})" if text else reason
        text = self.scrub(text)[:200]
        return f"{name}: {text}" if text else name

    def _url(self, path: str, params: Mapping[str, str]) -> httpx.URL:
        """The absolute URL, parsed once. Handing httpx a relative path plus ``params`` makes it
        parse and validate the ~1 kB query of a 100-ASIN batch three times per request."""
        return httpx.URL(f"{self.base}{path}?{urlencode(params, safe=',')}")

    def _observe_quota(self, headers: httpx.Headers) -> None:
        """Follow the server's quota headers: never spend faster than its advertised qpm, never
        hold more tokens than it says remain (another process may share the credential)."""
        try:
            limit = headers.get("X-RateLimit-Limit")
            if limit is not None:
                qpm = float(limit)
                if self.bucket.observe_limit(qpm * (1.0 - self.headroom) / 60.0) and self.progress:
                    self.progress(f"server quota is {qpm:g} qpm, below the configured rate: following it")
            remaining = headers.get("X-RateLimit-Remaining")
            if remaining is not None:
                self.bucket.sync_remaining(float(remaining))
        except ValueError:
            pass  # a malformed header is not worth failing a request over

    def _judge(self, result: Attempt, exchange: Exchange, attempt: int, req: Request) -> _Verdict:
        """Classify one attempt: usable, retryable (and after what wait), or final."""
        c = self.counters
        if result.failure is not None:
            if result.failure == "timeout":
                c.timeouts += 1
            else:
                c.connection_errors += 1
            return _Verdict(result.failure, delay=self.backoff(attempt))
        if result.status == 200:
            return _Verdict("")  # parsed by the caller
        if result.status == 429:
            c.throttled += 1
            wait = exchange.throttle_wait(result)
            if wait is None:
                wait = retry_after(result.headers)
            return _Verdict(
                "HTTP 429", delay=wait if wait is not None else self.backoff(attempt), throttled=True
            )
        if result.status in exchange.fatal:
            raise UpstreamError(
                req.endpoint, result.status, attempt, site=req.site, detail=exchange.fatal[result.status]
            )
        if result.status >= 500:
            c.server_errors += 1
            return _Verdict(f"HTTP {result.status}", delay=self.backoff(attempt))
        # 400, 404, anything unexpected: the same request would fail again
        return _Verdict(f"HTTP {result.status}" + exchange.error_detail(result), retryable=False)

    def _may_retry(self, verdict: _Verdict, attempt: int, elapsed: float) -> tuple[bool, str]:
        """(retry?, why not) under the policy: by time for what the server asked, else by count."""
        budget = self.policy.budget_s
        if budget is not None and verdict.server_asked:
            if elapsed + verdict.delay <= budget:
                return True, ""
            return False, f"the next wait would overrun the retry budget of {budget:g}s"
        if attempt < self.policy.max_attempts:
            return True, ""
        return False, ""

    async def request(self, req: Request, exchange: Exchange) -> Outcome:
        """One logical request with retries: its ``RawResponse`` and, if usable, the parsed body."""
        path = req.endpoint.format(site=req.site)
        sent = {**req.params, **req.secret_params}
        started = self.clock()
        paused = 0.0  # waits of the source's own (Keepa's token waits) do not spend the retry budget
        attempt = 0
        unreached = 0  # attempts in a row that never reached the server
        counted = -1  # the breaker epoch this request last counted in
        result: Attempt | None = None
        what = ""  # what the last attempt got
        while True:
            if self.breaker.open:
                # The fetch proved the upstream unreachable: make no further attempt.
                return self._stopped(req, result, attempt, what, self.clock() - started - paused)
            before = self.clock()
            stopped = await exchange.before_attempt()
            paused += self.clock() - before
            if stopped:
                return Outcome(None, stopped=stopped)
            attempt += 1
            result = await self.send(path, sent)
            unreached = 0 if result.reached else unreached + 1
            fetched_at = exchange.fetched_at(result, datetime.now(UTC))
            verdict = self._judge(result, exchange, attempt, req)
            what = verdict.what
            body: Any = None
            if result.status == 200 and result.failure is None:
                body, problem = exchange.parse(result)
                if body is None:
                    self.counters.malformed += 1
                    verdict = _Verdict(problem, delay=self.backoff(attempt), server_asked=False)
            exchange.after_attempt(result, usable=body is not None)
            if body is not None:
                return Outcome(self._raw(req, result, attempt, fetched_at, None), body)
            elapsed = self.clock() - started - paused
            retry, why_not = self._may_retry(verdict, attempt, elapsed)
            blocker = exchange.retry_blocker() if verdict.retryable and retry else ""
            going_on = verdict.retryable and retry and not blocker
            if unreached and (unreached >= self.policy.max_attempts or not going_on):
                # Out of attempts to reach the server (the policy's count): one more request saying
                # the upstream is not there. One that spent its whole time budget without ever
                # reaching it says so alone (requests made one after another, Keepa's batches).
                whole_budget = not going_on and unreached == attempt and self.policy.budget_s is not None
                again = counted == self.breaker.epoch
                if not again or whole_budget:
                    counted = self.breaker.epoch
                    last = self._unreached_error(result.cause, unreached, elapsed)
                    if self.breaker.give_up(req, last, attempt, conclusive=whole_budget, counted=again):
                        if req.essential:
                            raise self.breaker.error()
                        going_on, why_not, blocker = False, self._stop_reason(), ""
            if going_on:
                self.counters.retries += 1
                log.debug(
                    "upstream %s: %s, retry %d in %.2fs",
                    path,
                    self.scrub(verdict.what),
                    attempt,
                    verdict.delay,
                )
                await self._wait(verdict)
                continue
            error = self._failed_error(verdict.what, attempt, elapsed, why_not or blocker)
            log.warning("upstream %s failed for good: %s", req.endpoint.format(site=req.site), error)
            return Outcome(self._raw(req, result, attempt, fetched_at, error))

    def _stop_reason(self) -> str:
        return f"upstream {self.breaker.base_url} unreachable, the fetch stopped"

    def _stopped(
        self, req: Request, result: Attempt | None, attempt: int, what: str, elapsed: float
    ) -> Outcome:
        """A request the open breaker stops before its next attempt: recorded as failed for good
        (``not sent`` when it never made one), so the partition says what it lacks. Without the
        universe (``essential``) nothing can be stored: that raises ``UpstreamUnreachable``."""
        if req.essential:
            raise self.breaker.error()
        if result is None:
            self.counters.not_sent += 1
            result = Attempt(0, "", None, "not sent", reached=False)
            error = f"not sent ({self._stop_reason()})"
        else:
            self.counters.retries -= 1  # the retry it was waiting for is not made
            error = self._failed_error(what, attempt, elapsed, self._stop_reason())
        return Outcome(self._raw(req, result, attempt, datetime.now(UTC), error))

    async def _wait(self, verdict: _Verdict) -> None:
        self.counters.retry_wait_s += verdict.delay
        if verdict.throttled:
            # The quota is the credential's: block every request of it, not just this one. The
            # retry then waits in bucket.acquire, so there is no separate sleep.
            self.bucket.penalize(verdict.delay)
        elif verdict.delay > 0 and not self.breaker.open:
            # A backoff ends early when the breaker opens: the request then stops at once.
            started = self.clock()
            sleeper = asyncio.ensure_future(self.sleep(verdict.delay))
            opened = asyncio.ensure_future(self.breaker.opened.wait())
            try:
                await asyncio.wait({sleeper, opened}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, opened):
                    task.cancel()
                await asyncio.gather(sleeper, opened, return_exceptions=True)
            if sleeper.cancelled():  # cut short by the breaker: count only what was waited
                self.counters.retry_wait_s -= max(0.0, verdict.delay - (self.clock() - started))

    def _unreached_error(self, cause: str, attempts: int, elapsed: float) -> str:
        """``ConnectError: ... (Connection refused) after 5 attempts in 7.6s``: why the breaker counted."""
        error = f"{cause or 'no connection'} after {attempts} attempt{'' if attempts == 1 else 's'}"
        return f"{error} in {elapsed:.1f}s" if self.policy.budget_s is not None else error

    def _failed_error(self, what: str, attempt: int, elapsed: float, why: str) -> str:
        plural = "" if attempt == 1 else "s"
        error = f"{self.scrub(what)} after {attempt} attempt{plural}"
        if self.policy.budget_s is not None:
            error += f" in {elapsed:.1f}s"
        return f"{error} ({why})" if why else error

    def _raw(
        self, req: Request, result: Attempt, attempt: int, fetched_at: datetime, error: str | None
    ) -> RawResponse:
        # A body the source accepted is data (scrubbed only of secrets that cannot collide with it);
        # a refused one is error text, scrubbed of every secret.
        body = self.scrub(result.text, data=error is None)
        params = {**req.params, **req.annotations}
        args = (req.endpoint, params, result.status, attempt, fetched_at, body)
        if req.source is not None:
            return SourcedResponse(*args, error, req.asins, source=req.source)
        return RawResponse(*args, error, req.asins)

    async def pages(
        self, req: Request, exchange: Exchange, paginated: bool = True
    ) -> AsyncIterator[tuple[RawResponse, Any]]:
        """Yield each page's (RawResponse, body); stops after the last page or the first failure."""
        seen: set[str] = set()
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            page = req
            if page_token is not None:
                page = replace(req, params={**req.params, "page_token": page_token})
            outcome = await self.request(page, exchange)
            raw, body = outcome.raw, outcome.body
            assert raw is not None  # pages never stop unsent
            if body is None or not paginated:
                yield raw, body
                return
            next_token = body.get("next_page_token")
            if next_token is not None and (not isinstance(next_token, str | int) or str(next_token) in seen):
                # A token that repeats would page forever: keep what we have, flag the page.
                yield replace_error(raw, f"pagination loop at page token {next_token!r}"), None
                return
            yield raw, body
            if next_token is None or next_token == "":
                return
            page_token = str(next_token)
            seen.add(page_token)


# ------------------------------------------------------------------------------------------- helpers
def retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from ``Retry-After``: a (possibly fractional) number, or an HTTP date."""
    return parse_retry_after(headers.get("Retry-After") if headers is not None else None)


def replace_error(raw: RawResponse, error: str) -> RawResponse:
    source = getattr(raw, "source", None)
    args = (raw.endpoint, raw.params, raw.status, raw.attempts, raw.fetched_at, raw.body, error, raw.asins)
    return SourcedResponse(*args, source=source) if source is not None else RawResponse(*args)


async def gather_or_cancel(coros: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run all; if one raises (a refused credential), cancel the rest and re-raise that error as is
    (TaskGroup would wrap it in an ExceptionGroup, which callers should not have to unpack)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, whether or not a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:  # the usual case: a Dagster op thread, a script, a test
        running = False
    if not running:  # outside the except block: a fetch error must not chain "no running event loop"
        return asyncio.run(factory())
    # Called from inside a running loop (notebook, async op): asyncio.run would refuse, and blocking
    # that loop on itself would deadlock, so run ours on a private thread and wait for it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="upstream") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class _RedactKeyFilter(logging.Filter):
    """Masks ``key=...`` in httpx's "HTTP Request: GET <url>" log lines (a key in the query string)."""

    _pattern = re.compile(r"([?&]key=)[^&\s\"']+")

    def _mask(self, value: Any) -> Any:
        # httpx passes the URL object itself; only its text form can carry the key.
        if isinstance(value, str | httpx.URL) and "key=" in str(value):
            return self._pattern.sub(r"\1" + MASK, str(value))
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
