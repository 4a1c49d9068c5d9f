"""Integration tests: the upstream client against the in-process simulator (no sockets).

The simulator injects faults deterministically and counts them (``app.state.stats``), so the client's
report can be checked against what the server actually did, and its quota log shows whether the
client kept under the quota.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import date
from typing import Any

import dagster as dg
import pytest

from asin_platform.resources import upstream as up
from asin_platform.resources.upstream.ratelimit import reset_buckets
from asin_platform.settings import load_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

pytest.importorskip("asin_platform.simulator")

DAY = date(2025, 6, 1)
# One small market for every test (built once per process, ~0.3 s): ~440 ASINs listed on DAY.
MARKET = dict(sim_seed=11, sim_sites=["US", "DE"], sim_asins_per_site=600, sim_epoch="2025-01-01")
FAST_RETRY = dict(base_delay=0.005, max_delay=0.05, jitter=0.25)


def sim(**overrides: Any) -> SimulatedUpstreamClient:
    # A fresh token per client gives a fresh simulated server and a fresh client bucket.
    config: dict[str, Any] = dict(MARKET, **FAST_RETRY, token=f"sim-{uuid.uuid4().hex}")
    config.update(overrides)
    return SimulatedUpstreamClient(**config)


@pytest.fixture(autouse=True)
def _clean() -> Any:
    yield
    reset_buckets()


def stats(client: SimulatedUpstreamClient) -> dict[str, Any]:
    return client.simulator_app().state.stats.snapshot()


def test_clean_fetch_matches_the_market() -> None:
    client = sim()
    got = client.fetch_day("US", DAY)
    market = client.simulator_app().state.market
    assert got.universe == market.universe("US", DAY)
    n = len(got.universe)
    assert n > 100
    report = got.report
    assert report.received_asins == {"products": n, "timeseries": n, "keywords": n}
    assert report.failed_requests == report.retries == report.throttled == 0
    reviews = [
        review
        for raw in got.responses
        if raw.endpoint == up.REVIEWS
        for review in json.loads(raw.body)["reviews"]
    ]
    assert len(reviews) == len(market.reviews("US", got.universe, DAY, DAY))
    assert stats(client)["by_status"] == {200: report.http_calls}


def test_faults_finish_and_report_what_could_not_be_fetched() -> None:
    client = sim(
        error_5xx_rate=0.05,
        malformed_rate=0.05,
        missing_rows_rate=0.05,
        duplicate_rows_rate=0.05,
        extra_fields=True,
        fault_seed=3,
        max_attempts=4,
    )
    got = client.fetch_day("US", DAY)
    report = got.report
    server = stats(client)
    # what the client counted is what the server injected
    assert report.server_errors == server["faults"].get("error_5xx", 0)
    assert report.malformed == server["faults"].get("malformed", 0)
    assert report.http_calls == server["requests"]
    assert report.server_errors + report.malformed > 0 and server["faults"].get("missing_rows", 0) > 0
    # every ASIN absent from a successful body is reported missing, and only those
    universe = set(got.universe)
    for kind, endpoint in (
        ("products", up.PRODUCTS),
        ("timeseries", up.TIMESERIES),
        ("keywords", up.KEYWORDS),
    ):
        received: set[str] = set()
        for raw in got.responses:
            if raw.endpoint == endpoint and raw.error is None:
                body = json.loads(raw.body)
                received |= {e["asin"] for e in body["products" if kind == "products" else "items"]}
        assert set(report.missing_asins[kind]) == universe - received
        assert report.received_asins[kind] == len(universe & received)
    assert sum(len(v) for v in report.missing_asins.values()) > 0  # silently dropped items were noticed
    # a duplicated item is counted once
    assert all(v <= len(universe) for v in report.received_asins.values())


def test_harsh_upstream_loses_nothing_within_the_time_budget() -> None:
    # Half the answers 5xx (the simulator's fault knobs). Counted retries (2 attempts) give batches up;
    # retries by time (a 10 s budget) wait every one of them out.
    knobs = dict(error_5xx_rate=0.5, fault_seed=5, max_attempts=2)
    by_count = sim(**knobs).fetch_day("US", DAY).report
    assert by_count.failed_requests > 0 and len(by_count.failures) == by_count.failed_requests
    assert all(f.reason.startswith("HTTP 5") and f.attempts == 2 for f in by_count.failures)

    got = sim(**knobs, retry_budget_s=10.0).fetch_day("US", DAY)
    report = got.report
    assert report.server_errors > 0 and report.failed_requests == 0 and report.failures == []
    assert all(r.error is None for r in got.responses)
    assert max(r.attempts for r in got.responses) > 2  # past max_attempts, within the budget
    assert sum(len(v) for v in report.missing_asins.values()) == 0


def test_client_at_the_server_quota_causes_no_429() -> None:
    client = sim(server_qpm=1200, server_burst=10, qpm=1200, burst=10)
    first = client.fetch_day("US", DAY)
    second = client.fetch_day("DE", DAY)  # same token: the shared bucket carries over
    server = stats(client)
    assert server["rate_limited"] == 0 and first.report.throttled == second.report.throttled == 0
    log = client.simulator_app().state.stats
    token = client.token
    # token bucket bound: in any window of s seconds, at most burst + rate * s requests
    # (a short run's achieved qpm exceeds 1200 by the initial burst; the windows are the real check)
    for window in (0.25, 1.0, 2.0):
        assert log.max_in_window(token, window) <= 10 + 20 * window
    assert first.report.http_calls + second.report.http_calls == len(server["accepted"][token])


def test_client_configured_over_the_quota_follows_the_server() -> None:
    # Told 10x the real quota, the client learns it from X-RateLimit-Limit / -Remaining on the
    # first response instead of earning a 429 per token interval.
    lines: list[str] = []
    client = sim(server_qpm=1200, server_burst=5, qpm=12_000, burst=50)
    got = client.fetch_day("US", DAY, progress=lines.append)
    server = stats(client)
    assert got.report.failed_requests == 0
    assert got.report.throttled == server["rate_limited"] <= 2
    assert any("server quota is 1200 qpm" in line for line in lines)
    assert client.bucket().snapshot().rate_per_s == pytest.approx(1200 * 0.98 / 60)


def test_two_processes_sharing_a_token_absorb_429s() -> None:
    # Different base URLs give separate client buckets on the same simulated server: two processes
    # each configured with the whole quota. The server answers 429s; both must finish anyway.
    token = f"shared-{uuid.uuid4().hex}"
    a, b = (
        sim(token=token, base_url=url, server_qpm=1200, server_burst=10, qpm=1200, burst=10, max_attempts=8)
        for url in ("http://proc-a", "http://proc-b")
    )
    assert a.simulator_app() is b.simulator_app() and a.bucket() is not b.bucket()
    results: dict[str, up.DayFetch] = {}
    threads = [
        threading.Thread(target=lambda c=c, site=site: results.__setitem__(site, c.fetch_day(site, DAY)))
        for c, site in ((a, "US"), (b, "DE"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server = stats(a)
    assert server["rate_limited"] > 0
    assert sum(r.report.throttled for r in results.values()) == server["rate_limited"]
    assert all(r.report.failed_requests == 0 for r in results.values())
    assert all(r.report.received_asins["timeseries"] == len(r.universe) for r in results.values())


def test_server_timeouts_are_cut_by_the_client() -> None:
    client = sim(timeout_rate=0.05, timeout_seconds=5.0, timeout=0.5, fault_seed=2, max_attempts=4)
    # the market builds a site on first use (~0.3 s): do it now so only injected stalls time out
    client.simulator_app().state.market.warm()
    got = client.fetch_day("US", DAY)
    server = stats(client)
    # >=: on a loaded machine a genuine slow answer may time out too
    assert got.report.timeouts >= server["faults"].get("timeout", 0) > 0
    assert got.report.elapsed_s < 5.0
    assert got.report.failed_requests == 0


def test_unknown_site_raises() -> None:
    with pytest.raises(up.UpstreamError) as info:
        sim().fetch_day("FR", DAY)
    assert info.value.status == 404 and info.value.endpoint == up.UNIVERSE


def test_from_simulator_settings() -> None:
    settings = load_settings(environ={"ASIN_PLATFORM__SIMULATOR__ASINS_PER_SITE": "600"})
    client = SimulatedUpstreamClient.from_simulator_settings(settings, token="t", sim_sites=["US"])
    assert client.sim_asins_per_site == 600 and client.sim_sites == ["US"]
    assert (client.qpm, client.burst) == (settings.simulator.qpm, settings.simulator.burst)
    assert (client.server_qpm, client.server_burst) == (client.qpm, client.burst)
    assert client.sim_epoch == settings.simulator.epoch.isoformat()


def test_simulated_client_as_a_dagster_resource() -> None:
    @dg.asset
    def fetched(context, upstream: up.UpstreamClient) -> dg.MaterializeResult:  # noqa: ANN001
        got = upstream.fetch_day("DE", DAY, progress=context.log.info)
        return dg.MaterializeResult(metadata=got.report.as_metadata())

    result = dg.materialize([fetched], resources={"upstream": sim(error_5xx_rate=0.05)})
    assert result.success
    meta = result.asset_materializations_for_node("fetched")[0].metadata
    assert meta["tracked_asins"].value > 100 and meta["failed_requests"].value == 0
