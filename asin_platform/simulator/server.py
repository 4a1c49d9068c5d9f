"""ASGI app speaking the unified product API (docs/upstream_api.md) over a ``Market``, and Keepa's
``/product`` / ``/token`` over the same market (``simulator/keepa.py``, docs/keepa.md).

Per request, in order: bearer auth (401) -> per-token token bucket (429 with ``Retry-After``) ->
fault plan (deterministic, from a seeded hash of the fault-eligible request counter) -> the route
(400 / 404 from parameter checks) -> body faults -> JSON. ``X-RateLimit-Limit`` / ``-Remaining`` go on
every response of a known token, including 429s. ``/v1/health`` and ``/openapi.json`` skip auth, quota
and faults.

``app.state.stats`` (``SimulatorStats``) counts requests, statuses, 429s and injected faults, and keeps
the clock time of every accepted request per token so a benchmark can check the quota was respected.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asin_platform.simulator.body_faults import (
    BATCH_KIND,
    add_extra_fields,
    corrupt,
    drop_row,
    duplicate_row,
    mutate_values,
)
from asin_platform.simulator.faults import FaultConfig, Mutation, RequestFaults, SimulatorStats
from asin_platform.simulator.keepa import DEFAULT_KEEPA_KEYS, KeepaPlan, keepa_routes
from asin_platform.simulator.market import Market, UnknownSiteError
from asin_platform.simulator.openapi import openapi_document

MAX_BATCH = 100
MAX_RANGE_DAYS = 400
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000


@dataclass(frozen=True)
class Quota:
    """Per-token quota: ``qpm`` requests per minute, ``burst`` requests back to back."""

    qpm: int
    burst: int


DEFAULT_TOKENS: dict[str, Quota] = {"demo-token": Quota(6000, 50)}


class _Bucket:
    """Token bucket: capacity ``burst``, refilled at ``qpm / 60`` tokens per second."""

    def __init__(self, quota: Quota, clock: Callable[[], float]) -> None:
        self.quota = quota
        self.rate = quota.qpm / 60.0
        self.tokens = float(quota.burst)
        self.clock = clock
        self.last = clock()
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        """(accepted, whole tokens left, seconds until the next token when refused)."""
        with self.lock:
            now = self.clock()
            self.tokens = min(float(self.quota.burst), self.tokens + max(0.0, now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True, int(math.floor(self.tokens)), 0.0
            return False, 0, (1.0 - self.tokens) / self.rate


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


# ----------------------------------------------------------------------------------------------
# Parameter parsing
# ----------------------------------------------------------------------------------------------


def _date_param(request: Request, name: str, default: date | None = None) -> date:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise ApiError(400, "bad_request", f"missing required parameter '{name}' (YYYY-MM-DD)")
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"bad date '{raw}' for '{name}': expected YYYY-MM-DD") from None


def _asins_param(request: Request) -> list[str]:
    raw = request.query_params.get("asins")
    if not raw:
        raise ApiError(400, "bad_request", "missing required parameter 'asins' (comma-separated)")
    asins = [a.strip() for a in raw.split(",") if a.strip()]
    if not asins:
        raise ApiError(400, "bad_request", "parameter 'asins' holds no ASIN")
    if len(asins) > MAX_BATCH:
        raise ApiError(400, "bad_request", f"too many ASINs: {len(asins)} > {MAX_BATCH} per request")
    return asins


def _page_params(request: Request) -> tuple[int, int]:
    raw_size = request.query_params.get("page_size")
    size = DEFAULT_PAGE_SIZE
    if raw_size not in (None, ""):
        try:
            size = int(raw_size)
        except ValueError:
            raise ApiError(400, "bad_request", f"bad page_size '{raw_size}': expected an integer") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ApiError(400, "bad_request", f"page_size must be in [1, {MAX_PAGE_SIZE}], got {size}")
    token = request.query_params.get("page_token")
    offset = 0
    if token not in (None, ""):
        if not token.isdigit() or len(token) > 12:
            raise ApiError(400, "bad_request", f"bad page token '{token}'")
        offset = int(token)
    return size, offset


def _page(rows: list[Any], size: int, offset: int, token: str | None) -> tuple[list[Any], str | None]:
    if offset > len(rows) or (offset == len(rows) and offset > 0):
        raise ApiError(400, "bad_request", f"bad page token '{token}': past the end of the result")
    end = offset + size
    return rows[offset:end], (str(end) if end < len(rows) else None)


def _range(request: Request, first: str, second: str, limit: int | None) -> tuple[date, date]:
    start = _date_param(request, first)
    end = _date_param(request, second, default=start if second == "until" else None)
    if end < start:
        raise ApiError(400, "bad_request", f"'{second}' ({end}) is before '{first}' ({start})")
    if limit is not None and (end - start).days + 1 > limit:
        raise ApiError(400, "bad_request", f"range of {(end - start).days + 1} days exceeds {limit} days")
    return start, end


# ----------------------------------------------------------------------------------------------
# Route handlers: (market, request) -> body dict; they raise ApiError for 400 / 404.
# ----------------------------------------------------------------------------------------------


def _site(market: Market, request: Request) -> str:
    site = request.path_params["site"]
    if not market.has_site(site):
        raise ApiError(404, "not_found", f"unknown site '{site}'")
    return site


def _known(market: Market, site: str, asin: str) -> None:
    if not market.knows(site, asin):
        raise ApiError(404, "not_found", f"unknown ASIN '{asin}' on site {site}")


def h_asins(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    day = _date_param(request, "date")
    size, offset = _page_params(request)
    universe = market.universe(site, day)
    rows, nxt = _page(universe, size, offset, request.query_params.get("page_token"))
    return {
        "site": site,
        "date": day.isoformat(),
        "total": len(universe),
        "asins": rows,
        "next_page_token": nxt,
    }


def h_product(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asin = request.path_params["asin"]
    day = _date_param(request, "date")
    _known(market, site, asin)
    products, _ = market.products(site, [asin], day)
    if not products:
        raise ApiError(404, "not_found", f"ASIN '{asin}' is not listed on {site} on {day}")
    return products[0]


def h_products(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asins = _asins_param(request)
    day = _date_param(request, "date")
    products, not_found = market.products(site, asins, day)
    return {"site": site, "date": day.isoformat(), "products": products, "not_found": not_found}


def h_series(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asin = request.path_params["asin"]
    start, end = _range(request, "start", "end", MAX_RANGE_DAYS)
    _known(market, site, asin)
    items, _ = market.timeseries(site, [asin], start, end)
    return items[0]


def h_timeseries(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asins = _asins_param(request)
    start, end = _range(request, "start", "end", MAX_RANGE_DAYS)
    items, not_found = market.timeseries(site, asins, start, end)
    return {
        "site": site,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "items": items,
        "not_found": not_found,
    }


def _reviews_body(market: Market, request: Request, site: str, asins: list[str]) -> dict[str, Any]:
    since, until = _range(request, "since", "until", None)
    size, offset = _page_params(request)
    reviews = market.reviews(site, asins, since, until)
    rows, nxt = _page(reviews, size, offset, request.query_params.get("page_token"))
    return {
        "site": site,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "reviews": rows,
        "next_page_token": nxt,
    }


def h_product_reviews(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asin = request.path_params["asin"]
    _known(market, site, asin)
    return _reviews_body(market, request, site, [asin])


def h_reviews(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asins = _asins_param(request)
    body = _reviews_body(market, request, site, asins)
    body["not_found"] = [a for a in dict.fromkeys(asins) if not market.knows(site, a)]
    return body


def h_product_keywords(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asin = request.path_params["asin"]
    day = _date_param(request, "date")
    _known(market, site, asin)
    items, _ = market.keywords(site, [asin], day)
    if not items:
        raise ApiError(404, "not_found", f"ASIN '{asin}' is not listed on {site} on {day}")
    return {"site": site, "date": day.isoformat(), "items": items, "not_found": []}


def h_keywords(market: Market, request: Request) -> dict[str, Any]:
    site = _site(market, request)
    asins = _asins_param(request)
    day = _date_param(request, "date")
    items, not_found = market.keywords(site, asins, day)
    return {"site": site, "date": day.isoformat(), "items": items, "not_found": not_found}


# ----------------------------------------------------------------------------------------------
# App
# ----------------------------------------------------------------------------------------------


def _request_scope(kind: str, request: Request) -> tuple[tuple[date, date] | None, list[str]]:
    """(day range, ASINs) a request is about, for ``FailRule`` matching; None when unreadable."""
    q = request.query_params
    asins = [a.strip() for a in q.get("asins", "").split(",") if a.strip()]
    if "asin" in request.path_params:
        asins.append(request.path_params["asin"])
    first, last = {
        "timeseries": ("start", "end"),
        "series": ("start", "end"),
        "reviews": ("since", "until"),
    }.get(kind, ("date", "date"))
    try:
        lo = date.fromisoformat(q.get(first, ""))
        return (lo, date.fromisoformat(q.get(last) or lo.isoformat())), asins
    except ValueError:
        return None, asins


async def _failure(plan: RequestFaults, n: int, kind: str, request: Request) -> tuple[int, str, str] | None:
    """Latency / timeout sleeps, then (status, code, message) when the request is to fail."""
    await plan.delay(n)
    cfg = plan.config
    if cfg.fail_for_good:
        days, asins = _request_scope(kind, request)
        status = cfg.failing_status(BATCH_KIND.get(kind, kind), request.path_params["site"], days, asins)
        if status is not None:
            plan.stats.record_fault("fail_for_good")
            return status, "rate_limited" if status == 429 else "unavailable", "injected permanent failure"
    if plan.fails_5xx(n):
        status, code = [(500, "internal"), (502, "bad_gateway"), (503, "unavailable")][
            min(int(plan.salted(n, 99) * 3), 2)
        ]
        return status, code, "injected upstream failure"
    return None


def _body_faults(
    plan: RequestFaults, n: int, kind: str, body: dict[str, Any], request: Request
) -> list[Mutation]:
    """Row faults and value mutations applied to ``body`` in place; the mutations made."""
    cfg, stats = plan.config, plan.stats
    if plan.draw(n, "duplicate_rows") < cfg.duplicate_rows_rate and duplicate_row(
        kind, body, plan.salted(n, 101)
    ):
        stats.record_fault("duplicate_rows")
    if plan.draw(n, "missing_rows") < cfg.missing_rows_rate and drop_row(kind, body, plan.salted(n, 102)):
        stats.record_fault("missing_rows")
    if plan.draw(n, "out_of_range") < cfg.out_of_range_rate and corrupt(
        kind, body, plan.salted(n, 103), plan.salted(n, 104)
    ):
        stats.record_fault("out_of_range")
    # Last of the row faults: a mutated value is never dropped afterwards, so the record is exact.
    day = request.query_params.get("date", "")
    mutations = mutate_values(kind, body, request.path_params["site"], day, cfg.seed, cfg.mutation_rate)
    if cfg.extra_fields:
        add_extra_fields(body)
        stats.record_fault("extra_fields")
    return mutations


@dataclass
class _Routes:
    """The unified routes of one app: auth, quota, faults and JSON around each handler."""

    market: Market
    buckets: dict[str, _Bucket]
    plan: RequestFaults
    clock: Callable[[], float]

    def respond(self, status: int, body: bytes, headers: dict[str, str]) -> Response:
        self.plan.stats.record_status(status)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    def _admit(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """Bearer auth and the token's bucket: (quota headers, the 401/429 to answer, if any)."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        bucket = self.buckets.get(token)
        if bucket is None:
            return {}, self.respond(401, _error_body("unauthorized", "missing or unknown bearer token"), {})
        accepted, remaining, wait = bucket.take()
        headers = {"X-RateLimit-Limit": str(bucket.quota.qpm), "X-RateLimit-Remaining": str(remaining)}
        if not accepted:
            headers["Retry-After"] = f"{wait:.3f}"
            message = f"quota exceeded; retry in {wait:.3f} s"
            return headers, self.respond(429, _error_body("rate_limited", message), headers)
        self.plan.stats.record_accept(token, self.clock())
        return headers, None

    def endpoint(self, kind: str, handler: Callable[[Market, Request], dict[str, Any]]) -> Callable[..., Any]:
        plan, market, active = self.plan, self.market, self.plan.config.active

        async def run(request: Request) -> Response:
            headers, refused = self._admit(request)
            if refused is not None:
                return refused
            n = plan.next_request()
            failure = await _failure(plan, n, kind, request) if active else None
            if failure is not None:
                if failure[0] == 429:
                    headers["Retry-After"] = "0.100"
                return self.respond(failure[0], _error_body(failure[1], failure[2]), headers)
            try:
                if market.is_ready(request.path_params.get("site", "")):
                    body = handler(market, request)  # index into cached arrays: ~1 ms, no thread hop
                else:  # first touch generates the site (~1 s): keep the event loop (health) responsive
                    body = await run_in_threadpool(handler, market, request)
            except ApiError as exc:
                return self.respond(exc.status, _error_body(exc.code, exc.message), headers)
            except UnknownSiteError as exc:
                return self.respond(404, _error_body("not_found", f"unknown site {exc}"), headers)
            mutations = _body_faults(plan, n, kind, body, request) if active else []
            payload = json.dumps(body, separators=(",", ":")).encode()
            cut = plan.truncate(n, payload) if active else payload
            if mutations and cut is payload:  # only what the client can actually read is recorded
                plan.stats.record_mutations(mutations)
                for _ in mutations:
                    plan.stats.record_fault("mutated_value")
            return self.respond(200, cut, headers)

        return run

    def routes(self) -> list[Route]:
        prefix = "/v1/sites/{site}"
        table = [
            ("/asins", "asins", h_asins),
            ("/products", "products", h_products),
            ("/products/{asin}", "product", h_product),
            ("/products/{asin}/timeseries", "series", h_series),
            ("/timeseries", "timeseries", h_timeseries),
            ("/products/{asin}/reviews", "reviews", h_product_reviews),
            ("/reviews", "reviews", h_reviews),
            ("/products/{asin}/keywords", "keywords", h_product_keywords),
            ("/keywords", "keywords", h_keywords),
        ]
        return [Route(prefix + path, self.endpoint(kind, h), methods=["GET"]) for path, kind, h in table]


def create_app(
    market: Market,
    tokens: dict[str, Quota] | None = None,
    faults: FaultConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
    keepa_keys: dict[str, KeepaPlan] | None = None,
    keepa_now: Callable[[], datetime] | None = None,
) -> Starlette:
    """The unified-API app over ``market``. ``clock`` drives quotas and stats (a fake one in tests).

    The same app also speaks Keepa's ``/product`` and ``/token`` over the same market
    (``simulator/keepa.py``): ``keepa_keys`` are its access keys and plans (default: the demo key),
    ``keepa_now`` the instant its responses are as of (default: the real clock).
    """
    tokens = dict(DEFAULT_TOKENS if tokens is None else tokens)
    faults = faults or FaultConfig()
    stats = SimulatorStats()
    unified = _Routes(
        market, {tok: _Bucket(q, clock) for tok, q in tokens.items()}, RequestFaults(faults, stats), clock
    )
    respond = unified.respond

    async def health(request: Request) -> Response:
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return respond(200, json.dumps({"status": "ok", "time": now, "version": "1"}).encode(), {})

    document = json.dumps(openapi_document()).encode()

    async def openapi(request: Request) -> Response:
        return respond(200, document, {})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return respond(exc.status_code, _error_body(code, str(exc.detail)), {})

    keepa_route_list, keepa_state = keepa_routes(
        market,
        dict(DEFAULT_KEEPA_KEYS if keepa_keys is None else keepa_keys),
        stats=stats,
        faults=faults,
        clock=clock,
        data_clock=keepa_now,
    )
    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *unified.routes(),
        *keepa_route_list,
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.stats = stats
    app.state.market = market
    app.state.faults = faults
    app.state.tokens = tokens
    app.state.keepa = keepa_state
    return app


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------


def serve(
    host: str,
    port: int,
    market: Market,
    tokens: dict[str, Quota] | None = None,
    faults: FaultConfig | None = None,
    keepa_keys: dict[str, KeepaPlan] | None = None,
) -> None:
    """Serve the simulator until interrupted (blocking)."""
    app = create_app(market, tokens, faults, keepa_keys=keepa_keys)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@dataclass
class RunningSimulator:
    """A simulator served on a background thread; ``stop()`` (or leaving the ``with``) shuts it down."""

    url: str
    port: int
    app: Starlette
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def stats(self) -> SimulatorStats:
        return self.app.state.stats

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    market: Market,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: dict[str, Quota] | None = None,
    faults: FaultConfig | None = None,
    startup_timeout: float = 15.0,
    keepa_keys: dict[str, KeepaPlan] | None = None,
) -> RunningSimulator:
    """Serve on a daemon thread; port 0 picks a free port. Returns once ``/v1/health`` answers."""
    app = create_app(market, tokens, faults, keepa_keys=keepa_keys)
    # Bind ourselves so port 0 resolves before uvicorn starts (no race on the chosen port).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"simulator:{bound}"
    )
    thread.start()
    url = f"http://{host}:{bound}"
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"simulator did not start on {url}")
        time.sleep(0.02)
    return RunningSimulator(url=url, port=bound, app=app, _server=server, _thread=thread)
