"""The HTTP contract: auth, errors, pagination, quota, the OpenAPI document and a real socket."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from asin_platform.simulator import Market, Quota, create_app, start_in_thread
from asin_platform_tests.simulator.conftest import AUTH, DAY


def call(
    app: Any, requests: list[tuple[str, dict[str, Any]]], headers: dict[str, str] | None = AUTH
) -> list[httpx.Response]:
    """Issue GETs in order against the app in-process."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as client:
            return [await client.get(path, params=params, headers=headers or {}) for path, params in requests]

    return asyncio.run(run())


def get(app: Any, path: str, headers: dict[str, str] | None = AUTH, **params: Any) -> httpx.Response:
    return call(app, [(path, params)], headers)[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_and_openapi_need_no_auth(small_market: Market) -> None:
    app = create_app(small_market)
    health = get(app, "/v1/health", headers=None)
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["version"] == "1"
    doc = get(app, "/openapi.json", headers=None).json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for route in ("asins", "products", "timeseries", "reviews", "keywords"):
        assert f"/v1/sites/{{site}}/{route}" in paths
    for route in ("", "/timeseries", "/reviews", "/keywords"):
        op = paths[f"/v1/sites/{{site}}/products/{{asin}}{route}"]["get"]
        assert {"200", "400", "401", "404", "429", "500"} <= set(op["responses"])
    assert "Retry-After" in paths["/v1/sites/{site}/products"]["get"]["responses"]["429"]["headers"]
    # every $ref resolves
    refs = [r.split("/")[-1] for r in _refs(doc)]
    assert refs and all(r in doc["components"]["schemas"] for r in refs)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_auth_and_errors(small_market: Market) -> None:
    app = create_app(small_market)
    asin = small_market.universe("US", DAY)[0]
    assert get(app, "/v1/sites/US/asins", headers=None, date="2025-03-01").status_code == 401
    bad = get(app, "/v1/sites/US/asins", headers={"Authorization": "Bearer nope"}, date="2025-03-01")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    assert (
        get(app, "/v1/sites/FR/asins", date="2025-03-01").status_code == 404
    )  # contract site, not simulated
    assert get(app, "/v1/sites/XX/asins", date="2025-03-01").status_code == 404
    assert get(app, "/v1/sites/US/products/B0NOTREAL1", date="2025-03-01").status_code == 404
    assert (
        get(
            app, "/v1/sites/US/products/B0NOTREAL1/timeseries", start="2025-03-01", end="2025-03-01"
        ).status_code
        == 404
    )
    too_many = get(
        app, "/v1/sites/US/products", asins=",".join(f"B0{k:08d}" for k in range(101)), date="2025-03-01"
    )
    assert too_many.status_code == 400 and "too many ASINs" in too_many.json()["error"]["message"]
    for params in ({"date": "2025-3-1"}, {"date": "yesterday"}, {}):
        r = get(app, f"/v1/sites/US/products/{asin}", **params)
        assert r.status_code == 400 and "date" in r.json()["error"]["message"]
    r = get(app, f"/v1/sites/US/products/{asin}/timeseries", start="2025-03-05", end="2025-03-01")
    assert r.status_code == 400
    r = get(app, f"/v1/sites/US/products/{asin}/timeseries", start="2025-01-01", end="2026-03-01")
    assert r.status_code == 400 and "400 days" in r.json()["error"]["message"]
    for token in ("abc", "-5", "999999"):
        r = get(app, "/v1/sites/US/asins", date="2025-03-01", page_token=token)
        assert r.status_code == 400 and "page token" in r.json()["error"]["message"]
    assert get(app, "/v1/sites/US/asins", date="2025-03-01", page_size=0).status_code == 400
    assert get(app, "/nothing/here").json()["error"]["code"] == "not_found"


def test_batch_routes_and_not_found(small_market: Market) -> None:
    app = create_app(small_market)
    asins = small_market.universe("US", DAY)[:3]
    query = ",".join([*asins, "B0NOTREAL1"])
    products = get(app, "/v1/sites/US/products", asins=query, date="2025-03-01").json()
    assert [p["asin"] for p in products["products"]] == asins and products["not_found"] == ["B0NOTREAL1"]
    series = get(app, "/v1/sites/US/timeseries", asins=query, start="2025-02-25", end="2025-03-01").json()
    assert [s["asin"] for s in series["items"]] == asins and series["not_found"] == ["B0NOTREAL1"]
    assert (
        series["items"][0]
        == get(
            app, f"/v1/sites/US/products/{asins[0]}/timeseries", start="2025-02-25", end="2025-03-01"
        ).json()
    )
    kws = get(app, "/v1/sites/US/keywords", asins=query, date="2025-03-01").json()
    assert [k["asin"] for k in kws["items"]] == asins and kws["not_found"] == ["B0NOTREAL1"]
    one = get(app, f"/v1/sites/US/products/{asins[0]}/keywords", date="2025-03-01").json()
    assert one["items"] == kws["items"][:1]
    assert get(app, f"/v1/sites/US/products/{asins[0]}", date="2025-03-01").json() == products["products"][0]


def _collect(app: Any, path: str, key: str, **params: Any) -> tuple[list[Any], int]:
    rows: list[Any] = []
    token: str | None = None
    pages = 0
    while True:
        extra = {"page_token": token} if token else {}
        body = get(app, path, **params, **extra).json()
        rows.extend(body[key])
        pages += 1
        token = body["next_page_token"]
        if token is None:
            return rows, pages


def test_pagination_complete_and_non_overlapping(small_market: Market) -> None:
    # Hundreds of small pages back to back: a quota large enough that only paging is under test.
    app = create_app(small_market, tokens={"demo-token": Quota(qpm=1_000_000, burst=10_000)})
    universe = small_market.universe("US", DAY)
    rows, pages = _collect(app, "/v1/sites/US/asins", "asins", date="2025-03-01", page_size=70)
    assert rows == universe and pages == -(-len(universe) // 70)
    first = get(app, "/v1/sites/US/asins", date="2025-03-01").json()
    assert first["total"] == len(universe) and first["next_page_token"] is None  # default page 1000
    asins = universe[:100]
    expected = small_market.reviews("US", asins, DAY - timedelta(days=60), DAY)
    got, pages = _collect(
        app,
        "/v1/sites/US/reviews",
        "reviews",
        asins=",".join(asins),
        since="2024-12-31",
        until="2025-03-01",
        page_size=7,
    )
    assert got == expected and pages > 2 and len({r["review_id"] for r in got}) == len(got)


def test_quota_429_with_headers_and_refill() -> None:
    clock = FakeClock()
    market = Market()  # never generated: the quota answers before any data is needed
    app = create_app(market, tokens={"t": Quota(qpm=60, burst=3)}, clock=clock)
    auth = {"Authorization": "Bearer t"}
    responses = call(app, [("/v1/sites/XX/asins", {"date": "2025-03-01"})] * 4, auth)
    assert [r.status_code for r in responses] == [404, 404, 404, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "60" for r in responses)
    limited = responses[-1]
    assert float(limited.headers["Retry-After"]) == 1.0 and limited.json()["error"]["code"] == "rate_limited"
    clock.now += 0.5
    half = get(app, "/v1/sites/XX/asins", headers=auth, date="2025-03-01")
    assert half.status_code == 429 and abs(float(half.headers["Retry-After"]) - 0.5) < 1e-6
    clock.now += 0.5
    assert get(app, "/v1/sites/XX/asins", headers=auth, date="2025-03-01").status_code == 404
    clock.now += 3600  # refills up to burst, never beyond
    burst = call(app, [("/v1/sites/XX/asins", {"date": "2025-03-01"})] * 4, auth)
    assert [r.status_code for r in burst] == [404, 404, 404, 429]
    stats = app.state.stats
    assert stats.rate_limited == 3 and stats.by_status[429] == 3
    assert len(stats.snapshot()["accepted"]["t"]) == 7
    assert stats.max_in_window("t", 0.1) == 3
    # health and openapi never spend quota
    assert get(app, "/v1/health", headers=None).status_code == 200


def test_real_socket(small_market: Market) -> None:
    with start_in_thread(small_market) as sim:
        assert sim.port > 0 and sim.url.endswith(str(sim.port))
        r = httpx.get(
            f"{sim.url}/v1/sites/US/asins", params={"date": "2025-03-01", "page_size": 5}, headers=AUTH
        )
        assert r.status_code == 200 and len(r.json()["asins"]) == 5
        assert sim.stats.by_status[200] >= 2  # the readiness probe + this call
    try:
        httpx.get(f"{sim.url}/v1/health", timeout=0.5)
        raise AssertionError("server still answering after stop()")
    except httpx.HTTPError:
        pass


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def _conforms(value: Any, schema: dict[str, Any], doc: dict[str, Any], path: str = "$") -> None:
    """A small JSON-schema subset check (type, const, enum, bounds, required, properties, items, $ref)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        ok = any(
            value is None
            if t == "null"
            else isinstance(value, _TYPES[t]) and not (t != "boolean" and isinstance(value, bool))
            for t in allowed
        )
        assert ok, f"{path}: {value!r} is not {allowed}"
    if value is None:
        return
    assert "enum" not in schema or value in schema["enum"], path
    assert "minimum" not in schema or value >= schema["minimum"], path
    assert "maximum" not in schema or value <= schema["maximum"], path
    if isinstance(value, dict):
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{path}: missing {missing}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _conforms(value[key], sub, doc, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for k, item in enumerate(value):
            _conforms(item, schema["items"], doc, f"{path}[{k}]")


def test_responses_match_openapi(small_market: Market) -> None:
    app = create_app(small_market)
    doc = get(app, "/openapi.json", headers=None).json()
    asins = small_market.universe("US", DAY)[:30]
    values = {
        "site": "US",
        "asin": asins[0],
        "asins": ",".join(asins),
        "date": DAY.isoformat(),
        "start": (DAY - timedelta(days=10)).isoformat(),
        "end": DAY.isoformat(),
        "since": (DAY - timedelta(days=30)).isoformat(),
        "until": DAY.isoformat(),
        "page_size": 50,
    }
    checked = 0
    for template, item in doc["paths"].items():
        op = item["get"]
        path = template.replace("{site}", "US").replace("{asin}", asins[0])
        params = {
            p["name"]: values[p["name"]]
            for p in op.get("parameters", [])
            if p["in"] == "query" and p["name"] in values
        }
        ok = get(app, path, **params)
        assert ok.status_code == 200, template
        content = op["responses"]["200"]["content"]["application/json"]
        if "schema" in content:
            _conforms(ok.json(), content["schema"], doc)
            checked += 1
        if op.get("security"):
            for status, response in ((401, get(app, path, headers=None, **params)),):
                assert response.status_code == status
                _conforms(
                    response.json(),
                    op["responses"][str(status)]["content"]["application/json"]["schema"],
                    doc,
                )
    assert checked == 10  # every route but /openapi.json itself
