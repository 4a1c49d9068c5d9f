"""Pins the generated market bit for bit, so a refactor of the generation stages cannot drift.

The digest covers every array and list of the generated per-site state (``SiteState``) of a small
market, plus what the API serves for a few ASINs. It was taken from the one-function generator
before ``_build_site`` was split into named stages; the staged generator must reproduce it exactly.
If a deliberate change of the market model moves it, regenerate with
``python -c "from asin_platform_tests.simulator.test_market_pin import digest; print(digest())"``
and say why in the commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date
from typing import Any

import numpy as np

from asin_platform.simulator import Market, MarketConfig

PIN_CONFIG = MarketConfig(seed=5, sites=("US", "JP"), asins_per_site=60, horizon_days=150)
PIN_DAY = date(2025, 3, 20)
EXPECTED_DIGEST = "49573b73b5b52a1cc6b1075a4403c6b72fce19c65a5e8f6b9b701b0bcc2aef25"


def _feed(h: Any, value: object) -> None:
    if isinstance(value, np.ndarray):
        h.update(str(value.dtype).encode() + str(value.shape).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        h.update(json.dumps(sorted(value.items())).encode())
    else:
        h.update(json.dumps(value, default=str).encode())


def digest() -> str:
    market = Market(PIN_CONFIG)
    h = hashlib.sha256()
    for site in PIN_CONFIG.sites:
        data = market._site(site)
        for f in dataclasses.fields(data):
            if f.name == "lookups":
                continue
            h.update(f.name.encode())
            _feed(h, getattr(data, f.name))
        asins = market.universe(site, PIN_DAY)[:12]
        served = {
            "products": market.products(site, asins, PIN_DAY),
            "series": market.timeseries(site, asins, date(2025, 3, 1), PIN_DAY),
            "reviews": market.reviews(site, asins, date(2025, 1, 1), PIN_DAY),
            "keywords": market.keywords(site, asins, PIN_DAY),
        }
        h.update(json.dumps(served, sort_keys=True).encode())
    return h.hexdigest()


def test_market_is_bit_identical_to_the_pinned_generation() -> None:
    assert digest() == EXPECTED_DIGEST


def test_a_few_exact_values() -> None:
    market = Market(PIN_CONFIG)
    frame = market.timeseries_frame("JP", PIN_DAY, PIN_DAY).sort("asin").head(3)
    assert frame.select("asin", "price", "bsr_root", "review_count").rows() == EXPECTED_ROWS


EXPECTED_ROWS: list[tuple[object, ...]] = [
    ("B0012NVYM8", 3280.0, 77435, 2),
    ("B00SJEZ2TD", 4880.0, None, 0),
    ("B00TDLANJ0", 2480.0, 9583, 13),
]
