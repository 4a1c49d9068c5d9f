"""The LightGBM lambdarank model: prepare the rank data, sample negatives, train with early stopping.

Queries are (site, reference date): a day's products of one marketplace compete for the top of
one list, which is what the dashboards show. LightGBM needs each query's rows contiguous and the
group sizes in the same order, so every matrix here is built from a frame sorted by
(site, date, asin). ``lambdarank_truncation_level`` is at least the largest k we report (50), so
the gradients care about every position the metrics look at.

Validation is used twice and only for what it is for: early stopping (on NDCG@20, the first
``ndcg_eval_at`` value, restricted to queries with at least one positive: LightGBM would score a
query without one as 1 and flatten the curve), and the card's validation metrics. The test split
is never touched here. A fit without a validation split (``valid_split=None``) grows exactly
``num_boost_round`` trees: the refit on train + valid (``refit_on_validation``) is one.

Saving, versioning and loading a trained model: ``core/model_files.py``.
Building a model from its levers (``RankerParams``, ``build_ranker``, the refit): ``core/ranker_levers.py``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# OpenMP threads that spin while waiting (libgomp's default) stall badly when other processes hold
# the cores, as on a machine shared with Dagster's daemon, webserver and other runs: measured here, a
# training run took 5x longer with two spinning threads than with two that sleep. The policy is read
# once, when LightGBM's library loads, so it is set before the import (an explicit setting wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from asin_platform.core.drift import reference_profile  # noqa: E402
from asin_platform.core.labels import feature_columns  # noqa: E402
from asin_platform.core.metrics import DEFAULT_KS, compare_rankers  # noqa: E402
from asin_platform.core.ranker_features import DEFAULT_SETS, add_derived, set_columns  # noqa: E402

QUERY: tuple[str, ...] = ("site", "date")
HARD_NEGATIVE_SCORE = "explosive_score"  # the cheap score hard negatives are picked by (the baseline)
GATE_METRIC = ("ndcg", 20)  # the model must beat the baseline on validation NDCG@20
LATEST = "latest"  # the promoted model: what predictions use
LAST_TRAINED = "last_trained"  # the newest model, promoted or not: what the gate check and evaluation read
# what a refitted model's validation figures (card, gate, metadata) are: refit_on_validation
REFIT_VALID_NOTE = "the early-stopped fit on the train split, before the refit on train + valid"

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    # the first value drives early stopping (first_metric_only)
    "ndcg_eval_at": [20],  # other k are computed by core.metrics after training; each costs per round
    "lambdarank_truncation_level": max(DEFAULT_KS),
    "learning_rate": 0.1,  # 0.05 gave the same test NDCG@20 on the benchmark with twice the trees
    "num_leaves": 31,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.7,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "verbosity": -1,
    "seed": 42,
    "deterministic": True,
    "force_row_wise": True,
}
DEFAULT_ROUNDS = 1000
DEFAULT_EARLY_STOPPING = 30

# LightGBM refusing what it was given: params it does not take, data it cannot fit, a model file it
# cannot read. Its message is the refusal; ``lightgbm_refusal`` is the one line the shells show of it.
LightGBMError = lgb.basic.LightGBMError
# where in LightGBM's C++ source a failed check is: ``Check failed: (num_leaves) > (1) at
# /__w/LightGBM/.../config_auto.cpp, line 352 .``; nothing the user can act on
_CHECK_SOURCE = re.compile(r"\s+at \S+, line \d+\s*\.?\s*$")


def lightgbm_refusal(exc: BaseException) -> str | None:
    """``exc`` in one line when it is LightGBM refusing what it was given (a ``LightGBMError``):
    ``LightGBMError: Unknown objective type name: nope``, the first line of LightGBM's message without
    the C++ source location of a failed check (``LightGBMError: Check failed: (num_leaves) > (1)``);
    None for any other exception. The one reading of LightGBM's refusals: tune-rank's failed trials
    (``core.tuning.fail_reason``), train-rank, backtest, batch-predict's ``--model`` and the assets
    each add what to fix in their own terms (a flag, a config field)."""
    if not isinstance(exc, LightGBMError):
        return None
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {_CHECK_SOURCE.sub('', first)}".rstrip(": ")


@contextmanager
def _lightgbm_refusals() -> Iterator[None]:
    """A ``ValueError`` raised by LightGBM's Python layer while training (e.g. early stopping with no
    metric LightGBM knows, ``{"metric": "nope"}``) raised as the ``LightGBMError`` its C library's
    refusals are, with the same message: one type for every refusal of the params or the data.
    A ValueError of any other code is left as it is."""
    try:
        yield
    except ValueError as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None or not str(tb.tb_frame.f_globals.get("__name__", "")).startswith("lightgbm"):
            raise
        raise LightGBMError(str(exc)) from exc


def query_sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame sorted by query then ASIN: each query's rows contiguous, as LightGBM requires."""
    return frame.sort(*QUERY, "asin")


def group_sizes(sorted_frame: pl.DataFrame) -> np.ndarray:
    """Rows per query, in the order the queries appear in ``sorted_frame``."""
    return sorted_frame.group_by(list(QUERY), maintain_order=True).agg(pl.len()).get_column("len").to_numpy()


def feature_matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """float32 matrix of ``features`` (booleans as 0/1, nulls as NaN = LightGBM's missing); derived
    ranker features (core.ranker_features) the frame lacks are computed from its columns first."""
    frame = add_derived(frame, features)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks feature column(s) {missing}")
    return frame.select([pl.col(f).cast(pl.Float32) for f in features]).to_numpy()


def default_features(samples: pl.DataFrame) -> tuple[str, ...]:
    """The model's inputs unless told otherwise: the ``features_daily`` columns of ``samples`` plus
    the derived sets of ``core.ranker_features.DEFAULT_SETS``."""
    return feature_columns(samples) + set_columns(DEFAULT_SETS)


def with_positive_queries(frame: pl.DataFrame, positive: str) -> pl.DataFrame:
    """Only the queries holding at least one positive row."""
    return frame.filter(pl.col(positive).cast(pl.Int64).sum().over(list(QUERY)) > 0)


def _split_names(splits: str | Sequence[str]) -> list[str]:
    """One split name or several, as a list (``train_split`` may name the refit's two)."""
    return [splits] if isinstance(splits, str) else list(splits)


def _span(frame: pl.DataFrame) -> list[str] | None:
    if frame.is_empty():
        return None
    return [str(frame["date"].min()), str(frame["date"].max())]


@dataclass
class TrainedRanker:
    booster: lgb.Booster
    params: dict[str, Any]
    features: tuple[str, ...]
    label: str
    best_iteration: int
    training_seconds: float
    rows: dict[str, int]
    queries: dict[str, int]
    data_window: dict[str, list[str] | None]
    valid_metrics: pl.DataFrame  # compare_rankers output on the validation split
    history: dict[str, list[float]] = field(default_factory=dict)
    drift_profile: dict[str, Any] = field(default_factory=dict)
    levers: dict[str, Any] = field(default_factory=dict)  # RankerParams it was built with (build_ranker)
    # refitted on train + valid (refit_on_validation): factor, rounds, the early-stopped fit's trees
    # and rows, and what valid_metrics / history / the gate describe (that fit, not this booster); {} = no refit
    refit: dict[str, Any] = field(default_factory=dict)

    def gate(self, baseline: str = "baseline") -> dict[str, Any]:
        """Does the model beat ``baseline`` on validation NDCG@20? (None when there is no baseline)."""
        metric, k = GATE_METRIC
        table = self.valid_metrics
        values = (
            {r["ranker"]: r[metric] for r in table.filter(pl.col("k") == k).iter_rows(named=True)}
            if "k" in table.columns
            else {}  # trained without a validation split
        )
        model, base = values.get("model"), values.get(baseline)
        passed = None if model is None or base is None else bool(model > base)
        return {
            "metric": f"{metric}@{k}",
            "split": "valid",
            "model": model,
            "baseline": base,
            "passed": passed,
            # a refitted booster trained on the validation rows: the figures are its early-stopped fit's
            **({"of": REFIT_VALID_NOTE} if self.refit else {}),
        }


@dataclass
class RankData:
    """Query-sorted train / valid frames and their LightGBM Datasets (built once, reusable).
    Without a validation split (``prepare_rank_data(valid_split=None)``) ``valid`` and
    ``valid_all`` are empty and ``valid_set`` is None."""

    train: pl.DataFrame  # train queries with at least one relevant row
    valid: pl.DataFrame  # validation queries with at least one positive (early stopping)
    valid_all: pl.DataFrame  # every validation query (metrics report kept / total)
    test: pl.DataFrame
    features: tuple[str, ...]
    label: str
    positive: str
    train_set: lgb.Dataset
    valid_set: lgb.Dataset | None


def prepare_rank_data(
    samples: pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    label: str = "relevance",
    positive: str = "explodes",
    dataset_params: Mapping[str, Any] | None = None,
    train_split: str | Sequence[str] = "train",
    valid_split: str | None = "valid",
    negative_fraction: float = 1.0,
    hard_negative_fraction: float = 0.0,
    hard_negative_score: str = HARD_NEGATIVE_SCORE,
    min_query_rows: int = 0,
) -> RankData:
    """Split, sort and filter the rank samples and build the Datasets.

    ``dataset_params`` go to both Datasets (e.g. ``{"feature_pre_filter": False}`` when a tuner
    varies ``min_data_in_leaf``: with the pre-filter on, LightGBM would rebuild the Dataset).
    Negative sampling (training split only, see ``sampled_negatives``): every relevant row is kept,
    and of each query's grade-0 rows the ``hard_negative_fraction`` scoring highest on
    ``hard_negative_score`` plus a random ``negative_fraction`` of the others, in queries of more
    than ``min_query_rows`` rows. ``train_split`` may name several splits fitted together (the
    refit's ``("train", "valid")``); ``valid_split=None``: no validation rows and no ``valid_set``
    (a fit of a fixed number of rounds)."""
    feats = tuple(features) if features is not None else default_features(samples)
    # derived columns before any subsampling: a cross-sectional one needs whole queries
    samples = add_derived(samples, feats)
    if label not in samples.columns or positive not in samples.columns:
        raise ValueError(f"samples need the {label!r} and {positive!r} columns (rank samples)")
    grades = samples[label]
    if grades.dtype.is_float() or (grades.min() or 0) < 0 or (grades.max() or 0) > 30:  # type: ignore[operator]
        raise ValueError(f"{label!r} must hold integer relevance grades in 0..30 (LightGBM's label_gain)")
    train_splits = _split_names(train_split)
    if valid_split is not None and valid_split in train_splits:
        raise ValueError(f"split {valid_split!r} cannot be both trained on and validated on")
    train = query_sorted(samples.filter(pl.col("split").is_in(train_splits)))
    valid_all = (
        query_sorted(samples.filter(pl.col("split") == valid_split))
        if valid_split is not None
        else samples.head(0)
    )
    # Queries without a relevant row give no lambdarank pairs in training, and a meaningless
    # NDCG of 1 in validation (which would flatten the early-stopping curve): leave them out.
    train = train.filter(pl.col(label).max().over(list(QUERY)) > 0)
    train = sampled_negatives(
        train,
        label=label,
        negative_fraction=negative_fraction,
        hard_negative_fraction=hard_negative_fraction,
        hard_negative_score=hard_negative_score,
        min_query_rows=min_query_rows,
    )
    valid = with_positive_queries(valid_all, positive)
    if train.is_empty():
        raise ValueError("no training query has a relevant row: nothing to learn")
    if valid_split is not None and valid.is_empty():
        raise ValueError("no validation query has a positive: cannot early-stop or evaluate")
    ds_params = {"max_bin": DEFAULT_PARAMS["max_bin"], **(dataset_params or {})}
    train_set = lgb.Dataset(
        feature_matrix(train, feats),
        label=train[label].to_numpy(),
        group=group_sizes(train),
        feature_name=list(feats),
        params=ds_params,
        free_raw_data=False,
    )
    valid_set = (
        lgb.Dataset(
            feature_matrix(valid, feats),
            label=valid[label].to_numpy(),
            group=group_sizes(valid),
            reference=train_set,
            params=ds_params,
            free_raw_data=False,
        )
        if valid_split is not None
        else None
    )
    return RankData(
        train=train,
        valid=valid,
        valid_all=valid_all,
        test=samples.filter(pl.col("split") == "test"),
        features=feats,
        label=label,
        positive=positive,
        train_set=train_set,
        valid_set=valid_set,
    )


def sampled_negatives(
    train: pl.DataFrame,
    *,
    label: str = "relevance",
    negative_fraction: float = 1.0,
    hard_negative_fraction: float = 0.0,
    hard_negative_score: str = HARD_NEGATIVE_SCORE,
    min_query_rows: int = 0,
) -> pl.DataFrame:
    """The training rows lambdarank is fitted on: every relevant row, and of each query's grade-0
    rows the hardest ``hard_negative_fraction`` (highest ``hard_negative_score``, a cheap ranker's
    score: the negatives it would put on top, which the model must learn to push down) plus a
    reproducible random ``negative_fraction`` of the rest. Lambdarank's cost per round grows with
    the query size (every row is paired with the top ``lambdarank_truncation_level``), so this is
    the lever on the cost of a round; (1.0, 0.0) keeps every row. Only queries of more than
    ``min_query_rows`` rows are sampled: a smaller query (a demo-sized site) is cheap to fit whole,
    and sampling it would only cost quality. Keeps ``train``'s row order."""
    if not (0.0 <= negative_fraction <= 1.0 and 0.0 <= hard_negative_fraction <= 1.0):
        raise ValueError("negative_fraction and hard_negative_fraction must be within 0..1")
    if min_query_rows < 0:
        raise ValueError("min_query_rows must be >= 0")
    if negative_fraction >= 1.0 or hard_negative_fraction >= 1.0:
        return train
    keep = (pl.col(label) > 0) | (_uniform_of_key(seed=17) < negative_fraction)
    if min_query_rows > 0:
        keep = keep | (pl.len().over(list(QUERY)) <= min_query_rows)
    if hard_negative_fraction > 0.0:
        if hard_negative_score not in train.columns:
            raise ValueError(
                f"hard negatives need the {hard_negative_score!r} column (e.g. core.metrics.add_baseline_scores)"
            )
        negative = pl.col(label) == 0
        # rank among the query's negatives, highest score first (a null score counts as the lowest;
        # ties by row order, which query_sorted makes the ASIN order)
        score = pl.when(negative).then(pl.col(hard_negative_score).cast(pl.Float64).fill_null(float("-inf")))
        place = score.rank("ordinal", descending=True).over(list(QUERY))
        hard = negative & (place <= (negative.sum().over(list(QUERY)) * hard_negative_fraction).ceil())
        keep = keep | hard
    return train.filter(keep)


def _uniform_of_key(seed: int) -> pl.Expr:
    """A reproducible U[0, 1) draw per (site, date, asin): the same rows are kept on every run."""
    return pl.struct("site", "date", "asin").hash(seed=seed).cast(pl.Float64) / float(2**64)


def merged_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_PARAMS overridden by ``params``; refuses a truncation level below the largest k."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    if int(merged.get("lambdarank_truncation_level", 0)) < max(DEFAULT_KS):
        raise ValueError(f"lambdarank_truncation_level must be >= {max(DEFAULT_KS)} (the largest k)")
    return merged


def fit(
    data: RankData,
    params: Mapping[str, Any] | None = None,
    *,
    num_boost_round: int = DEFAULT_ROUNDS,
    early_stopping_rounds: int = DEFAULT_EARLY_STOPPING,
) -> tuple[lgb.Booster, dict[str, list[float]]]:
    """One lambdarank fit on ``data`` with early stopping on NDCG at the first ``ndcg_eval_at``;
    without a ``valid_set``, exactly ``num_boost_round`` rounds (no validation, empty history).
    Params or data LightGBM refuses raise ``LightGBMError`` (``lightgbm_refusal`` reads it)."""
    merged = merged_params(params)
    if data.valid_set is None:
        with _lightgbm_refusals():
            return lgb.train(merged, data.train_set, num_boost_round=num_boost_round), {}
    history: dict[str, Any] = {}
    with _lightgbm_refusals():
        booster = lgb.train(
            merged,
            data.train_set,
            num_boost_round=num_boost_round,
            valid_sets=[data.valid_set],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False),
                lgb.record_evaluation(history),
            ],
        )
    return booster, {k: list(v) for k, v in history.get("valid", {}).items()}


def best_iteration(booster: lgb.Booster) -> int:
    return int(booster.best_iteration or booster.current_iteration())


def n_queries(frame: pl.DataFrame) -> int:
    return int(frame.select(pl.struct(list(QUERY)).n_unique()).item()) if frame.height else 0


def train_ranker(
    samples: pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    label: str = "relevance",
    positive: str = "explodes",
    params: Mapping[str, Any] | None = None,
    num_boost_round: int = DEFAULT_ROUNDS,
    early_stopping_rounds: int = DEFAULT_EARLY_STOPPING,
    compare: Mapping[str, str] | None = None,
    negative_fraction: float = 1.0,
    hard_negative_fraction: float = 0.0,
    min_query_rows: int = 0,
    train_split: str | Sequence[str] = "train",
    valid_split: str | None = "valid",
) -> TrainedRanker:
    """Train lambdarank on the ``train`` split with early stopping on ``valid``.

    ``samples`` is a rank-samples frame (split, site, date, asin, features, ``label`` grades,
    ``positive`` 0/1). ``compare`` maps extra ranker names to score columns of ``samples`` (e.g.
    ``{"baseline": "explosive_score"}``) evaluated beside the model on validation.
    ``negative_fraction`` < 1 keeps every relevant training row but only that share of the
    grade-0 rows (a reproducible draw per key), ``hard_negative_fraction`` > 0 also each query's
    grade-0 rows the baseline (``explosive_score``) puts highest (``sampled_negatives``), both only
    in queries of more than ``min_query_rows`` rows; validation is never subsampled.
    ``training_seconds`` covers building the Datasets and boosting.
    ``train_split`` may name several splits; ``valid_split=None`` trains exactly ``num_boost_round``
    trees with no validation split (``early_stopping_rounds`` unused): no early stopping, empty
    ``valid_metrics`` and history, so ``gate()`` has nothing to say (``refit_on_validation`` lays
    the early-stopped fit's on top).
    """
    merged = merged_params(params)
    started = time.perf_counter()
    data = prepare_rank_data(
        samples,
        features=features,
        label=label,
        positive=positive,
        dataset_params={"max_bin": merged["max_bin"]},
        train_split=train_split,
        valid_split=valid_split,
        negative_fraction=negative_fraction,
        hard_negative_fraction=hard_negative_fraction,
        min_query_rows=min_query_rows,
    )
    booster, history = fit(
        data, merged, num_boost_round=num_boost_round, early_stopping_rounds=early_stopping_rounds
    )
    seconds = time.perf_counter() - started
    best = best_iteration(booster)
    valid_all = data.valid_all
    if valid_split is None:
        valid_metrics = pl.DataFrame()  # nothing held out
    else:
        scored = valid_all.with_columns(
            model_score=booster.predict(feature_matrix(valid_all, data.features), num_iteration=best)
        )
        valid_metrics = compare_rankers(
            scored, {"model": "model_score", **(compare or {})}, relevance=label, positive=positive
        )
    # the training splits as the data has them, not as subsampled for the fit
    train_rows = samples.filter(pl.col("split").is_in(_split_names(train_split)))
    return TrainedRanker(
        booster=booster,
        params={
            **merged,
            "num_boost_round": num_boost_round,
            "early_stopping_rounds": early_stopping_rounds if valid_split is not None else None,
            "negative_fraction": negative_fraction,
            "hard_negative_fraction": hard_negative_fraction,
            "min_query_rows": min_query_rows,
        },
        features=data.features,
        label=label,
        best_iteration=best,
        training_seconds=seconds,
        rows={
            "train_split": train_rows.height,
            "train": data.train.height,  # what the trees were fitted on
            "valid": valid_all.height,
            "test": data.test.height,
        },
        queries={
            "train": n_queries(data.train),
            "valid": n_queries(valid_all),
            "valid_with_positive": n_queries(data.valid),
        },
        data_window={"train": _span(data.train), "valid": _span(valid_all), "test": _span(data.test)},
        valid_metrics=valid_metrics,
        history=history,
        drift_profile=reference_profile(add_derived(train_rows, data.features), data.features, by="site"),
    )


def feature_importance(booster: lgb.Booster) -> pl.DataFrame:
    """feature, gain (share of total), split count; by gain, highest first."""
    gain = booster.feature_importance(importance_type="gain")
    total = float(gain.sum()) or 1.0
    return pl.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": gain / total,
            "splits": booster.feature_importance(importance_type="split").astype(np.int64),
        }
    ).sort("gain", descending=True)
