"""The simulator's Keepa mode: Keepa's wire format over the same market, its token accounting, and the
round trip through the platform's Keepa parser back to the unified API's values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest

from asin_platform.core.keepa import CsvIndex, keepa_minutes_to_utc, parse_keepa_product, utc_to_keepa_minutes
from asin_platform.resources.upstream.keepa_tokens import parse_token_status, wait_seconds
from asin_platform.simulator import KeepaPlan, Market, MarketConfig, create_app, keepa_products
from asin_platform.simulator.keepa import (
    SIMULATED_NOW_HEADER,
    category_node_id,
    day_end,
    subcategory_node_id,
)

SITES = ("US", "UK", "DE", "JP")
CONFIG = MarketConfig(seed=5, sites=SITES, asins_per_site=150, horizon_days=200)
DAY = date(2025, 4, 20)
KEY = "test-keepa-key"
POINT_COLUMNS = ["price", "bsr_root", "bsr_sub", "rating", "review_count", "new_offer_count"]


@pytest.fixture(scope="module")
def market() -> Market:
    m = Market(CONFIG)
    m.warm()
    return m


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _app(market: Market, plan: KeepaPlan, clock: FakeClock | None = None) -> Any:
    return create_app(market, tokens={}, keepa_keys={KEY: plan}, clock=clock or FakeClock())


def _get(app: Any, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://keepa.test") as client:
            return await client.get(path, params=params, headers=headers)

    import asyncio

    return asyncio.run(go())


def _same(column: str) -> pl.Expr:
    """Equal within the encoding's precision: both null, or equal to 1e-9 relative (cents / 100 in
    floating point may differ in the last bit), so a one-cent difference still fails."""
    a, b = pl.col(column).cast(pl.Float64), pl.col(f"{column}_keepa").cast(pl.Float64)
    close = (a - b).abs() <= 1e-9 * pl.max_horizontal(a.abs(), pl.lit(1.0))
    return (a.is_null() & b.is_null()) | close.fill_null(False)


def _parsed_points(
    products: list[dict[str, Any]], site: str, days: list[date], fetched: datetime
) -> pl.DataFrame:
    frames = [parse_keepa_product(p, site, days, payload_id="p", fetched_at=fetched).points for p in products]
    return pl.concat(frames).select("date", "asin", *POINT_COLUMNS)


@pytest.mark.parametrize("site", SITES)
def test_round_trip_equals_the_unified_values(market: Market, site: str) -> None:
    """Parsed Keepa change logs give back the unified API's daily values, every day of a window."""
    start = DAY - timedelta(days=6)
    asins = market.universe(site, DAY)[:100]
    products, cost = keepa_products(market, site, asins, day_end(DAY), days=8, stats=30, rating=True)
    assert len(products) == len(asins) and cost >= len(asins)
    days = [start + timedelta(days=k) for k in range(7)]
    got = _parsed_points(products, site, days, day_end(DAY))
    want = (
        market.timeseries_frame(site, start, DAY)
        .filter(pl.col("asin").is_in(asins))
        .select("date", "asin", *POINT_COLUMNS)
    )
    joined = want.join(got, on=["date", "asin"], how="full", suffix="_keepa", coalesce=True)
    assert joined.height == want.height == got.height
    for column in POINT_COLUMNS:
        bad = joined.filter(~_same(column))
        assert bad.is_empty(), f"{site} {column}: {bad.head(3).to_dicts()}"
    # the window holds unranked days and products without a rating, and they come back as nulls
    assert want["bsr_root"].null_count() > 0 and want["rating"].null_count() > 0
    if site in ("UK", "JP"):  # these windows also hold no-offer days: a -1 gap in the price history
        assert want["price"].null_count() > 0


def test_listing_snapshot_matches_the_unified_products(market: Market) -> None:
    site = "UK"
    asins = market.universe(site, DAY)[:60]
    products, _ = keepa_products(market, site, asins, day_end(DAY), days=3, stats=30, aplus=True, videos=True)
    unified, _ = market.products(site, asins, DAY)
    parsed = pl.concat(
        [
            parse_keepa_product(p, site, [DAY], payload_id="p", fetched_at=day_end(DAY)).products
            for p in products
        ]
    )
    by_asin = {row["asin"]: row for row in parsed.iter_rows(named=True)}
    for u in unified:
        k = by_asin[u["asin"]]
        listing = u["listing"]
        assert k["title"] == u["title"] and k["brand"] == u["brand"]
        assert k["category_path"] == " > ".join(u["category_path"])
        assert k["category_id"] == str(category_node_id(u["category_id"]))
        assert k["subcategory_id"] == str(subcategory_node_id(u["subcategory_id"]))
        for column in ("title_length", "bullet_count", "image_count", "has_aplus"):
            assert k[column] == listing[column], column
        flags = listing["attribute_flags"]
        # Keepa cannot see a size chart: its count is the unified one without that flag
        assert k["attribute_flag_count"] == sum(flags.values()) - flags["size_chart"]
        assert k["listed_since"] == date.fromisoformat(u["listed_since"])


def test_wire_format(market: Market) -> None:
    app = _app(market, KeepaPlan(refill_rate=100))
    asins = market.universe("JP", DAY)[:5]
    now = day_end(DAY)
    r = _get(
        app,
        "/product",
        headers={SIMULATED_NOW_HEADER: now.isoformat()},
        key=KEY,
        domain=5,
        asin=",".join(asins),
        stats=30,
        rating=1,
        days=3,
    )
    assert r.status_code == 200
    body = r.json()
    assert {"timestamp", "tokensLeft", "refillIn", "refillRate", "tokenFlowReduction", "tokensConsumed",
            "processingTimeInMs", "products"} <= set(body)  # fmt: skip
    assert body["timestamp"] == int(now.timestamp() * 1000)
    product = body["products"][0]
    assert product["domainId"] == 5
    new = product["csv"][CsvIndex.NEW]
    assert len(new) % 2 == 0 and all(isinstance(v, int) for v in new)
    times = new[0::2]
    assert times == sorted(times) and keepa_minutes_to_utc(times[-1]) <= now
    # JP prices are whole yen: the value in force is the unified price itself, not x100
    unified = market.timeseries_frame("JP", DAY, DAY).filter(pl.col("asin") == product["asin"])["price"][0]
    if unified is not None:
        assert new[-1] == int(unified)
    assert min(product["csv"][CsvIndex.SALES][1::2]) >= -1
    uk = _get(app, "/product", key=KEY, domain=2, asin=market.universe("UK", DAY)[0])
    assert uk.status_code == 200 and uk.json()["products"][0]["domainId"] == 2  # UK is Keepa's GB


def test_points_after_the_response_instant_are_not_served(market: Market) -> None:
    asin = market.universe("US", DAY)[0]
    noon = datetime(2025, 4, 20, 12, 0, tzinfo=UTC)
    products, _ = keepa_products(market, "US", [asin], noon, days=2)
    limit = utc_to_keepa_minutes(noon)
    for series in products[0]["csv"]:
        if series:
            assert max(series[0::2]) <= limit
    not_yet = [a for a in market.universe("US", date(2025, 7, 1)) if a not in market.universe("US", DAY)]
    assert keepa_products(market, "US", not_yet[:3], day_end(DAY))[0] == []  # not listed yet


def test_token_accounting_429_and_negative_balance(market: Market) -> None:
    clock = FakeClock()
    app = _app(market, KeepaPlan(refill_rate=20, initial_tokens=5), clock)
    asins = ",".join(market.universe("US", DAY)[:30])
    token = _get(app, "/token", key=KEY).json()
    assert token["tokensLeft"] == 5 and token["refillRate"] == 20 and token["refillIn"] == 60_000

    # 5 tokens left, 30 products cost >= 30: admitted (balance > 0), then overdrawn
    r = _get(app, "/product", key=KEY, domain=1, asin=asins, rating=1)
    assert r.status_code == 200
    body = r.json()
    assert body["tokensLeft"] == 5 - body["tokensConsumed"] < 0
    status = parse_token_status(body)
    # the client's wait for the next 30-ASIN request covers the overdraft
    assert wait_seconds(status, 60) == pytest.approx(60 + (60 - status.tokens_left) / 20 * 60)

    # balance <= 0: 429 with the token status, nothing charged
    r = _get(app, "/product", key=KEY, domain=1, asin=asins)
    assert r.status_code == 429
    assert r.json()["tokensLeft"] == status.tokens_left and r.json()["tokensConsumed"] == 0

    # once a minute, refillRate tokens: enough minutes bring the balance above 0 again
    minutes = -status.tokens_left // 20 + 1
    clock.t += 60 * minutes
    again = _get(app, "/token", key=KEY).json()
    assert again["tokensLeft"] == status.tokens_left + 20 * minutes > 0
    assert _get(app, "/product", key=KEY, domain=1, asin=asins).status_code == 200
    # an hour of refill at most: unused tokens expire
    clock.t += 3 * 3600
    assert _get(app, "/token", key=KEY).json()["tokensLeft"] == 20 * 60


def test_request_errors(market: Market) -> None:
    app = _app(market, KeepaPlan(refill_rate=100))
    asin = market.universe("US", DAY)[0]
    assert _get(app, "/product", key="wrong", domain=1, asin=asin).status_code == 402
    assert _get(app, "/token", key="wrong").status_code == 402
    many = ",".join(f"B0{k:08d}" for k in range(101))
    assert _get(app, "/product", key=KEY, domain=1, asin=many).status_code == 400
    assert _get(app, "/product", key=KEY, domain=7, asin=asin).status_code == 400  # China, retired
    assert _get(app, "/product", key=KEY, domain=1, asin=asin, offers=20).status_code == 400
    bad = _get(app, "/product", key=KEY, domain=1, asin=asin, days="x")
    assert bad.status_code == 400 and "tokensLeft" in bad.json() and "error" in bad.json()
    unknown = _get(app, "/product", key=KEY, domain=1, asin="B0NOTREAL1").json()
    assert unknown["products"] == [] and unknown["tokensConsumed"] == 0


def test_default_app_serves_keepa_with_the_demo_key(market: Market) -> None:
    app = create_app(market)
    r = _get(app, "/token", key="demo-keepa-key")
    assert r.status_code == 200 and r.json()["refillRate"] > 0
    # history=0: no change logs, and the buy box (2 more tokens a product) only on request
    asin = market.universe("DE", DAY)[0]
    plain = _get(app, "/product", key="demo-keepa-key", domain=3, asin=asin, history=0).json()
    assert plain["products"][0]["csv"] is None and plain["tokensConsumed"] == 1
    box = _get(app, "/product", key="demo-keepa-key", domain=3, asin=asin, buybox=1).json()
    history = box["products"][0]["buyBoxSellerIdHistory"]
    assert box["tokensConsumed"] == 3 and len(history) % 2 == 0 and all(isinstance(v, str) for v in history)
