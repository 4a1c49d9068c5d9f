"""Range-aware ingestion (issue 12): a ranged run fetches history once per range and yields exactly the
rows day-by-day runs yield; stored range payloads rebuild any slice without the API (both backends)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import dagster as dg
import polars as pl

from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.resources.upstream import KeepaClient
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

SITES = ["US", "UK"]
START, END = date(2025, 3, 10), date(2025, 3, 14)
DAYS = [START + timedelta(days=i) for i in range((END - START).days + 1)]
TABLES = {
    "mart_timeseries_daily": ["site", "date", "asin"],
    "fact_reviews": ["site", "asin", "review_id"],
    "fact_keywords": ["site", "date", "asin", "keyword"],
    "dim_asin": ["site", "asin"],
    "quarantine": ["site", "date", "reason"],
}
# Columns that name the fetch a row came from (differ between any two fetches of the same data).
VOLATILE = ["payload_id", "fetched_at", "quarantined_at", "loaded_at", "run_id"]


def _client() -> SimulatedUpstreamClient:
    # 30 ASINs per batch: several batches per range, so the union of universes is really batched
    return SimulatedUpstreamClient(sim_asins_per_site=80, sim_sites=SITES, batch_size=30, base_delay=0.001)


def _run(warehouse, assets: list[str], *, site: str, start: date, end: date) -> dg.ExecuteInProcessResult:
    key = f"{start}|{site}" if start == end else None
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection_with_checks(assets),
        resources={
            "upstream": _client(),
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        partition_key=key,
        tags={} if key else range_tags(site, start, end),
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def _tables(warehouse) -> dict[str, pl.DataFrame]:
    out = {}
    for table, key in TABLES.items():
        frame = warehouse.read(table)
        out[table] = frame.drop([c for c in VOLATILE if c in frame.columns]).sort(key, maintain_order=True)
    return out


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for table in TABLES:
        assert a[table].height > 0 or table == "quarantine", table
        assert a[table].equals(b[table]), table


def _history_params(warehouse, site: str) -> list[dict[str, str]]:
    raw = warehouse.read("raw_payloads", sites=[site])
    rows = raw.filter(pl.col("endpoint").is_in(["/v1/sites/{site}/timeseries", "/v1/sites/{site}/reviews"]))
    return [json.loads(p) for p in rows["request_params"]]


def test_ranged_run_equals_day_by_day_and_rebuilds_from_raw(warehouse_factory) -> None:
    ranged, daily = warehouse_factory(), warehouse_factory()
    for site in SITES:
        _run(ranged, ["raw_payloads", "mart_timeseries_daily"], site=site, start=START, end=END)
        for day in DAYS:
            _run(daily, ["raw_payloads", "mart_timeseries_daily"], site=site, start=day, end=day)
    expected = _tables(daily)
    _assert_same(_tables(ranged), expected)

    # history asked once per batch for the whole range,
    # stored once, in the range's first day, with its range as sent
    params = _history_params(ranged, "US")
    assert {(p.get("start", p.get("since")), p.get("end", p.get("until"))) for p in params} == {
        (str(START), str(END))
    }
    raw = ranged.read("raw_payloads", sites=["US"], columns=["date", "endpoint"])
    history = raw.filter(pl.col("endpoint").str.ends_with("timeseries"))
    assert history["date"].unique().to_list() == [START]
    # day by day: >= 1 request per kind and day; ranged: one per batch of the union (80 ASINs: <= 3)
    assert len(_history_params(daily, "US")) >= len(DAYS) * 2 > 2 * 3 >= len(params)

    # etl-standardize: the mart rebuilt from the stored payloads alone (no API call), whole range and
    # a slice that starts inside the range (its history comes from the payload stored on START)
    for site in SITES:
        _run(ranged, ["mart_timeseries_daily"], site=site, start=START, end=END)
        _run(ranged, ["mart_timeseries_daily"], site=site, start=DAYS[2], end=END)
        _run(ranged, ["mart_timeseries_daily"], site=site, start=DAYS[3], end=DAYS[3])
    _assert_same(_tables(ranged), expected)


def test_refetching_one_day_of_a_range_keeps_the_range_for_the_other_days(warehouse) -> None:
    _run(warehouse, ["raw_payloads", "mart_timeseries_daily"], site="US", start=START, end=END)
    before = _tables(warehouse)
    # re-fetch the range's first day alone: its slice is replaced, the range payload it holds is kept
    _run(warehouse, ["raw_payloads", "mart_timeseries_daily"], site="US", start=START, end=START)
    params = _history_params(warehouse, "US")
    n_ranged = sum(p.get("start") == str(START) and p.get("end") == str(END) for p in params)
    assert n_ranged >= 1
    assert sum(p.get("start") == p.get("end") == str(START) for p in params) >= 1
    for day in DAYS[1:]:
        _run(warehouse, ["mart_timeseries_daily"], site="US", start=day, end=day)
    _assert_same(_tables(warehouse), before)
    # a ranged re-fetch of the whole range supersedes the old range payload instead of piling up
    _run(warehouse, ["raw_payloads", "mart_timeseries_daily"], site="US", start=START, end=END)
    params = _history_params(warehouse, "US")
    assert sum(p.get("start") == str(START) and p.get("end") == str(END) for p in params) == n_ranged
    assert not any(p.get("start") == p.get("end") == str(START) for p in params)
    _assert_same(_tables(warehouse), before)
