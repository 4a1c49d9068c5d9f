"""The breaker for an unreachable upstream (``reachability.Breaker``): a dead upstream stops a fetch after
``unreachable_after`` requests in a row that never reached it; answers of any kind, and failures after
the connection was made, never trip it. Counts are asserted, not wall time."""

from __future__ import annotations

import asyncio
import pickle
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from asin_platform.resources import upstream as up
from asin_platform.resources.upstream.base import partition_list
from asin_platform.resources.upstream.http import HttpCore, Request, RetryPolicy, gather_or_cancel
from asin_platform.resources.upstream.ratelimit import TokenBucket, reset_buckets
from asin_platform.resources.upstream.reachability import Breaker, ConnectPhase, public_url
from asin_platform.settings import SettingsError, load_settings
from asin_platform_tests.resources.test_upstream import DAY, FAKES, FakeApi, asins, error, make
from asin_platform_tests.resources.test_upstream_http import FakeClock, _Products

# 250 ASINs in batches of 100: 3 batches x 4 kinds = 12 batch requests after the universe.
N_ASINS = 250
BATCH_REQUESTS = 12


@pytest.fixture
def token() -> str:
    return f"tok-{uuid.uuid4().hex}"  # a fresh token: a fresh shared bucket


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    FAKES.clear()
    reset_buckets()


def _dead_port() -> int:
    """A loopback port nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batches_refused(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
    """The universe answers, then the upstream is gone: every batch request is refused."""
    if not request.url.path.endswith("/asins"):
        raise httpx.ConnectError("All connection attempts failed", request=request)
    return None


# ------------------------------------------------------------------------------------- a dead upstream
def test_a_dead_port_fails_the_fetch_at_the_universe_with_one_clear_error(token: str) -> None:
    port = _dead_port()
    client = up.UnifiedApiClient(
        base_url=f"http://user:pw@127.0.0.1:{port}/api?key=k",
        token=token,
        max_attempts=3,
        base_delay=0.001,
        retry_budget_s=600.0,  # without the breaker: 600 s of refused attempts
    )
    with pytest.raises(up.UpstreamUnreachable) as info:
        client.fetch_day("US", DAY)
    exc = info.value
    # the universe is the first request and nothing can be fetched without it: 1 request, 3 attempts
    assert (exc.requests, exc.attempts, exc.endpoint, exc.status) == (1, 3, up.UNIVERSE, 0)
    assert str(exc).startswith(
        f"upstream http://127.0.0.1:{port}/api unreachable: a request failed after retries without "
        "reaching it (last: /v1/sites/US/asins: ConnectError: All connection attempts failed "
        "(Connection refused) after 3 attempts in "
    )
    assert isinstance(exc, up.UpstreamError)  # callers that catch UpstreamError still do
    assert token not in str(exc) and "pw" not in str(exc) and "key=" not in str(exc)
    again = pickle.loads(pickle.dumps(exc))  # crosses process boundaries intact
    assert (str(again), again.requests, again.base_url) == (str(exc), 1, exc.base_url)


def _attempts_per_request(api: FakeApi) -> dict[str, int]:
    """Attempts per logical request (its URL), batch requests only."""
    out: dict[str, int] = {}
    for _, request in api.calls:
        if not request.url.path.endswith("/asins"):
            out[str(request.url)] = out.get(str(request.url), 0) + 1
    return out


def test_an_upstream_gone_mid_fetch_stops_it_after_n_requests_gave_up(token: str) -> None:
    api = FakeApi(asins(N_ASINS), token, fault=_batches_refused)
    # a 60 s budget of 1-10 ms waits: without the breaker, thousands of attempts per request
    client = make(api, concurrency=4, max_attempts=3, unreachable_after=3, retry_budget_s=60.0)
    got = client.fetch_day("US", DAY)
    assert got.unreachable is not None and got.unreachable.requests == 3
    assert str(got.unreachable).startswith(
        "upstream http://upstream.test unreachable: 3 consecutive requests failed after retries "
        "without reaching it (last: /v1/sites/US/"
    )
    per_request = _attempts_per_request(api)
    # the 12 requests run side by side; none made more than max_attempts = 3
    assert len(per_request) <= BATCH_REQUESTS and max(per_request.values()) == 3
    assert sum(n == 3 for n in per_request.values()) >= 3
    # every one of them is in the fetch, failed for good, as a request that ran out of retries is
    failed = [r for r in got.responses if r.error is not None]
    assert len(failed) == BATCH_REQUESTS and got.report.failed_requests == BATCH_REQUESTS
    stop = "(upstream http://upstream.test unreachable, the fetch stopped)"
    assert all(r.error.endswith(stop) for r in failed)
    assert {r.attempts for r in failed} <= {0, 1, 2, 3} and got.report.http_calls == 1 + sum(
        per_request.values()
    )
    assert got.report.missing_asins["products"] == asins(N_ASINS)


@pytest.mark.parametrize("threshold", [1, 5])
def test_the_threshold_is_the_setting(token: str, threshold: int) -> None:
    api = FakeApi(asins(N_ASINS), token, fault=_batches_refused)
    client = make(api, max_attempts=2, unreachable_after=threshold, retry_budget_s=60.0)
    got = client.fetch_day("US", DAY)
    assert got.unreachable is not None and got.unreachable.requests == threshold
    assert max(_attempts_per_request(api).values()) == 2


def test_the_breaker_is_shared_by_the_partitions_of_a_ranged_fetch(token: str) -> None:
    api = FakeApi(asins(N_ASINS), token, fault=_batches_refused)
    client = make(api, max_attempts=2, unreachable_after=3, retry_budget_s=60.0)
    days = [DAY + timedelta(days=i) for i in range(5)]
    fetched = client.fetch_range("US", days)
    # 5 days x 3 batches x 2 snapshot kinds + 3 batches x 2 history kinds = 36 requests, each of
    # them stopped by the one breaker of the fetch after at most 2 attempts; every day says so
    per_request = _attempts_per_request(api)
    assert len(per_request) <= 36 and max(per_request.values()) == 2
    assert [f.unreachable is not None and f.unreachable.requests == 3 for f in fetched] == [True] * 5
    assert sum(f.report.failed_requests for f in fetched) == 36


def test_fetch_days_stops_every_partition_in_flight(token: str) -> None:
    def dead(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    api = FakeApi(asins(N_ASINS), token, fault=dead)
    client = make(api, max_attempts=2, overlap=2, retry_budget_s=60.0)
    days = [DAY + timedelta(days=i) for i in range(10)]
    with pytest.raises(up.UpstreamUnreachable) as info:
        list(client.fetch_days(("US", day) for day in days))
    # the first universe opens it (2 attempts); the one in flight beside it stops at its next
    assert info.value.endpoint == up.UNIVERSE and len(api.calls) <= 2 * 2


def _refusing_core(clock: FakeClock) -> tuple[HttpCore, list[str], httpx.AsyncClient]:
    """A core with the production policy (5 attempts, 0.5 s doubling up to 30 s, 180 s budget) on a
    fake clock, in front of a port that refuses every connection."""
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        raise httpx.ConnectError("All connection attempts failed", request=request)

    policy = RetryPolicy(max_attempts=5, base_delay=0.5, jitter=0.0, max_delay=30.0, budget_s=180.0)
    http = httpx.AsyncClient(base_url="http://api.test", transport=httpx.MockTransport(refuse))
    bucket = TokenBucket(1000.0, 10.0, clock=clock.now, sleep=clock.sleep)
    return HttpCore(http, bucket, policy, clock=clock.now, sleep=clock.sleep), calls, http


def _product(i: int) -> Request:
    return Request("/v1/sites/{site}/products", "US", {"i": str(i)})


def test_requests_side_by_side_stop_when_n_gave_up_with_the_default_policy() -> None:
    """10 requests in flight (a partition's batches) on the production policy: each gives up on the
    server after its 5th refused attempt (7.5 s of backoff each), where without the breaker each
    would retry for 180 s; the 3rd to give up opens the breaker and the other 7 stop at once, their
    5th attempt not made, every one of them failed for good."""
    clock = FakeClock()

    async def go() -> tuple[list[Any], list[str]]:
        core, calls, http = _refusing_core(clock)
        async with http:
            outcomes = await gather_or_cancel([core.request(_product(i), _Products()) for i in range(10)])
        assert core.breaker.open and core.breaker.consecutive == 3
        # 43 calls for 10 requests: 33 retries, none counted for the attempts never made
        assert (core.counters.http_calls, core.counters.retries, core.counters.not_sent) == (43, 33, 0)
        return outcomes, calls

    outcomes, calls = asyncio.run(go())
    per_request = {url: calls.count(url) for url in calls}
    assert len(per_request) == 10 and sorted(per_request.values()) == [4] * 7 + [5] * 3
    raws = [o.raw for o in outcomes]
    stop = "(upstream http://api.test unreachable, the fetch stopped)"
    assert all(r.error.startswith("connection error after ") and r.error.endswith(stop) for r in raws)
    assert sorted(r.attempts for r in raws) == [4] * 7 + [5] * 3
    assert clock.slept[:10] == [0.5] * 10  # the first backoff of each, side by side


def test_requests_one_after_another_stop_after_one_whole_budget_unreached() -> None:
    """Requests made one after another (Keepa's product batches): the first gives up after 5 refused
    attempts but rides out its 180 s budget as before (the upstream may be restarting); a whole
    budget without reaching the server is proof enough, so the 9 after it are recorded, not sent."""
    clock = FakeClock()

    async def go() -> tuple[list[Any], list[str]]:
        core, calls, http = _refusing_core(clock)
        async with http:
            outcomes = [await core.request(_product(i), _Products()) for i in range(10)]
        assert core.counters.not_sent == 9
        return outcomes, calls

    outcomes, calls = asyncio.run(go())
    assert len(calls) == 11 and set(calls) == {"http://api.test/v1/sites/US/products?i=0"}
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]  # 151.5 s
    first, *rest = [o.raw for o in outcomes]
    assert first.error == (
        "connection error after 11 attempts in 151.5s (upstream http://api.test unreachable, the fetch stopped)"
    )
    assert {(r.error, r.attempts, r.status) for r in rest} == {
        ("not sent (upstream http://api.test unreachable, the fetch stopped)", 0, 0)
    }


# ------------------------------------------------------------------------ what must not trip it
def _outcome(api: FakeApi, **overrides: object) -> up.DayFetch:
    config: dict[str, object] = dict(concurrency=1, max_attempts=2, unreachable_after=3)
    return make(api, **{**config, **overrides}).fetch_day("US", DAY)


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: error(503, "unavailable"),
        lambda r: error(404, "not_found"),
        lambda r: error(429, "rate_limited", headers={"Retry-After": "0"}),
        lambda r: (_ for _ in ()).throw(httpx.ReadError("connection reset by peer", request=r)),
        lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("read timed out", request=r)),
        lambda r: (_ for _ in ()).throw(httpx.RemoteProtocolError("server disconnected", request=r)),
    ],
    ids=["5xx", "4xx", "429", "dropped", "read-timeout", "disconnected"],
)
def test_answers_and_failures_after_connecting_never_trip_it(token: str, failure: object) -> None:
    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        if request.url.path.endswith("/asins"):
            return None
        return failure(request)  # type: ignore[operator]

    got = _outcome(FakeApi(asins(N_ASINS), token, fault=fault))
    # today's behaviour: every request attempted, each failed for good and recorded, nothing raised
    assert got.report.failed_requests == BATCH_REQUESTS
    assert len([r for r in got.responses if r.error is not None]) == BATCH_REQUESTS


def test_refusals_with_answers_in_between_never_trip_it() -> None:
    """Requests one after another, every other one refused on each attempt (5 of 10), N = 3: an
    answer comes between two refused requests, so each is failed for good and recorded, as before."""
    clock = FakeClock()
    calls: list[str] = []

    def every_other(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if int(request.url.params["i"]) % 2 == 0:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return httpx.Response(200, json={"products": []})

    async def go() -> list[up.RawResponse]:
        http = httpx.AsyncClient(base_url="http://api.test", transport=httpx.MockTransport(every_other))
        bucket = TokenBucket(1000.0, 10.0, clock=clock.now, sleep=clock.sleep)
        policy = RetryPolicy(max_attempts=2, base_delay=0.5, jitter=0.0, unreachable_after=3)
        core = HttpCore(http, bucket, policy, clock=clock.now, sleep=clock.sleep)
        async with http:
            outcomes = [await core.request(_product(i), _Products()) for i in range(10)]
        return [o.raw for o in outcomes if o.raw is not None]

    raws = asyncio.run(go())
    failed = [r for r in raws if r.error is not None]
    assert len(raws) == 10 and len(calls) == 5 * 2 + 5
    assert [r.params["i"] for r in failed] == ["0", "2", "4", "6", "8"]
    assert {r.error for r in failed} == {"connection error after 2 attempts"}


def test_an_upstream_back_within_the_retries_never_trips_it(token: str) -> None:
    # Every request is refused on its first attempt (a restart), then answered.
    seen: set[str] = set()

    def fault(request: httpx.Request, api: FakeApi) -> httpx.Response | None:
        key = str(request.url)
        if key not in seen:
            seen.add(key)
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return None

    got = _outcome(FakeApi(asins(N_ASINS), token, fault=fault), unreachable_after=1)
    assert got.report.failed_requests == 0 and got.report.connection_errors == 1 + BATCH_REQUESTS


# ----------------------------------------------------------------------------------- the parts
def test_the_breaker_counts_requests_in_a_row_and_any_contact_resets_it() -> None:
    breaker = Breaker(3, "http://u:p@api.test:8080/v1/?key=secret")
    req = Request("/v1/sites/{site}/products", "US", {})
    assert breaker.base_url == "http://api.test:8080/v1"
    assert not breaker.give_up(req, "ConnectError: refused after 5 attempts", 5)
    assert not breaker.give_up(req, "ConnectError: refused after 5 attempts", 5)
    epoch = breaker.epoch
    breaker.reached()  # one attempt of any request got through: start again
    assert breaker.consecutive == 0 and breaker.epoch == epoch + 1
    assert not breaker.give_up(req, "TimeoutError after 5 attempts", 5)
    assert not breaker.give_up(req, "TimeoutError after 5 attempts", 5)
    assert breaker.give_up(req, "TimeoutError after 5 attempts", 5) and breaker.open
    breaker.reached()  # once open, it stays open
    assert breaker.open and breaker.consecutive == 3
    assert breaker.error().last == "/v1/sites/US/products: TimeoutError after 5 attempts"
    universe = Request("/v1/sites/{site}/asins", "US", {}, essential=True)
    assert Breaker(3, "http://api.test").give_up(universe, "x", 5)  # nothing to fetch without it
    assert Breaker(3, "http://api.test").give_up(req, "x", 11, conclusive=True)  # a whole budget
    counted = Breaker(3, "http://api.test")
    counted.give_up(req, "x", 5)
    assert counted.give_up(req, "x", 11, conclusive=True, counted=True) and counted.consecutive == 1


def test_a_timeout_counts_as_unreached_only_when_the_connection_was_never_made() -> None:
    async def trace(phase: ConnectPhase, *names: str) -> ConnectPhase:
        for name in names:
            await phase("connection.connect_tcp.started" if name == "connect" else name, {})
        return phase

    def phase_of(*names: str) -> ConnectPhase:
        return asyncio.run(trace(ConnectPhase(), *names))

    request = httpx.Request("GET", "http://api.test/")
    assert not ConnectPhase().reached(httpx.ConnectError("refused", request=request))
    assert not ConnectPhase().reached(httpx.ConnectTimeout("connect timed out", request=request))
    # a black-holed host: the guard's timeout fired while connecting
    assert not phase_of("connect").reached(TimeoutError())
    # the request was sent: a slow server, reached
    assert phase_of("connect", "http11.send_request_headers.started").reached(TimeoutError())
    # no connection phase at all (ASGI, mocks; a pooled connection): reached
    assert ConnectPhase().reached(TimeoutError()) and ConnectPhase().reached(httpx.ReadError("reset"))


@contextmanager
def _full_backlog(port: int) -> Iterator[None]:
    """Connections that fill the accept queue of a listener on ``port`` that never accepts."""
    socks = []
    try:
        for _ in range(3):
            sock = socket.socket()
            socks.append(sock)
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        yield
    finally:
        for sock in socks:
            sock.close()


def test_a_black_holed_port_is_unreached(token: str) -> None:
    """A listener whose accept queue is full drops new SYNs: connecting hangs until the timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        with _full_backlog(port):
            client = up.UnifiedApiClient(
                base_url=f"http://127.0.0.1:{port}",
                token=token,
                timeout=0.2,
                max_attempts=2,
                base_delay=0.001,
            )
            with pytest.raises(up.UpstreamUnreachable) as info:
                client.fetch_day("US", DAY)
    assert info.value.requests == 1 and info.value.attempts == 2
    # the guard's timeout (no connection within 0.2s) or httpx's own ConnectTimeout, whichever fired
    assert "(last: /v1/sites/US/asins: " in str(info.value) and "after 2 attempts" in str(info.value)
    assert "no connection within 0.2s" in str(info.value) or "ConnectTimeout" in str(info.value)


def test_public_url_and_partition_list() -> None:
    assert public_url("https://user:secret@api.keepa.com/?key=abc#x") == "https://api.keepa.com"
    assert public_url("http://[::1]:8765/v1/") == "http://[::1]:8765/v1"
    days = [date(2025, 3, d) for d in (3, 1, 2, 5)]
    assert partition_list([("US", d) for d in days] + [("DE", date(2025, 3, 1))]) == (
        "US 2025-03-01..2025-03-03, US 2025-03-05, DE 2025-03-01"
    )


def test_run_failure_names_what_was_and_was_not_written() -> None:
    exc = up.UpstreamUnreachable("http://api.test", 3, "/v1/sites/US/products: ConnectError: refused")
    head = (
        "upstream http://api.test unreachable: 3 consecutive requests failed after retries without "
        "reaching it (last: /v1/sites/US/products: ConnectError: refused); no further request was sent"
    )
    tail = (
        "; check that the upstream at http://api.test is up and reachable from this host (settings "
        "upstream.base_url / upstream.keepa_base_url), then re-run"
    )
    d1, d2, d3 = (("US", date(2025, 3, d)) for d in (1, 2, 3))
    assert exc.run_failure([d3]) == head + " and nothing was written for US 2025-03-03" + tail
    assert exc.run_failure([d3], [d2], [d1]) == (
        head + " and nothing was written for US 2025-03-03; stored incomplete, the requests it stopped "
        "marked failed: US 2025-03-02; stored complete before it stopped: US 2025-03-01" + tail
    )
    assert exc.run_failure([], [d2]) == (
        head + "; stored incomplete, the requests it stopped marked failed: US 2025-03-02" + tail
    )


# --------------------------------------------------------------------------------------- the setting
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "Input should be greater than or equal to 1 (got 0)"),
        ("101", "Input should be less than or equal to 100 (got 101)"),
    ],
)
def test_unreachable_after_is_bounded_at_load(value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ASIN_PLATFORM__RETRY_POLICY__UNREACHABLE_AFTER": value})
    assert str(info.value) == (
        f"invalid settings (defaults + env ASIN_PLATFORM__*):\n  retry_policy.unreachable_after: {reason}"
    )


def test_unreachable_after_reaches_every_client() -> None:
    assert load_settings(environ={}).retry_policy.unreachable_after == 3  # the default
    settings = load_settings(environ={"ASIN_PLATFORM__RETRY_POLICY__UNREACHABLE_AFTER": "7"})
    unified = up.UnifiedApiClient.from_settings(settings, "secret")
    keepa = up.KeepaClient.from_settings(settings)
    assert unified.unreachable_after == keepa.unreachable_after == 7
    assert unified.retry_policy().unreachable_after == 7 and unified.breaker().threshold == 7
    with pytest.raises(ValueError, match="unreachable_after must be >= 1, got 0"):
        up.UnifiedApiClient(token="t", unreachable_after=0).fetch_day("US", DAY)
