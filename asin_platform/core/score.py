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
        col = pl.col(self.feature).cast(pl.Float64).fill_nan(None)  # NaN = no value, like null
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


_LEVELS = ("_cat_gid", "_site_gid")


def _centres() -> list[pl.Expr]:
    """Median of every component value per category and per site (``_med{level}_{name}``).

    Materialised before the MADs rather than nested inside them: a nested window costs ~2x."""
    return [
        pl.col(f"_v_{c.name}").median().over(level).alias(f"_med{level}_{c.name}")
        for c in COMPONENTS
        for level in _LEVELS
    ]


def _scales() -> list[pl.Expr]:
    """MAD of every component value per category and per site (``_mad{level}_{name}``)."""
    return [
        (pl.col(f"_v_{c.name}") - pl.col(f"_med{level}_{c.name}"))
        .abs()
        .median()
        .over(level)
        .alias(f"_mad{level}_{c.name}")
        for c in COMPONENTS
        for level in _LEVELS
    ]


def _robust_z(name: str, mad_floor: float, clip: float) -> pl.Expr:
    """Robust z of component ``name`` against its category or site reference; null stays null.

    Groups are the Int64 keys ``_cat_gid`` / ``_site_gid``: a window over three string columns
    costs ~4x one over an integer on a 3.5M-row backfill."""
    use_category = pl.col("_use_category")
    cat, site = _LEVELS
    median = pl.when(use_category).then(pl.col(f"_med{cat}_{name}")).otherwise(pl.col(f"_med{site}_{name}"))
    mad = pl.when(use_category).then(pl.col(f"_mad{cat}_{name}")).otherwise(pl.col(f"_mad{site}_{name}"))
    scale = MAD_TO_SIGMA * pl.max_horizontal(mad, pl.lit(mad_floor))
    return ((pl.col(f"_v_{name}") - median) / scale).clip(-clip, clip)


def _json_number(expr: pl.Expr) -> pl.Expr:
    """A float as JSON number text; null (and a non-finite value) as ``null``."""
    return pl.when(expr.is_finite()).then(expr.cast(pl.Utf8)).otherwise(pl.lit("null"))


_Z_TABLE_MAX_CLIP = 50.0  # 1M texts at most


def _z_texts(clip: float) -> pl.Series:
    """JSON text of every z rounded to 4 decimals in [-clip, clip], indexed by round(z * 1e4) + half."""
    half = round(clip * 10_000)
    steps = pl.int_range(-half, half + 1, dtype=pl.Int64, eager=True)
    return ((steps / 10_000).round(4)).cast(pl.Utf8).alias("z")


def _missing_lookup() -> pl.DataFrame:
    """Per null pattern (bit i set = component i has no value): the body of the reason's
    ``missing`` array and its sentence. 64 rows, gathered by pattern: building the text per row
    cost ~2 s on a 3.5M-row backfill."""
    rows: list[tuple[str, str | None]] = []
    for mask in range(2 ** len(COMPONENTS)):
        names = [c.name for i, c in enumerate(COMPONENTS) if mask >> i & 1]
        note = "missing values contribute z = 0: " + ", ".join(names) if names else None
        rows.append((",".join(f'"{n}"' for n in names), note))
    return pl.DataFrame(rows, schema={"missing_json": pl.Utf8, "missing_note": pl.Utf8}, orient="row")


def _scope_lookup(frame: pl.DataFrame, min_category_size: int) -> pl.DataFrame:
    """Per (site, date, category) group: the reason's scope fields and the fallback sentence."""
    site_note = (
        pl.when(pl.col("_no_category"))
        .then(pl.lit("no category: z-scores use the site median/MAD"))
        .when(~pl.col("_use_category"))
        .then(
            pl.format(
                "category has {} ASINs (< {}) on this site and date: z-scores use the site median/MAD",
                pl.col("_category_size"),
                pl.lit(min_category_size),
            )
        )
    )
    return (
        frame.group_by("_cat_gid")
        .agg(
            pl.col("_category_size").first(),
            pl.col("_use_category").first(),
            _no_category=pl.col("category_id").is_null().first(),
        )
        .select(
            "_cat_gid",
            _scope_json=pl.format(
                '"scope":"{}","category_size":{}',
                pl.when(pl.col("_use_category")).then(pl.lit("category")).otherwise(pl.lit("site")),
                pl.col("_category_size"),
            ),
            _site_note=site_note,
        )
    )


def _reason(signed: dict[str, float], clip: float) -> pl.Expr:
    """The reason JSON, assembled as text (~1.5x faster than struct.json_encode; the reason is the
    widest column of a backfill, ~400 bytes a row). Reads ``_scope_json`` (from _scope_lookup),
    ``_mask`` (the null pattern) and ``_note``."""
    missing = _missing_lookup()
    # z in 1e-4 steps within +-clip: look its text up (float formatting was half the reason's
    # cost); an unusually wide clip would make the table too big, so it falls back to formatting
    z_text = _z_texts(clip) if clip <= _Z_TABLE_MAX_CLIP else None
    parts: list[pl.Expr] = [pl.lit("{")]
    for c in COMPONENTS:
        z = pl.col(f"z_{c.name}")
        parts += [
            pl.lit(f'"{c.name}":{{"z":'),
            pl.lit(z_text).gather((z * 10_000).round(0).cast(pl.Int64) + z_text.len() // 2)
            if z_text is not None
            else _json_number(z.round(4)),
            pl.lit(f',"w":{signed[c.name]!r},"value":'),
            # 6 decimals: every component value is O(1e-3 .. 1e2); ~1.6x cheaper than 6 significant digits
            _json_number(pl.col(f"_v_{c.name}").round(6)),
            pl.lit("},"),
        ]
    note = pl.col("_note")
    parts += [
        pl.col("_scope_json"),
        pl.lit(',"missing":['),
        pl.lit(missing["missing_json"]).gather(pl.col("_mask")),
        pl.lit('],"note":'),
        pl.when(note != "").then(pl.lit('"') + note + pl.lit('"')).otherwise(pl.lit("null")),
        pl.lit("}"),
    ]
    return pl.concat_str(parts)


def _note() -> pl.Expr:
    """The reason's plain-language note (site fallback; missing values), "" when there is none.
    A column of its own because the reason reads it twice."""
    return pl.concat_str(
        [pl.col("_site_note"), pl.lit(_missing_lookup()["missing_note"]).gather(pl.col("_mask"))],
        separator="; ",
        ignore_nulls=True,
    )


def _is_sorted(frame: pl.DataFrame, columns: tuple[str, ...]) -> bool:
    """Whether rows are in ascending lexicographic order of ``columns`` (one linear pass)."""
    if frame.height < 2:
        return True
    before: pl.Expr = pl.lit(False)
    for c in reversed(columns):  # (a < a') | (a == a') & (rest before)
        col, nxt = pl.col(c), pl.col(c).shift(-1)
        before = (col < nxt) | ((col == nxt) & before)
    return bool(frame.select(before.head(frame.height - 1).all()).item())


def _asin_ordered(frame: pl.DataFrame) -> bool:
    """Whether asins ascend within every (site, date): true of (site, date, asin) order and of the
    (site, asin, date) order build_features returns."""
    return _is_sorted(frame, ("site", "date", "asin")) or _is_sorted(frame, ("site", "asin", "date"))


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
    orientation), ``scope`` ("category" | "site"), ``category_size``, ``missing`` (components whose
    value was null and so contributed z = 0) and a plain-language ``note`` when the site fallback or
    a missing value applies (else null). Ranks: 1 = highest score, ties broken by asin.
    """
    if mad_floor <= 0:
        raise ValueError("mad_floor must be positive")
    if clip <= 0:
        raise ValueError("clip must be positive")
    signed = {c.name: (-1.0 if c.penalty else 1.0) * float(getattr(weights, c.name)) for c in COMPONENTS}
    inputs = dict.fromkeys(c.feature for c in COMPONENTS)
    frame = features.lazy().select("site", "date", "asin", "category_id", *inputs).collect()
    # "ordinal" ranks break score ties by row order, so asins must ascend within each (site, date);
    # build_features output already does, and checking is ~20x cheaper than sorting string keys.
    if not _asin_ordered(frame):
        frame = frame.sort("site", "date", "asin")

    codes = pl.Categorical(pl.Categories.random(namespace="asin_platform.score"))
    score = pl.sum_horizontal([signed[c.name] * pl.col(f"z_{c.name}") for c in COMPONENTS])
    scored = (
        frame.lazy()
        .with_columns(
            *[c.value().alias(f"_v_{c.name}") for c in COMPONENTS],
            # (site, date) and (site, date, category) as Int64 keys; codes are consistent within
            # this one plan, which is all they are used for
            _site_gid=pl.col("site").cast(codes).to_physical().cast(pl.Int64) * 2**32
            + pl.col("date").cast(pl.Int64),
            # no category -> a sentinel code: its rows form one (never category-scoped) group per
            # site and date instead of a null key
            _cat_code=pl.col("category_id").cast(codes).to_physical().cast(pl.Int64).fill_null(2**20 - 1),
        )
        .with_columns(
            _cat_gid=pl.col("_site_gid") * 2**20 + pl.col("_cat_code"),
            _mask=pl.sum_horizontal(
                [pl.col(f"_v_{c.name}").is_null().cast(pl.Int64) * 2**i for i, c in enumerate(COMPONENTS)]
            ),
        )
        .with_columns(_category_size=pl.len().over("_cat_gid"))
        .with_columns(
            _use_category=pl.col("category_id").is_not_null()
            & (pl.col("_category_size") >= min_category_size)
        )
        .with_columns(_centres())
        .with_columns(_scales())
        .with_columns(
            _robust_z(c.name, mad_floor, clip)
            .fill_null(0.0)  # no value = no evidence either way: contributes nothing
            .alias(f"z_{c.name}")
            for c in COMPONENTS
        )
        .select(
            "site",
            "date",
            "asin",
            "category_id",
            "_site_gid",
            "_cat_gid",
            "_mask",
            "_category_size",
            "_use_category",
            *[f"_v_{c.name}" for c in COMPONENTS],
            *[f"z_{c.name}" for c in COMPONENTS],
            explosive_score=score,
            scope=pl.when(pl.col("_use_category")).then(pl.lit("category")).otherwise(pl.lit("site")),
        )
        .collect()
    )
    # per-group reason fields: a few thousand groups, looked up by group index (a left join that
    # keeps the row order cost ~5x more on a backfill)
    groups = _scope_lookup(scored, min_category_size).with_row_index("_group")
    group = scored.select(pl.col("_cat_gid").replace_strict(groups["_cat_gid"], groups["_group"])).to_series()
    scored = (
        scored.with_columns(groups.select("_scope_json", "_site_note")[group])
        .lazy()
        .with_columns(_note=_note())
        .with_columns(
            reason=_reason(signed, clip),
            rank_in_category=pl.col("explosive_score").rank("ordinal", descending=True).over("_cat_gid"),
            rank_in_site=pl.col("explosive_score").rank("ordinal", descending=True).over("_site_gid"),
        )
        .collect()
    )
    return SCORE_BASELINE_DAILY.conform(scored)
