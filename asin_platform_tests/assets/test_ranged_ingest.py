"""Range-aware ingestion (issue 12): a ranged run fetches history once per range and yields exactly the
rows day-by-day runs yield; stored range payloads rebuild any slice without the API (both backends)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest

from asin_platform.core.keepa import LISTING_MAX_LAG_DAYS
from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator.clients import (
    SimulatedKeepaClient,
    SimulatedUpstreamClient,
    reset_simulated_keepa,
)

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


def _keepa() -> SimulatedKeepaClient:
    return SimulatedKeepaClient(sim_asins_per_site=80, sim_sites=SITES, batch_size=30)


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
            "keepa": _keepa(),
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


def _quota(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, float]]:
    """Day -> the quota figures of its raw_payloads event."""
    return {
        e.partition.split("|")[0]: {
            k: e.materialization.metadata[k].value for k in ("requests", "range_requests", "tokens_consumed")
        }
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["raw_payloads"]
    }


def _tables(warehouse) -> dict[str, pl.DataFrame]:
    out = {}
    for table, key in TABLES.items():
        frame = warehouse.read(table)
        out[table] = frame.drop([c for c in VOLATILE if c in frame.columns]).sort(key, maintain_order=True)
    return out


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for table in TABLES:
        assert a[table].height > 0 or table == "quarantine", table
        assert a[table].columns == b[table].columns, table
        differing = [c for c in a[table].columns if not a[table][c].equals(b[table][c])]
        assert a[table].height == b[table].height and not differing, (table, differing)


def _history_params(warehouse, site: str) -> list[dict[str, str]]:
    raw = warehouse.read("raw_payloads", sites=[site])
    rows = raw.filter(pl.col("endpoint").is_in(["/v1/sites/{site}/timeseries", "/v1/sites/{site}/reviews"]))
    return [json.loads(p) for p in rows["request_params"]]


@pytest.fixture(params=["unified", "keepa"])
def source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which source US is fetched from (UK stays on the unified API)."""
    if request.param == "keepa":
        monkeypatch.setenv("ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE", "{US: keepa}")
    get_settings.cache_clear()
    reset_simulated_keepa(keep_markets=True)
    yield request.param
    monkeypatch.delenv("ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE", raising=False)
    get_settings.cache_clear()


def test_ranged_run_equals_day_by_day_and_rebuilds_from_raw(warehouse_factory, source: str) -> None:
    ranged, daily = warehouse_factory(), warehouse_factory()
    quota = {}
    for site in SITES:
        result = _run(ranged, ["raw_payloads", "mart_timeseries_daily"], site=site, start=START, end=END)
        quota[site] = _quota(result)
        for day in DAYS:
            _run(daily, ["raw_payloads", "mart_timeseries_daily"], site=site, start=day, end=day)
    # what each partition spent: the range requests (and Keepa tokens) on the first day only
    stored = ranged.read("raw_payloads", sites=["US"], start=START, end=START)
    assert quota["US"][str(START)]["requests"] == stored.height
    assert quota["US"][str(START)]["range_requests"] > 0
    assert all(quota["US"][str(day)]["range_requests"] == 0 for day in DAYS[1:])
    assert all(quota["US"][str(day)]["tokens_consumed"] == 0 for day in DAYS[1:])
    assert (quota["US"][str(START)]["tokens_consumed"] > 0) == (source == "keepa")
    expected = _tables(daily)
    if source == "keepa":
        expected = _keepa_snapshot_as_ranged(expected, _tables(ranged))
    _assert_same(_tables(ranged), expected)

    # history asked once per batch for the whole range,
    # stored once, in the range's first day, with its range as sent
    if source == "keepa":
        _assert_keepa_bought_once(ranged, daily)
        _rebuild_and_compare(ranged, expected)
        return
    params = _history_params(ranged, "US")
    assert {(p.get("start", p.get("since")), p.get("end", p.get("until"))) for p in params} == {
        (str(START), str(END))
    }
    raw = ranged.read("raw_payloads", sites=["US"], columns=["date", "endpoint"])
    history = raw.filter(pl.col("endpoint").str.ends_with("timeseries"))
    assert history["date"].unique().to_list() == [START]
    # day by day: >= 1 request per kind and day; ranged: one per batch of the union (80 ASINs: <= 3)
    assert len(_history_params(daily, "US")) >= len(DAYS) * 2 > 2 * 3 >= len(params)

    _rebuild_and_compare(ranged, expected)


def _rebuild_and_compare(ranged, expected: dict[str, pl.DataFrame]) -> None:
    """etl-standardize: the mart rebuilt from the stored payloads alone (no API call), the whole range
    and slices that start inside it (their history comes from the payload stored on START)."""
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


# Keepa's listing attributes are a snapshot of the response instant (no history): the parser keeps them
# only for days within LISTING_MAX_LAG_DAYS of it. Day by day against the simulator's day_end clock
# each day is its own instant; a range is answered as of its last day.
KEEPA_SNAPSHOT = [
    "category_id",
    "subcategory_id",
    "title_length",
    "bullet_count",
    "image_count",
    "has_aplus",
    "attribute_flag_count",
    "listed_since",
]


def _keepa_snapshot_as_ranged(
    daily: dict[str, pl.DataFrame], ranged: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """The day-by-day tables with what a range cannot know nulled: the snapshot columns of Keepa days
    older than the lag. Asserts those are exactly the days the ranged mart lacks them on."""
    old = (pl.col("site") == "US") & (pl.col("date") < END - timedelta(days=LISTING_MAX_LAG_DAYS))
    mart = daily["mart_timeseries_daily"]
    snapshot = [c for c in KEEPA_SNAPSHOT if c in mart.columns]
    recent = ranged["mart_timeseries_daily"].filter(~old)
    assert recent.equals(mart.filter(~old))
    assert ranged["mart_timeseries_daily"].filter(old).select(snapshot).null_count().row(0) == tuple(
        ranged["mart_timeseries_daily"].filter(old).height for _ in snapshot
    )
    nulled = mart.with_columns(pl.when(old).then(None).otherwise(pl.col(c)).alias(c) for c in snapshot)
    return {**daily, "mart_timeseries_daily": nulled}


def _assert_keepa_bought_once(ranged, daily) -> None:
    """The ranged run asked /product once per batch (80 ASINs / 30), stored with its range, on START."""
    raw = ranged.read("raw_payloads", sites=["US"]).filter(pl.col("endpoint") == "/product")
    assert raw["date"].unique().to_list() == [START]
    assert {json.loads(p)["covers"] for p in raw["request_params"]} == {f"{START}..{END}"}
    daily_raw = daily.read("raw_payloads", sites=["US"]).filter(pl.col("endpoint") == "/product")
    assert daily_raw.height == raw.height * len(DAYS)
