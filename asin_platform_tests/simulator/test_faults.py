"""Fault injection: each kind observable at rate 1.0, deterministic for a seed, never on health/openapi."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from asin_platform.simulator import FaultConfig, Market, create_app
from asin_platform_tests.simulator.conftest import AUTH, DAY


def fetch(app: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as client:
            return [await client.get(path, params=params, headers=AUTH) for path, params in requests]

    return asyncio.run(run())


def _requests(market: Market) -> list[tuple[str, dict[str, Any]]]:
    asins = market.universe("US", DAY)[:20]
    joined = ",".join(asins)
    since = (DAY - timedelta(days=30)).isoformat()
    return [
        ("/v1/sites/US/asins", {"date": DAY.isoformat(), "page_size": 50}),
        ("/v1/sites/US/products", {"asins": joined, "date": DAY.isoformat()}),
        ("/v1/sites/US/timeseries", {"asins": joined, "start": "2025-02-20", "end": DAY.isoformat()}),
        ("/v1/sites/US/reviews", {"asins": joined, "since": since, "until": DAY.isoformat()}),
        ("/v1/sites/US/keywords", {"asins": joined, "date": DAY.isoformat()}),
        (f"/v1/sites/US/products/{asins[0]}/timeseries", {"start": "2025-02-20", "end": DAY.isoformat()}),
    ]


def _rows(body: dict[str, Any]) -> int:
    """Rows in a body: ASINs, products, points, reviews, keywords."""
    total = len(body.get("asins", [])) + len(body.get("products", [])) + len(body.get("reviews", []))
    total += len(body.get("points", []))
    for item in body.get("items", []):
        total += 1 + len(item.get("points", [])) + len(item.get("keywords", []))
    return total


def test_5xx(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(seed=1, error_5xx_rate=1.0))
    responses = fetch(app, _requests(small_market) * 3)
    assert all(r.status_code in (500, 502, 503) and "error" in r.json() for r in responses)
    assert len({r.status_code for r in responses}) > 1
    assert app.state.stats.faults["error_5xx"] == len(responses)


def test_malformed_json(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(malformed_rate=1.0))
    for response in fetch(app, _requests(small_market)):
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)


def test_duplicate_missing_rows(small_market: Market) -> None:
    clean = [r.json() for r in fetch(create_app(small_market), _requests(small_market))]
    dup = [
        r.json()
        for r in fetch(
            create_app(small_market, faults=FaultConfig(duplicate_rows_rate=1.0)), _requests(small_market)
        )
    ]
    miss = [
        r.json()
        for r in fetch(
            create_app(small_market, faults=FaultConfig(missing_rows_rate=1.0)), _requests(small_market)
        )
    ]
    for c, d, m in zip(clean, dup, miss, strict=True):
        assert _rows(d) == _rows(c) + 1
        assert _rows(m) < _rows(c)
    # a batch silently omits an ASIN: not in items, not in not_found
    clean_ts, miss_ts = clean[2], miss[2]
    gone = {i["asin"] for i in clean_ts["items"]} - {i["asin"] for i in miss_ts["items"]}
    assert len(gone) == 1 and not (gone & set(miss_ts["not_found"]))


def test_out_of_range_values(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(seed=3, out_of_range_rate=1.0))
    path, params = _requests(small_market)[2]
    bad = 0
    for response in fetch(app, [(path, params)] * 12):
        for item in response.json()["items"]:
            for p in item["points"]:
                bad += (
                    (p["bsr_root"] is not None and p["bsr_root"] <= 0)
                    or (p["rating"] is not None and not 1 <= p["rating"] <= 5)
                    or (p["price"] is not None and p["price"] < 0)
                    or p["review_count"] < 0
                )
    assert bad == 12


def test_extra_fields(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(extra_fields=True))
    body = fetch(app, _requests(small_market)[1:2])[0].json()
    assert "x_vendor_trace" in body and "x_vendor_trace" in body["products"][0]["listing"]["attribute_flags"]


def test_latency_and_timeout(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(latency_ms=40.0))
    started = time.perf_counter()
    fetch(app, _requests(small_market)[:3])
    assert time.perf_counter() - started >= 3 * 0.02
    app = create_app(small_market, faults=FaultConfig(timeout_rate=1.0, timeout_seconds=0.3))

    async def with_client_timeout() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as client:
            path, params = _requests(small_market)[0]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get(path, params=params, headers=AUTH), timeout=0.1)

    asyncio.run(with_client_timeout())
    assert app.state.stats.faults["timeout"] == 1


def test_faults_deterministic_for_a_seed(small_market: Market) -> None:
    cfg = FaultConfig(
        seed=5, error_5xx_rate=0.3, duplicate_rows_rate=0.3, missing_rows_rate=0.3, out_of_range_rate=0.3
    )
    requests = _requests(small_market) * 4

    def run(config: FaultConfig) -> list[tuple[int, bytes]]:
        return [(r.status_code, r.content) for r in fetch(create_app(small_market, faults=config), requests)]

    first = run(cfg)
    assert first == run(cfg)
    assert first != run(FaultConfig(**{**cfg.__dict__, "seed": 6}))
    assert any(status >= 500 for status, _ in first) and any(status == 200 for status, _ in first)


def test_health_and_openapi_unaffected(small_market: Market) -> None:
    every = FaultConfig(error_5xx_rate=1.0, malformed_rate=1.0, extra_fields=True, duplicate_rows_rate=1.0)
    app = create_app(small_market, faults=every)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as client:
            return [await client.get(p) for p in ("/v1/health", "/openapi.json")]

    health, doc = asyncio.run(run())
    assert health.status_code == 200 and set(health.json()) == {"status", "time", "version"}
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.1")
    assert sum(app.state.stats.faults.values()) == 0
