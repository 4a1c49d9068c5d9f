"""Checks on features and the baseline score: null rates, score sanity, rank stability.

Each reports one evaluation per (date, site) partition of the run (checks/partitioned.py).
"""

from datetime import timedelta

import dagster as dg
import polars as pl

from asin_platform.checks.ingest import KEYS, read_slices
from asin_platform.checks.partitioned import Verdict, keys_frame, partition_check, verdicts_from_frame
from asin_platform.partitions import DateSite
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings

SCORE_COLUMNS = (
    "explosive_score", "z_bsr_trend", "z_est_sales", "z_review_velocity",
    "z_listing_quality", "z_keyword_gain", "z_price_volatility",
)  # fmt: skip
CHURN_TOP_N = 50
# Columns of features_daily that are keys, not features (assets/features.py KEY_COLUMNS).
KEY_COLUMNS = ("site", "date", "asin", "category_id")
# Days of mart history before a 14-day trend can exist (70% of 14 days observed).
WARM_UP_DAYS = 13


def top_churn(top: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """(site, date, churn) for each key with a previous day: the share of the larger of the two
    top lists (``top``: site, date, asin of the top ASINs) that is not in both."""

    def sizes(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("site", "date").agg(pl.len().alias(name))

    today = top.select("site", "date", "asin")
    before = top.select("site", pl.col("date") + pl.duration(days=1), "asin")
    return (
        keys.join(sizes(today, "n_today"), on=["site", "date"], how="inner")
        .join(sizes(before, "n_before"), on=["site", "date"], how="inner")  # no previous day: skipped
        .join(sizes(today.join(before, on=["site", "date", "asin"]), "kept"), on=["site", "date"], how="left")
        .select(
            "site",
            "date",
            churn=1 - pl.col("kept").fill_null(0) / pl.max_horizontal("n_today", "n_before"),
        )
        .sort("site", "date")
    )


def null_rate_verdicts(warehouse: Warehouse, parts: list[DateSite], threshold: float) -> dict[str, Verdict]:
    frame = read_slices(warehouse, "features_daily", parts)
    features = [c for c in frame.columns if c not in KEY_COLUMNS]
    rates = frame.group_by(KEYS).agg(
        pl.len().alias("rows"), *[(pl.col(c).null_count() / pl.len()).alias(c) for c in features]
    )
    verdicts: dict[str, Verdict] = {}
    for row in keys_frame(parts).join(rates, on=KEYS, how="left").iter_rows(named=True):
        key = str(DateSite(row["date"], row["site"]).key)
        per_feature = {c: float(row[c]) for c in features if row[c] is not None}
        over = {c: round(v, 4) for c, v in per_feature.items() if v > threshold}
        rows = row["rows"] or 0
        verdicts[key] = Verdict(
            passed=rows > 0 and not over,
            description=(
                "no feature rows"
                if not rows
                else f"{len(over)} feature(s) above {threshold:.0%} nulls: {', '.join(sorted(over))}"
                if over
                else f"all {len(features)} features under {threshold:.0%} nulls"
            ),
            metadata={
                "rows": rows,
                "threshold": threshold,
                "max_null_rate": max(per_feature.values(), default=0.0),
                "over_threshold": dg.MetadataValue.json(over),
            },
        )
    return verdicts


def sanity_verdicts(warehouse: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
    score = read_slices(warehouse, "score_baseline_daily", parts)
    # "enough data": the 14-day BSR trend exists (>= 70% of its days observed). A partition whose
    # mart history is too short for any ASIN to have it yet is warming up, not failing.
    features = read_slices(warehouse, "features_daily", parts, columns=[*KEYS, "asin", "bsr_log_slope_14d"])
    first_day = warehouse.query(
        "SELECT site, min(date) AS first_day FROM mart_timeseries_daily GROUP BY site"
    ).with_columns(pl.col("first_day").cast(pl.Date))
    non_finite = score.group_by(KEYS).agg(
        pl.len().cast(pl.Int64).alias("rows"),
        pl.sum_horizontal([(~pl.col(c).is_finite()).sum() for c in SCORE_COLUMNS])
        .cast(pl.Int64)
        .alias("non_finite"),
    )
    candidates = (
        features.filter(pl.col("bsr_log_slope_14d").is_not_null())
        .join(score.select(*KEYS, "asin"), on=[*KEYS, "asin"])
        .group_by(KEYS)
        .agg(pl.len().cast(pl.Int64).alias("candidates"))
    )
    frame = (
        keys_frame(parts)
        .join(non_finite, on=KEYS, how="left")
        .join(candidates, on=KEYS, how="left")
        .join(first_day, on="site", how="left")
        .with_columns(
            pl.col("rows", "non_finite", "candidates").fill_null(0),
            warming_up=((pl.col("date") - pl.col("first_day")).dt.total_days() < WARM_UP_DAYS).fill_null(
                True
            ),
        )
        .with_columns(
            passed=(pl.col("non_finite") == 0) & ((pl.col("candidates") > 0) | pl.col("warming_up"))
        )
    )

    def describe(row: dict) -> str:
        if row["non_finite"]:
            return f"{row['non_finite']} non-finite score value(s)"
        if not row["candidates"]:
            return (
                "warming up: mart history too short for a 14-day trend"
                if row["warming_up"]
                else ("no candidate with enough data")
            )
        return f"{row['candidates']} candidate(s) with enough data, all scores finite"

    return verdicts_from_frame(frame, describe, ["rows", "non_finite", "candidates", "warming_up"])


def churn_verdicts(warehouse: Warehouse, parts: list[DateSite], threshold: float) -> dict[str, Verdict]:
    # The run's days plus the day before each: one read per site, churn computed as a frame.
    days = {(p.site, d) for p in parts for d in (p.day, p.day - timedelta(days=1))}
    window = read_slices(
        warehouse,
        "score_baseline_daily",
        [DateSite(day, site) for site, day in days],
        columns=[*KEYS, "asin", "rank_in_site"],
    ).filter(pl.col("rank_in_site") <= CHURN_TOP_N)
    frame = (
        keys_frame(parts)
        .join(top_churn(window, keys_frame(parts)), on=KEYS, how="left")
        .with_columns(
            passed=pl.col("churn").is_null() | (pl.col("churn") <= threshold), threshold=pl.lit(threshold)
        )
    )
    return verdicts_from_frame(
        frame,
        lambda row: (
            "no previous day to compare with"
            if row["churn"] is None
            else f"top-{CHURN_TOP_N} churn {row['churn']:.0%} (threshold {threshold:.0%})"
        ),
        ["churn", "threshold"],
    )


def build_checks(
    settings: Settings, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The feature and score checks; thresholds are taken from ``settings``."""
    thresholds = settings.thresholds
    return [
        partition_check(
            lambda warehouse, parts: null_rate_verdicts(warehouse, parts, thresholds.feature_null_rate_max),
            name="features_null_rate",
            asset="features_daily",
            partitions_def=partitions_def,
            description=f"Null rate of every feature column <= {thresholds.feature_null_rate_max:.0%} (WARN).",
            severity=dg.AssetCheckSeverity.WARN,
        ),
        partition_check(
            sanity_verdicts,
            name="score_sanity",
            asset="score_baseline_daily",
            partitions_def=partitions_def,
            blocking=True,
            description="Scores are finite, and every partition has at least one candidate with enough data.",
        ),
        partition_check(
            lambda warehouse, parts: churn_verdicts(warehouse, parts, thresholds.rank_churn_warn),
            name="score_rank_stability",
            asset="score_baseline_daily",
            partitions_def=partitions_def,
            description=f"Top-{CHURN_TOP_N} churn vs the previous day <= {thresholds.rank_churn_warn:.0%} (WARN).",
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]
