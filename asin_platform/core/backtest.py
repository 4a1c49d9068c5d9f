"""Walk-forward backtest: retrain as of each cut-off, evaluate on the window that follows.

For every cut-off C (``start``, ``start + every``, ... up to ``end``) the ranker is trained only
on what was known on C: reference dates T with T + H <= C, labelled from the mart up to C
(``core.labels.build_samples``, its own train / valid split with embargo for early stopping). It
is then evaluated on the reference dates of (C, C + every], labelled from the whole mart (those
labels lie in the future of C), beside the baseline Explosive Score, a seeded random ranking and,
when the caller can supply one, the simulator oracle (``core.metrics.compare_rankers``). A fold
whose evaluation window has no realised label (T + H beyond the mart) or no positive is skipped
and reported as such.

No label the model trains on reaches past C, and no evaluation date lies on or before C: the
folds are what a weekly retraining would have seen had it run on each cut-off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import polars as pl

from asin_platform.core.labels import KEY, LabelConfig, build_samples, compute_targets
from asin_platform.core.metrics import RANKERS, add_baseline_scores, add_random_scores, compare_rankers
from asin_platform.core.predict import add_model_scores
from asin_platform.core.ranker_levers import RankerParams, build_ranker

FOLD_KS: tuple[int, ...] = (20,)


@dataclass(frozen=True)
class Fold:
    cutoff: date  # the model knows labels up to this day
    eval_start: date  # first evaluated reference date (cutoff + 1)
    eval_end: date


def folds(start: date, end: date, every: int) -> list[Fold]:
    """Cut-offs ``start, start + every, ...`` whose evaluation window (C, min(C + every, end)] is
    not empty."""
    if every < 1:
        raise ValueError("every must be at least one day")
    if start >= end:
        raise ValueError(
            f"start {start} must be before end {end}: a fold evaluates the days after its cut-off"
        )
    out, cutoff, step = [], start, timedelta(days=every)
    while cutoff < end:
        out.append(Fold(cutoff, cutoff + timedelta(days=1), min(cutoff + step, end)))
        cutoff += step
    return out


@dataclass
class BacktestOptions:
    config: LabelConfig
    calibration: pl.DataFrame | None = None
    score_weights: Any = None  # settings.score_weights: the baseline
    min_category_size: int = 30
    train_days: int = 240  # reference dates behind each cut-off used for training
    sample_every: int = 1
    # the ranker's levers (settings.scale.ranker: sampling, bins, ...), as the training asset uses
    # them; the fields below are the walk-forward's own overrides of them
    levers: RankerParams = field(default_factory=RankerParams)
    params: Mapping[str, Any] = field(default_factory=dict)  # LightGBM params over the levers
    rounds: int = 300  # a cap per fold: a backtest trains one model per cut-off
    early_stopping: int = 30
    ks: Sequence[int] = FOLD_KS

    def fold_levers(self) -> RankerParams:
        """The levers each fold's model is built with: ``levers`` with this run's overrides."""
        lightgbm = {**self.levers.lightgbm, "verbosity": -1, **self.params}
        return replace(self.levers, rounds=self.rounds, early_stopping=self.early_stopping, lightgbm=lightgbm)


def train_as_of(features: pl.DataFrame, mart: pl.DataFrame, cutoff: date, options: BacktestOptions) -> Any:
    """A ranker trained on what was known on ``cutoff`` (labels from the mart up to it)."""
    config = options.config
    last_ref = cutoff - timedelta(days=config.horizon)
    first_ref = last_ref - timedelta(days=options.train_days - 1)
    rows = features.filter(pl.col("date").is_between(first_ref, last_ref))
    known = mart.filter(pl.col("date") <= cutoff)
    samples = build_samples(
        rows,
        known,
        observation=config.observation,
        horizon=config.horizon,
        embargo=config.embargo,
        sales_ratio=config.sales_ratio,
        pctl_gain=config.pctl_gain,
        calibration=options.calibration,
        split_fractions=(0.7, 0.25, 0.05),  # the test split is the next fold: keep this one small
        sample_every=options.sample_every,
    )
    # hard negatives are picked by the baseline's score, as in the ranker_model asset
    rank = add_baseline_scores(
        samples.rank, options.score_weights, min_category_size=options.min_category_size
    )
    return build_ranker(rank, options.fold_levers())


def labelled_window(
    features: pl.DataFrame,
    mart: pl.DataFrame,
    fold: Fold,
    options: BacktestOptions,
    *,
    after: date | None = None,
) -> tuple[pl.DataFrame, date] | None:
    """The feature rows of the fold's evaluation window (only reference dates after ``after``, when
    given) with their realised ``relevance`` / ``explodes``, and the window's last realised day; None
    when the window holds no realised positive."""
    last_mart = mart["date"].max()
    end = min(fold.eval_end, last_mart - timedelta(days=options.config.horizon))  # type: ignore[operator]
    start = fold.eval_start if after is None else max(fold.eval_start, after + timedelta(days=1))
    rows = features.filter(pl.col("date").is_between(start, end))
    if rows.is_empty():
        return None
    targets = compute_targets(mart, rows.select(*KEY), options.config, options.calibration)
    rows = rows.join(targets.select(*KEY, "relevance", "explodes"), on=list(KEY), how="left").with_columns(
        pl.col("relevance", "explodes").fill_null(0)
    )
    if rows["explodes"].sum() == 0:
        return None
    return rows, end


def evaluate_fold(
    features: pl.DataFrame,
    mart: pl.DataFrame,
    fold: Fold,
    trained: Any,
    options: BacktestOptions,
    oracle: Callable[[pl.DataFrame], pl.DataFrame | None] | None = None,
) -> pl.DataFrame | None:
    """compare_rankers on the fold's evaluation window, or None when it holds no realised positive."""
    window = labelled_window(features, mart, fold, options)
    if window is None:
        return None
    rows, end = window
    scored = add_model_scores(rows, trained.booster, trained.features, num_iteration=trained.best_iteration)
    scored = add_baseline_scores(scored, options.score_weights, min_category_size=options.min_category_size)
    scored = add_random_scores(scored)
    oracle_frame = oracle(scored.select(*KEY)) if oracle is not None else None
    if oracle_frame is not None:
        scored = scored.join(oracle_frame.select(*KEY, "oracle_score"), on=list(KEY), how="left")
    table = compare_rankers(scored, RANKERS, relevance="relevance", positive="explodes", ks=options.ks)
    return table.with_columns(
        cutoff=pl.lit(fold.cutoff),
        eval_start=pl.lit(fold.eval_start),
        eval_end=pl.lit(end),
        train_rows=pl.lit(trained.rows["train"]),
    )


def walk_forward(
    features: pl.DataFrame,
    mart: pl.DataFrame,
    cutoffs: Sequence[Fold],
    options: BacktestOptions,
    *,
    oracle: Callable[[pl.DataFrame], pl.DataFrame | None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> pl.DataFrame:
    """One row per (fold, ranker, k): ndcg, precision, recall, queries, the fold's dates."""
    parts = []
    for fold in cutoffs:
        try:
            trained = train_as_of(features, mart, fold.cutoff, options)
        except ValueError as exc:
            log(f"fold {fold.cutoff}: not trained ({exc})")
            continue
        table = evaluate_fold(features, mart, fold, trained, options, oracle)
        if table is None:
            log(f"fold {fold.cutoff}: no realised positive in {fold.eval_start}..{fold.eval_end}")
            continue
        log(f"fold {fold.cutoff}: trained on {trained.rows['train']:,} rows, evaluated {fold.eval_start}..")
        parts.append(table)
    if not parts:
        raise ValueError("no fold could be trained and evaluated: widen the range or add data")
    return pl.concat(parts).select(
        "cutoff", "eval_start", "eval_end", "ranker", "k", "ndcg", "precision", "recall",
        "queries_kept", "queries_total", "train_rows",
    )  # fmt: skip


def fold_table(results: pl.DataFrame, k: int = 20) -> pl.DataFrame:
    """Per fold: NDCG@k and P@k of each ranker side by side (the doc's table)."""
    at_k = results.filter(pl.col("k") == k)
    wide = at_k.pivot(on="ranker", index=["cutoff", "eval_start", "eval_end"], values=["ndcg", "precision"])
    rename = {c: c.replace("ndcg_", f"ndcg@{k} ").replace("precision_", f"P@{k} ") for c in wide.columns}
    # the queries (site x day) with a positive: what each fold's averages rest on
    # (the same for every ranker: they are scored on the same rows)
    kept = at_k.group_by("cutoff").agg(queries=pl.col("queries_kept").first())
    return wide.rename(rename).join(kept, on="cutoff", how="left").sort("cutoff")


def markdown(table: pl.DataFrame, digits: int = 3) -> str:
    """A fold table as Markdown."""
    header = "| " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * len(table.columns)]
    for row in table.iter_rows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else ("n/a" if v is None else str(v)) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- champion / challenger (retraining)
#
# The weekly retraining promotes a new model only if it does not do worse than the promoted one on
# the latest folds: both fixed models score the same rows of each fold's evaluation window and are
# judged against the same realised labels. A model is never judged on reference dates it learned
# from (its training or early-stopping validation split): the window starts after the later of both.


@dataclass(frozen=True)
class Contender:
    """A trained model to judge: booster, feature columns, trees used (None: all), and the last
    reference date it learned from (None: unknown)."""

    version: str | None
    booster: Any
    features: Sequence[str]
    num_iteration: int | None = None
    seen_through: date | None = None


@dataclass(frozen=True)
class PromotionVerdict:
    accepted: bool
    reason: str
    candidate_ndcg: float | None = None  # mean NDCG@k over the compared folds
    current_ndcg: float | None = None
    folds: pl.DataFrame | None = None  # fold_table of the contenders (None: nothing compared)
    current: str | None = None  # the promoted model's version it was judged against

    @property
    def status(self) -> str:
        return "accepted" if self.accepted else "rejected"


def latest_folds(end: date, count: int, every: int) -> list[Fold]:
    """The ``count`` folds of ``every`` days whose last one ends on ``end`` (the newest realised day)."""
    return folds(end - timedelta(days=count * every), end, every)


def seen_through(card: Mapping[str, Any]) -> date | None:
    """The last reference date a model learned from: the end of its card's train or valid span."""
    window = card.get("data_window") or {}
    ends = [str(span[1]) for name in ("train", "valid") if (span := window.get(name))]
    return max(date.fromisoformat(e[:10]) for e in ends) if ends else None


# compare_on_folds' rows: one per (fold, contender, k), in this column order
COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    "cutoff": pl.Date(), "eval_start": pl.Date(), "eval_end": pl.Date(), "ranker": pl.Utf8(),
    "k": pl.Int64(), "ndcg": pl.Float64(), "precision": pl.Float64(), "recall": pl.Float64(),
    "queries_kept": pl.Int64(),
}  # fmt: skip


def compare_on_folds(
    features: pl.DataFrame,
    mart: pl.DataFrame,
    cutoffs: Sequence[Fold],
    contenders: Mapping[str, Contender],
    options: BacktestOptions,
) -> pl.DataFrame:
    """One row per (fold, contender, k) like ``walk_forward``'s, every contender scored on the same
    rows: the fold's reference dates after all contenders' ``seen_through``. Folds without a
    realised positive there are left out (an empty frame when none is left)."""
    after = max((c.seen_through for c in contenders.values() if c.seen_through), default=None)
    parts = []
    for fold in cutoffs:
        window = labelled_window(features, mart, fold, options, after=after)
        if window is None:
            continue
        rows, end = window
        for name, c in contenders.items():
            scored = add_model_scores(rows, c.booster, c.features, num_iteration=c.num_iteration)
            rows = rows.with_columns(scored["model_score"].alias(f"{name}_score"))
        names = {name: f"{name}_score" for name in contenders}
        table = compare_rankers(rows, names, relevance="relevance", positive="explodes", ks=options.ks)
        parts.append(
            table.with_columns(
                cutoff=pl.lit(fold.cutoff), eval_start=pl.lit(rows["date"].min()), eval_end=pl.lit(end)
            )
        )
    if not parts:
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    return pl.concat(parts).select(list(COMPARISON_SCHEMA))


def promotion_verdict(
    results: pl.DataFrame, *, tolerance: float, current: str, k: int = 20
) -> PromotionVerdict:
    """Accept the ``candidate`` when its mean NDCG@k over the compared folds is at least the
    ``current`` model's minus ``tolerance``; refuse it when it is lower, or when no fold could be
    compared (a model is promoted only when shown not to be worse)."""
    at_k = results.filter(pl.col("k") == k)
    if at_k.is_empty():
        return PromotionVerdict(
            False,
            f"not compared: no fold holds a realised positive after both models' training data; "
            f"the current model {current} stays",
            current=current,
        )
    means = dict(at_k.group_by("ranker").agg(pl.col("ndcg").mean()).iter_rows())
    cand, cur = float(means["candidate"]), float(means["current"])
    n = at_k["cutoff"].n_unique()
    accepted = cand >= cur - tolerance
    comparison = ">=" if accepted else "<"
    reason = (
        f"mean NDCG@{k} over the latest {n} fold(s): candidate {cand:.4f} {comparison} current "
        f"{cur:.4f} - tolerance {tolerance:g} ({current})"
    )
    if not accepted:
        reason += f"; {current} stays promoted"
    return PromotionVerdict(accepted, reason, cand, cur, fold_table(results, k=k), current)
