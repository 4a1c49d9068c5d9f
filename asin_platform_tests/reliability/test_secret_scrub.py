"""Scrubbing secrets must never corrupt data: a short token (the demo's, a test's) occurs in numbers
and ASINs by chance, so stored data bodies are masked only of secrets long enough not to collide,
while error text and refused bodies are masked of every secret."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import httpx

from asin_platform.resources.upstream.http import MASK, Exchange, HttpCore, Request, RetryPolicy
from asin_platform.resources.upstream.ratelimit import TokenBucket
from asin_platform.simulator.clients import SimulatedUpstreamClient

DAY = date(2025, 3, 1)


class _Products(Exchange):
    list_key = "products"


def _request(secret: str, response: httpx.Response) -> tuple[str, str | None]:
    """(stored body, error) of one request whose server answers ``response``."""

    async def go() -> tuple[str, str | None]:
        transport = httpx.MockTransport(lambda request: response)
        async with httpx.AsyncClient(base_url="http://api.test", transport=transport) as http:
            core = HttpCore(http, TokenBucket(1000.0, 10.0), RetryPolicy(max_attempts=1), secrets=(secret,))
            outcome = await core.request(Request("/v1/sites/{site}/products", "US", {}, ("A1",)), _Products())
            assert outcome.raw is not None
            return outcome.raw.body, outcome.raw.error

    return asyncio.run(go())


def test_a_one_character_token_leaves_every_stored_body_intact() -> None:
    def fetch(token: str) -> list[tuple[str, str]]:
        client = SimulatedUpstreamClient(token=token, sim_sites=["US"], sim_asins_per_site=60)
        got = client.fetch_day("US", DAY)
        assert got.report.failed_requests == 0 and got.report.malformed == 0
        return sorted((r.endpoint + str(sorted(r.params.items())), r.body) for r in got.responses)

    short, long = fetch("7"), fetch("a-long-enough-token-9f2c")
    # the short token is all over the data (digits of prices, ranks, dates) ...
    assert sum(body.count("7") for _, body in short) > 100
    # ... and every body is stored exactly as the server sent it, so it parses as JSON
    assert short == long
    assert all(isinstance(json.loads(body), dict) for _, body in short)


def test_a_long_token_echoed_in_a_data_body_is_masked() -> None:
    secret = "tok-3c1f9e2a7b"
    body, error = _request(secret, httpx.Response(200, json={"products": [{"asin": "A1", "note": secret}]}))
    assert error is None and secret not in body and json.loads(body)["products"][0]["note"] == MASK


def test_a_short_token_is_masked_in_error_text_and_refused_bodies() -> None:
    body, error = _request(
        "7", httpx.Response(400, json={"error": {"code": "bad_request", "message": "token 7"}})
    )
    assert error is not None and error.startswith("HTTP 400 (bad_request: token ***)")
    assert "7" not in body and MASK in body
