"""Every value the simulator mutates is quarantined or flagged by parse + standardise, none lands silently.

The simulator's record of what it mutated (``SimulatorStats.mutations``) is reconciled cell by cell
against the mart tables and the quarantine of one (site, date) slice, with the default plausibility
bounds: the reconciliation the fault-injection suite of issue 11 runs at scale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from asin_platform.core.standardise import StandardiseResult, standardise
from asin_platform.core.unified import parse_unified
from asin_platform.simulator import FaultConfig, Market, create_app
from asin_platform.simulator.faults import Mutation
from asin_platform_tests.core.test_unified import payload, raw_frame
from asin_platform_tests.simulator.conftest import DAY
from asin_platform_tests.simulator.test_faults import fetch

FETCHED = datetime(2025, 3, 2, 3, 0, tzinfo=UTC)
TABLE = {"timeseries": "mart_timeseries_daily", "products": "dim_asin", "keywords": "fact_keywords"}
FLAG = {"bsr_root": "flag_bsr_invalid", "bsr_sub": "flag_bsr_invalid", "price": "flag_price_invalid",
        "rating": "flag_rating_invalid"}  # fmt: skip


def _slice(market: Market, faults: FaultConfig) -> tuple[StandardiseResult, list[Mutation]]:
    asins = market.universe("US", DAY)[:100]
    joined, day = ",".join(asins), DAY.isoformat()
    requests = [
        ("/v1/sites/US/products", {"asins": joined, "date": day}),
        ("/v1/sites/US/timeseries", {"asins": joined, "start": day, "end": day}),
        ("/v1/sites/US/keywords", {"asins": joined, "date": day}),
    ]
    app = create_app(market, faults=faults)
    responses = fetch(app, requests)
    universe = {"site": "US", "date": day, "total": len(asins), "asins": asins, "next_page_token": None}
    rows = [payload("universe", "/v1/sites/US/asins", universe, day=DAY, fetched_at=FETCHED)]
    rows += [
        payload(path.rsplit("/", 1)[1], path, r.text, day=DAY, fetched_at=FETCHED)
        for (path, _), r in zip(requests, responses, strict=True)
    ]
    result = standardise(parse_unified(raw_frame(rows)), now=FETCHED)
    return result, app.state.stats.mutations()


def _stored(result: StandardiseResult, m: Mutation) -> dict[str, Any]:
    if m.endpoint == "keywords":
        return result.fact_keywords.filter(asin=m.asin, keyword=m.keyword).row(0, named=True)
    return result.mart.filter(asin=m.asin).row(0, named=True)


def test_every_mutated_value_is_quarantined_or_flagged(small_market: Market) -> None:
    result, mutations = _slice(small_market, FaultConfig(seed=21, mutation_rate=0.05))
    assert len(mutations) >= 60 and {m.endpoint for m in mutations} == set(TABLE)
    quarantined = set(result.quarantine.select("table_name", "asin").iter_rows())
    caught = 0
    for m in mutations:
        stored = _stored(result, m)
        assert stored[m.field] is None, m  # the bad value never reaches the mart
        assert (TABLE[m.endpoint], m.asin) in quarantined, m  # ... and leaves a trace with its payload
        if m.field in FLAG and isinstance(
            m.value, int | float
        ):  # (unreadable text: the parser's type_mismatch)
            assert stored[FLAG[m.field]] is True, m
        caught += 1
    assert caught == len(mutations)
    # nothing clean is quarantined: every quarantine row is explained by a mutation of its ASIN
    mutated = {(TABLE[m.endpoint], m.asin) for m in mutations}
    assert quarantined <= mutated
    assert not result.mart.select(pl.col("flag_price_spike").any()).item()


def test_a_clean_slice_quarantines_nothing(small_market: Market) -> None:
    result, mutations = _slice(small_market, FaultConfig())
    assert mutations == [] and result.quarantine.is_empty() and result.mart.height == 100
