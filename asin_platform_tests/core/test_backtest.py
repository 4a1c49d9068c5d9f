"""Walk-forward backtest: folds, no label from after a cut-off in its training, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

import asin_platform.assets.evaluation as evaluation
import asin_platform.core.backtest as backtest
from asin_platform.cli import main
from asin_platform.core.backtest import BacktestOptions, Fold, fold_table, folds, walk_forward
from asin_platform.core.labels import LabelConfig
from asin_platform.settings import get_settings
from asin_platform_tests.core.test_labels import sim_features, sim_market, sim_mart

SHORT = LabelConfig(observation=14, horizon=14, embargo=14)
FAST = {"num_threads": 1}


def test_folds_step_from_start_and_stop_at_end() -> None:
    assert folds(date(2025, 1, 1), date(2025, 2, 10), 28) == [
        Fold(date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 29)),
        Fold(date(2025, 1, 29), date(2025, 1, 30), date(2025, 2, 10)),
    ]
    with pytest.raises(ValueError, match="before end"):
        folds(date(2025, 1, 1), date(2025, 1, 1), 28)


def test_training_never_sees_a_label_past_its_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[date, date, date]] = []
    real = backtest.build_samples

    def spy(features: pl.DataFrame, mart: pl.DataFrame, **kwargs):
        samples = real(features, mart, **kwargs)
        seen.append((mart["date"].max(), samples.rank["date"].max(), samples.rank["date"].min()))
        return samples

    monkeypatch.setattr(backtest, "build_samples", spy)
    options = BacktestOptions(
        config=SHORT, score_weights=get_settings().score_weights, params=FAST, rounds=30, early_stopping=5
    )
    cutoffs = folds(date(2025, 4, 15), date(2025, 6, 5), 14)
    results = walk_forward(sim_features(), sim_mart(), cutoffs, options)
    assert len(seen) == len(cutoffs) == 4
    for fold, (mart_last, ref_last, _) in zip(cutoffs, seen, strict=True):
        assert mart_last <= fold.cutoff and ref_last + timedelta(days=SHORT.horizon) <= fold.cutoff
    table = fold_table(results)
    assert table["cutoff"].to_list() == [f.cutoff for f in cutoffs]
    # evaluation windows start after their cut-off and end where labels are still realised
    assert (table["eval_start"] > table["cutoff"]).all()
    assert table["eval_end"].max() == sim_mart()["date"].max() - timedelta(days=SHORT.horizon)
    # the model learns something the baseline and a random ranking do not
    assert (table["ndcg@20 model"] > table["ndcg@20 random"]).all()
    assert set(results["ranker"]) == {"model", "baseline", "random"}  # no oracle given


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The CLI caches the settings of its environment: drop them after the test."""
    yield
    get_settings.cache_clear()


def test_backtest_cli_writes_table_plot_and_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_settings: None
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {"HORIZON": "14", "EMBARGO": "14", "OBSERVATION": "14"}.items():
        monkeypatch.setenv(f"ASIN_PLATFORM__WINDOWS__{name}", value)
    monkeypatch.setenv("ASIN_PLATFORM__SITES", "US,DE")
    monkeypatch.setattr(evaluation, "oracle_market", lambda settings, sites: sim_market())
    sim_mart().write_parquet("mart.parquet")
    sim_features().write_parquet("features.parquet")
    args = ["backtest", "--start", "2025-04-29", "--end", "2025-05-27", "--every", "2w",
            "--features", "features.parquet", "--mart", "mart.parquet", "--rounds", "30",
            "--params", '{"num_threads": 1}']  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| cutoff |" in out and "2 fold(s)" in out
    results = pl.read_csv(tmp_path / "artifacts" / "backtest" / "backtest.csv")
    assert set(results["ranker"]) == {"model", "baseline", "random", "oracle"}
    assert results.height == 2 * 4  # 2 folds x 4 rankers x k=20
    assert (tmp_path / "artifacts" / "backtest" / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["backtest", "--start", "2025-05-01", "--end", "2025-05-01"]) == 2
    assert "widen the range" in capsys.readouterr().err
