"""Hyper-parameter search for the ranker with Optuna, on the validation split only.

Each trial trains on ``train`` with early stopping on ``valid`` and is scored by validation
NDCG@20 over the queries with a positive (``core.metrics``); the test split is never read, so the
test figures stay an honest estimate after tuning.

The study lives in a SQLite file (Optuna's RDB storage) and is opened with
``load_if_exists=True``: ``trials`` is the number of *completed* trials the study should end with,
so a search interrupted after 3 of 5 runs the 2 missing ones when started again. A trial cut off by
Ctrl-C is recorded as failed and not counted; one whose process died without a word is failed by
the storage's heartbeat once ``grace_period`` has passed, and retried once with the same params.

The Datasets are built once for the whole search with ``feature_pre_filter=False``: the search
varies ``min_data_in_leaf``, and with the pre-filter on LightGBM would have to rebuild them (or
refuse the change) in every trial.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from asin_platform.core.metrics import ranking_metrics
from asin_platform.core.ranker import (
    DEFAULT_PARAMS,
    best_iteration,
    feature_matrix,
    fit,
    merged_params,
    prepare_rank_data,
)
from asin_platform.core.ranker_levers import RankerParams

STUDY_NAME = "lgb_rank"
OBJECTIVE_K = 20
HEARTBEAT_SECONDS = 30
# Optuna logs every trial at INFO; callers report progress themselves (on_trial).
optuna.logging.set_verbosity(optuna.logging.WARNING)
GRACE_SECONDS = 120


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space (log scales where the effect is multiplicative)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 2000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
    }


def storage_url(study_path: str | Path) -> str:
    """A database URL as it is (PostgreSQL for workers on several machines); a path -> a SQLite file."""
    if "://" in str(study_path):
        return str(study_path)
    path = Path(study_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_study(study_path: str | Path, *, study_name: str = STUDY_NAME, seed: int = 0) -> optuna.Study:
    """Create the persisted study, or load it when the file already holds it."""
    with warnings.catch_warnings():
        # the heartbeat is "experimental" in Optuna 5 and has been since 2.8; we rely on it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            storage_url(study_path),
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    existing = optuna.study.get_all_study_names(storage)
    done = 0
    if study_name in existing:
        done = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    # The sampler's seed moves on with the study, so a resumed search does not replay the random
    # start-up suggestions it already tried.
    sampler = optuna.samplers.TPESampler(seed=seed + done)
    return optuna.create_study(
        storage=storage, study_name=study_name, direction="maximize", sampler=sampler, load_if_exists=True
    )


def completed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@dataclass
class TuningResult:
    study_name: str
    study_path: Path | str  # the SQLite file, or the database URL
    best_params: dict[str, Any]
    best_value: float
    best_iteration: int
    completed_trials: int
    ran_now: int
    trials: pl.DataFrame  # number, state, value, params, best_iteration


def trials_frame(study: optuna.Study) -> pl.DataFrame:
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "best_iteration": t.user_attrs.get("best_iteration"),
            **{f"param_{k}": v for k, v in t.params.items()},
        }
        for t in study.get_trials(deepcopy=False)
    ]
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"number": pl.Int64, "state": pl.Utf8})


def tune_ranker(
    samples: pl.DataFrame,
    *,
    trials: int,
    study_path: str | Path,
    study_name: str = STUDY_NAME,
    seed: int = 0,
    base_params: Mapping[str, Any] | None = None,
    num_boost_round: int = 500,
    early_stopping_rounds: int = 30,
    label: str = "relevance",
    positive: str = "explodes",
    negative_fraction: float = 1.0,
    levers: RankerParams | None = None,
    timeout: float | None = None,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> TuningResult:
    """Run the study until it holds ``trials`` completed trials; return the best params so far.

    ``levers`` (the ranker's, as ``build_ranker`` takes them): the trials start from their LightGBM
    params (``base_params`` on top) and fit the rows their negative sampling keeps, so the tuned
    params suit the model ``build_ranker`` then trains; without them, DEFAULT_PARAMS and
    ``negative_fraction``."""
    study = open_study(study_path, study_name=study_name, seed=seed)
    before = completed(study)
    start = levers.lightgbm_params() if levers is not None else DEFAULT_PARAMS
    base = {**start, **(base_params or {})}
    data = prepare_rank_data(
        samples,
        label=label,
        positive=positive,
        dataset_params={"feature_pre_filter": False, "max_bin": base["max_bin"]},
        negative_fraction=levers.negative_fraction if levers is not None else negative_fraction,
        hard_negative_fraction=levers.hard_negative_fraction if levers is not None else 0.0,
        min_query_rows=levers.min_query_rows if levers is not None else 0,
    )
    valid_matrix = feature_matrix(data.valid, data.features)

    def objective(trial: optuna.Trial) -> float:
        params = merged_params({**base, **suggest_params(trial)})
        booster, _ = fit(
            data, params, num_boost_round=num_boost_round, early_stopping_rounds=early_stopping_rounds
        )
        best = best_iteration(booster)
        trial.set_user_attr("best_iteration", best)
        scored = data.valid.with_columns(model_score=booster.predict(valid_matrix, num_iteration=best))
        table = ranking_metrics(
            scored, score="model_score", relevance=label, positive=positive, ks=[OBJECTIVE_K]
        )
        return float(table["ndcg"][0])

    remaining = max(0, trials - before)
    if remaining:
        callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
            MaxTrialsCallback(trials, states=(TrialState.COMPLETE,))
        ]
        if on_trial is not None:
            callbacks.append(on_trial)
        # n_trials bounds this run; failed trials (e.g. a LightGBM error) do not count towards
        # ``trials`` but do stop an endless loop: at most twice the missing number are attempted.
        study.optimize(
            objective, n_trials=2 * remaining, timeout=timeout, callbacks=callbacks, catch=(lgb_error(),)
        )
    after = completed(study)
    if after == 0:
        raise RuntimeError(f"study {study_name!r} has no completed trial")
    best = study.best_trial
    return TuningResult(
        study_name=study_name,
        study_path=study_path if "://" in str(study_path) else Path(study_path),
        best_params=merged_params({**base, **best.params}),
        best_value=float(best.value or 0.0),
        best_iteration=int(best.user_attrs.get("best_iteration") or 0),
        completed_trials=after,
        ran_now=after - before,
        trials=trials_frame(study),
    )


def lgb_error() -> type[Exception]:
    """LightGBM's exception type (a trial with impossible params fails alone, the study goes on)."""
    import lightgbm as lgb

    return lgb.basic.LightGBMError
