"""Checks on features and the baseline score: null rates, score sanity, rank stability."""

from datetime import timedelta

import dagster as dg
import polars as pl

from asin_platform.assets.features import null_rates
from asin_platform.checks.ingest import _md, _parts, _read_slices
from asin_platform.partitions import DateSite, date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import get_settings

SCORE_COLUMNS = (
    "explosive_score", "z_bsr_trend", "z_est_sales", "z_review_velocity",
    "z_listing_quality", "z_keyword_gain", "z_price_volatility",
)  # fmt: skip
CHURN_TOP_N = 50
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


@dg.asset_check(
    asset="features_daily",
    partitions_def=date_site_partitions,
    description="Null rate of every feature column <= thresholds.feature_null_rate_max (WARN).",
)
def features_null_rate(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    threshold = get_settings().thresholds.feature_null_rate_max
    frame = _read_slices(warehouse, "features_daily", _parts(context))
    rates = null_rates(frame)
    over = {k: v for k, v in rates.items() if v > threshold}
    return dg.AssetCheckResult(
        passed=frame.height > 0 and not over,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(over)} feature(s) above {threshold:.0%} nulls: {', '.join(sorted(over))}"
            if over
            else f"all {len(rates)} features under {threshold:.0%} nulls"
        ),
        metadata={
            "rows": frame.height,
            "threshold": threshold,
            "max_null_rate": max(rates.values(), default=0.0),
            "over_threshold": dg.MetadataValue.json(over),
        },
    )


@dg.asset_check(
    asset="score_baseline_daily",
    partitions_def=date_site_partitions,
    blocking=True,
    description="Scores are finite, and every partition has at least one candidate with enough data.",
)
def score_sanity(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    parts = _parts(context)
    score = _read_slices(warehouse, "score_baseline_daily", parts)
    non_finite = score.select([(~pl.col(c).is_finite()).sum().alias(c) for c in SCORE_COLUMNS]).row(
        0, named=True
    )
    bad = {k: int(v) for k, v in non_finite.items() if v}
    # "enough data": the 14-day BSR trend exists (>= 70% of its days observed). A partition whose
    # mart history is too short for any ASIN to have it yet is warming up, not failing.
    features = _read_slices(
        warehouse, "features_daily", parts, columns=["site", "date", "asin", "bsr_log_slope_14d"]
    )
    keys = pl.DataFrame({"site": [p.site for p in parts], "date": [p.day for p in parts]})
    first_day = warehouse.query(
        "SELECT site, min(date) AS first_day FROM mart_timeseries_daily GROUP BY site"
    ).with_columns(pl.col("first_day").cast(pl.Date))
    candidates = (
        keys.join(
            features.filter(pl.col("bsr_log_slope_14d").is_not_null())
            .join(score.select("site", "date", "asin"), on=["site", "date", "asin"])
            .group_by("site", "date")
            .agg(pl.len().alias("candidates")),
            on=["site", "date"],
            how="left",
        )
        .join(first_day, on="site", how="left")
        .with_columns(
            pl.col("candidates").fill_null(0),
            warming_up=(pl.col("date") - pl.col("first_day")).dt.total_days() < WARM_UP_DAYS,
        )
        .drop("first_day")
        .sort("site", "date")
    )
    empty = candidates.filter((pl.col("candidates") == 0) & ~pl.col("warming_up"))
    return dg.AssetCheckResult(
        passed=not bad and empty.is_empty(),
        description=(f"non-finite values: {bad}" if bad else "")
        + (f" {empty.height} partition(s) without a candidate with enough data" if empty.height else ""),
        metadata={
            "rows": score.height,
            "non_finite": dg.MetadataValue.json(bad),
            "partitions_without_candidates": empty.height,
            "warming_up_partitions": candidates.filter(pl.col("warming_up")).height,
            "candidates_by_partition": _md(candidates),
        },
    )


@dg.asset_check(
    asset="score_baseline_daily",
    partitions_def=date_site_partitions,
    description=f"Top-{CHURN_TOP_N} churn vs the previous day under thresholds.rank_churn_warn (WARN).",
)
def score_rank_stability(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    threshold = get_settings().thresholds.rank_churn_warn
    parts = _parts(context)
    # The run's days plus the day before each: one read per site, churn computed as a frame.
    days = {(p.site, d) for p in parts for d in (p.day, p.day - timedelta(days=1))}
    window = _read_slices(
        warehouse,
        "score_baseline_daily",
        [DateSite(day, site) for site, day in days],
        columns=["site", "date", "asin", "rank_in_site"],
    ).filter(pl.col("rank_in_site") <= CHURN_TOP_N)
    keys = pl.DataFrame({"site": [p.site for p in parts], "date": [p.day for p in parts]})
    frame = top_churn(window, keys)
    worst = float(frame["churn"].max() or 0.0) if frame.height else 0.0
    return dg.AssetCheckResult(
        passed=worst <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"top-{CHURN_TOP_N} churn up to {worst:.0%} (threshold {threshold:.0%})"
            if frame.height
            else "no previous day to compare with"
        ),
        metadata={
            "max_churn": worst,
            "threshold": threshold,
            "compared_days": frame.height,
            "by_partition": _md(frame),
        },
    )


FEATURE_CHECKS = [features_null_rate, score_sanity, score_rank_stability]
