"""``export-table`` with the warehouse named by ``ASIN_PLATFORM_WAREHOUSE_URL`` (the production way),
on DuckDB and on the real PostgreSQL server: whole tables by default, slices, and the views; and
``settings`` showing the warehouse actually used without its credentials."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from asin_platform.cli import main
from asin_platform.settings import get_settings

DAYS = [date(2025, 3, 1) + timedelta(days=i) for i in range(3)]
SITES = ("US", "DE")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh warehouse; on PostgreSQL a throwaway database (the CLI always uses the `public`
    schema of the URL's database, so a schema of the shared test database cannot be selected)."""
    if request.param == "duckdb":
        yield str(tmp_path / "warehouse.duckdb")
        return
    base = os.environ.get("ASIN_PLATFORM_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set ASIN_PLATFORM_TEST_POSTGRES_URL to run the PostgreSQL backend tests")
    import psycopg

    from asin_platform_tests.ops.stack import database_url

    name = f"asin_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def filled(warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The warehouse holding a mart, features and scores of 2 sites x 3 days."""
    from asin_platform.core.features import build_features
    from asin_platform.core.sales import default_calibration
    from asin_platform.core.score import score_baseline
    from asin_platform.resources.warehouse import Warehouse
    from asin_platform.schemas import FACT_KEYWORDS, MART_TIMESERIES_DAILY
    from asin_platform.simulator import Market, MarketConfig

    settings = get_settings()
    market = Market(MarketConfig(sites=SITES, asins_per_site=40))
    warehouse = Warehouse(url=warehouse_url)
    for site in SITES:
        mart = MART_TIMESERIES_DAILY.conform(
            market.timeseries_frame(site, DAYS[0] - timedelta(days=10), DAYS[-1])
        )
        features = build_features(
            mart.lazy(), FACT_KEYWORDS.empty().lazy(), DAYS,
            lookback=settings.windows.lookback, calibration=default_calibration(SITES),
        )  # fmt: skip
        scores = score_baseline(
            features, settings.score_weights, min_category_size=settings.min_category_size
        )
        span = {"sites": [site], "start": DAYS[0] - timedelta(days=10), "end": DAYS[-1]}
        warehouse.replace_slices("mart_timeseries_daily", mart, **span)
        warehouse.replace_slices("features_daily", features, **span)
        warehouse.replace_slices("score_baseline_daily", scores, **span)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASIN_PLATFORM_WAREHOUSE_URL", warehouse_url)
    yield warehouse
    get_settings.cache_clear()


def export(tmp_path: Path, *argv: str) -> pl.DataFrame:
    out = tmp_path / f"{uuid.uuid4().hex}.parquet"
    assert main(["export-table", *argv, "--output", str(out)]) == 0
    return pl.read_parquet(out)


def test_export_table_whole_table_slice_and_views(filled, tmp_path: Path) -> None:
    warehouse = filled
    mart = warehouse.read("mart_timeseries_daily")
    # no range: the whole table (every site, every day), as the help says
    assert export(tmp_path, "--table", "mart_timeseries_daily").equals(mart)
    assert mart["date"].n_unique() == 13 and set(mart["site"]) == set(SITES)

    got = export(
        tmp_path, "--table", "features_daily", "--sites", "DE", "--start", "2025-03-02", "--end", "2025-03-03"
    )
    assert got.equals(warehouse.read("features_daily", sites=["DE"], start=DAYS[1], end=DAYS[2]))
    assert got.height > 0 and set(got["date"]) == {DAYS[1], DAYS[2]}

    features = warehouse.read("features_daily")
    latest = export(tmp_path, "--table", "vw_features_latest")
    assert set(latest["date"]) == {DAYS[-1]}
    assert sorted(latest["asin"].to_list()) == sorted(
        features.filter(pl.col("date") == DAYS[-1])["asin"].to_list()
    )

    scores = warehouse.read("score_baseline_daily", sites=["US"])
    top = export(tmp_path, "--table", "vw_top_candidates_daily", "--sites", "US")
    expected = scores.filter(pl.col("rank_in_site") <= 100).sort("date", "rank_in_site")
    assert (
        top.select("site", "date", "rank", "asin").rows()
        == expected.select("site", "date", "rank_in_site", "asin").rows()
    )


def test_settings_shows_the_effective_warehouse_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "ASIN_PLATFORM__WAREHOUSE_URL", "postgresql://app:settingsPw1@db.example:5432/fromsettings"
    )
    monkeypatch.setenv("ASIN_PLATFORM_WAREHOUSE_URL", "postgresql://asin:envPw2@pg.internal:6432/asin")
    try:
        assert main(["settings"]) == 0
        out = capsys.readouterr().out
        assert (
            "warehouse_url: postgresql pg.internal:6432/asin schema public (from ASIN_PLATFORM_WAREHOUSE_URL)"
            in out
        )
        monkeypatch.delenv("ASIN_PLATFORM_WAREHOUSE_URL")
        assert main(["settings"]) == 0
        out += capsys.readouterr().out
        assert "postgresql db.example:5432/fromsettings schema public (from settings warehouse_url)" in out
        assert "envPw2" not in out and "settingsPw1" not in out
    finally:
        get_settings.cache_clear()
