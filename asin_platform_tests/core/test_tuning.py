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


BAD = {**FAST, "objective": "nope"}  # LightGBM refuses it in every trial, whatever the trial suggests
ALL_FAILED = "study 'lgb_rank' has no completed trial: all 4 trials failed"
NOPE = "LightGBMError: Unknown objective type name: nope"


def test_a_study_whose_every_trial_fails_says_how_many_and_the_first_reason(tmp_path) -> None:
    """Every trial fails (LightGBM refuses the params): NoCompletedTrialError, a RuntimeError whose
    one line gives the failed trials (twice the 2 asked for are attempted) and the first one's
    reason, kept with each trial as it is given to on_trial. Optuna's own warning and traceback of
    each failed trial are not logged: the caller reports them."""
    import logging
    import pickle

    path = tmp_path / "study.db"
    seen: list[tuple[int, TrialState, str | None]] = []
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(handler)
    try:
        with pytest.raises(tuning.NoCompletedTrialError) as excinfo:
            tune_ranker(
                rank_samples(), trials=2, study_path=path, **{**KW, "base_params": BAD},
                on_trial=lambda _s, t: seen.append((t.number, t.state, t.user_attrs.get(tuning.FAIL_REASON))),
            )  # fmt: skip
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    error = excinfo.value
    assert isinstance(error, RuntimeError)
    assert str(error) == f"{ALL_FAILED} (the first: {NOPE})"
    assert (error.study_name, error.failed, error.total, error.reason) == ("lgb_rank", 4, 4, NOPE)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)  # the parts survive a process boundary
    assert seen == [(n, TrialState.FAIL, NOPE) for n in range(4)]
    assert [r.getMessage() for r in logged if r.levelno >= logging.WARNING] == []
    # the failed trials stay in the study, uncounted: a search with params LightGBM takes completes it
    result = tune_ranker(rank_samples(), trials=1, study_path=path, **KW)
    assert (result.completed_trials, result.ran_now) == (1, 1)
    assert _states(path) == [TrialState.FAIL] * 4 + [TrialState.COMPLETE]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask/tell without optimize
def test_a_failed_trial_without_a_recorded_reason_is_counted_without_one(tmp_path) -> None:
    """A failed trial that kept no reason (its process died; a study of an older version) is counted,
    and the message says no reason rather than a wrong one; trials of other states are counted."""
    study = open_study(tmp_path / "study.db")
    error = tuning.no_completed_trial(study)
    assert str(error) == "study 'lgb_rank' has no completed trial: it holds no trial"
    study.tell(study.ask(), state=TrialState.FAIL)
    error = tuning.no_completed_trial(study)
    assert str(error) == "study 'lgb_rank' has no completed trial: its only trial failed"
    assert (error.failed, error.total, error.reason) == (1, 1, None)
    study.ask()  # a trial still running (another worker's)
    error = tuning.no_completed_trial(study)
    assert str(error) == "study 'lgb_rank' has no completed trial: 1 of its 2 trials failed"


def test_a_failed_trial_s_reason_is_one_line_of_bounded_length() -> None:
    assert tuning.fail_reason(ValueError("bad\n  value\tthere")) == "ValueError: bad value there"
    assert tuning.fail_reason(ValueError()) == "ValueError"
    long = tuning.fail_reason(ValueError("x" * 1000))
    assert len(long) == tuning.REASON_CHARS and long.endswith("...") and long.startswith("ValueError: xxx")


def test_a_lightgbm_refusal_is_its_first_line_as_train_rank_gives_it() -> None:
    """A trial's LightGBM refusal reads as core.ranker.lightgbm_refusal reads it (train-rank, the
    assets): LightGBM's first line, without the C++ source location of a failed check."""
    from asin_platform.core.ranker import LightGBMError, lightgbm_refusal

    check = LightGBMError(
        "Check failed: (num_leaves) > (1) at /__w/LightGBM/LightGBM/lightgbm-python/src/io/config_auto.cpp, "
        "line 352 .\n"
    )
    assert (
        tuning.fail_reason(check)
        == lightgbm_refusal(check)
        == "LightGBMError: Check failed: (num_leaves) > (1)"
    )
    two_lines = LightGBMError("Unknown objective type name: nope\nmore detail")
    assert tuning.fail_reason(two_lines) == "LightGBMError: Unknown objective type name: nope"
    assert lightgbm_refusal(ValueError("not LightGBM's")) is None
