"""The effective warehouse outside a Dagster run (URL from the environment) and views read like tables,
on every backend (fixtures in asin_platform_tests/conftest.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from asin_platform.resources.warehouse import WAREHOUSE_URL_ENV, Warehouse, WarehouseError
from asin_platform.schemas import TABLES
from asin_platform.settings import Settings

D1, D2 = date(2025, 2, 1), date(2025, 2, 2)
FEATURES = TABLES["features_daily"]


def test_from_env_or_settings_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(warehouse_url=str(tmp_path / "from_settings.duckdb"))
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)
    plain = Warehouse.from_env_or_settings(settings)
    assert plain.url_origin == "config" and plain.redacted_url == str(tmp_path / "from_settings.duckdb")
    assert plain.describe() == f"duckdb file {tmp_path}/from_settings.duckdb"

    monkeypatch.setenv(WAREHOUSE_URL_ENV, "postgresql://asin:Sup3r-S3cret@db.internal:6543/asin")
    wh = Warehouse.from_env_or_settings(settings)
    assert wh.backend == "postgres" and wh.url_origin == f"env {WAREHOUSE_URL_ENV}"
    assert wh.redacted_url == "postgresql://asin:***@db.internal:6543/asin"
    assert wh.describe() == "postgresql db.internal:6543/asin schema public"
    for text in (repr(wh), str(wh), wh.redacted_url, wh.describe()):
        assert "S3cret" not in text
    # An explicit environment wins over the process's.
    assert Warehouse.from_env_or_settings(settings, environ={}).redacted_url == settings.warehouse_url
    given = Warehouse.from_env_or_settings(settings, environ={WAREHOUSE_URL_ENV: "postgresql://u:pw@h/db"})
    assert given.url_origin == "config" and given.redacted_url == "postgresql://u:***@h/db"


def test_an_env_var_url_works_outside_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What export-table hit: a dg.EnvVar field used outside a Dagster run.
    path = tmp_path / "env.duckdb"
    monkeypatch.setenv(WAREHOUSE_URL_ENV, str(path))
    wh = Warehouse(url=dg.EnvVar(WAREHOUSE_URL_ENV))
    frame = pl.DataFrame({"site": ["US"], "date": [D1], "asin": ["B1"], "keyword": ["serum"], "rank": [3]})
    assert wh.replace_slices("fact_keywords", frame, sites=["US"], start=D1, end=D1) == 1
    assert wh.read("fact_keywords", columns=["keyword", "rank"]).rows() == [("serum", 3)]
    assert path.exists() and f"EnvVar('{WAREHOUSE_URL_ENV}')" in repr(wh)

    @dg.asset
    def counted(warehouse: Warehouse) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": warehouse.count("fact_keywords")})

    result = dg.materialize([counted], resources={"warehouse": wh})  # and inside one, unchanged
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["rows"] == dg.MetadataValue.int(1)

    monkeypatch.delenv(WAREHOUSE_URL_ENV)
    with pytest.raises(WarehouseError, match=f"{WAREHOUSE_URL_ENV}, which is not set"):
        wh.count("fact_keywords")


def test_an_env_var_url_on_the_backend_under_test(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse.url)
    wh = Warehouse(url=dg.EnvVar(WAREHOUSE_URL_ENV), pg_schema=warehouse.pg_schema)
    assert wh.describe() == warehouse.describe() and wh.backend == warehouse.backend
    assert wh.count("mart_timeseries_daily") == 0


def _features(site: str, day: date, asins: list[str], slope: float) -> pl.DataFrame:
    return FEATURES.conform(
        pl.DataFrame(
            {
                "site": site,
                "date": day,
                "asin": asins,
                "category_id": "cat1",
                "bsr_log_slope_7d": [slope + i for i in range(len(asins))],
                "promo_flag": [i % 2 == 0 for i in range(len(asins))],
            }
        )
    )


def test_views_read_like_tables(warehouse: Warehouse) -> None:
    for site, latest in (("US", D2), ("UK", D1)):  # UK's latest day is older: per-site latest
        for day in {D1, latest}:
            frame = _features(site, day, ["B2", "B1"], slope=1.0 if day == latest else -1.0)
            warehouse.replace_slices("features_daily", frame, sites=[site], start=day, end=day)
    got = warehouse.read("vw_features_latest")
    want = pl.concat(
        [
            warehouse.read("features_daily", sites=["UK"], start=D1, end=D1),
            warehouse.read("features_daily", sites=["US"], start=D2, end=D2),
        ]
    )
    assert want.height == 4 and want["bsr_log_slope_7d"].to_list() == [2.0, 1.0, 2.0, 1.0]
    assert_frame_equal(got, want)  # same columns, dtypes and order as features_daily
    assert warehouse.read("vw_features_latest", sites=["US"], columns=["asin", "date"]).rows() == [
        ("B1", D2),
        ("B2", D2),
    ]
    assert warehouse.count("vw_features_latest", sites=["UK"]) == 2
    assert set(warehouse.relations()["views"]) >= {"vw_features_latest", "vw_top_candidates_daily"}
    with pytest.raises(ValueError, match="unknown table or view 'vw_nope'.*views: .*vw_top_candidates_daily"):
        warehouse.read("vw_nope")


def test_top_candidates_view_joins_and_filters(warehouse: Warehouse) -> None:
    scores = pl.DataFrame(
        {
            "site": "US",
            "date": [D1, D1, D2],
            "asin": ["B1", "B2", "B1"],
            "category_id": "cat1",
            "explosive_score": [2.5, 1.0, 3.0],
            "reason": ["bsr", "reviews", "bsr"],
            "rank_in_site": [1, 101, 1],  # the view keeps the top 100
        }
    )
    warehouse.replace_slices("score_baseline_daily", scores, sites=["US"], start=D1, end=D2)
    warehouse.upsert("dim_asin", pl.DataFrame({"site": ["US"], "asin": ["B1"], "title": ["Serum"]}))
    mart = pl.DataFrame({"site": ["US"], "date": [D1], "asin": ["B1"], "bsr_root": [42], "price": [9.5]})
    warehouse.replace_slices("mart_timeseries_daily", mart, sites=["US"], start=D1, end=D1)
    got = warehouse.read("vw_top_candidates_daily", sites=["US"], start=D1, end=D1)
    assert got.columns[:4] == ["site", "date", "rank", "asin"]
    assert got.select("date", "rank", "asin", "title", "bsr_root", "price", "explosive_score").rows() == [
        (D1, 1, "B1", "Serum", 42, 9.5, 2.5)
    ]
    assert got.schema["rank"] == pl.Int32 and got.schema["bsr_root"] == pl.Int64
    assert warehouse.read("vw_top_candidates_daily")["date"].to_list() == [D1, D2]
