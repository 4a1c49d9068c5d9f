"""The upstream interface the ingest assets depend on: results, errors and the ``UpstreamClient`` ABC.

Every source (``unified.py``, ``keepa.py``) fetches one (site, day) into a ``DayFetch``: the universe,
one ``RawResponse`` per logical request (a ``raw_payloads`` row each, failed ones included) and a
``FetchReport`` of what it got and what it cost. ``FetchReport.failures`` names every request that
failed for good (endpoint, ASINs, reason), so a coverage check can say which endpoint lost which
products.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

import dagster as dg

# Batch kinds in the order they are queued (the unified contract's order). Keepa fills "products".
BATCH_KINDS = ("products", "timeseries", "reviews", "keywords")
# Kinds whose successful body names every requested ASIN it answers: coverage is measured on these.
# Reviews are not: an ASIN without a review that day is simply absent.
COVERAGE_KINDS = ("products", "timeseries", "keywords")


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class RawResponse:
    """One logical request as it ended (after retries): becomes one ``raw_payloads`` row."""

    endpoint: str  # route template, e.g. "/v1/sites/{site}/timeseries"
    params: dict[str, str]  # query params (never a secret)
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


@dataclass(frozen=True, repr=False)
class SourcedResponse(RawResponse):
    """A ``RawResponse`` that names its source: a Keepa fetch also stores the unified API's universe
    pages, which must be parsed as ``unified`` rows (the ingest asset groups rows by this)."""

    source: str = "keepa"


@dataclass(frozen=True)
class FailedRequest:
    """A request that failed for good: what a blocking check names ("endpoint X, N ASINs")."""

    endpoint: str
    asins: tuple[str, ...]
    status: int
    attempts: int
    reason: str


@dataclass
class FetchReport:
    """What one ``fetch_day`` got and what it cost; ``as_metadata`` flattens it for Dagster.

    ``requests`` counts logical requests (one per ``RawResponse``); the HTTP calls made are
    ``requests - not_sent + retries``. ``failed_requests`` counts those that ended with an error; ``failures``
    lists them.
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
    not_sent: int = 0  # requests an unreachable upstream stopped before any attempt (reachability.Breaker)
    failed_requests: int = 0
    retry_wait_s: float = 0.0  # time spent waiting before retries (Retry-After, backoff)
    elapsed_s: float = 0.0
    failures: list[FailedRequest] = field(default_factory=list)

    @property
    def http_calls(self) -> int:
        return self.requests - self.not_sent + self.retries

    def record_failures(self, responses: Iterable[RawResponse]) -> None:
        """Set ``failures`` / ``failed_requests`` from the responses that ended with an error."""
        self.failures = [
            FailedRequest(r.endpoint, r.asins, r.status, r.attempts, r.error)
            for r in responses
            if r.error is not None
        ]
        self.failed_requests = len(self.failures)

    def failed_endpoints(self) -> dict[str, int]:
        """Endpoint -> distinct ASINs covered by its requests that failed for good."""
        out: dict[str, set[str]] = {}
        for failure in self.failures:
            out.setdefault(failure.endpoint, set()).update(failure.asins)
        return {endpoint: len(asins) for endpoint, asins in sorted(out.items())}

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
        for kind in BATCH_KINDS:
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
            not_sent=self.not_sent,
            failed_requests=self.failed_requests,
            retry_wait_s=round(self.retry_wait_s, 3),
            elapsed_s=round(self.elapsed_s, 3),
        )
        # A string, so summing callers skip it: "endpoint: N ASINs; ..." of the failed-for-good requests.
        meta["failed_endpoints"] = "; ".join(
            f"{endpoint}: {n} ASINs" for endpoint, n in self.failed_endpoints().items()
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
    # Set when the fetch stopped on an upstream nothing reached (reachability.Breaker): its requests from then
    # on are failed for good; the router stores the partitions of the call, then raises it.
    unreachable: UpstreamUnreachable | None = None

    def __repr__(self) -> str:
        return (
            f"DayFetch({self.site!r}, {self.day.isoformat()}, universe={len(self.universe)}, "
            f"responses={len(self.responses)}, failed={self.report.failed_requests})"
        )


# ---------------------------------------------------------------------------------------------- errors
class UpstreamError(RuntimeError):
    """A call that cannot be worked around: the universe is unavailable, or the credential is rejected.

    The message names the route, site, status and attempts, never a secret.
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


class UpstreamUnreachable(UpstreamError):
    """The upstream could not be reached at all: ``requests`` requests in a row failed for good with
    none of their attempts reaching it (refused, DNS, connect timeout), so the fetch stopped sending
    (``reachability.Breaker``). ``base_url`` carries no credentials, ``last`` no secret."""

    def __init__(
        self,
        base_url: str,
        requests: int,
        last: str,
        *,
        endpoint: str = "",
        site: str = "",
        attempts: int = 0,
    ) -> None:
        self.base_url = base_url
        self.requests = requests
        self.last = last
        self.endpoint = endpoint
        self.status = 0
        self.attempts = attempts
        self.site = site
        self.detail = last
        what = "a request" if requests == 1 else f"{requests} consecutive requests"
        RuntimeError.__init__(
            self,
            f"upstream {base_url} unreachable: {what} failed after retries without reaching it "
            f"(last: {last})",
        )

    def run_failure(
        self,
        not_written: Iterable[tuple[str, date]],
        incomplete: Iterable[tuple[str, date]] = (),
        complete: Iterable[tuple[str, date]] = (),
    ) -> str:
        """The one line of a run that stopped on this: what happened; the partitions stored with the
        requests it stopped marked failed (``incomplete``), those left as they were (nothing
        written), those stored whole before it; and what to do."""
        incomplete, not_written, complete = list(incomplete), list(not_written), list(complete)
        parts = [f"{self}; no further request was sent"]
        if not_written or not incomplete:
            parts[0] += f" and nothing was written for {partition_list(not_written)}"
        if incomplete:
            parts.append(
                f"stored incomplete, the requests it stopped marked failed: {partition_list(incomplete)}"
            )
        if complete:
            parts.append(f"stored complete before it stopped: {partition_list(complete)}")
        parts.append(
            f"check that the upstream at {self.base_url} is up and reachable from this host "
            "(settings upstream.base_url / upstream.keepa_base_url), then re-run"
        )
        return "; ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _upstream_unreachable,
            (self.base_url, self.requests, self.last, self.endpoint, self.site, self.attempts),
        )


def _upstream_unreachable(
    base_url: str, requests: int, last: str, endpoint: str, site: str, attempts: int
) -> UpstreamUnreachable:
    return UpstreamUnreachable(base_url, requests, last, endpoint=endpoint, site=site, attempts=attempts)


def partition_list(partitions: Iterable[tuple[str, date]]) -> str:
    """``US 2025-03-01..2025-03-03, DE 2025-03-02``: (site, day) pairs by site, consecutive days
    joined into one range."""
    by_site: dict[str, list[date]] = {}
    for site, day in partitions:
        by_site.setdefault(site, []).append(day)
    out = []
    for site, days in by_site.items():
        ordered = sorted(set(days))
        start = prev = ordered[0]
        for day in [*ordered[1:], None]:
            if day is not None and (day - prev).days == 1:
                prev = day
                continue
            out.append(f"{site} {start}" if start == prev else f"{site} {start}..{prev}")
            if day is not None:
                start = prev = day
    return ", ".join(out) or "no partition"


class MissingSecretError(ValueError):
    """A credential's environment variable is not set (the message names the variable, no value)."""


# ------------------------------------------------------------------------------------------- interface
class UpstreamClient(dg.ConfigurableResource, abc.ABC):
    """Interface of an upstream source as the ingest assets see it."""

    # raw_payloads.source of what this client fetches
    source: ClassVar[str] = "unified"

    @abc.abstractmethod
    def fetch_day(self, site: str, day: date, progress: Callable[[str], None] | None = None) -> DayFetch:
        """Fetch everything ingestion needs for one (site, day)."""

    def fetch_days(
        self, partitions: Iterable[tuple[str, date]], progress: Callable[[str], None] | None = None
    ) -> Iterator[DayFetch]:
        """``fetch_day`` for each (site, day), yielded in order. Implementations may fetch ahead
        (a ranged run then keeps the quota busy while it stores the previous partition)."""
        for site, day in partitions:
            yield self.fetch_day(site, day, progress)
