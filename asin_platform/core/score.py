"""Baseline Explosive Score: weighted robust z-scores of a few oriented features (pure polars).

For each component value v (oriented so that larger = more explosive, see COMPONENTS):

    z = clip((v - median) / (1.4826 * max(MAD, mad_floor)), -clip, +clip), null -> 0

with median and MAD taken over the ASINs of the same (site, date, category_id), or over the whole
(site, date) when the category has fewer than ``min_category_size`` ASINs that day (a median of a
handful of products is noise). 1.4826 * MAD estimates the standard deviation of a normal sample,
so z reads like a classic z-score but one outlier cannot move the scale. The floor keeps a
category where most values are equal (MAD = 0) from turning tiny differences into +-clip.

    explosive_score = sum_i w_i * z_i - w_price_volatility * z_price_volatility

Every weight is taken as configured; the only sign flip happens here, once, for price volatility
(a volatile price counts against a product). docs/features.md lists the orientation of each input.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from asin_platform.schemas import SCORE_BASELINE_DAILY
from asin_platform.settings import ScoreWeights

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Component:
    """One term of the score: its name (= the ScoreWeights field), the feature it reads, and how
    that feature is turned into a value where larger = more explosive (before any penalty)."""

    name: str
    feature: str
    orientation: str  # human-readable, repeated in docs/features.md
    penalty: bool = False  # True: the weighted z is subtracted (price volatility)

    def value(self) -> pl.Expr:
        col = pl.col(self.feature).cast(pl.Float64)
        if self.name == "bsr_trend":
            # ln BSR per day falls when sales rise: a negative slope is the good direction
            return -col
        if self.name == "est_sales":
            # sales are heavy-tailed (power law in BSR): compare them in log space
            return pl.when(col > 0).then(col.log())
        if self.name == "keyword_gain":
            # a rank change below 0 means moving up the search results
            return -col
        return col


COMPONENTS: tuple[Component, ...] = (
    Component("bsr_trend", "bsr_log_slope_14d", "-bsr_log_slope_14d (falling BSR = good)"),
    Component("est_sales", "est_sales_7d_mean", "ln(est_sales_7d_mean)"),
    Component("review_velocity", "review_velocity_14d", "review_velocity_14d"),
    Component("listing_quality", "listing_quality_score", "listing_quality_score"),
    Component("keyword_gain", "kw_mean_rank_change_7d", "-kw_mean_rank_change_7d (rank moving up = good)"),
    Component("price_volatility", "price_cv_30d", "price_cv_30d, weight subtracted", penalty=True),
)

_CATEGORY = ["site", "date", "category_id"]
_SITE = ["site", "date"]


def _robust_z(value: pl.Expr, use_category: pl.Expr, mad_floor: float, clip: float) -> pl.Expr:
    """Robust z of ``value`` against its category or site reference; null stays null."""

    def centre_scale(group: list[str]) -> tuple[pl.Expr, pl.Expr]:
        median = value.median().over(group)
        mad = (value - median).abs().median().over(group)
        return median, mad

    cat_median, cat_mad = centre_scale(_CATEGORY)
    site_median, site_mad = centre_scale(_SITE)
    median = pl.when(use_category).then(cat_median).otherwise(site_median)
    mad = pl.when(use_category).then(cat_mad).otherwise(site_mad)
    scale = MAD_TO_SIGMA * pl.max_horizontal(mad, pl.lit(mad_floor))
    return ((value - median) / scale).clip(-clip, clip)


def score_baseline(
    features: pl.LazyFrame | pl.DataFrame,
    weights: ScoreWeights,
    *,
    min_category_size: int = 30,
    mad_floor: float = 1e-3,
    clip: float = 5.0,
) -> pl.DataFrame:
    """SCORE_BASELINE_DAILY rows for FEATURES_DAILY rows (any number of sites and dates).

    ``reason`` is JSON: each component's {"z", "w", "value"} (w signed as applied, value after
    orientation), ``scope`` ("category" | "site"), ``category_size`` and ``missing`` (components
    whose value was null and so contributed z = 0), with a plain-language ``note`` when either the
    site fallback or a missing value applies. Ranks: 1 = highest score, ties broken by asin.
    """
    if mad_floor <= 0:
        raise ValueError("mad_floor must be positive")
    if clip <= 0:
        raise ValueError("clip must be positive")
    lf = features.lazy() if isinstance(features, pl.DataFrame) else features
    signed = {c.name: (-1.0 if c.penalty else 1.0) * float(getattr(weights, c.name)) for c in COMPONENTS}

    size = pl.len().over(_CATEGORY)
    use_category = pl.col("category_id").is_not_null() & (size >= min_category_size)
    values = [c.value().alias(f"_v_{c.name}") for c in COMPONENTS]
    z_cols = [
        _robust_z(pl.col(f"_v_{c.name}"), pl.col("_use_category"), mad_floor, clip)
        .fill_null(0.0)  # no value = no evidence either way: contributes nothing
        .alias(f"z_{c.name}")
        for c in COMPONENTS
    ]
    score = pl.sum_horizontal([signed[c.name] * pl.col(f"z_{c.name}") for c in COMPONENTS])

    missing = pl.concat_list(
        [pl.when(pl.col(f"_v_{c.name}").is_null()).then(pl.lit(c.name)) for c in COMPONENTS]
    ).list.drop_nulls()
    site_note = pl.when(~pl.col("_use_category")).then(
        pl.format(
            "category has {} ASINs (< {}) on this site and date: z-scores use the site median/MAD",
            pl.col("_category_size"),
            pl.lit(min_category_size),
        )
    )
    missing_note = pl.when(pl.col("_missing").list.len() > 0).then(
        pl.format("missing values contribute z = 0: {}", pl.col("_missing").list.join(", "))
    )
    reason = pl.struct(
        *[
            pl.struct(
                z=pl.col(f"z_{c.name}").round(4),
                w=pl.lit(signed[c.name]),
                value=pl.col(f"_v_{c.name}").round_sig_figs(6),
            ).alias(c.name)
            for c in COMPONENTS
        ],
        pl.col("scope"),
        pl.col("_category_size").alias("category_size"),
        pl.col("_missing").alias("missing"),
        pl.concat_str([site_note, missing_note], separator="; ", ignore_nulls=True).alias("note"),
    ).struct.json_encode()

    scored = (
        lf.select("site", "date", "asin", "category_id", *{c.feature for c in COMPONENTS})
        # ordered by key first: "ordinal" ranks then break score ties by asin
        .sort("site", "date", "asin")
        .with_columns(*values, _category_size=size, _use_category=use_category)
        .with_columns(*z_cols)
        .with_columns(
            explosive_score=score,
            scope=pl.when(pl.col("_use_category")).then(pl.lit("category")).otherwise(pl.lit("site")),
            _missing=missing,
        )
        .with_columns(
            reason=reason,
            rank_in_category=pl.col("explosive_score").rank("ordinal", descending=True).over(_CATEGORY),
            rank_in_site=pl.col("explosive_score").rank("ordinal", descending=True).over(_SITE),
        )
        .collect()
    )
    return SCORE_BASELINE_DAILY.conform(scored)
