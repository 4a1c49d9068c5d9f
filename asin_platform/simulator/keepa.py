"""Keepa mode of the simulator: the same ``Market`` answering Keepa's ``GET /product`` and ``GET /token``.

The unified API serves one value per (site, asin, day). Keepa serves the same market as **change logs**
(``docs/keepa.md``): flat ``[keepa_minute, value, ...]`` arrays in ``csv[i]`` where a point holds until
the next one and ``-1`` opens a gap. This module re-encodes the market's daily values so that the
platform's Keepa parser (``core/keepa.py``) recovers exactly the unified API's values for every
(site, asin, day) it emits:

- "last"-rule series (price, rating, review count, offer count, monthly sold, buy-box seller): one
  point on each day the daily value changed, at a seeded minute between 00:00 and 20:00 UTC, so the
  value in force at the end of the day is the day's value. The first point of a window is the last
  change at or before the window start, with its original (older) time, as Keepa does with ``days``.
- Sales ranks (``csv[3]`` and ``salesRanks``, "median" rule): three samples a day (about 02:00,
  10:00, 18:00) whose median is the day's rank (one above, one below, in a seeded order), like
  Keepa's several rank samples a day. An unranked day is one ``-1`` point.
- Prices in the smallest currency unit (cents; whole yen on JP), rating in tenths of a star,
  ``listedSince`` / ``trackingSince`` in Keepa minutes, a category tree of numeric browse-node ids.

What a response is "as of" (Keepa answers with *its* current state): the real UTC clock, or the
instant in the request header ``X-Simulated-Now`` (ISO 8601; a simulator-only extension the simulated
client sends, so a test or a demo can fetch a past day "the way it looked then"). Points after that
instant are not served; the response ``timestamp`` is that instant.

Tokens, per access key (``KeepaPlan``): a bucket refilled with ``refill_rate`` tokens once a minute, up
to an hour's worth (Keepa lets unused tokens expire after 60 minutes). A request is admitted when the
bucket holds more than 0 tokens (else HTTP 429 with the token status), and then charged in full even
if that overdraws the bucket (``tokensLeft`` goes negative). Cost per product returned: 1, plus 1
with ``rating=1`` on about one product-day in 14 (Keepa charges the extra token only when it refreshes
the rating; the client budgets the worst case), plus 2 with ``buybox=1``. ``stats``, ``history``,
``days``, ``aplus`` and ``videos`` are free. ASINs the market does not know, or that are not listed yet
at the response instant, are left out of ``products`` and cost nothing. ``/token`` is free.

Errors: an unknown key is HTTP 402 (Keepa's "payment required": no valid plan for that key), bad
parameters are 400, both with ``{"error": {"type", "message"}}`` plus the token fields when the key is
known. Request-level faults of ``FaultConfig`` apply (5xx, latency, timeout, malformed body), drawn
like the unified routes' but from the Keepa routes' own request counter. Not simulated (400 if sent):
``offers``, ``stock``, ``update``, ``only-live-offers``, ``code``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asin_platform.core.keepa import DOMAIN_TO_SITE
from asin_platform.simulator.faults import FaultConfig, RequestFaults, SimulatorStats
from asin_platform.simulator.keepa_encoding import (
    category_node_id,
    day_end,
    keepa_products,
    subcategory_node_id,
)
from asin_platform.simulator.market import Market

# The encoder's public names, re-exported: callers import the Keepa mode from one place.
__all__ = [
    "DEFAULT_KEEPA_KEYS",
    "SIMULATED_NOW_HEADER",
    "KeepaBucket",
    "KeepaPlan",
    "KeepaServerState",
    "category_node_id",
    "day_end",
    "keepa_products",
    "keepa_routes",
    "key_label",
    "subcategory_node_id",
]

SIMULATED_NOW_HEADER = "X-Simulated-Now"
MAX_ASINS = 100
# Parameters of Keepa's product request that the simulator does not model: refusing them beats
# silently answering without the data they would have added.
UNSUPPORTED_PARAMS = ("offers", "stock", "update", "only-live-offers", "code")


# ---------------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class KeepaPlan:
    """A Keepa access key's plan: ``refill_rate`` tokens a minute, an hour's worth at most."""

    refill_rate: int = 20
    initial_tokens: int | None = None  # None: a full bucket

    @property
    def capacity(self) -> int:
        return self.refill_rate * 60


DEFAULT_KEEPA_KEYS: dict[str, KeepaPlan] = {"demo-keepa-key": KeepaPlan(refill_rate=5000)}


class KeepaBucket:
    """Keepa's token bucket for one key: refills once a minute, may be overdrawn by a request."""

    def __init__(self, plan: KeepaPlan, clock: Callable[[], float]) -> None:
        if plan.refill_rate < 1:
            raise ValueError("refill_rate must be >= 1")
        self.plan = plan
        self.clock = clock
        self.tokens = plan.capacity if plan.initial_tokens is None else plan.initial_tokens
        self.next_refill = clock() + 60.0
        self.lock = threading.Lock()

    def _advance(self, now: float) -> None:
        # Caller holds the lock. Whole minutes since the last refill, each adding refill_rate tokens;
        # an overdrawn bucket climbs back, a bucket at or above capacity stays (tokens expire).
        if now >= self.next_refill:
            ticks = 1 + int((now - self.next_refill) // 60.0)
            if self.tokens < self.plan.capacity:
                self.tokens = min(self.plan.capacity, self.tokens + ticks * self.plan.refill_rate)
            self.next_refill += ticks * 60.0

    def _status(self, now: float) -> dict[str, Any]:
        return {
            "tokensLeft": int(self.tokens),
            "refillIn": max(0, int(math.ceil((self.next_refill - now) * 1000))),
            "refillRate": self.plan.refill_rate,
            "tokenFlowReduction": 0.0,
        }

    def status(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self._advance(now)
            return self._status(now)

    def admit(self) -> tuple[bool, dict[str, Any]]:
        """(admitted, status): Keepa runs a request whenever the balance is positive."""
        with self.lock:
            now = self.clock()
            self._advance(now)
            return self.tokens > 0, self._status(now)

    def charge(self, tokens: int) -> dict[str, Any]:
        """Take ``tokens`` (the balance may go negative) and return the status after it."""
        with self.lock:
            now = self.clock()
            self._advance(now)
            self.tokens -= tokens
            return self._status(now)

    def set_tokens(self, tokens: int) -> None:
        """Tests: the balance another consumer of the same key left behind (may be negative)."""
        with self.lock:
            self._advance(self.clock())
            self.tokens = tokens


class KeepaServerState:
    """Keepa-mode state of one app (``app.state.keepa``): buckets by key and counters."""

    def __init__(self, keys: dict[str, KeepaPlan], clock: Callable[[], float]) -> None:
        self.buckets = {key: KeepaBucket(plan, clock) for key, plan in keys.items()}
        self.lock = threading.Lock()
        self.requests = 0  # fault-eligible /product requests (the fault draw counter)
        self.tokens_consumed = 0
        self.products_served = 0

    def bucket(self, key: str) -> KeepaBucket:
        return self.buckets[key]

    def next_request(self) -> int:
        with self.lock:
            n = self.requests
            self.requests += 1
            return n

    def served(self, products: int, tokens: int) -> None:
        with self.lock:
            self.products_served += products
            self.tokens_consumed += tokens


def key_label(key: str) -> str:
    """How a key appears in stats: a short hash, never the key."""
    return "keepa:" + hashlib.sha256(key.encode()).hexdigest()[:12]


# -------------------------------------------------------------------------------------------- routes
class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _int_param(
    request: Request, name: str, default: int | None, lo: int, hi: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"parameter '{name}' must be an integer, got '{raw[:40]}'") from None
    if value < lo or (hi is not None and value > hi):
        raise _BadRequest(f"parameter '{name}' out of range: {value}")
    return value


def _now(request: Request, data_clock: Callable[[], datetime]) -> datetime:
    raw = request.headers.get(SIMULATED_NOW_HEADER)
    if not raw:
        return data_clock()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _BadRequest(f"bad {SIMULATED_NOW_HEADER} '{raw[:40]}': expected an ISO 8601 instant") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _product_request(request: Request, market: Market) -> tuple[str, list[str], dict[str, Any]]:
    """(site, ASINs, encoder parameters) of a ``/product`` request; ``_BadRequest`` names what is wrong."""
    unsupported = [p for p in UNSUPPORTED_PARAMS if p in request.query_params]
    if unsupported:
        raise _BadRequest(f"parameter(s) {unsupported} are not simulated")
    domain = _int_param(request, "domain", None, 1)
    site = DOMAIN_TO_SITE.get(domain or 0)
    if site is None or not market.has_site(site):
        raise _BadRequest(f"domain {domain} is not served by this simulator")
    asins = [a.strip() for a in request.query_params.get("asin", "").split(",") if a.strip()]
    if not asins:
        raise _BadRequest("missing parameter 'asin' (comma-separated ASINs)")
    if len(asins) > MAX_ASINS:
        raise _BadRequest(f"too many ASINs: {len(asins)} > {MAX_ASINS} per request")
    params = {
        "history": bool(_int_param(request, "history", 1, 0, 1)),
        "days": _int_param(request, "days", None, 1),
        "stats": _int_param(request, "stats", None, 0),
        "rating": bool(_int_param(request, "rating", 0, 0, 1)),
        "aplus": bool(_int_param(request, "aplus", 0, 0, 1)),
        "videos": bool(_int_param(request, "videos", 0, 0, 1)),
        "buybox": bool(_int_param(request, "buybox", 0, 0, 1)),
    }
    return site, asins, params


def keepa_routes(
    market: Market,
    keys: dict[str, KeepaPlan],
    *,
    stats: SimulatorStats,
    faults: FaultConfig,
    clock: Callable[[], float],
    data_clock: Callable[[], datetime] | None = None,
) -> tuple[list[Route], KeepaServerState]:
    """The ``/product`` and ``/token`` routes over ``market`` and their state (``app.state.keepa``).

    ``clock`` drives the token buckets (a fake one in tests); ``data_clock`` is the instant responses
    are as of when the request has no ``X-Simulated-Now`` header (default: the real UTC time).
    """
    state = KeepaServerState(keys, clock)
    # Keepa's requests are counted apart from the unified routes' and drawn with their own offset.
    plan = RequestFaults(faults, stats, offset=999)
    data_clock = data_clock or (lambda: datetime.now(UTC))

    def respond(status: int, body: dict[str, Any] | bytes) -> Response:
        stats.record_status(status)
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        return Response(payload, status_code=status, media_type="application/json")

    def error(status: int, kind: str, message: str, tokens: dict[str, Any] | None = None) -> Response:
        body: dict[str, Any] = dict(tokens or {})
        body["error"] = {"type": kind, "message": message}
        return respond(status, body)

    def stamp(body: dict[str, Any], now: datetime, started: float) -> dict[str, Any]:
        body["timestamp"] = int(now.timestamp() * 1000)
        body["processingTimeInMs"] = int((_time.perf_counter() - started) * 1000)
        return body

    async def token(request: Request) -> Response:
        started = _time.perf_counter()
        key = request.query_params.get("key", "")
        if key not in state.buckets:
            return error(402, "invalidKey", "unknown access key or no valid plan")
        try:
            now = _now(request, data_clock)
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message)
        return respond(200, stamp({**state.bucket(key).status(), "tokensConsumed": 0}, now, started))

    async def product(request: Request) -> Response:
        started = _time.perf_counter()
        key = request.query_params.get("key", "")
        bucket = state.buckets.get(key)
        if bucket is None:
            return error(402, "invalidKey", "unknown access key or no valid plan")
        admitted, status = bucket.admit()
        try:
            now = _now(request, data_clock)
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message, status)
        if not admitted:
            return respond(429, stamp({**status, "tokensConsumed": 0}, now, started))
        stats.record_accept(key_label(key), clock())

        n = state.next_request()
        if faults.active:
            await plan.delay(n)
            if plan.fails_5xx(n):
                return error(500, "internal", "injected upstream failure", status)

        try:
            site, asins, params = _product_request(request, market)
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message, status)
        failing = faults.failing_status("keepa", site, (now.date(), now.date()), asins)
        if failing is not None:
            stats.record_fault("fail_for_good")
            return error(failing, "internal", "injected permanent failure", status)

        def build() -> tuple[list[dict[str, Any]], int]:
            return keepa_products(market, site, asins, now, **params)

        # First touch of a site generates it (~1 s): off the event loop, as the unified routes do.
        products, cost = build() if market.is_ready(site) else await run_in_threadpool(build)
        status = bucket.charge(cost)
        state.served(len(products), cost)
        body = stamp({**status, "tokensConsumed": cost, "products": products}, now, started)
        payload = json.dumps(body, separators=(",", ":")).encode()
        # charged, then cut: the tokens are gone, like a real drop
        return respond(200, plan.truncate(n, payload) if faults.active else payload)

    routes = [Route("/product", product, methods=["GET"]), Route("/token", token, methods=["GET"])]
    return routes, state
