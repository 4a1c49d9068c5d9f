"""A ranker from its levers (pure; no Dagster): ``RankerParams``, ``build_ranker`` and the refit on
train + valid. ``core/ranker.py`` is the lambdarank fit itself (data, sampling, early stopping,
metrics); this module decides which fits make a model and with which LightGBM parameters, so every
training path (the ``ranker_model`` asset, ``train-rank`` / ``tune-rank``, the walk-forward
backtest, the benchmarks) builds the same model from the same levers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import polars as pl

from asin_platform.core.ranker import REFIT_VALID_NOTE, TrainedRanker, merged_params, train_ranker


@dataclass(frozen=True)
class RankerParams:
    """The training levers as plain values: what settings.scale.ranker, the CLI flags and the
    benchmarks map onto (core never reads settings). ``lightgbm`` holds extra LightGBM params laid
    over the levers (a tuned set, ``--params``). Defaults = levers.RankerLevers' defaults.

    Why these (docs/benchmarks.md, *Training at scale*): lambdarank's cost per round is mostly its
    pairs (every row of a query against the top 50), so it falls with the rows fitted. Each
    query keeps every relevant row, its 20% hardest grade-0 rows (highest baseline score) and 20% of
    the other grade-0 rows at random: ~39% of the training rows. On benchmarks/model_quality.py that
    kept test NDCG@20 (0.618 vs 0.613 with every row), where random sampling alone at 0.2-0.3 lost
    1.5-4%; on 1M x 40 training with early stopping took 34.8 s instead of 143.5 s. 63 histogram
    bins and column-wise histograms cut the rest of a round's cost.
    """

    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 200
    max_bin: int = 63
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.7
    negative_fraction: float = 0.2
    hard_negative_fraction: float = 0.2
    min_query_rows: int = 1000  # queries of at most this many rows keep every row (no sampling)
    rounds: int = 1000
    early_stopping: int = 30
    col_wise: bool = True
    # > 0: after the early-stopped fit, refit on train + valid with round(best_iteration * refit_factor)
    # trees (``refit_on_validation``); 0 = off. docs/model_quality.md, *The refit lever*
    refit_factor: float = 1.35
    lightgbm: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, Any], **overrides: Any) -> RankerParams:
        """From a mapping of lever values (e.g. ``settings.scale.ranker.model_dump()``) plus
        ``overrides``; a None override keeps the mapping's value (an unset CLI flag)."""
        given = {**values, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown ranker lever(s) {unknown}")
        return cls(**given)

    def lightgbm_params(self) -> dict[str, Any]:
        """DEFAULT_PARAMS with the levers applied, then ``lightgbm`` on top."""
        levers = {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "max_bin": self.max_bin,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "force_col_wise": self.col_wise,
            "force_row_wise": not self.col_wise,
        }
        return merged_params({**levers, **dict(self.lightgbm)})

    def card(self) -> dict[str, Any]:
        """The levers as the model card records them (JSON-ready)."""
        return {**asdict(self), "lightgbm": dict(self.lightgbm)}


def build_ranker(
    samples: pl.DataFrame,
    params: RankerParams,
    *,
    features: Sequence[str] | None = None,
    compare: Mapping[str, str] | None = None,
    label: str = "relevance",
    positive: str = "explodes",
) -> TrainedRanker:
    """The one place a ranker is built from its levers: the ``ranker_model`` asset, the CLI's
    ``train-rank`` / ``tune-rank --output``, the walk-forward backtest's folds and the benchmarks all
    call this (train_ranker underneath); the card records ``params.card()`` as ``levers``."""
    trained = train_ranker(
        samples,
        features=features,
        label=label,
        positive=positive,
        params=params.lightgbm_params(),
        num_boost_round=params.rounds,
        early_stopping_rounds=params.early_stopping,
        compare=compare,
        negative_fraction=params.negative_fraction,
        hard_negative_fraction=params.hard_negative_fraction,
        min_query_rows=params.min_query_rows,
    )
    if params.refit_factor > 0:
        trained = refit_on_validation(trained, samples, params, label=label, positive=positive)
    trained.levers = params.card()
    return trained


def refit_on_validation(
    first: TrainedRanker,
    samples: pl.DataFrame,
    params: RankerParams,
    *,
    label: str = "relevance",
    positive: str = "explodes",
) -> TrainedRanker:
    """``first`` refitted on its train and valid splits together, with exactly
    round(``first.best_iteration`` x ``params.refit_factor``) trees and no validation split (so no
    early stopping): the validation window's breakouts become training examples (the sparse
    benchmark market is short of distinct breakouts, not of rows). Same levers, negative sampling
    and features as ``first``. The gate, the card's validation metrics and the early-stopping
    history stay ``first``'s, and ``refit`` says so: a model cannot be judged on rows it learned
    from. A factor of (train + valid reference dates) / train dates keeps the trees per date of the
    early-stopped fit."""
    rounds = max(1, round(first.best_iteration * params.refit_factor))
    refit = train_ranker(
        samples,
        features=first.features,
        label=label,
        positive=positive,
        params=params.lightgbm_params(),
        num_boost_round=rounds,
        negative_fraction=params.negative_fraction,
        hard_negative_fraction=params.hard_negative_fraction,
        min_query_rows=params.min_query_rows,
        train_split=("train", "valid"),
        valid_split=None,
    )
    # every tree grown: fewer than ``rounds`` only when LightGBM finds no split left
    trees = refit.booster.current_iteration()
    return replace(
        refit,
        best_iteration=trees,
        training_seconds=first.training_seconds + refit.training_seconds,
        params={
            **refit.params,
            "refit_factor": params.refit_factor,
            "refit_rounds": rounds,
            "early_stopped_trees": first.best_iteration,
        },
        rows={**refit.rows, "valid": first.rows["valid"], "early_stopped_train": first.rows["train"]},
        queries={
            **first.queries,
            "train": refit.queries["train"],
            "early_stopped_train": first.queries["train"],
        },
        data_window={**refit.data_window, "valid": first.data_window["valid"]},
        valid_metrics=first.valid_metrics,
        history=first.history,
        refit={
            "factor": params.refit_factor,
            "rounds": rounds,
            "trees": trees,
            "trained_on": ["train", "valid"],
            "early_stopped_trees": first.best_iteration,
            "early_stopped_train_rows": first.rows["train"],
            "early_stopped_seconds": round(first.training_seconds, 3),
            "valid_metrics_of": REFIT_VALID_NOTE,
        },
    )


def refit_summary(refit: Mapping[str, Any]) -> str:
    """A refitted model's trees in one line (``TrainedRanker.refit``): run log, metadata, CLI."""
    return (
        f"{refit['trees']} trees on train + valid = round({refit['early_stopped_trees']} "
        f"early-stopped trees x {refit['factor']})"
    )
