"""Hyper-parameter search for the ranker with Optuna, on the validation split only.

Each trial trains on ``train`` with early stopping on ``valid`` and is scored by validation
NDCG@20 over the queries with a positive (``core.metrics``); the test split is never read, so the
test figures stay an honest estimate after tuning.

The study lives in a SQLite file (Optuna's RDB storage) and is opened with
``load_if_exists=True``: ``trials`` is the number of *completed* trials the study should end with,
so a search interrupted after 3 of 5 runs the 2 missing ones when started again. A trial cut off by
Ctrl-C is recorded as failed and not counted; one whose process died without a word is failed by
the storage's heartbeat once ``grace_period`` has passed, and retried once with the same params.

A trial LightGBM refuses (impossible params, data it cannot fit) fails alone and the search goes
on; its reason is kept with the trial (user attribute ``fail_reason``) and given to ``on_trial``, in
place of Optuna's warning and traceback for it. A search that ends with no completed trial raises
``NoCompletedTrialError`` (a ``RuntimeError``) naming how many failed and the first one's reason, for
the shells to say in one line.

The Datasets are built once for the whole search with ``feature_pre_filter=False``: the search
varies ``min_data_in_leaf``, and with the pre-filter on LightGBM would have to rebuild them (or
refuse the change) in every trial.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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
    lightgbm_refusal,
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
# the user attribute a failed trial keeps its reason in (Optuna only logs it)
FAIL_REASON = "fail_reason"
# a failed trial's reason as kept and shown: one line, at most this long
REASON_CHARS = 300


class NoCompletedTrialError(RuntimeError):
    """The search ended with no completed trial in the study: every trial failed (LightGBM refused
    the params or the data in each). ``failed`` of its ``total`` trials failed; ``reason`` is the
    first failed trial's (``type: message``), None when no failed trial recorded one (a trial of a
    process that died). ``str()`` is one line saying so; a shell adds what to fix, in its own terms
    (a flag, a config field)."""

    def __init__(self, study_name: str, failed: int, total: int, reason: str | None) -> None:
        self.study_name, self.failed, self.total, self.reason = study_name, failed, total, reason
        if total == 0:
            counted = "it holds no trial"
        elif failed == total:
            counted = "its only trial failed" if total == 1 else f"all {total} trials failed"
        else:
            counted = f"{failed} of its {total} trials failed"
        first = f" (the first: {reason})" if reason else ""
        super().__init__(f"study {study_name!r} has no completed trial: {counted}{first}")

    def __reduce__(self) -> tuple[type[NoCompletedTrialError], tuple[str, int, int, str | None]]:
        # the default would re-create it from ``args`` (the one message): keep the parts
        return type(self), (self.study_name, self.failed, self.total, self.reason)


def fail_reason(exc: BaseException) -> str:
    """``exc`` as one line, ``LightGBMError: Unknown objective type name: nope``, at most
    ``REASON_CHARS`` long: a refusal of LightGBM as ``core.ranker.lightgbm_refusal`` reads it (as
    train-rank and the ranker_model asset say it), any other exception with its whole message."""
    text = lightgbm_refusal(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


@contextmanager
def _failed_trials_unlogged() -> Iterator[None]:
    """Optuna's own report of a failed trial (a warning with its traceback, and a second line) held
    back while ``tune_ranker`` searches: the trial keeps its reason (``FAIL_REASON``) and the caller
    reports it (``on_trial``, ``NoCompletedTrialError``). Only that logger's records are held back:
    it logs the outcome of each trial and nothing else."""
    logger = logging.getLogger("optuna.study._optimize")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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


def no_completed_trial(study: optuna.Study) -> NoCompletedTrialError:
    """What to raise for ``study`` when it holds no completed trial: its failed trials and the first
    reason one of them kept."""
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    reason = next((t.user_attrs[FAIL_REASON] for t in failed if FAIL_REASON in t.user_attrs), None)
    return NoCompletedTrialError(study.study_name, len(failed), len(trials), reason)


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
        try:
            return score(trial)
        except Exception as exc:
            trial.set_user_attr(FAIL_REASON, fail_reason(exc))  # Optuna keeps none
            raise

    def score(trial: optuna.Trial) -> float:
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
        with _failed_trials_unlogged():
            study.optimize(
                objective, n_trials=2 * remaining, timeout=timeout, callbacks=callbacks, catch=(lgb_error(),)
            )
    after = completed(study)
    if after == 0:
        raise no_completed_trial(study)
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
