"""Shared small markets: generated once per session so the whole module stays fast."""

from __future__ import annotations

from datetime import date

import pytest

from asin_platform.simulator import Market, MarketConfig

SMALL = MarketConfig(seed=11, sites=("US", "DE"), asins_per_site=400, horizon_days=240)
# Large enough for distributional checks (breakout rate, power law) yet ~1 s to generate.
MEDIUM = MarketConfig(seed=7, sites=("US",), asins_per_site=2000, horizon_days=600)
DAY = date(2025, 3, 1)
AUTH = {"Authorization": "Bearer demo-token"}


@pytest.fixture(scope="session")
def small_market() -> Market:
    market = Market(SMALL)
    market.warm()
    return market


@pytest.fixture(scope="session")
def medium_market() -> Market:
    market = Market(MEDIUM)
    market.warm()
    return market
