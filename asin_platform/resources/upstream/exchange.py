"""What one request of the HTTP core is and what came back (http.py's ``HttpCore`` runs them).

``Request`` (what is sent and stored), ``Attempt`` (one try's answer or failure), ``Exchange`` (how a
source reads answers: unified.py and keepa.py subclass it), ``Outcome`` (a request's end),
``Counters`` (a fetch's tallies for its report) and the core's private ``_Verdict`` on an attempt.
Kept apart from the retry loop, which they parametrise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import httpx

from asin_platform.resources.upstream.base import FetchReport, RawResponse


@dataclass(frozen=True)
class Request:
    """One logical request: what is sent, and what is stored about it (never a secret)."""

    endpoint: str  # route template, stored as raw_payloads.endpoint
    site: str
    params: dict[str, str]  # stored as request_params
    asins: tuple[str, ...] = ()
    secret_params: Mapping[str, str] = field(default_factory=dict)  # sent, never stored (a query key)
    source: str | None = None  # stored as raw_payloads.source when not the client's own
    # stored with the params, never sent: what the client asked for in its own terms (e.g. the days a
    # Keepa range request covers, which Keepa's ``days`` only implies)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The fetch cannot go on without it (the universe): giving up on reaching the server opens the
    # breaker at once and raises UpstreamUnreachable (nothing could be stored).
    essential: bool = False


@dataclass
class Attempt:
    status: int  # 0 when there was no response
    text: str
    headers: httpx.Headers | None
    failure: str | None  # "timeout" / "connection error" when there was no response
    # False when the attempt never reached the server: connection refused, DNS, connect timeout.
    reached: bool = True
    cause: str = ""  # a failure's exception, e.g. "ConnectError: All connection attempts failed (...)"

    @cached_property
    def json(self) -> Any:
        """The body as JSON, None when it is not JSON (parsed once, whoever asks)."""
        if self.failure is not None:
            return None
        try:
            return json.loads(self.text)
        except ValueError:  # JSONDecodeError and bad unicode alike
            return None


class Exchange:
    """How a source reads answers; subclasses override what their API does differently."""

    list_key: str = ""  # the list a usable 200 body must carry
    # Statuses that mean every later request would fail the same way, with the detail to report.
    fatal: Mapping[int, str] = {401: "token rejected"}

    def parse(self, attempt: Attempt) -> tuple[Any, str]:
        """(usable body, "") or (None, what is wrong) for a 200."""
        body = attempt.json
        if body is None:
            return None, "malformed JSON"
        if not isinstance(body, dict) or not isinstance(body.get(self.list_key), list):
            return None, f"malformed body (no {self.list_key!r} list)"
        return body, ""

    def error_detail(self, attempt: Attempt) -> str:
        """ " (code: message)" from an error body, "" if it has none."""
        err = attempt.json.get("error") if isinstance(attempt.json, dict) else None
        if not isinstance(err, dict):
            return ""
        parts = [str(p) for p in (err.get("code") or err.get("type"), err.get("message")) if p]
        return f" ({': '.join(parts)[:200]})" if parts else ""

    async def before_attempt(self) -> str:
        """Called before every attempt; a non-empty reason stops the request unsent."""
        return ""

    def after_attempt(self, attempt: Attempt, usable: bool) -> None:
        """Called after every attempt (a source's own accounting, e.g. Keepa's tokens)."""

    def throttle_wait(self, attempt: Attempt) -> float | None:
        """Seconds a 429 asks us to wait; None: the core's default (Retry-After, else backoff)."""
        return None

    def retry_blocker(self) -> str:
        """Non-empty when no retry may be spent (e.g. no token budget left): appended to the error."""
        return ""

    def fetched_at(self, attempt: Attempt, received: datetime) -> datetime:
        return received


@dataclass(frozen=True)
class Outcome:
    raw: RawResponse | None  # None only when ``stopped``
    body: Any = None  # the usable body, None if the request failed
    stopped: str = ""  # why the request was never sent (Exchange.before_attempt)


@dataclass
class Counters:
    http_calls: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    not_sent: int = 0  # requests the open breaker stopped before their first attempt
    retry_wait_s: float = 0.0

    def fill(self, report: FetchReport, responses: Sequence[RawResponse]) -> None:
        """Copy the counts of a fetch into its report, with the requests that failed for good."""
        report.requests = len(responses)
        report.retries = self.retries
        report.throttled = self.throttled
        report.server_errors = self.server_errors
        report.timeouts = self.timeouts
        report.connection_errors = self.connection_errors
        report.malformed = self.malformed
        report.not_sent = self.not_sent
        report.retry_wait_s = self.retry_wait_s
        report.record_failures(responses)


@dataclass
class _Verdict:
    what: str  # what went wrong ("" = usable)
    retryable: bool = True
    delay: float = 0.0
    throttled: bool = False  # a 429: wait in the bucket, for everyone
    server_asked: bool = True  # waited out by time (budget), not by count
