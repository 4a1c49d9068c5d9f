"""Is the upstream there at all? The breaker that stops a fetch nothing reached (pure asyncio + httpx).

``HttpCore`` (http.py) asks ``ConnectPhase`` of every attempt whether it got as far as sending the
request, and tells the fetch's ``Breaker`` about each request that gave up on reaching the server and
each attempt that reached it. Kept apart from the retry loop: the loop decides whether one request
tries again, the breaker whether the whole fetch goes on (docs/operations.md, *Upstream unreachable*).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from asin_platform.resources.upstream.base import UpstreamUnreachable

if TYPE_CHECKING:
    from asin_platform.resources.upstream.exchange import Request

log = logging.getLogger("asin_platform.upstream")


class Breaker:
    """Stops a fetch whose upstream cannot be reached at all, instead of letting every one of its
    requests spend the whole retry budget (``retry.budget_s``) on refused connections.

    Shared by the ``HttpCore`` sessions of one fetch (every partition of a ranged run). A request
    *gives up on reaching the server* when ``max_attempts`` attempts in a row never reached it
    (``Attempt.reached`` false: connection refused, DNS, connect timeout); it counts once (``give_up``)
    and goes on retrying within its budget as before. Any attempt of any request that reaches the
    server, whatever the answer, resets the count (``reached``). When ``threshold`` requests in a row
    have given up, the breaker opens: the request that opened it is failed for good, and every other
    request of the fetch stops before its next attempt (a backoff is cut short), failed for good too
    (``not sent`` if it had made none), so the partition records what it lacks and the client marks
    its ``DayFetch.unreachable``. An ``essential`` request (the universe: nothing can be fetched, or
    stored, without it) raises ``UpstreamUnreachable`` instead, and opens the breaker on its own; so
    does a request that spent its whole time budget without ever reaching the server (requests made
    one after another, as Keepa's batches, would otherwise each spend it before the count is
    reached)."""

    def __init__(self, threshold: int, base_url: str) -> None:
        self.threshold = max(1, threshold)
        self.base_url = public_url(base_url)
        self.consecutive = 0  # requests in a row that gave up, since the last contact
        self.epoch = 0  # bumped at every contact: a request counts at most once per epoch
        self.last = ""  # the last request counted: where, what it got, its attempts
        self.last_endpoint = ""
        self.last_site = ""
        self.last_attempts = 0
        self.open = False
        self.opened = asyncio.Event()  # set when it opens: wakes the requests waiting out a backoff

    def reached(self) -> None:
        """An attempt reached the server: the upstream is there, whatever it answered."""
        if not self.open:
            self.consecutive = 0
            self.epoch += 1

    def give_up(
        self, req: Request, last: str, attempts: int, *, conclusive: bool = False, counted: bool = False
    ) -> bool:
        """Count a request whose last ``attempts`` never reached the server (unless ``counted``: it
        already was, since the last contact); True once open. ``conclusive``: it spent its whole
        retry budget without ever reaching the server, which is proof enough on its own."""
        if self.open:
            return True
        if not counted:
            self.consecutive += 1
        self.last = f"{req.endpoint.format(site=req.site)}: {last}"
        self.last_endpoint, self.last_site, self.last_attempts = req.endpoint, req.site, attempts
        if self.consecutive >= self.threshold or req.essential or conclusive:
            self.open = True
            self.opened.set()
            log.warning("upstream %s unreachable, stopping the fetch: %s", self.base_url, self.last)
        return self.open

    def error(self) -> UpstreamUnreachable:
        return UpstreamUnreachable(
            self.base_url,
            self.consecutive,
            self.last,
            endpoint=self.last_endpoint,
            site=self.last_site,
            attempts=self.last_attempts,
        )


class ConnectPhase:
    """httpcore's ``trace`` extension for one attempt: did it get as far as sending the request?

    Tells a timeout before the connection was made (a black-holed host: unreachable) from one
    after it (a slow server: reached). Transports without connections (ASGI, mocks) never call it;
    their failures count as reached unless the exception itself says the connection failed."""

    def __init__(self) -> None:
        self.connecting = False
        self.sent = False

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        if name.endswith(".started"):
            if ".connect_" in name or ".start_tls" in name:
                self.connecting = True
            elif ".send_request_headers" in name:
                self.sent = True

    def reached(self, exc: BaseException) -> bool:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return False  # refused, DNS, TLS or TCP connect timeout
        return not (self.connecting and not self.sent)


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment: what an error may name."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:  # a port that is not a number: name the host only
        netloc = host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
