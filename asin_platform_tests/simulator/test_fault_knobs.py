"""The knobs the reliability work builds on: requests failing for good, and recorded value mutations."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import httpx
import pytest

from asin_platform.simulator import FaultConfig, Market, create_app
from asin_platform.simulator.faults import HUGE_VALUE, FailRule, Mutation
from asin_platform_tests.simulator.conftest import DAY
from asin_platform_tests.simulator.test_faults import fetch


def _products(asins: list[str], day: date = DAY) -> tuple[str, dict[str, Any]]:
    return "/v1/sites/US/products", {"asins": ",".join(asins), "date": day.isoformat()}


def test_fail_rule_spec_parsing() -> None:
    rule = FailRule.parse("products:US:2025-03-01:B0ABCDEFGH:429")
    assert rule == FailRule("products", "US", date(2025, 3, 1), "B0ABCDEFGH", 429)
    assert FailRule.parse("timeseries:*:*:*") == FailRule("timeseries", None, None, None, 503)
    for bad in ("products:US", "products:US:yesterday:*", "products:US:*:*:200"):
        with pytest.raises(ValueError, match="fail-for-good"):
            FailRule.parse(bad)
    # spec strings are accepted where rules are (the simulated clients pass their settings through)
    assert FaultConfig(fail_for_good=("products:US:*:B0X",)).fail_for_good == (
        FailRule("products", "US", None, "B0X"),
    )


def test_one_products_batch_fails_on_every_attempt(small_market: Market) -> None:
    universe = small_market.universe("US", DAY)
    first, second = universe[:100], universe[100:200]
    faults = FaultConfig(fail_for_good=(FailRule("products", "US", DAY, first[37]),))
    app = create_app(small_market, faults=faults)
    later = date(2025, 3, 2)
    responses = fetch(
        app,
        [_products(first)] * 5  # every retry of the batch holding the ASIN
        + [_products(second), _products(first, later), _products([first[37]])]
        + [
            (
                "/v1/sites/US/timeseries",
                {"asins": ",".join(first), "start": "2025-02-20", "end": DAY.isoformat()},
            )
        ],
    )
    assert [r.status_code for r in responses] == [503] * 5 + [200, 200, 503, 200]
    assert responses[0].json()["error"]["code"] == "unavailable"
    assert app.state.stats.faults["fail_for_good"] == 6


def test_a_batch_failing_with_429_says_when_to_retry(small_market: Market) -> None:
    universe = small_market.universe("DE", DAY)[:50]
    app = create_app(small_market, faults=FaultConfig(fail_for_good=("keywords:DE:*:*:429",)))
    path, params = "/v1/sites/DE/keywords", {"asins": ",".join(universe), "date": DAY.isoformat()}
    ok_path = "/v1/sites/US/keywords"
    bad, other_site = fetch(app, [(path, params), (ok_path, params)])
    assert bad.status_code == 429 and float(bad.headers["Retry-After"]) > 0
    assert other_site.status_code == 200


def _cell_value(body: dict[str, Any], m: Mutation) -> Any:
    """The value the delivered body holds at a mutation's cell."""
    if m.endpoint == "timeseries":
        item = next(i for i in body["items"] if i["asin"] == m.asin)
        return next(p for p in item["points"] if p["date"] == m.date)[m.field]
    if m.endpoint == "products":
        return next(p for p in body["products"] if p["asin"] == m.asin)["listing"][m.field]
    item = next(i for i in body["items"] if i["asin"] == m.asin)
    return next(k for k in item["keywords"] if k["keyword"] == m.keyword)[m.field]


def _mutation_requests(market: Market) -> list[tuple[str, dict[str, Any]]]:
    asins = ",".join(market.universe("US", DAY)[:40])
    return [
        ("/v1/sites/US/timeseries", {"asins": asins, "start": "2025-02-25", "end": DAY.isoformat()}),
        ("/v1/sites/US/products", {"asins": asins, "date": DAY.isoformat()}),
        ("/v1/sites/US/keywords", {"asins": asins, "date": DAY.isoformat()}),
    ]


def test_mutations_are_recorded_exactly(small_market: Market) -> None:
    requests = _mutation_requests(small_market)
    clean = [r.json() for r in fetch(create_app(small_market), requests)]
    app = create_app(small_market, faults=FaultConfig(seed=9, mutation_rate=0.2))
    bodies = [r.json() for r in fetch(app, requests)]
    mutations = app.state.stats.mutations()
    by_endpoint = {
        e: [m for m in mutations if m.endpoint == e] for e in ("timeseries", "products", "keywords")
    }
    assert all(len(found) >= 10 for found in by_endpoint.values())
    for m in mutations:
        body, reference = {"timeseries": (bodies[0], clean[0]), "products": (bodies[1], clean[1])}.get(
            m.endpoint, (bodies[2], clean[2])
        )
        assert _cell_value(body, m) == m.value and _cell_value(reference, m) == m.original
        assert m.value != m.original
        assert m.value in (None, "n/a", HUGE_VALUE, float(HUGE_VALUE)) or m.value < 0
        assert m.value is not None or m.field in (
            "bullet_count",
            "image_count",
            "title_length",
            "search_volume",
        )
    # every value not recorded is the clean one: remove the recorded cells and the bodies are equal
    for m in mutations:
        body, reference = {"timeseries": (bodies[0], clean[0]), "products": (bodies[1], clean[1])}.get(
            m.endpoint, (bodies[2], clean[2])
        )
        _set(body, m, m.original)
    assert bodies == clean
    assert {type(m.value).__name__ for m in mutations} >= {"NoneType", "str", "int", "float"}
    assert app.state.stats.faults["mutated_value"] == len(mutations)


def _set(body: dict[str, Any], m: Mutation, value: Any) -> None:
    if m.endpoint == "timeseries":
        item = next(i for i in body["items"] if i["asin"] == m.asin)
        next(p for p in item["points"] if p["date"] == m.date)[m.field] = value
    elif m.endpoint == "products":
        next(p for p in body["products"] if p["asin"] == m.asin)["listing"][m.field] = value
    else:
        item = next(i for i in body["items"] if i["asin"] == m.asin)
        next(k for k in item["keywords"] if k["keyword"] == m.keyword)[m.field] = value


def test_mutations_repeat_on_retry_and_depend_on_the_seed(small_market: Market) -> None:
    requests = _mutation_requests(small_market)[:1]
    app = create_app(small_market, faults=FaultConfig(seed=9, mutation_rate=0.2))
    first, again = fetch(app, requests * 2)
    assert first.content == again.content  # a retry meets the same bad values
    once = app.state.stats.mutations()
    other = create_app(small_market, faults=FaultConfig(seed=10, mutation_rate=0.2))
    fetch(other, requests)
    assert {m.cell for m in other.state.stats.mutations()} != {m.cell for m in once}


def test_a_truncated_body_records_no_mutation(small_market: Market) -> None:
    app = create_app(small_market, faults=FaultConfig(mutation_rate=0.5, malformed_rate=1.0))
    fetch(app, _mutation_requests(small_market))
    assert app.state.stats.mutations() == [] and app.state.stats.faults["malformed"] == 3


def test_the_simulator_command_takes_the_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    import asin_platform.simulator as simulator
    from asin_platform.cli import main

    served: dict[str, Any] = {}
    monkeypatch.setattr(
        simulator, "serve", lambda host, port, market, tokens, faults: served.update(faults=faults)
    )
    argv = [
        "simulator",
        "--fail-for-good",
        "products:US:2025-03-01:B0X",
        "--fail-for-good",
        "keepa:*:*:*:429",
    ]
    assert main([*argv, "--mutation-rate", "0.05", "--fault-seed", "4"]) == 0
    faults = served["faults"]
    assert faults.fail_for_good == (
        FailRule("products", "US", date(2025, 3, 1), "B0X"),
        FailRule("keepa", None, None, None, 429),
    )
    assert faults.mutation_rate == 0.05 and faults.seed == 4 and faults.active


def test_keepa_batch_fails_for_good(small_market: Market) -> None:
    asins = small_market.universe("US", DAY)[:10]
    app = create_app(small_market, faults=FaultConfig(fail_for_good=(f"keepa:US:*:{asins[3]}",)))
    params = {"key": "demo-keepa-key", "domain": "1", "asin": ",".join(asins)}
    headers = {"X-Simulated-Now": f"{DAY.isoformat()}T23:59:00Z"}

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as client:
            return [
                await client.get("/product", params=p, headers=headers)
                for p in (params, {**params, "asin": ",".join(asins[4:])})
            ]

    failed, fine = asyncio.run(run())
    assert failed.status_code == 503 and fine.status_code == 200 and len(fine.json()["products"]) == 6
