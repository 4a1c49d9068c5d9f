"""Keepa mode through Dagster: settings pick the source per site, ``raw_payloads`` fetches Keepa sites
through the Keepa client, ``mart_timeseries_daily`` parses them unchanged, and the mart equals the
unified path's for the same (site, date) within the encoding's precision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest

from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator import Market, MarketConfig
from asin_platform.simulator.clients import (
    SimulatedKeepaClient,
    SimulatedUpstreamClient,
    reset_simulated_keepa,
)
from asin_platform.simulator.keepa import category_node_id, subcategory_node_id

DAY = date(2025, 3, 10)
SITES = ["US", "UK", "DE", "JP"]
N_ASINS = 120
SOURCES_ENV = "ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE"
# Mart columns both sources fill with the same values.
SAME = [
    "price",
    "bsr_root",
    "bsr_sub",
    "rating",
    "review_count",
    "new_offer_count",
    "title_length",
    "bullet_count",
    "image_count",
    "has_aplus",
    "listed_since",
    "flag_bsr_invalid",
    "flag_rating_invalid",
    "flag_price_invalid",
    "flag_price_spike",
]
INGEST_CHECKS = {
    "mart_coverage",
    "mart_no_duplicate_keys",
    "mart_schema_conformance",
    "mart_quarantine_rate",
    "raw_payloads_complete",
}


@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """US and JP on Keepa, UK and DE on the unified API (settings from the environment)."""
    monkeypatch.delenv("KEEPA_API_KEY", raising=False)
    monkeypatch.setenv(SOURCES_ENV, "{US: keepa, JP: keepa}")
    get_settings.cache_clear()
    reset_simulated_keepa(keep_markets=True)
    yield monkeypatch
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    get_settings.cache_clear()


def _materialize(warehouse, *, keepa: SimulatedKeepaClient | None = None, **run):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection_with_checks(["raw_payloads", "mart_timeseries_daily"]),
        resources={
            "upstream": SimulatedUpstreamClient(sim_asins_per_site=N_ASINS, sim_sites=SITES),
            "keepa": keepa or SimulatedKeepaClient(sim_asins_per_site=N_ASINS, sim_sites=SITES),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
        **run,
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _close(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Equal, or both null: the parser rounds prices to the minor unit, so values match exactly."""
    a, b = a.cast(pl.Float64), b.cast(pl.Float64)
    return (a.is_null() & b.is_null()) | (a == b).fill_null(False)


def test_keepa_sites_give_the_unified_mart(sources, warehouse, warehouse_factory) -> None:
    for site in ("US", "JP", "UK"):
        result = _materialize(warehouse, partition_key=f"{DAY}|{site}")
        assert result.success, site
        assert _checks(result) == dict.fromkeys(INGEST_CHECKS, True), site

    raw = warehouse.read("raw_payloads", columns=["site", "source", "endpoint", "status"])
    by_site = {
        site: sorted(set(zip(g["source"], g["endpoint"], strict=True))) for (site,), g in raw.group_by("site")
    }
    # Keepa sites: the unified universe page plus Keepa's /product; UK stays on the unified API
    assert by_site["US"] == by_site["JP"] == [("keepa", "/product"), ("unified", "/v1/sites/{site}/asins")]
    assert {source for source, _ in by_site["UK"]} == {"unified"}
    assert ("keepa", "/product") not in by_site["UK"]

    # the same partitions through the unified API, into a second warehouse
    sources.delenv(SOURCES_ENV)
    get_settings.cache_clear()
    unified = warehouse_factory()
    unified.setup()
    for site in ("US", "JP"):
        assert _materialize(unified, partition_key=f"{DAY}|{site}").success

    market = Market(MarketConfig(sites=tuple(SITES), asins_per_site=N_ASINS))
    for site in ("US", "JP"):
        got = warehouse.read("mart_timeseries_daily", sites=[site])
        want = unified.read("mart_timeseries_daily", sites=[site])
        assert got.height == want.height == len(market.universe(site, DAY))
        assert set(got["source"]) == {"keepa"} and set(want["source"]) == {"unified"}
        joined = want.join(got, on=["site", "date", "asin"], suffix="_keepa")
        assert joined.height == want.height
        for column in SAME:
            bad = joined.filter(~_close(pl.col(column), pl.col(f"{column}_keepa")))
            assert bad.is_empty(), f"{site} {column}: {bad.select('asin', column, f'{column}_keepa').head(3)}"
        # Keepa's category ids are browse-node ids: the same tree under other names
        categories = joined.select(
            (pl.col("category_id").map_elements(lambda c: str(category_node_id(c)), return_dtype=pl.Utf8))
            == pl.col("category_id_keepa"),
            (
                pl.col("subcategory_id").map_elements(
                    lambda c: str(subcategory_node_id(c)), return_dtype=pl.Utf8
                )
                == pl.col("subcategory_id_keepa")
            ),
        )
        assert categories.to_series(0).all() and categories.to_series(1).all()
        # Keepa has no size-chart field: its flag count is the unified one without it
        products, _ = market.products(site, want["asin"].to_list(), DAY)
        size_chart = pl.DataFrame(
            {
                "asin": [p["asin"] for p in products],
                "size_chart": [p["listing"]["attribute_flags"]["size_chart"] for p in products],
            }
        )
        flags = joined.join(size_chart, on="asin")
        assert (
            flags["attribute_flag_count"] - flags["size_chart"].cast(pl.Int32)
            == flags["attribute_flag_count_keepa"]
        ).all()
        # buybox_seller needs the buybox parameter (2 more tokens a product), off by default
        assert got["buybox_seller"].null_count() == got.height
    dim = warehouse.read("dim_asin", sites=["US"])
    assert set(dim["source"]) == {"keepa"} and dim["title"].null_count() == 0


def test_budget_cap_reports_missing_and_fails_coverage(sources, warehouse) -> None:
    keepa = SimulatedKeepaClient(sim_asins_per_site=N_ASINS, sim_sites=SITES, token_budget=60)
    result = _materialize(warehouse, keepa=keepa, partition_key=f"{DAY}|US")
    # the fetch itself does not crash: it stores what it could afford and reports the rest ...
    raw_step = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["raw_payloads"]
    )
    metadata = raw_step.materialization.metadata
    assert metadata["budget_capped_asins"].value > 0 and metadata["tokens_consumed"].value <= 60
    # ... and the missing products fail the blocking coverage check (the universe page says what
    # should have been there), so the run fails instead of silently shrinking the universe
    assert _checks(result)["mart_coverage"] is False
    assert not result.success
    mart = warehouse.read("mart_timeseries_daily")
    assert (
        0
        < mart.height
        < len(Market(MarketConfig(sites=tuple(SITES), asins_per_site=N_ASINS)).universe("US", DAY))
    )


def test_ranged_keepa_run_shares_one_budget(sources, warehouse) -> None:
    start, end = DAY, DAY + timedelta(days=2)
    keepa = SimulatedKeepaClient(sim_asins_per_site=N_ASINS, sim_sites=SITES)
    result = _materialize(warehouse, keepa=keepa, tags=range_tags("JP", start, end))
    assert result.success and all(_checks(result).values())
    mart = warehouse.read("mart_timeseries_daily", sites=["JP"])
    market = Market(MarketConfig(sites=tuple(SITES), asins_per_site=N_ASINS))
    assert mart.height == sum(len(market.universe("JP", start + timedelta(days=k))) for k in range(3))
    assert set(mart["source"]) == {"keepa"}
    raw_events = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["raw_payloads"]
    ]
    # one event per day, each with that day's own fetch figures; each product is bought once for the
    # range, by the first day's requests (the range payloads are stored there)
    assert sorted(e.partition for e in raw_events) == [f"{start + timedelta(days=k)}|JP" for k in range(3)]
    tokens = {}
    for event in raw_events:
        assert event.metadata["day"].value == event.partition.split("|")[0]
        tokens[event.partition] = event.metadata["tokens_consumed"].value
    products = len(set(mart["asin"]))
    assert products <= tokens[f"{start}|JP"] <= 1.2 * products
    assert [tokens[f"{start + timedelta(days=k)}|JP"] for k in (1, 2)] == [0, 0]
