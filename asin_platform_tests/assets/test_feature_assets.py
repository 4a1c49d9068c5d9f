"""features_daily -> score_baseline_daily -> top_candidates through Dagster, on a small simulated
market ingested once per module."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from asin_platform.assets.exports import EXPORT_SCHEMA
from asin_platform.definitions import ASSETS, CHECKS, build_definitions
from asin_platform.resources.upstream import KeepaClient
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import Settings, get_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

SITE = "UK"
FIRST, LAST = date(2025, 2, 1), date(2025, 3, 12)
N_ASINS = 150
FEATURE_ASSETS = ["features_daily", "score_baseline_daily", "top_candidates"]


def _client() -> SimulatedUpstreamClient:
    return SimulatedUpstreamClient(sim_asins_per_site=N_ASINS, base_delay=0.001, max_delay=0.01)


def _materialize(warehouse: Warehouse, keys: list[str], *, partition_key=None, tags=None):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection_with_checks(keys),
        resources={
            "upstream": _client(),
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        partition_key=partition_key,
        tags=tags or {},
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse holding 40 days of raw payloads and mart for one site."""
    path = tmp_path_factory.mktemp("ingested") / "warehouse.duckdb"
    # with the mart's columnar copies (settings.scale.columnar_mart) beside the warehouse file
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ASIN_PLATFORM__SCALE__COLUMNAR_MART", "true")
        env.setenv("ASIN_PLATFORM__ARTIFACTS_DIR", str(path.parent / "artifacts"))
        get_settings.cache_clear()
        result = _materialize(
            Warehouse(url=str(path)),
            ["raw_payloads", "mart_timeseries_daily"],
            tags=range_tags(SITE, FIRST, LAST),
        )
    get_settings.cache_clear()
    assert result.success
    return path


@pytest.fixture
def warehouse_copy(ingested: Path, tmp_path: Path) -> Warehouse:
    target = tmp_path / "warehouse.duckdb"
    shutil.copy(ingested, target)
    return Warehouse(url=str(target))


@pytest.fixture(autouse=True)
def _exports_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASIN_PLATFORM__EXPORTS_DIR", str(tmp_path / "exports"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_features_score_and_export_for_a_day(warehouse_copy: Warehouse, tmp_path: Path) -> None:
    day = LAST
    result = _materialize(warehouse_copy, FEATURE_ASSETS, partition_key=f"{day}|{SITE}")
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"features_null_rate": True, "score_sanity": True, "score_rank_stability": True}

    mart = warehouse_copy.read("mart_timeseries_daily", sites=[SITE], start=day, end=day)
    features = warehouse_copy.read("features_daily")
    score = warehouse_copy.read("score_baseline_daily")
    # one feature row and one score per ASIN of the day's mart, nothing for other days
    assert sorted(features["asin"]) == sorted(mart["asin"])
    assert sorted(score["asin"]) == sorted(mart["asin"])
    assert sorted(score["rank_in_site"]) == list(range(1, mart.height + 1))

    csv = tmp_path / "exports" / SITE / f"top_candidates_{day:%Y%m%d}.csv"
    parquet = csv.with_suffix(".parquet")
    exported = pl.read_parquet(parquet)
    assert csv.exists() and list(exported.columns) == list(EXPORT_SCHEMA)
    assert exported["rank"].to_list() == list(range(1, min(100, mart.height) + 1))
    best = score.filter(pl.col("rank_in_site") == 1).row(0, named=True)
    assert exported.row(0, named=True)["asin"] == best["asin"]
    assert exported.row(0, named=True)["explosive_score"] == pytest.approx(best["explosive_score"])
    assert exported["title"].null_count() == 0

    export_event = next(
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("top_candidates")
    )
    metadata = export_event.materialization.metadata
    top_10 = [r.data for r in metadata["top_10"].records]
    assert [r["asin"] for r in top_10] == exported["asin"].head(10).to_list()
    assert [r["rank"] for r in top_10] == list(range(1, 11))
    assert metadata["bsr_trajectories"].value.startswith("![BSR trajectories](data:image/png;base64,")
    assert (tmp_path / "exports" / SITE / f"top_candidates_{day:%Y%m%d}_bsr.png").exists()


def test_settings_passed_to_build_definitions_reach_the_assets(
    warehouse_copy: Warehouse, tmp_path: Path
) -> None:
    """A Settings object given to build_definitions is what the assets use at run time, not the
    process-wide settings (which point the exports at tmp_path/exports here)."""
    settings = Settings(top_candidates=7, exports_dir=tmp_path / "custom_exports")
    defs = build_definitions(settings)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection_with_checks(FEATURE_ASSETS),
        resources={**defs.resources, "upstream": _client(), "warehouse": warehouse_copy},
        partition_key=f"{LAST}|{SITE}",
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    exported = pl.read_csv(tmp_path / "custom_exports" / SITE / f"top_candidates_{LAST:%Y%m%d}.csv")
    assert exported["rank"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    assert not (tmp_path / "exports").exists()


def test_features_from_the_columnar_copies_equal_the_warehouse_read(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settings.scale.columnar_mart: the window scanned from the mart's parquet copies gives the
    rows the warehouse read gives, bit for bit."""
    from asin_platform.storage import columnar
    from asin_platform.storage.store import artifacts_store

    frames = {}
    for flag in ("true", "false"):
        path = tmp_path / flag / "warehouse.duckdb"
        path.parent.mkdir()
        shutil.copy(ingested, path)
        wh = Warehouse(url=str(path))
        monkeypatch.setenv("ASIN_PLATFORM__SCALE__COLUMNAR_MART", flag)
        monkeypatch.setenv("ASIN_PLATFORM__ARTIFACTS_DIR", str(ingested.parent / "artifacts"))
        get_settings.cache_clear()
        if flag == "true":  # the ingest wrote a copy of every day of the window: the scan uses them
            store = artifacts_store(get_settings())
            versions = columnar.recorded_versions(wh, "mart_timeseries_daily", SITE, FIRST, LAST)
            assert len(versions) == (LAST - FIRST).days + 1
            assert all(
                store.exists(columnar.slice_key("mart_timeseries_daily", SITE, d, v))
                for d, v in versions.items()
            )
        assert _materialize(wh, ["features_daily"], partition_key=f"{LAST}|{SITE}").success
        frames[flag] = wh.read("features_daily", sites=[SITE], start=LAST, end=LAST)
    assert frames["true"].height > 0
    assert frames["true"].equals(frames["false"])


def test_ranged_backfill_equals_partition_by_partition(ingested: Path, tmp_path: Path) -> None:
    days = [LAST - timedelta(days=2), LAST - timedelta(days=1), LAST]
    ranged_path, single_path = tmp_path / "ranged.duckdb", tmp_path / "single.duckdb"
    shutil.copy(ingested, ranged_path)
    shutil.copy(ingested, single_path)
    ranged, single = Warehouse(url=str(ranged_path)), Warehouse(url=str(single_path))

    result = _materialize(ranged, FEATURE_ASSETS, tags=range_tags(SITE, days[0], days[-1]))
    assert result.success
    for day in days:
        assert _materialize(single, FEATURE_ASSETS, partition_key=f"{day}|{SITE}").success

    for table in ("features_daily", "score_baseline_daily"):
        a = ranged.read(table).sort("date", "asin")
        b = single.read(table).sort("date", "asin")
        assert a.height == sum(
            ranged.count("mart_timeseries_daily", sites=[SITE], start=d, end=d) for d in days
        )
        assert a.equals(b), table


def test_dashboard_views_on_both_backends(warehouse: Warehouse) -> None:
    day, before = date(2025, 3, 2), date(2025, 3, 1)
    from asin_platform.schemas import DIM_ASIN, FEATURES_DAILY, MART_TIMESERIES_DAILY, SCORE_BASELINE_DAILY

    score = SCORE_BASELINE_DAILY.conform(
        pl.DataFrame(
            {
                "site": ["US"] * 3,
                "date": [day, day, before],
                "asin": ["B0AAAAAAA1", "B0AAAAAAA2", "B0AAAAAAA1"],
                "category_id": ["beauty"] * 3,
                "explosive_score": [2.5, 1.0, 0.3],
                "reason": ['{"scope": "category"}'] * 3,
                "rank_in_category": [1, 2, 1],
                "rank_in_site": [1, 2, 1],
                "scope": ["category"] * 3,
            }
        )
    )
    features = FEATURES_DAILY.conform(
        pl.DataFrame(
            {
                "site": ["US", "US"],
                "date": [before, day],
                "asin": ["B0AAAAAAA1"] * 2,
                "title_length": [10, 99],
            }
        )
    )
    dim = DIM_ASIN.conform(
        pl.DataFrame({"site": ["US"], "asin": ["B0AAAAAAA1"], "title": ["Serum"], "brand": ["Lumora"]})
    )
    mart = MART_TIMESERIES_DAILY.conform(
        pl.DataFrame(
            {"site": ["US"], "date": [day], "asin": ["B0AAAAAAA1"], "bsr_root": [1234], "price": [19.99]}
        )
    )
    with warehouse.transaction() as tx:
        tx.replace_slices("score_baseline_daily", score, sites=["US"], start=before, end=day)
        tx.replace_slices("features_daily", features, sites=["US"], start=before, end=day)
        tx.replace_slices("mart_timeseries_daily", mart, sites=["US"], start=day, end=day)
        tx.upsert("dim_asin", dim)

    top = warehouse.query(
        "SELECT site, date, rank, asin, title, brand, bsr_root, price, explosive_score "
        "FROM vw_top_candidates_daily WHERE date = ? ORDER BY rank",
        [day],
    )
    assert top.rows() == [
        ("US", day, 1, "B0AAAAAAA1", "Serum", "Lumora", 1234, 19.99, 2.5),
        ("US", day, 2, "B0AAAAAAA2", None, None, None, None, 1.0),
    ]
    latest = warehouse.query("SELECT site, date, asin, title_length FROM vw_features_latest")
    assert latest.rows() == [("US", day, "B0AAAAAAA1", 99)]
