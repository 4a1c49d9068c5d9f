"""features-build / score-baseline in file mode equal the core functions on the same data."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from asin_platform.cli import main
from asin_platform.core.features import build_features
from asin_platform.core.sales import default_calibration
from asin_platform.core.score import score_baseline
from asin_platform.schemas import FACT_KEYWORDS, MART_TIMESERIES_DAILY
from asin_platform.settings import get_settings
from asin_platform.simulator import Market, MarketConfig
from asin_platform.simulator.catalog import SALES_PRIOR


def _mart(tmp_path: Path) -> Path:
    market = Market(MarketConfig(sites=("US",), asins_per_site=80))
    frame = market.timeseries_frame("US", date(2025, 2, 1), date(2025, 3, 15))
    path = tmp_path / "mart.parquet"
    MART_TIMESERIES_DAILY.conform(frame).write_parquet(path)
    return path


def test_features_and_score_file_mode(tmp_path: Path) -> None:
    mart_path = _mart(tmp_path)
    features_path, score_path = tmp_path / "f.parquet", tmp_path / "s.parquet"
    assert main(["features-build", "--mart", str(mart_path), "--output", str(features_path),
                 "--start", "2025-03-10", "--end", "2025-03-15"]) == 0  # fmt: skip
    assert main(["score-baseline", "--features", str(features_path), "--output", str(score_path)]) == 0

    settings = get_settings()
    targets = [date(2025, 3, 10) + timedelta(days=i) for i in range(6)]
    expected = build_features(
        pl.scan_parquet(mart_path), FACT_KEYWORDS.empty().lazy(), targets,
        lookback=settings.windows.lookback, calibration=default_calibration(settings.sites, SALES_PRIOR),
    )  # fmt: skip
    got = pl.read_parquet(features_path)
    assert got.sort("date", "asin").equals(expected.sort("date", "asin"))
    assert sorted(got["date"].unique().to_list()) == targets

    scores = pl.read_parquet(score_path)
    assert scores.sort("date", "asin").equals(
        score_baseline(expected, settings.score_weights, min_category_size=settings.min_category_size).sort(
            "date", "asin"
        )
    )
    assert scores.group_by("date").agg(pl.col("rank_in_site").min())["rank_in_site"].to_list() == [1] * 6
