"""Optuna tuning (core/tuning.py): validation only, persisted study, resume after an interruption."""

from __future__ import annotations

import optuna
import polars as pl
import pytest
from optuna.trial import TrialState

import asin_platform.core.tuning as tuning
from asin_platform.core.tuning import open_study, tune_ranker
from asin_platform_tests.core.test_ranker import rank_samples

FAST = {"num_threads": 1, "learning_rate": 0.1}
KW = {"base_params": FAST, "num_boost_round": 15, "early_stopping_rounds": 5}


def _states(path) -> list[TrialState]:
    return [t.state for t in open_study(path).get_trials(deepcopy=False)]


def test_an_interrupted_study_resumes_to_the_requested_trial_count(tmp_path) -> None:
    path = tmp_path / "study.db"
    first = tune_ranker(rank_samples(), trials=3, study_path=path, **KW)
    assert first.completed_trials == 3 and first.ran_now == 3
    assert path.exists()
    # a new process would reopen the same file: the study is loaded, not recreated
    again = tune_ranker(rank_samples(), trials=5, study_path=path, **KW)
    assert again.ran_now == 2 and again.completed_trials == 5
    assert _states(path).count(TrialState.COMPLETE) == 5
    # asking for what is there already runs nothing
    assert tune_ranker(rank_samples(), trials=5, study_path=path, **KW).ran_now == 0


def test_ctrl_c_inside_a_trial_is_not_counted_and_the_rerun_completes(tmp_path, monkeypatch) -> None:
    path = tmp_path / "study.db"
    real_fit = tuning.fit
    calls = {"n": 0}

    def fit_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third trial
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tuning, "fit", fit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        tune_ranker(rank_samples(), trials=5, study_path=path, **KW)
    assert _states(path) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    monkeypatch.setattr(tuning, "fit", real_fit)
    result = tune_ranker(rank_samples(), trials=5, study_path=path, **KW)
    assert result.completed_trials == 5 and result.ran_now == 3
    assert _states(path).count(TrialState.COMPLETE) == 5


def test_trials_are_scored_on_validation_only(tmp_path, monkeypatch) -> None:
    seen: list[set[str]] = []
    real_prepare = tuning.prepare_rank_data

    def spy(samples: pl.DataFrame, **kwargs):
        data = real_prepare(samples, **kwargs)
        seen.append(set(data.valid["split"].unique()) | set(data.train["split"].unique()))
        assert kwargs.get("dataset_params", {}).get("feature_pre_filter") is False
        return data

    monkeypatch.setattr(tuning, "prepare_rank_data", spy)
    result = tune_ranker(rank_samples(), trials=2, study_path=tmp_path / "s.db", **KW)
    assert seen == [{"train", "valid"}]  # the test split never reaches the objective
    assert 0 < result.best_value <= 1
    assert {"learning_rate", "num_leaves", "min_data_in_leaf"} <= set(result.best_params)
    assert result.best_params["lambdarank_truncation_level"] >= 50
    assert result.trials.height == 2 and set(result.trials["state"]) == {"COMPLETE"}
    study = optuna.load_study(study_name="lgb_rank", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_tuning_starts_from_the_levers_and_fits_the_rows_they_keep(tmp_path, monkeypatch) -> None:
    from asin_platform.core.ranker_levers import RankerParams

    seen: list[dict] = []
    real_prepare = tuning.prepare_rank_data

    def spy(samples: pl.DataFrame, **kwargs):
        seen.append(kwargs)
        return real_prepare(samples, **kwargs)

    monkeypatch.setattr(tuning, "prepare_rank_data", spy)
    levers = RankerParams(max_bin=31, negative_fraction=0.5, min_query_rows=7)
    result = tune_ranker(
        rank_samples(), trials=1, study_path=tmp_path / "s.db", levers=levers, **{**KW, "num_boost_round": 5}
    )
    [kwargs] = seen
    assert (kwargs["negative_fraction"], kwargs["hard_negative_fraction"], kwargs["min_query_rows"]) == (
        0.5,
        0.2,
        7,
    )
    assert kwargs["dataset_params"] == {"feature_pre_filter": False, "max_bin": 31}
    # the tuned params are the levers' LightGBM params with the trial's choices over them
    assert result.best_params["max_bin"] == 31 and result.best_params["force_col_wise"] is True
    assert result.best_params["num_threads"] == 1  # base_params on top of the levers
