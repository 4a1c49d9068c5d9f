"""The shared HTTP core (``resources/upstream/http.py``) against ``httpx.MockTransport`` on a fake clock.

The clock and sleep of the core and of its token bucket are one ``FakeClock``: a 60 s Retry-After
costs no real time, and the tests assert exactly how long the core waited.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest

from asin_platform.resources.upstream import FetchReport, RawResponse
from asin_platform.resources.upstream.http import Exchange, HttpCore, Request, RetryPolicy
from asin_platform.resources.upstream.ratelimit import TokenBucket

SECRET = "tok-3c1f9e2a7b"
ENDPOINT = "/v1/sites/{site}/products"


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += max(0.0, seconds)
        await asyncio.sleep(0)


class _Products(Exchange):
    list_key = "products"


def _run(
    answers: Callable[[int], httpx.Response],
    policy: RetryPolicy,
    clock: FakeClock,
    bucket: TokenBucket | None = None,
) -> tuple[RawResponse, Any, HttpCore, list[float]]:
    """One request through a core whose server answers ``answers(n)`` for the n-th call (1-based);
    returns (response, body, core, the fake-clock times the calls arrived)."""
    arrivals: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append(clock.now())
        return answers(len(arrivals))

    bucket = bucket or TokenBucket(1000.0, 10.0, clock=clock.now, sleep=clock.sleep)

    async def go() -> tuple[RawResponse, Any, HttpCore]:
        async with httpx.AsyncClient(
            base_url="http://api.test", transport=httpx.MockTransport(handler)
        ) as http:
            core = HttpCore(http, bucket, policy, secrets=(SECRET,), clock=clock.now, sleep=clock.sleep)
            outcome = await core.request(
                Request(ENDPOINT, "US", {"asins": "A1,A2"}, ("A1", "A2")), _Products()
            )
            assert outcome.raw is not None
            return outcome.raw, outcome.body, core

    raw, body, core = asyncio.run(go())
    return raw, body, core, arrivals


def _ok() -> httpx.Response:
    return httpx.Response(200, json={"products": [{"asin": "A1"}, {"asin": "A2"}]})


def test_429_with_retry_after_is_waited_out_within_the_budget() -> None:
    clock = FakeClock()
    # Three 429s asking for 60 s each: more attempts than max_attempts=2 allows, but within 200 s.
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, jitter=0.0, budget_s=200.0)
    raw, body, core, arrivals = _run(
        lambda n: httpx.Response(429, headers={"Retry-After": "60"}) if n <= 3 else _ok(), policy, clock
    )
    assert raw.error is None and raw.attempts == 4 and body["products"][1]["asin"] == "A2"
    # each retry arrived once the server's 60 s had passed, no earlier
    assert [round(b - a, 3) for a, b in zip(arrivals, arrivals[1:], strict=False)] == [60.0, 60.0, 60.0]
    assert core.counters.throttled == 3 and core.counters.retries == 3
    assert core.counters.retry_wait_s == pytest.approx(180.0)


def test_budget_exhaustion_is_failed_for_good_with_its_reason() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, jitter=0.0, budget_s=120.0)
    raw, body, core, arrivals = _run(
        lambda n: httpx.Response(429, headers={"Retry-After": "50"}), policy, clock
    )
    # attempts at 0, 50, 100 s; a fourth would start at 150 s > 120 s: stop, without waiting for it
    assert body is None and raw.attempts == 3 and raw.status == 429
    assert (
        raw.error
        == "HTTP 429 after 3 attempts in 100.0s (the next wait would overrun the retry budget of 120s)"
    )
    assert raw.asins == ("A1", "A2") and raw.endpoint == ENDPOINT
    assert len(arrivals) == 3 and clock.now() - arrivals[0] == pytest.approx(100.0)

    report = FetchReport(site="US", day=date(2026, 1, 1), source="unified", tracked_asins=2)
    report.record_failures([raw])
    assert report.failed_requests == 1 and report.failed_endpoints() == {ENDPOINT: 2}
    assert report.as_metadata()["failed_endpoints"] == f"{ENDPOINT}: 2 ASINs"


def test_5xx_and_drops_are_retried_by_time_not_by_count() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, jitter=0.0, max_delay=4.0, budget_s=30.0)

    def answers(n: int) -> httpx.Response:
        if n % 2:
            raise httpx.ConnectError("connection reset")
        return httpx.Response(503) if n < 6 else _ok()

    raw, _, core, _ = _run(answers, policy, clock)
    assert raw.error is None and raw.attempts == 6  # 5 failures, well past max_attempts=2
    assert core.counters.connection_errors == 3 and core.counters.server_errors == 2
    assert clock.slept == [1.0, 2.0, 4.0, 4.0, 4.0]  # exponential backoff, capped at max_delay


def test_without_a_budget_max_attempts_bounds_retries() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, jitter=0.0)
    raw, _, _, arrivals = _run(lambda n: httpx.Response(502), policy, clock)
    assert raw.error == "HTTP 502 after 3 attempts" and len(arrivals) == 3


def test_unreadable_bodies_stay_bounded_by_count_under_a_budget() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, jitter=0.0, budget_s=1000.0)
    raw, _, core, _ = _run(lambda n: httpx.Response(200, text="<html>oops</html>"), policy, clock)
    assert raw.error == "malformed JSON after 3 attempts in 0.3s" and core.counters.malformed == 3


def test_limiter_slows_down_after_429_and_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 1.0, clock=clock.now, sleep=clock.sleep)
    policy = RetryPolicy(max_attempts=5, base_delay=0.1, jitter=0.0, budget_s=60.0)
    before = bucket.snapshot().factor
    raw, _, _, _ = _run(
        lambda n: httpx.Response(429, headers={"Retry-After": "2"}) if n == 1 else _ok(),
        policy,
        clock,
        bucket,
    )
    assert raw.error is None and before == 1.0
    slowed = bucket.snapshot().factor
    assert 0.7 <= slowed < 0.75  # cut to 70% of its rate by the 429, barely recovered since ...
    clock.now_s += 10.0
    assert bucket.snapshot().factor > slowed  # ... and recovers with time
    clock.now_s += 100.0
    assert bucket.snapshot().factor == 1.0


def test_secrets_are_scrubbed_from_error_detail_and_stored_body() -> None:
    clock = FakeClock()
    echo = {
        "error": {"code": "bad_request", "message": f"token {SECRET} may not ask for this"},
        "echo": SECRET,
    }
    raw, _, _, _ = _run(
        lambda n: httpx.Response(400, text=json.dumps(echo)), RetryPolicy(budget_s=10.0), clock
    )
    assert raw.error is not None and raw.error.startswith("HTTP 400 (bad_request: token *** may not")
    assert SECRET not in raw.error and SECRET not in raw.body and "***" in raw.body
    assert raw.attempts == 1  # a 400 would fail again: not retried
