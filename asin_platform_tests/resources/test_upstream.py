"""Unit tests of the upstream client against a fake API we control (``httpx.MockTransport``).

The fake speaks the contract of ``docs/upstream_api.md`` (universe paging, batches, review paging,
``not_found``, error bodies) and lets each test inject faults: 429 storms with ``Retry-After``, 5xx,
timeouts, malformed bodies, 400/401/404. Delays are kept in milliseconds so the file runs in seconds.
"""

import asyncio
import itertools
import json
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import httpx
import pytest

from asin_platform.resources import upstream as up
from asin_platform.resources.upstream.ratelimit import (
    TokenBucket,
    bucket_params,
    reset_buckets,
    shared_bucket,
)
from asin_platform.settings import load_settings

DAY = date(2026, 11, 20)
Fault = Callable[[httpx.Request, "FakeApi"], httpx.Response | None]


def asins(n: int) -> list[str]:
    return [f"B{i:09d}" for i in range(n)]


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(payload).encode(), headers=headers or {})


def error(status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


class FakeApi:
    """A minimal server of the unified API contract with fault injection."""

    def __init__(
        self,
        universe: list[str],
        token: str,
        *,
        reviews_per_asin: int = 2,
        drop: dict[str, set[str]] | None = None,
        not_found: set[str] | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.universe = universe
        self.token = token
        self.reviews_per_asin = reviews_per_asin
        self.drop = drop or {}  # kind -> ASINs silently absent from that kind's bodies
        self.not_found = not_found or set()
        self.fault = fault
        self.calls: list[tuple[float, httpx.Request]] = []
        self.lock = threading.Lock()

    def paths(self) -> list[str]:
        return [r.url.path for _, r in self.calls]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls.append((time.monotonic(), request))
        if self.fault is not None:
            injected = self.fault(request, self)
            if injected is not None:
                return injected
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return error(401, "unauthorized", "missing or unknown token")
        params = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        parts = request.url.path.strip("/").split("/")  # v1 sites {site} <route>
        if len(parts) != 4 or parts[:2] != ["v1", "sites"]:
            return error(404, "not_found", "no such route")
        site, route = parts[2], parts[3]
        if site not in {"US", "DE"}:
            return error(404, "not_found", f"unknown site {site}")
        if route == "asins":
            size = int(params.get("page_size", 1000))
            start = int(params.get("page_token", 0))
            page = self.universe[start : start + size]
            nxt = str(start + size) if start + size < len(self.universe) else None
            return _json(
                200, {"site": site, "total": len(self.universe), "asins": page, "next_page_token": nxt}
            )
        batch = params.get("asins", "").split(",")
        if len(batch) > 100:
            return error(400, "bad_request", "too many ASINs")
        known = [a for a in batch if a not in self.not_found]
        served = [a for a in known if a not in self.drop.get(route, set())]
        nf = [a for a in batch if a in self.not_found]
        if route == "products":
            return _json(
                200, {"products": [{"asin": a, "title": "t", "extra": 1} for a in served], "not_found": nf}
            )
        if route in ("timeseries", "keywords"):
            return _json(200, {"items": [{"asin": a, "points": []} for a in served], "not_found": nf})
        if route == "reviews":
            reviews = [
                {"review_id": f"R{a}{k}", "asin": a, "rating": 5}
                for a in served
                for k in range(self.reviews_per_asin)
            ]
            size = int(params.get("page_size", 1000))
            start = int(params.get("page_token", 0))
            nxt = str(start + size) if start + size < len(reviews) else None
            return _json(200, {"reviews": reviews[start : start + size], "next_page_token": nxt})
        return error(404, "not_found", "no such route")


# Fakes are registered by name so a client built from config alone (as Dagster rebuilds resources
# inside a run) still finds its handler.
FAKES: dict[str, Any] = {}


class FakeClient(up.UnifiedApiClient):
    """UnifiedApiClient whose transport is the registered fake named ``fake``."""

    fake: str = ""

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        return httpx.MockTransport(FAKES[self.fake])


def make(api: FakeApi, **overrides: Any) -> FakeClient:
    name = uuid.uuid4().hex
    FAKES[name] = api
    config: dict[str, Any] = dict(
        base_url="http://upstream.test",
        token=api.token,
        fake=name,
        qpm=600_000,  # rate limiting is tested on its own; keep the rest fast
        burst=1000,
        base_delay=0.001,
        jitter=0.25,
        max_delay=0.01,
        max_attempts=3,
        timeout=2.0,
    )
    config.update(overrides)
    return FakeClient(**config)


@pytest.fixture
def token() -> str:
    # A fresh token per test gives a fresh shared bucket: tests do not drain each other's quota.
    return f"tok-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _clean() -> Any:
    yield
    FAKES.clear()
    reset_buckets()


def _query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


def _route_fault(route: str, response: Callable[[int], httpx.Response | None]) -> Fault:
    """Fault on one route; ``response`` gets the 1-based count of calls to that route so far."""
    counter = itertools.count(1)

    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        if request.url.path.endswith("/" + route):
            return response(next(counter))
        return None

    return fault


# ------------------------------------------------------------------------------------------ happy path
def test_fetch_day_pages_batches_and_reports(token: str) -> None:
    universe = asins(250)
    api = FakeApi(universe, token, reviews_per_asin=3)
    client = make(api, page_size=100, batch_size=100)
    got = client.fetch_day("US", DAY)

    assert got.universe == universe
    paths = api.paths()
    assert paths.count("/v1/sites/US/asins") == 3  # 250 ASINs in pages of 100
    for route in ("products", "timeseries", "keywords"):
        assert paths.count(f"/v1/sites/US/{route}") == 3  # ceil(250 / 100) batches
    # 300 reviews per full batch in pages of 100: 3 + 3 + 2 pages
    assert paths.count("/v1/sites/US/reviews") == 8

    report = got.report
    assert report.tracked_asins == 250
    assert report.received_asins == {"products": 250, "timeseries": 250, "keywords": 250}
    assert all(v == [] for v in report.missing_asins.values())
    assert report.requests == len(got.responses) == 3 + 9 + 8
    assert report.retries == report.failed_requests == report.throttled == 0
    assert {r.endpoint for r in got.responses} == {
        up.UNIVERSE,
        up.PRODUCTS,
        up.TIMESERIES,
        up.REVIEWS,
        up.KEYWORDS,
    }
    for raw in got.responses:
        assert raw.error is None and raw.status == 200 and raw.attempts == 1
        assert raw.fetched_at.tzinfo is not None and raw.fetched_at.utcoffset() == UTC.utcoffset(None)
        assert token not in json.dumps(raw.params) and token not in raw.body
        json.loads(raw.body)
    ts = next(r for r in got.responses if r.endpoint == up.TIMESERIES)
    assert ts.params["start"] == ts.params["end"] == "2026-11-20"
    assert len(ts.asins) == 100 and ts.params["asins"] == ",".join(ts.asins)
    rv = [r for r in got.responses if r.endpoint == up.REVIEWS]
    assert all(r.params["since"] == r.params["until"] == "2026-11-20" for r in rv)
    assert sum("page_token" in r.params for r in rv) == 5
    assert all(r.asins == () for r in got.responses if r.endpoint == up.UNIVERSE)
    # reprs stay short (bodies are large and reprs land in logs and tracebacks)
    assert len(repr(got)) < 200 and all(len(repr(r)) < 200 for r in got.responses)
    # every request carried the bearer token, only in the header
    assert all(req.headers["Authorization"] == f"Bearer {token}" for _, req in api.calls)
    assert all(token not in str(req.url) for _, req in api.calls)


def test_empty_universe_is_not_an_error(token: str) -> None:
    got = make(FakeApi([], token)).fetch_day("US", DAY)
    assert got.universe == [] and got.report.tracked_asins == 0 and len(got.responses) == 1
    assert got.report.as_metadata()["missing_timeseries"] == 0


def test_missing_and_not_found_asins_are_reported(token: str) -> None:
    universe = asins(120)
    dropped = {universe[3], universe[110]}
    api = FakeApi(universe, token, drop={"timeseries": dropped}, not_found={universe[7]})
    report = make(api).fetch_day("US", DAY).report
    assert sorted(report.missing_asins["timeseries"]) == sorted(dropped | {universe[7]})
    assert report.missing_asins["products"] == [universe[7]]
    assert report.missing_asins["reviews"] == []  # no review that day is not missing data
    assert report.received_asins["timeseries"] == 117
    assert report.failed_requests == 0
    meta = report.as_metadata()
    assert meta["missing_timeseries"] == 3 and meta["received_timeseries"] == 117
    assert universe[3] in str(meta["missing_sample"])
    assert all(isinstance(v, int | float | str) for v in meta.values())


# ------------------------------------------------------------------------------------------- retries
def test_5xx_then_success_is_retried(token: str) -> None:
    fault = _route_fault("timeseries", lambda n: error(503, "unavailable") if n <= 2 else None)
    api = FakeApi(asins(50), token, fault=fault)
    got = make(api).fetch_day("US", DAY)
    ts = [r for r in got.responses if r.endpoint == up.TIMESERIES]
    assert len(ts) == 1 and ts[0].error is None and ts[0].attempts == 3
    assert got.report.retries == 2 and got.report.server_errors == 2
    assert got.report.missing_asins["timeseries"] == []


def test_batch_failing_for_good_is_recorded_not_raised(token: str) -> None:
    universe = asins(150)

    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        # the first batch of keywords always fails; the second succeeds
        if request.url.path.endswith("/keywords") and universe[0] in _query(request)["asins"]:
            return error(502, "bad_gateway")
        return None

    api = FakeApi(universe, token, fault=fault)
    got = make(api, max_attempts=3).fetch_day("US", DAY)
    failed = [r for r in got.responses if r.error is not None]
    assert len(failed) == 1
    raw = failed[0]
    assert raw.endpoint == up.KEYWORDS and raw.status == 502 and raw.attempts == 3
    assert raw.error == "HTTP 502 after 3 attempts"
    assert json.loads(raw.body)["error"]["code"] == "bad_gateway"  # stored as received
    assert sorted(got.report.missing_asins["keywords"]) == sorted(raw.asins)
    assert got.report.received_asins["keywords"] == 150 - len(raw.asins)
    assert got.report.failed_requests == 1 and got.report.server_errors == 3
    # the report names what failed for good: endpoint, the ASINs it covered, the reason
    (failure,) = got.report.failures
    assert failure.endpoint == up.KEYWORDS and failure.asins == raw.asins and failure.reason == raw.error
    assert got.report.as_metadata()["failed_endpoints"] == f"{up.KEYWORDS}: 100 ASINs"


def test_a_time_budget_retries_past_max_attempts_then_fails_for_good(token: str) -> None:
    universe = asins(150)
    calls: dict[str, int] = {}

    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        # the first products batch answers 503 five times, then recovers; keywords never do
        batch = _query(request).get("asins", "")
        key = request.url.path.rsplit("/", 1)[-1] + batch[:10]
        calls[key] = calls.get(key, 0) + 1
        if request.url.path.endswith("/products") and universe[0] in batch:
            return error(503, "unavailable") if calls[key] <= 5 else None
        if request.url.path.endswith("/keywords") and universe[0] in batch:
            return error(503, "unavailable")
        return None

    got = make(FakeApi(universe, token, fault=fault), max_attempts=2, retry_budget_s=0.5).fetch_day("US", DAY)
    products = [r for r in got.responses if r.endpoint == up.PRODUCTS and universe[0] in r.asins]
    assert products[0].error is None and products[0].attempts == 6  # past max_attempts=2, within 0.5 s
    (failure,) = got.report.failures
    assert failure.endpoint == up.KEYWORDS and failure.status == 503 and failure.attempts > 2
    assert failure.reason.endswith("(the next wait would overrun the retry budget of 0.5s)")
    assert got.report.missing_asins["products"] == [] and len(got.report.missing_asins["keywords"]) == 100


def test_timeouts_are_retried_then_recorded(token: str) -> None:
    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        if request.url.path.endswith("/products"):
            raise httpx.ReadTimeout("read timed out", request=request)
        return None

    got = make(FakeApi(asins(30), token, fault=fault), max_attempts=4).fetch_day("US", DAY)
    raw = next(r for r in got.responses if r.endpoint == up.PRODUCTS)
    assert (raw.status, raw.attempts, raw.body) == (0, 4, "")
    assert raw.error == "timeout after 4 attempts"
    assert got.report.timeouts == 4 and len(got.report.missing_asins["products"]) == 30


def test_slow_response_hits_client_timeout(token: str) -> None:
    api = FakeApi(asins(10), token)

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/keywords"):
            await asyncio.sleep(5)
        return api(request)

    FAKES["slow"] = slow  # type: ignore[assignment]
    client = FakeClient(
        base_url="http://upstream.test",
        token=token,
        fake="slow",
        timeout=0.05,
        max_attempts=2,
        base_delay=0.001,
    )
    started = time.perf_counter()
    got = client.fetch_day("US", DAY)
    assert time.perf_counter() - started < 2
    raw = next(r for r in got.responses if r.endpoint == up.KEYWORDS)
    assert raw.error == "timeout after 2 attempts" and raw.status == 0


def test_connection_errors_are_retried(token: str) -> None:
    fault = _route_fault("products", lambda n: None)
    calls = itertools.count(1)

    def flaky(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        if request.url.path.endswith("/products") and next(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return fault(request, api)

    got = make(FakeApi(asins(10), token, fault=flaky)).fetch_day("US", DAY)
    assert got.report.connection_errors == 1 and got.report.retries == 1 and got.report.failed_requests == 0


def test_malformed_body_is_retried_then_kept_as_is(token: str) -> None:
    truncated = '{"items": [{"asin": "B0'
    fault = _route_fault("timeseries", lambda n: httpx.Response(200, content=truncated.encode()))
    got = make(FakeApi(asins(20), token, fault=fault), max_attempts=3).fetch_day("US", DAY)
    raw = next(r for r in got.responses if r.endpoint == up.TIMESERIES)
    assert raw.status == 200 and raw.body == truncated and raw.attempts == 3
    assert raw.error == "malformed JSON after 3 attempts"
    assert got.report.malformed == 3 and len(got.report.missing_asins["timeseries"]) == 20


def test_malformed_then_good_body_recovers(token: str) -> None:
    fault = _route_fault("products", lambda n: httpx.Response(200, content=b"<html>oops") if n == 1 else None)
    # a valid JSON object without the contract's list is just as unusable
    fault2 = _route_fault("keywords", lambda n: _json(200, {"unexpected": True}) if n == 1 else None)

    def both(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        return fault(request, api) or fault2(request, api)

    got = make(FakeApi(asins(20), token, fault=both)).fetch_day("US", DAY)
    assert got.report.malformed == 2 and got.report.failed_requests == 0
    assert got.report.received_asins == {"products": 20, "timeseries": 20, "keywords": 20}


@pytest.mark.parametrize("status,code", [(400, "bad_request"), (404, "not_found")])
def test_client_errors_on_a_batch_are_not_retried(token: str, status: int, code: str) -> None:
    fault = _route_fault("reviews", lambda n: error(status, code, "bad page token"))
    got = make(FakeApi(asins(20), token, fault=fault)).fetch_day("US", DAY)
    raw = next(r for r in got.responses if r.endpoint == up.REVIEWS)
    assert raw.attempts == 1 and raw.status == status
    assert raw.error == f"HTTP {status} ({code}: bad page token) after 1 attempt"
    assert len(got.report.missing_asins["reviews"]) == 20 and got.report.retries == 0


# ----------------------------------------------------------------------------------- fatal errors
def test_universe_unavailable_raises_naming_endpoint_not_token(token: str) -> None:
    fault = _route_fault("asins", lambda n: error(503, "unavailable", f"echo {token}"))
    client = make(FakeApi(asins(10), token, fault=fault), max_attempts=4)
    with pytest.raises(up.UpstreamError) as info:
        client.fetch_day("US", DAY)
    exc = info.value
    assert (exc.endpoint, exc.status, exc.attempts) == (up.UNIVERSE, 503, 4)
    assert "/v1/sites/US/asins" in str(exc) and "HTTP 503" in str(exc) and "4 attempts" in str(exc)
    assert token not in str(exc) and token not in repr(exc)
    again = pickle.loads(pickle.dumps(exc))  # crosses process boundaries intact
    assert (again.endpoint, again.status, again.attempts, str(again)) == (exc.endpoint, 503, 4, str(exc))


def test_unknown_site_raises_after_one_attempt(token: str) -> None:
    with pytest.raises(up.UpstreamError) as info:
        make(FakeApi(asins(10), token)).fetch_day("XX", DAY)
    assert info.value.status == 404 and info.value.attempts == 1
    assert "unknown site XX" in str(info.value)


def test_bad_token_raises_immediately_and_never_shows_it(token: str) -> None:
    api = FakeApi(asins(10), "the-right-token")
    client = make(api, token=token)
    with pytest.raises(up.UpstreamError) as info:
        client.fetch_day("US", DAY)
    assert info.value.status == 401 and info.value.attempts == 1 and len(api.calls) == 1
    assert token not in str(info.value) and token not in repr(client) and token not in str(client)
    assert "'***'" in repr(client)


def test_401_mid_fetch_cancels_the_rest(token: str) -> None:
    fault = _route_fault("timeseries", lambda n: error(401, "unauthorized"))
    api = FakeApi(asins(1000), token, fault=fault)
    client = make(api, concurrency=2)

    async def with_latency(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)  # a real round trip yields to the loop; a sync mock never would
        return api(request)

    FAKES[client.fake] = with_latency
    with pytest.raises(up.UpstreamError) as info:
        client.fetch_day("US", DAY)
    assert info.value.endpoint == up.TIMESERIES and info.value.status == 401
    # cancelled, not run to the end: far fewer than the 1 + 40 calls of a full fetch
    assert len(api.calls) < 41


def test_token_echoed_by_server_is_scrubbed(token: str) -> None:
    fault = _route_fault("products", lambda n: error(400, "bad_request", f"header was Bearer {token}"))
    got = make(FakeApi(asins(5), token, fault=fault)).fetch_day("US", DAY)
    raw = next(r for r in got.responses if r.endpoint == up.PRODUCTS)
    assert token not in raw.body and token not in (raw.error or "") and "***" in (raw.error or "")


# ------------------------------------------------------------------------------- 429 and rate limit
def test_429_storm_honours_fractional_retry_after(token: str) -> None:
    # every request in the first 0.15 s is refused with Retry-After 0.05
    state: dict[str, float] = {}

    def storm(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        now = time.monotonic()
        state.setdefault("start", now)
        if now - state["start"] < 0.15:
            return error(429, "rate_limited", headers={"Retry-After": "0.05", "X-RateLimit-Remaining": "0"})
        return None

    api = FakeApi(asins(300), token, fault=storm)
    got = make(api, max_attempts=10, concurrency=4).fetch_day("US", DAY)
    assert got.report.failed_requests == 0 and got.report.throttled >= 2
    # after each 429, nothing went out before its Retry-After had passed
    times = [t for t, _ in api.calls]
    refused = [t for t, r in api.calls if t - state["start"] < 0.15]
    for t429 in refused:
        later = [t for t in times if t > t429]
        assert not later or min(later) - t429 >= 0.045  # monotonic clock granularity slack


def test_429_past_budget_is_recorded(token: str) -> None:
    fault = _route_fault("keywords", lambda n: error(429, "rate_limited", headers={"Retry-After": "0.001"}))
    got = make(FakeApi(asins(10), token, fault=fault), max_attempts=3).fetch_day("US", DAY)
    raw = next(r for r in got.responses if r.endpoint == up.KEYWORDS)
    assert raw.error == "HTTP 429 after 3 attempts" and raw.status == 429
    assert got.report.throttled == 3


def test_client_spacing_respects_qpm_and_burst(token: str) -> None:
    # 6000 qpm = 100/s, burst 5, no headroom: 41 calls cannot take less than (41 - 5) / 100 s
    api = FakeApi(asins(1000), token)
    started = time.monotonic()
    make(api, qpm=6000, burst=5, headroom=0.0, burst_reserve=0.0, concurrency=8).fetch_day("US", DAY)
    elapsed = time.monotonic() - started
    assert len(api.calls) == 41 and elapsed >= 0.34
    times = sorted(t for t, _ in api.calls)
    for i, j in itertools.combinations(range(len(times)), 2):
        # a token bucket admits at most burst + rate * window calls in any window
        assert j - i + 1 <= 5 + 100 * (times[j] - times[i]) + 1e-6 + 1


def test_bucket_is_shared_by_instances_of_the_same_token(token: str) -> None:
    api = FakeApi(asins(500), token)
    a = make(api, qpm=6000, burst=3, headroom=0.0, burst_reserve=0.0)
    b = make(api, qpm=6000, burst=3, headroom=0.0, burst_reserve=0.0)
    other = make(FakeApi(asins(1), "other-token"), qpm=6000, burst=3, headroom=0.0, burst_reserve=0.0)
    assert a.bucket() is b.bucket() and a.bucket() is not other.bucket()
    started = time.monotonic()
    threads = [threading.Thread(target=c.fetch_day, args=("US", DAY)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # 2 x 21 calls through one 100/s bucket of 3: at least (42 - 3) / 100 s; two buckets would halve it
    assert len(api.calls) == 42 and elapsed >= 0.37


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_rate_up_to_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, capacity=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(0.1)
    clock.now += 0.25
    assert bucket.try_acquire() == 0.0 and bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.05)
    clock.now += 60
    assert bucket.snapshot().tokens == 3.0  # never above capacity


def test_token_bucket_penalty_blocks_and_drains() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100, capacity=10, clock=clock)
    assert bucket.try_acquire() == 0.0
    bucket.penalize(0.1)
    snap = bucket.snapshot()
    assert snap.tokens <= 0.0 and snap.blocked_for_s == pytest.approx(0.1)
    assert bucket.try_acquire() == pytest.approx(0.1)
    clock.now += 0.1
    # one token when the block lifts, not the 10 a blocked-but-refilling bucket would hold, and
    # the next at 70 % of the rate (AIMD: a 429 means someone else spends this token too)
    assert bucket.try_acquire() == 0.0 and bucket.try_acquire() == pytest.approx(0.01 / 0.7, rel=0.01)
    bucket.penalize(0.0)  # a second 429 within the cooldown is the same signal: no second cut
    assert bucket.snapshot().factor == pytest.approx(0.7, abs=0.01)
    clock.now += 1
    bucket.penalize(0.0)
    assert bucket.snapshot().factor == pytest.approx(min(1.0, 0.7 + 0.05) * 0.7, abs=0.01)
    clock.now += 20  # linear recovery back to the full rate
    assert bucket.snapshot().factor == 1.0
    bucket.sync_remaining(2)  # the server knows better: another process spends this token too
    assert bucket.snapshot().tokens == 2.0


def test_token_bucket_follows_the_advertised_limit() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100, capacity=5, clock=clock)
    assert bucket.observe_limit(10) is True and bucket.snapshot().rate_per_s == 10
    assert bucket.observe_limit(10) is False
    bucket.configure(100, 5)  # a new client instance re-applies its config: the cap stays
    assert bucket.snapshot().rate_per_s == 10 and bucket.snapshot().configured_rate_per_s == 100
    bucket.observe_limit(1000)  # the server raised the quota: back to what we were configured for
    assert bucket.snapshot().rate_per_s == 100


def test_bucket_params_keep_headroom() -> None:
    assert bucket_params(1200, 20, 0.0, 0.0) == (20.0, 20.0)
    rate, cap = bucket_params(1200, 20, 0.02, 0.5)
    assert rate == pytest.approx(19.6) and cap == 10.0
    assert bucket_params(60, 1, 0.02, 0.5)[1] == 1.0
    assert bucket_params(60, 3, 0.02, 0.5)[1] == 2.0
    with pytest.raises(ValueError):
        bucket_params(60, 1, 1.0, 0.0)
    with pytest.raises(ValueError):
        bucket_params(60, 1, 0.0, 1.0)


def test_shared_bucket_registry_does_not_hold_the_token(token: str) -> None:
    from asin_platform.resources.upstream import ratelimit

    shared_bucket("http://x", token, 10, 5)
    assert token not in repr(ratelimit._REGISTRY)
    again = shared_bucket("http://x/", token, 20, 5)  # same quota owner; new rate wins
    assert again.snapshot().rate_per_s == 20


def test_backoff_formula() -> None:
    assert up.backoff_delay(1, 0.5, 30, 0.25, 0.0) == 0.5
    assert up.backoff_delay(3, 0.5, 30, 0.25, 0.0) == 2.0
    assert up.backoff_delay(3, 0.5, 30, 0.25, 1.0) == 2.5
    assert up.backoff_delay(10, 0.5, 30, 0.25, 0.5) == 30 * 1.125


# ------------------------------------------------------------------------------------- plumbing
def test_progress_lines_about_every_tenth(token: str) -> None:
    lines: list[str] = []
    make(FakeApi(asins(2000), token)).fetch_day("US", DAY, progress=lines.append)
    batch_lines = [line for line in lines if " batches, " in line]
    assert 8 <= len(batch_lines) <= 10
    assert lines[0].startswith("universe 2000 ASINs in 2 pages")
    assert lines[-1].startswith("done US 2026-11-20")
    assert "keywords 20/20 batches" in batch_lines[-1] and "req/min" in batch_lines[-1]


def test_pagination_loop_is_cut(token: str) -> None:
    fault = _route_fault("reviews", lambda n: _json(200, {"reviews": [], "next_page_token": "same"}))
    got = make(FakeApi(asins(5), token, fault=fault)).fetch_day("US", DAY)
    rv = [r for r in got.responses if r.endpoint == up.REVIEWS]
    assert len(rv) == 2 and rv[-1].error is not None and "pagination loop" in rv[-1].error
    assert len(got.report.missing_asins["reviews"]) == 5


def test_works_from_a_thread_and_inside_a_running_loop(token: str) -> None:
    client = make(FakeApi(asins(30), token))
    out: list[up.DayFetch] = []
    worker = threading.Thread(target=lambda: out.append(client.fetch_day("US", DAY)))
    worker.start()
    worker.join()
    assert out and out[0].report.tracked_asins == 30

    async def inside() -> up.DayFetch:
        return client.fetch_day("US", DAY)

    assert asyncio.run(inside()).report.tracked_asins == 30


def test_from_settings_maps_every_knob() -> None:
    settings = load_settings(
        environ={
            "ASIN_PLATFORM__UPSTREAM__BASE_URL": "http://api.example:9000",
            "ASIN_PLATFORM__UPSTREAM__BATCH_SIZE": "50",
            "ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS": "7",
        }
    )
    client = up.UnifiedApiClient.from_settings(settings, "secret")
    limit = settings.rate_limit("unified")
    assert (client.base_url, client.batch_size, client.max_attempts) == ("http://api.example:9000", 50, 7)
    assert (client.qpm, client.burst, client.timeout) == (limit.qpm, limit.burst, limit.timeout)
    assert (
        client.page_size == settings.upstream.page_size
        and client.concurrency == settings.upstream.concurrency
    )


def test_env_var_token_outside_a_run(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    api = FakeApi(asins(5), token)
    FAKES["env"] = api
    client = FakeClient(
        base_url="http://upstream.test", token=dg.EnvVar("ASIN_PLATFORM_TEST_TOKEN"), fake="env"
    )
    monkeypatch.delenv("ASIN_PLATFORM_TEST_TOKEN", raising=False)
    with pytest.raises(ValueError, match="ASIN_PLATFORM_TEST_TOKEN is not set"):
        client.fetch_day("US", DAY)
    monkeypatch.setenv("ASIN_PLATFORM_TEST_TOKEN", token)
    assert client.fetch_day("US", DAY).report.tracked_asins == 5


def test_resource_in_a_dagster_run(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("ASIN_PLATFORM_TEST_TOKEN", token)
    FAKES["dagster"] = FakeApi(asins(40), token)

    @dg.asset
    def fetched(context: dg.AssetExecutionContext, upstream: up.UpstreamClient) -> dg.MaterializeResult:
        got = upstream.fetch_day("US", DAY, progress=context.log.info)
        return dg.MaterializeResult(metadata=got.report.as_metadata())

    client = FakeClient(
        base_url="http://upstream.test", token=dg.EnvVar("ASIN_PLATFORM_TEST_TOKEN"), fake="dagster"
    )
    result = dg.materialize([fetched], resources={"upstream": client})
    assert result.success
    meta = result.asset_materializations_for_node("fetched")[0].metadata
    assert meta["tracked_asins"].value == 40 and meta["failed_requests"].value == 0


def test_invalid_config_is_refused_before_any_call(token: str) -> None:
    api = FakeApi(asins(5), token)
    with pytest.raises(ValueError, match="batch_size must be 1..100"):
        make(api, batch_size=500).fetch_day("US", DAY)
    assert api.calls == []


# ------------------------------------------------------------------------------------- fetch_days
def _with_latency(client: FakeClient, api: FakeApi, in_flight: dict[str, int], peak: list[int]) -> None:
    """Serve ``api`` with a few ms of latency, recording how many partitions (dates) overlap."""

    async def handler(request: httpx.Request) -> httpx.Response:
        day = _query(request).get("date") or _query(request).get("start") or _query(request)["since"]
        in_flight[day] = in_flight.get(day, 0) + 1
        peak[0] = max(peak[0], sum(1 for v in in_flight.values() if v))
        try:
            await asyncio.sleep(0.003)
            return api(request)
        finally:
            in_flight[day] -= 1

    FAKES[client.fake] = handler


def test_fetch_days_overlaps_partitions_and_keeps_order(token: str) -> None:
    api = FakeApi(asins(300), token)
    client = make(api, overlap=2, concurrency=4)
    in_flight: dict[str, int] = {}
    peak = [0]
    _with_latency(client, api, in_flight, peak)
    days = [date(2026, 11, d) for d in range(1, 6)]
    lines: list[str] = []
    got = list(client.fetch_days([("US", d) for d in days], progress=lines.append))
    assert [g.day for g in got] == days
    assert all(g.report.tracked_asins == 300 and g.report.failed_requests == 0 for g in got)
    assert peak[0] == 2  # two partitions in flight, never more
    assert any(line.startswith("US 2026-11-03: ") for line in lines)
    assert not any(t.name == "upstream-fetch-days" for t in threading.enumerate())


def test_fetch_days_raises_in_turn_and_stops(token: str) -> None:
    api = FakeApi(asins(50), token)
    client = make(api, overlap=3)
    parts = [("US", date(2026, 11, 1)), ("DE", date(2026, 11, 1)), ("XX", date(2026, 11, 1)), ("US", DAY)]
    seen: list[str] = []
    with pytest.raises(up.UpstreamError) as info:
        for fetched in client.fetch_days(parts):
            seen.append(fetched.site)
    assert seen == ["US", "DE"] and info.value.status == 404
    assert not any(t.name == "upstream-fetch-days" for t in threading.enumerate())


def test_fetch_days_early_exit_cancels_the_rest(token: str) -> None:
    api = FakeApi(asins(200), token)
    client = make(api, overlap=2)
    days = [("US", date(2026, 10, d)) for d in range(1, 31)]
    for fetched in client.fetch_days(days):
        assert fetched.report.tracked_asins == 200
        break
    fetched_dates = {_query(r).get("date") for _, r in api.calls if r.url.path.endswith("/asins")}
    assert len(fetched_dates) <= 4  # stopped, not run to the end of the month
    assert not any(t.name == "upstream-fetch-days" for t in threading.enumerate())


def test_fetch_days_without_overlap_is_sequential(token: str) -> None:
    api = FakeApi(asins(20), token)
    client = make(api, overlap=1)
    got = list(client.fetch_days([("US", DAY), ("DE", DAY)]))
    assert [g.site for g in got] == ["US", "DE"]
