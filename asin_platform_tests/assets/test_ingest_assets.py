"""raw_payloads -> mart through Dagster (dg.materialize) with the in-process simulator, on both
warehouse backends."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest

from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.resources.upstream import KeepaClient
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator import Market, MarketConfig
from asin_platform.simulator.clients import SimulatedUpstreamClient

DAY = date(2025, 3, 10)
SITES = ["US", "UK", "DE", "JP"]
N_ASINS = 120
# Columns that legitimately differ between two fetches of the same day.
VOLATILE = ["payload_id", "fetched_at"]


def _client(**knobs: float | bool | int) -> SimulatedUpstreamClient:
    return SimulatedUpstreamClient(
        sim_asins_per_site=N_ASINS, sim_sites=SITES, base_delay=0.001, max_delay=0.01, **knobs
    )


def _materialize(warehouse, client, *, partition_key: str | None = None, tags=None):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection_with_checks(["raw_payloads", "mart_timeseries_daily"]),
        resources={
            "upstream": client,
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        partition_key=partition_key,
        tags=tags or {},
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _tracked(site: str, day: date) -> list[str]:
    return Market(MarketConfig(sites=tuple(SITES), asins_per_site=N_ASINS)).universe(site, day)


def test_one_partition_end_to_end(warehouse) -> None:
    result = _materialize(warehouse, _client(), partition_key=f"{DAY}|US")
    assert result.success
    checks = _checks(result)
    assert checks == {
        "mart_coverage": True,
        "mart_no_duplicate_keys": True,
        "mart_schema_conformance": True,
        "mart_quarantine_rate": True,
        "raw_payloads_complete": True,
    }
    mart = warehouse.read("mart_timeseries_daily", sites=["US"], start=DAY, end=DAY)
    tracked = _tracked("US", DAY)
    # exactly one row per tracked ASIN, and nothing for other sites or days
    assert sorted(mart["asin"].to_list()) == sorted(tracked)
    assert warehouse.count("mart_timeseries_daily") == len(tracked)
    assert mart["bsr_root"].null_count() == 0
    dim = warehouse.read("dim_asin")
    assert dim.height == len(tracked)
    raw = warehouse.read("raw_payloads")
    assert set(raw["endpoint"].unique()) >= {"/v1/sites/{site}/asins", "/v1/sites/{site}/timeseries"}
    assert raw["error"].null_count() == raw.height
    materialized = {str(m.asset_key.path[-1]) for m in result.get_asset_materialization_events()}
    assert materialized == {
        "raw_payloads",
        "mart_timeseries_daily",
        "dim_asin",
        "fact_reviews",
        "fact_keywords",
        "quarantine",
    }


def test_rematerialising_a_partition_is_idempotent(warehouse) -> None:
    first = _materialize(warehouse, _client(), partition_key=f"{DAY}|DE")
    mart1 = warehouse.read("mart_timeseries_daily").drop(VOLATILE).sort("asin")
    counts1 = {t: warehouse.count(t) for t in ("raw_payloads", "fact_reviews", "fact_keywords", "dim_asin")}
    second = _materialize(warehouse, _client(), partition_key=f"{DAY}|DE")
    assert first.success and second.success
    mart2 = warehouse.read("mart_timeseries_daily").drop(VOLATILE).sort("asin")
    assert mart1.equals(mart2)
    assert {t: warehouse.count(t) for t in counts1} == counts1
    assert _checks(second)["mart_no_duplicate_keys"]


def test_bad_values_are_quarantined_not_lost(warehouse) -> None:
    result = _materialize(
        warehouse,
        _client(out_of_range_rate=1.0, duplicate_rows_rate=0.5, batch_size=10, fault_seed=3),
        partition_key=f"{DAY}|US",
    )
    assert result.success
    quarantine = warehouse.read("quarantine")
    reasons = set(quarantine["reason"].unique())
    assert reasons & {
        "bsr_non_positive",
        "rating_out_of_range",
        "price_non_positive",
        "review_count_negative",
    }
    assert quarantine["payload_id"].null_count() == 0
    mart = warehouse.read("mart_timeseries_daily")
    flagged = mart.filter(
        pl.col("flag_bsr_invalid") | pl.col("flag_rating_invalid") | pl.col("flag_price_invalid")
    )
    assert flagged.height > 0
    # duplicates collapsed: still exactly one row per key
    assert mart.select("site", "date", "asin").is_unique().all()
    assert _checks(result)["mart_no_duplicate_keys"]


def test_low_coverage_fails_the_blocking_check(warehouse) -> None:
    # every batch of 5 ASINs silently loses one: 80% coverage
    client = _client(missing_rows_rate=1.0, batch_size=5, fault_seed=1)
    result = _materialize(warehouse, client, partition_key=f"{DAY}|JP")
    checks = _checks(result)
    assert checks["mart_coverage"] is False
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "mart_coverage")
    assert evaluation.metadata["min_coverage"].value < 0.95
    # a blocking ERROR check fails the run
    assert not result.success


def test_ranged_run_equals_partition_by_partition(warehouse, warehouse_factory) -> None:
    start, end = date(2025, 3, 10), date(2025, 3, 12)
    ranged = _materialize(warehouse, _client(), tags=range_tags("UK", start, end))
    assert ranged.success
    assert len({e.check_name for e in ranged.get_asset_check_evaluations()}) == 5
    single = warehouse_factory()
    single.setup()
    for day in (start, date(2025, 3, 11), end):
        assert _materialize(single, _client(), partition_key=f"{day}|UK").success
    a = warehouse.read("mart_timeseries_daily").drop(VOLATILE).sort("date", "asin")
    b = single.read("mart_timeseries_daily").drop(VOLATILE).sort("date", "asin")
    assert a.height == sum(len(_tracked("UK", d)) for d in (start, date(2025, 3, 11), end))
    assert a.equals(b)


@pytest.mark.parametrize("rate", [0.05])
def test_server_errors_are_retried_and_do_not_lose_rows(warehouse, rate: float) -> None:
    result = _materialize(warehouse, _client(error_5xx_rate=rate, fault_seed=5), partition_key=f"{DAY}|US")
    assert result.success
    assert warehouse.count("mart_timeseries_daily") == len(_tracked("US", DAY))
