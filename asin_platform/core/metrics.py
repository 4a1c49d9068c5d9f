"""Ranking metrics per query (site x date), the four rankers we compare, and their Markdown table.

Definitions (k = cut-off, ranks start at 1, ties in the score broken by ``asin`` so results are
reproducible; a null score ranks last):

* ``DCG@k  = sum_{rank <= k} (2**rel - 1) / log2(rank + 1)`` with ``rel`` the relevance (binary
  0/1 or graded 0..4); ``IDCG@k`` is the DCG of the same rows sorted by relevance;
  ``NDCG@k = DCG@k / IDCG@k``.
* ``precision@k = positives in the top k / k``; ``recall@k = positives in the top k / positives``.

Only queries with at least one positive count: LightGBM reports NDCG = 1 for a query without
one, which would reward any ranker for days when nothing happened. Every result says how many
queries were kept out of how many. Everything is polars expressions over all queries at once.

Rankers (``compare_rankers``): the model's score, the baseline ``explosive_score``, a seeded
random score, and an **oracle** that ranks by the simulator's hidden state on the reference date
(``oracle_scores``, definition there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import polars as pl

from asin_platform.schemas import UTC_TS, Table, register

DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
QUERY: tuple[str, ...] = ("site", "date")

# Per (evaluation run, split, ranker, k); unpartitioned, upserted by its key.
MODEL_EVALUATION = register(
    Table(
        "model_evaluation",
        {
            "model_version": pl.Utf8(),
            "split": pl.Utf8(),  # valid | test
            "ranker": pl.Utf8(),  # model | baseline | random | oracle
            "k": pl.Int32(),
            "ndcg": pl.Float64(),
            "precision": pl.Float64(),
            "recall": pl.Float64(),
            "queries_kept": pl.Int32(),  # queries with >= 1 positive (the only ones averaged)
            "queries_total": pl.Int32(),
            "first_date": pl.Date(),
            "last_date": pl.Date(),
            "evaluated_at": UTC_TS,
        },
        key=("model_version", "split", "ranker", "k"),
        partitioned=False,
    )
)


def _ranked(
    frame: pl.DataFrame, score: str, relevance: str, positive: str, query: Sequence[str], tie: str | None
) -> pl.LazyFrame:
    """Rows with their rank by score and by relevance (ideal) inside each query."""
    q = list(query)
    tie_cols = [tie] if tie and tie in frame.columns else []
    lf = frame.lazy().select(
        *q,
        *tie_cols,
        pl.col(score).cast(pl.Float64).fill_nan(None).alias("_score"),
        pl.col(relevance).cast(pl.Float64).fill_null(0.0).alias("_rel"),
        pl.col(positive).cast(pl.Boolean).fill_null(False).alias("_pos"),
    )
    # Sort once: by query, score (desc, nulls last), tie; the rank is the row's place in its query.
    by_score = lf.sort(
        [*q, "_score", *tie_cols],
        descending=[False] * len(q) + [True] + [False] * len(tie_cols),
        nulls_last=True,
    )
    by_score = by_score.with_columns(_rank=pl.int_range(1, pl.len() + 1).over(q))
    return by_score.with_columns(
        _ideal=pl.col("_rel").rank("ordinal", descending=True).over(q),
        _gain=(2.0 ** pl.col("_rel")) - 1.0,
    )


def query_metrics(
    frame: pl.DataFrame,
    *,
    score: str,
    relevance: str,
    positive: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    query: Sequence[str] = QUERY,
    tie: str | None = "asin",
) -> pl.DataFrame:
    """Per query: positives, and ndcg / precision / recall at each k (columns ``ndcg@10`` ...).

    ``positive`` names a 0/1 column (default: ``relevance > 0``)."""
    work = frame
    if positive is None:
        work = frame.with_columns((pl.col(relevance) > 0).alias("_positive_col"))
        positive = "_positive_col"
    lf = _ranked(work, score, relevance, positive, query, tie)
    disc_rank = (pl.col("_rank") + 1).cast(pl.Float64).log(2)
    disc_ideal = (pl.col("_ideal") + 1).cast(pl.Float64).log(2)
    aggs: list[pl.Expr] = [pl.len().alias("items"), pl.col("_pos").sum().alias("positives")]
    for k in ks:
        top = pl.col("_rank") <= k
        aggs += [
            (pl.col("_gain") / disc_rank).filter(top).sum().alias(f"_dcg{k}"),
            (pl.col("_gain") / disc_ideal).filter(pl.col("_ideal") <= k).sum().alias(f"_idcg{k}"),
            (pl.col("_pos") & top).sum().alias(f"_hits{k}"),
        ]
    per_query = lf.group_by(list(query)).agg(aggs)
    out: list[pl.Expr] = []
    for k in ks:
        out += [
            pl.when(pl.col(f"_idcg{k}") > 0)
            .then(pl.col(f"_dcg{k}") / pl.col(f"_idcg{k}"))
            .alias(f"ndcg@{k}"),
            (pl.col(f"_hits{k}") / k).alias(f"precision@{k}"),
            pl.when(pl.col("positives") > 0)
            .then(pl.col(f"_hits{k}") / pl.col("positives"))
            .alias(f"recall@{k}"),
        ]
    return per_query.select(*query, "items", "positives", *out).sort(list(query)).collect()


def ranking_metrics(
    frame: pl.DataFrame,
    *,
    score: str,
    relevance: str,
    positive: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    query: Sequence[str] = QUERY,
    tie: str | None = "asin",
) -> pl.DataFrame:
    """Mean ndcg / precision / recall per k over the queries with >= 1 positive.

    One row per k: ``k, ndcg, precision, recall, queries_kept, queries_total``."""
    per_query = query_metrics(
        frame, score=score, relevance=relevance, positive=positive, ks=ks, query=query, tie=tie
    )
    kept = per_query.filter(pl.col("positives") > 0)
    rows = []
    for k in ks:
        means = kept.select(
            pl.col(f"ndcg@{k}").mean(), pl.col(f"precision@{k}").mean(), pl.col(f"recall@{k}").mean()
        ).row(0)
        rows.append(
            {
                "k": k,
                "ndcg": means[0],
                "precision": means[1],
                "recall": means[2],
                "queries_kept": kept.height,
                "queries_total": per_query.height,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "k": pl.Int32,
            "ndcg": pl.Float64,
            "precision": pl.Float64,
            "recall": pl.Float64,
            "queries_kept": pl.Int32,
            "queries_total": pl.Int32,
        },
    )


# The four rankers every comparison scores (evaluation, backtest, benchmarks, eval-metrics) and the
# column each ranks by: the model, the baseline Explosive Score, a seeded random order, the oracle.
RANKERS: dict[str, str] = {
    "model": "model_score",
    "baseline": "explosive_score",
    "random": "random_score",
    "oracle": "oracle_score",
}


def random_scores(
    frame: pl.DataFrame, seed: int = 0, key: Sequence[str] = ("site", "date", "asin")
) -> pl.Series:
    """A reproducible uniform-ish score per row: a seeded hash of the row's key."""
    return (
        frame.select(pl.struct(list(key)).hash(seed=seed).alias("random_score")).to_series().cast(pl.Float64)
    )


def compare_rankers(
    frame: pl.DataFrame,
    scores: Mapping[str, str],
    *,
    relevance: str,
    positive: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    query: Sequence[str] = QUERY,
) -> pl.DataFrame:
    """``ranking_metrics`` of each ranker (name -> score column) on the same rows, stacked."""
    parts = [
        ranking_metrics(
            frame, score=column, relevance=relevance, positive=positive, ks=ks, query=query
        ).with_columns(ranker=pl.lit(name))
        for name, column in scores.items()
        if column in frame.columns
    ]
    if not parts:
        raise ValueError(f"none of the score columns {dict(scores)} is in the frame")
    return pl.concat(parts).select(
        "ranker", "k", "ndcg", "precision", "recall", "queries_kept", "queries_total"
    )


def ratios(
    table: pl.DataFrame, numerator: str = "model", k: int = 20, metric: str = "ndcg"
) -> dict[str, float]:
    """``metric@k`` of ``numerator`` divided by each other ranker's (NaN where the divisor is 0)."""
    at_k = table.filter(pl.col("k") == k)
    values = dict(zip(at_k["ranker"].to_list(), at_k[metric].to_list(), strict=True))
    top = values.get(numerator)
    return {
        name: (float(top) / float(v) if top is not None and v else float("nan"))
        for name, v in values.items()
        if name != numerator
    }


def markdown_table(table: pl.DataFrame, *, digits: int = 3) -> str:
    """Rankers as rows, ``NDCG@k / P@k / R@k`` as columns; the query counts in a footnote."""
    ks = sorted(set(table["k"].to_list()))
    rankers = list(dict.fromkeys(table["ranker"].to_list()))
    header = ["ranker"] + [f"{m}@{k}" for k in ks for m in ("NDCG", "P", "R")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in rankers:
        cells = [name]
        for k in ks:
            row = table.filter((pl.col("ranker") == name) & (pl.col("k") == k)).row(0, named=True)
            for metric in ("ndcg", "precision", "recall"):
                value = row[metric]
                cells.append("n/a" if value is None else f"{value:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    first = table.row(0, named=True)
    lines.append("")
    lines.append(
        f"Averaged over the {first['queries_kept']} of {first['queries_total']} queries (site x date) "
        "with at least one positive."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The oracle
# ------------------------------------------------------------------------------------------------

#: When the ground truth does not say when a breakout's precursors began, assume this many days
#: before its onset: the simulator draws the lead uniformly from 7..21 days (docs/simulator.md).
DEFAULT_PRECURSOR_LEAD = 14
MOMENTUM_DAYS = 7


def _window_means(
    reference: pl.DataFrame, truth: pl.DataFrame, column: str, *, observation: int, horizon: int
) -> pl.DataFrame:
    """Per reference (site, date, asin): mean of ``column`` over (T - observation, T] and over
    (T, T + horizon], from running sums (calendar windows; days missing from ``truth`` skipped)."""
    key = ["site", "date", "asin"]
    cums = (
        truth.select(*key, column)
        .sort("site", "asin", "date")
        .with_columns(
            _c=pl.col(column).fill_null(0.0).cum_sum().over("site", "asin"),
            _n=pl.col(column).is_not_null().cast(pl.Int64).cum_sum().over("site", "asin"),
        )
        .select("site", "asin", pl.col("date").alias("_at"), "_c", "_n")
        .sort("_at")
    )

    def at(offset: int, suffix: str) -> pl.DataFrame:
        left = reference.select(key).with_columns(_at=pl.col("date") + timedelta(days=offset)).sort("_at")
        joined = left.join_asof(
            cums, on="_at", by=["site", "asin"], strategy="backward", check_sortedness=False
        )
        return joined.select(
            *key,
            pl.col("_c").fill_null(0.0).alias("_c" + suffix),
            pl.col("_n").fill_null(0).alias("_n" + suffix),
        )

    frame = at(0, "").join(at(-observation, "_b"), on=key).join(at(horizon, "_f"), on=key)
    past_n, fut_n = pl.col("_n") - pl.col("_n_b"), pl.col("_n_f") - pl.col("_n")
    return frame.select(
        *key,
        past=pl.when(past_n > 0).then((pl.col("_c") - pl.col("_c_b")) / past_n),
        future=pl.when(fut_n > 0).then((pl.col("_c_f") - pl.col("_c")) / fut_n),
    )


def oracle_scores(
    reference: pl.DataFrame,
    ground_truth: pl.DataFrame,
    *,
    horizon: int = 30,
    observation: int = 28,
    momentum_days: int = MOMENTUM_DAYS,
    precursor_lead: int = DEFAULT_PRECURSOR_LEAD,
) -> pl.DataFrame:
    """The oracle's score per (site, date, asin) of ``reference``, from the simulator's hidden state.

    The oracle knows each product's latent state on the reference date T: whether a breakout is
    under way or being prepared, and that breakout's parameters (onset, ramp, peak: fixed when the
    breakout begins), but none of the sampling noise, promotions or seasonality to come::

        committed = the ASIN has a breakout whose precursors had begun by T
                    (precursor_start <= T; precursor_start = onset - precursor_lead unless the
                    ground truth carries a ``precursor_start`` column), whose onset lies within
                    the horizon (onset <= T + H) and whose growth phase has not ended
                    (T < onset + ramp_days)
        planned   = mean breakout multiplier over (T, T+H] / over (T-W, T]: the growth that
                    breakout's parameters imply for the label's windows
        momentum  = ln(demand_level(T) / demand_level(T - momentum_days)): the latent demand trend
                    (traction, launch ramp, drift; no seasonality, no sampling noise)
        score     = 100 + ln(planned)   for committed breakouts (first, biggest planned growth first)
                    momentum            for everyone else
                    -100 + momentum     for decoys (precursors without a breakout: last)

    A product whose precursors have not begun is not committed: nothing observable announces it
    yet. ``ground_truth`` needs site, date, asin, demand_level, breakout_multiplier,
    breakout_onset, breakout_ramp_days, decoy over [min(T) - W, max(T) + H] (less is tolerated:
    the window means use the days present).
    """
    key = ["site", "date", "asin"]
    gt = ground_truth.select(
        *key, "demand_level", "breakout_multiplier", "breakout_onset", "breakout_ramp_days", "decoy",
        *(["precursor_start"] if "precursor_start" in ground_truth.columns else []),
    )  # fmt: skip
    if "precursor_start" not in gt.columns:
        gt = gt.with_columns(precursor_start=pl.col("breakout_onset") - timedelta(days=precursor_lead))
    lagged = gt.select(
        "site",
        (pl.col("date") + timedelta(days=momentum_days)).alias("date"),
        "asin",
        pl.col("demand_level").alias("_level_before"),
    )
    planned = _window_means(reference, gt, "breakout_multiplier", observation=observation, horizon=horizon)
    t = pl.col("date")
    committed = (
        pl.col("breakout_onset").is_not_null()
        & (pl.col("precursor_start") <= t)
        & (pl.col("breakout_onset") <= t + timedelta(days=horizon))
        & (t < pl.col("breakout_onset") + pl.duration(days=pl.col("breakout_ramp_days")))
    ).fill_null(False)
    momentum = (
        pl.when((pl.col("demand_level") > 0) & (pl.col("_level_before") > 0))
        .then((pl.col("demand_level") / pl.col("_level_before")).log())
        .otherwise(0.0)
    )
    growth = pl.when((pl.col("future") > 0) & (pl.col("past") > 0)).then(
        (pl.col("future") / pl.col("past")).log()
    )
    return (
        reference.select(key)
        .join(gt, on=key, how="left")
        .join(lagged, on=key, how="left")
        .join(planned, on=key, how="left")
        .with_columns(
            committed=committed, momentum=momentum.fill_null(0.0), planned_growth=growth.fill_null(0.0)
        )
        .with_columns(
            oracle_score=pl.when(pl.col("committed"))
            .then(100.0 + pl.col("planned_growth"))
            .when(pl.col("decoy").fill_null(False))
            .then(-100.0 + pl.col("momentum"))
            .otherwise(pl.col("momentum"))
        )
        .select(*key, "committed", "momentum", "planned_growth", "oracle_score")
    )


def ceiling_scores(
    reference: pl.DataFrame, ground_truth: pl.DataFrame, *, horizon: int = 30, observation: int = 28
) -> pl.DataFrame:
    """A clairvoyant reference, not a ranker anyone could build: ln(mean latent demand over
    (T, T+H] / over (T-W, T]) from the simulator's noise-free expected sales, which include the
    future's seasonality, price moves and stock-outs. It bounds what the label's noise leaves to
    learn (the label also needs a BSR-percentile gain and is measured through noisy BSRs)."""
    means = _window_means(reference, ground_truth, "latent_demand", observation=observation, horizon=horizon)
    return means.select(
        "site",
        "date",
        "asin",
        ceiling_score=pl.when((pl.col("future") > 0) & (pl.col("past") > 0))
        .then((pl.col("future") / pl.col("past")).log())
        .otherwise(-100.0),
    )


def add_baseline_scores(frame: pl.DataFrame, weights: object, *, min_category_size: int = 30) -> pl.DataFrame:
    """``frame`` (feature rows, e.g. samples) plus the baseline ``explosive_score`` of each row.

    The score's robust z-scores are taken over the rows of each (site, date[, category]) in
    ``frame``: for samples that is the reference date's whole universe, as in score_baseline_daily."""
    from asin_platform.core.score import score_baseline

    scored = score_baseline(frame, weights, min_category_size=min_category_size)  # type: ignore[arg-type]
    return frame.drop("explosive_score", strict=False).join(
        scored.select("site", "date", "asin", "explosive_score"), on=["site", "date", "asin"], how="left"
    )


def add_random_scores(frame: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    return frame.with_columns(random_score=random_scores(frame, seed))
