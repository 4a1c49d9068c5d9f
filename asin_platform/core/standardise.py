"""Parsed payloads -> the mart tables: place, deduplicate, range-check, flag, validate, report.

``standardise`` is source-agnostic: it takes the :class:`ParsedPayloads` of any parser (unified API,
Keepa) for one or many (site, date) slices and returns the rows of ``mart_timeseries_daily``,
``dim_asin``, ``fact_reviews``, ``fact_keywords`` and ``quarantine`` in their exact table schemas,
plus a :class:`QualityReport`. Everything is polars expressions over whole frames; the only Python
loops run over the fixed list of rules, never over rows or groups.

Rules, in the order they apply to the daily points (the mart):

1. **Placement.** The batch's slices are the (site, date) pairs of ``parsed.universe``. A point
   whose (site, date) is not one of them is ``date_outside_partition``; a point of a slice whose
   universe does not list its ASIN is ``asin_not_tracked``. Both are quarantined and leave the mart.
   Products are placed the same way (they are requested for the slice's universe).
2. **Deduplication.** One row per (site, date, asin): the latest ``fetched_at`` wins, then the
   highest ``payload_id``, then the later record of the payload (so reruns are deterministic). Dropped rows are counted, not quarantined:
   they are superseded, and their payloads stay in ``raw_payloads``.
3. **Ranges.** ``bsr_root``/``bsr_sub`` <= 0 (``bsr_non_positive``), ``rating`` outside [1, 5]
   (``rating_out_of_range``), ``price`` <= 0 (``price_non_positive``), ``review_count`` < 0
   (``review_count_negative``), ``new_offer_count`` < 0 (``offer_count_negative``): the value is
   nulled (with ``flag_bsr_invalid`` / ``flag_rating_invalid`` / ``flag_price_invalid`` where the
   table has a flag), the row stays for coverage, and the row as received goes to quarantine with
   its payload id: one quarantine row per reason.
   **Plausibility** (``settings.plausibility``, passed in as ``plausibility``): a value that passes
   those rules but lies outside its field's bounds (a BSR of 10**12, a price of 1e12 in the site's
   currency) is nulled, flagged the same way and quarantined as ``implausible_value`` with the bound
   it broke (``core/plausibility.py``).
4. **Price spikes.** ``price`` / previous day's ``price`` above ``price_spike_ratio`` or below its
   inverse sets ``flag_price_spike``; the price is kept (promotions are real) and nothing is
   quarantined. The previous day is the calendar day before, taken from the batch itself when it
   holds that day, else from ``previous_prices``. A nulled price is no reference, and neither is a
   flagged spike (so a one-day spike never flags the next, correct day).

Products (the listing attributes the mart rows carry) are deduplicated the same way; a negative
listing count (``title_length``, ``bullet_count``, ``image_count``, ``attribute_flag_count``) is
nulled and quarantined as ``listing_count_negative``, an implausible one as ``implausible_value``;
a product row that arrived without ``title_length``, ``bullet_count`` or ``image_count`` is kept and
quarantined as ``listing_field_missing``, so the gap is counted, never silent.

Reviews are deduplicated on (site, asin, review_id) and keywords on (site, date, asin, keyword),
latest fetch winning; then a review rating outside 1..5 (``rating_out_of_range``) or a keyword rank
below 1 (``rank_non_positive``) sends the row to quarantine, a negative or implausible keyword search
volume (``search_volume_negative`` / ``implausible_value``) is nulled and quarantined, and a keyword
that arrived without one is kept and quarantined as ``search_volume_missing``. ``dim_asin`` is the
latest product row per (site, asin) with ``first_seen``/``last_seen`` = the first/last date it was
seen in the batch (the warehouse upsert keeps the min/max across batches).

Quarantine rows found by the parser are passed through. Several records of one payload sharing a
quarantine key (site, date, payload_id, table_name, asin, reason) are merged into one row (details
joined, records as a JSON array) so the key stays unique.

Known limit: ParsedPayloads does not say which slice a point was *fetched for*, so placement uses
the slices of the batch. In a single-slice batch (one partition) that is exact. In a multi-date
batch, a point the upstream returned for another day that is also in the batch is kept as that
day's observation (latest fetch wins), and a ``date_outside_partition`` row is filed under the
nearest slice date of its site, so it always lands inside the batch's slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from asin_platform.core import plausibility as plaus
from asin_platform.core.parsed import (
    KEYWORDS_SCHEMA,
    POINTS_SCHEMA,
    PRODUCTS_SCHEMA,
    REVIEWS_SCHEMA,
    UNIVERSE_SCHEMA,
    ParsedPayloads,
)
from asin_platform.core.quality import QualityReport, quality_report
from asin_platform.schemas import (
    DIM_ASIN,
    FACT_KEYWORDS,
    FACT_REVIEWS,
    MART_TIMESERIES_DAILY,
    QUARANTINE,
    UTC_TS,
    Table,
    validate,
)
from asin_platform.settings import PlausibilityBounds

_LISTING_COUNTS = ("title_length", "bullet_count", "image_count", "attribute_flag_count")
_PRODUCT_ATTRIBUTES = (
    "category_id",
    "subcategory_id",
    "title_length",
    "bullet_count",
    "image_count",
    "has_aplus",
    "attribute_flag_count",
    "listed_since",
)


class StandardiseOutputError(RuntimeError):
    """standardise produced rows its own table models reject: a bug in this module, not bad input
    (bad input is quarantined, never raised)."""


@dataclass(frozen=True)
class StandardiseResult:
    mart: pl.DataFrame  # MART_TIMESERIES_DAILY
    dim_asin: pl.DataFrame  # DIM_ASIN
    fact_reviews: pl.DataFrame  # FACT_REVIEWS
    fact_keywords: pl.DataFrame  # FACT_KEYWORDS
    quarantine: pl.DataFrame  # QUARANTINE
    report: QualityReport


def _require(frame: pl.DataFrame, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """The parsed frame in its contract's columns and dtypes; a missing column is a parser bug."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"standardise: parsed.{what} lacks column(s) {missing}")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _quarantine_rows(
    frame: pl.DataFrame,
    *,
    table: Table,
    reason: str,
    detail: pl.Expr,
    record_columns: list[str],
    now: pl.Expr,
    date: pl.Expr | None = None,
) -> pl.DataFrame:
    """Quarantine rows (QUARANTINE columns) for every row of ``frame``, record = the row as JSON."""
    return frame.select(
        pl.col("site"),
        (pl.col("date") if date is None else date).alias("date"),
        pl.col("payload_id"),
        pl.lit(table.name).alias("table_name"),
        pl.col("asin"),
        pl.lit(reason).alias("reason"),
        detail.alias("detail"),
        pl.struct(record_columns).struct.json_encode().alias("record"),
        now.alias("quarantined_at"),
    ).select([pl.col(c).cast(t) for c, t in QUARANTINE.schema.items()])


def _latest(frame: pl.DataFrame, key: list[str]) -> tuple[pl.DataFrame, int]:
    """One row per ``key``: latest ``fetched_at`` wins, then the highest ``payload_id``, then the
    record that comes last in its payload (parsers keep body order), so the result never depends
    on how polars happens to order equal rows."""
    deduped = (
        frame.with_row_index("_order")
        .sort(["fetched_at", "payload_id", "_order"], descending=True, nulls_last=True)
        .unique(subset=key, keep="first", maintain_order=True)
        .drop("_order")
    )
    return deduped, frame.height - deduped.height


def _place(
    frame: pl.DataFrame,
    universe: pl.DataFrame,
    slices: pl.DataFrame,
    *,
    table: Table,
    record_columns: list[str],
    now: pl.Expr,
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Split ``frame`` into rows of tracked (site, date, asin) and quarantine rows for the rest."""
    marked = frame.join(slices.with_columns(_in_slice=pl.lit(True)), on=["site", "date"], how="left").join(
        universe.with_columns(_tracked=pl.lit(True)), on=["site", "date", "asin"], how="left"
    )
    kept = marked.filter(pl.col("_tracked").fill_null(False)).drop("_in_slice", "_tracked")
    outside = marked.filter(pl.col("_in_slice").is_null())
    untracked = marked.filter(pl.col("_in_slice").fill_null(False) & pl.col("_tracked").is_null())
    if slices.height:
        # File the row under the nearest slice of its site, so it is written with the batch.
        outside = outside.sort("date").join_asof(
            slices.sort("date").with_columns(_slice_date=pl.col("date")),
            on="date",
            by="site",
            strategy="nearest",
            check_sortedness=False,  # sorted by date above; polars cannot verify it within groups
        )
    else:
        outside = outside.with_columns(_slice_date=pl.lit(None, pl.Date))
    rejected = [
        _quarantine_rows(
            outside,
            table=table,
            reason="date_outside_partition",
            detail=pl.format("dated {}, outside the slices of this batch for site {}", "date", "site"),
            record_columns=record_columns,
            now=now,
            date=pl.coalesce("_slice_date", "date"),
        ),
        _quarantine_rows(
            untracked,
            table=table,
            reason="asin_not_tracked",
            detail=pl.format("{} is not in the tracked universe of {} {}", "asin", "site", "date"),
            record_columns=record_columns,
            now=now,
        ),
    ]
    return kept, rejected


# (reason, condition on the row as received, detail) of the mart's range rules.
_POINT_RULES: tuple[tuple[str, pl.Expr, pl.Expr], ...] = (
    (
        "bsr_non_positive",
        (pl.col("bsr_root") <= 0) | (pl.col("bsr_sub") <= 0),
        pl.format("bsr_root={}, bsr_sub={}: a sales rank is >= 1", "bsr_root", "bsr_sub"),
    ),
    (
        "rating_out_of_range",
        (pl.col("rating") < 1) | (pl.col("rating") > 5),
        pl.format("rating={} is outside 1..5 stars", "rating"),
    ),
    ("price_non_positive", pl.col("price") <= 0, pl.format("price={} is not > 0", "price")),
    (
        "review_count_negative",
        pl.col("review_count") < 0,
        pl.format("review_count={} is negative", "review_count"),
    ),
    (
        "offer_count_negative",
        pl.col("new_offer_count") < 0,
        pl.format("new_offer_count={} is negative", "new_offer_count"),
    ),
)


def _null_where(column: str, bad: pl.Expr) -> pl.Expr:
    return pl.when(bad.fill_null(False)).then(None).otherwise(pl.col(column)).alias(column)


def _clean_points(
    points: pl.DataFrame, now: pl.Expr, bounds: PlausibilityBounds
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Null out-of-range and implausible values, set the validity flags, quarantine the rows as received."""
    record_columns = list(POINTS_SCHEMA)
    rules = [*_POINT_RULES, (plaus.IMPLAUSIBLE, plaus.implausible_any(plaus.POINT_FIELDS, bounds),
                             plaus.implausible_detail(plaus.POINT_FIELDS, bounds))]  # fmt: skip
    rejected = [
        _quarantine_rows(
            points.filter(condition.fill_null(False)),
            table=MART_TIMESERIES_DAILY,
            reason=reason,
            detail=detail,
            record_columns=record_columns,
            now=now,
        )
        for reason, condition, detail in rules
    ]

    def bad(name: str) -> pl.Expr:
        return plaus._basic_rule(name).fill_null(False) | plaus.implausible(name, bounds)

    cleaned = points.with_columns(
        *[_null_where(name, bad(name)) for name in plaus.POINT_FIELDS],
        flag_bsr_invalid=bad("bsr_root") | bad("bsr_sub"),
        flag_rating_invalid=bad("rating"),
        flag_price_invalid=bad("price"),
    )
    return cleaned, rejected


def _collapse_quarantine(quarantine: pl.DataFrame) -> pl.DataFrame:
    """One row per quarantine key: several records of one payload with the same key are merged."""
    key = list(QUARANTINE.key)
    return (
        quarantine.group_by(key, maintain_order=True)
        .agg(
            n=pl.len(),
            detail=pl.col("detail").unique(maintain_order=True).str.join("; "),
            records=pl.col("record").str.join(","),
            first_record=pl.col("record").first(),
            quarantined_at=pl.col("quarantined_at").min(),
        )
        .with_columns(
            detail=pl.when(pl.col("n") > 1)
            .then(pl.format("{} records: {}", "n", "detail"))
            .otherwise(pl.col("detail")),
            record=pl.when(pl.col("n") > 1)
            .then(pl.format("[{}]", "records"))
            .otherwise(pl.col("first_record")),
        )
        .select(QUARANTINE.columns)
    )


def _sorted(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    return table.conform(frame).sort(list(table.key), nulls_last=True)


def _clean_products(
    products: pl.DataFrame, now: pl.Expr, bounds: PlausibilityBounds
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Negative and implausible listing counts nulled and quarantined; a product row that arrived
    without a required listing field is quarantined as ``listing_field_missing`` (and kept)."""
    record_columns = list(PRODUCTS_SCHEMA)
    negative = pl.any_horizontal(pl.col(c) < 0 for c in _LISTING_COUNTS).fill_null(False)
    rules = [
        ("listing_count_negative", negative, pl.format(
            "negative listing count(s): title_length={}, bullet_count={}, image_count={}, attribute_flag_count={}",
            *_LISTING_COUNTS,
        )),
        (plaus.IMPLAUSIBLE, plaus.implausible_any(plaus.LISTING_FIELDS, bounds),
         plaus.implausible_detail(plaus.LISTING_FIELDS, bounds)),
    ]  # fmt: skip
    rejected = [
        _quarantine_rows(products.filter(cond), table=DIM_ASIN, reason=reason, detail=detail,
                         record_columns=record_columns, now=now)
        for reason, cond, detail in rules
    ]  # fmt: skip
    # Missing as received (sent null, or unreadable: the parser quarantined it as type_mismatch too);
    # a value nulled below already has its own reason.
    required = plaus.REQUIRED_LISTING_FIELDS
    rejected.append(
        _quarantine_rows(
            products.filter(plaus.missing_any(required)),
            table=DIM_ASIN,
            reason=plaus.LISTING_FIELD_MISSING,
            detail=plaus.missing_detail(required, "product listing"),
            record_columns=record_columns,
            now=now,
        )
    )
    products = products.with_columns(
        _null_where(c, (pl.col(c) < 0) | plaus.implausible(c, bounds)) for c in _LISTING_COUNTS
    )
    return products, rejected


def _clean_keywords(
    keywords: pl.DataFrame, now: pl.Expr, bounds: PlausibilityBounds
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """A rank below 1 drops the row; a negative or implausible search volume is nulled; a row that
    arrived without a search volume is counted as ``search_volume_missing`` (and kept)."""
    bad_rank = (pl.col("rank") < 1).fill_null(False)
    negative = (pl.col("search_volume") < 0).fill_null(False)
    implausible = plaus.implausible("search_volume", bounds)
    rules = [
        ("rank_non_positive", bad_rank, pl.format("keyword {} rank={}: organic positions start at 1", "keyword", "rank")),
        ("search_volume_negative", negative, pl.format("keyword {} search_volume={} is negative", "keyword", "search_volume")),
        (plaus.IMPLAUSIBLE, implausible,
         pl.format("keyword {}: {}", "keyword", plaus.implausible_detail(["search_volume"], bounds))),
    ]  # fmt: skip
    rejected = [
        _quarantine_rows(keywords.filter(cond), table=FACT_KEYWORDS, reason=reason, detail=detail,
                         record_columns=list(KEYWORDS_SCHEMA), now=now)
        for reason, cond, detail in rules
    ]  # fmt: skip
    keywords = keywords.filter(~bad_rank)
    rejected.append(
        _quarantine_rows(
            keywords.filter(pl.col("search_volume").is_null()),
            table=FACT_KEYWORDS,
            reason=plaus.SEARCH_VOLUME_MISSING,
            detail=pl.format("keyword {} has no search_volume", "keyword"),
            record_columns=list(KEYWORDS_SCHEMA),
            now=now,
        )
    )
    return keywords.with_columns(_null_where("search_volume", negative | implausible)), rejected


def _clean_reviews(reviews: pl.DataFrame, now: pl.Expr) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    bad_rating = (~pl.col("rating").is_between(1, 5)).fill_null(False)
    rejected = _quarantine_rows(
        reviews.filter(bad_rating),
        table=FACT_REVIEWS,
        reason="rating_out_of_range",
        detail=pl.format("review {} rating={} is outside 1..5", "review_id", "rating"),
        record_columns=list(REVIEWS_SCHEMA),
        now=now,
    )
    return reviews.filter(~bad_rating), [rejected]


def _dim_asin(products: pl.DataFrame, mart: pl.DataFrame) -> pl.DataFrame:
    """Latest attributes per (site, asin), first/last seen in the batch: on a product row or a mart
    row (a Keepa range has the listing snapshot only for its last days, its points for every day)."""
    keys = ["site", "asin", "date"]
    seen = (
        pl.concat([products.select(keys), mart.select(keys)])
        .group_by("site", "asin")
        .agg(first_seen=pl.col("date").min(), last_seen=pl.col("date").max())
    )
    return (
        products.sort(["date", "fetched_at", "payload_id"], descending=True, nulls_last=True)
        .unique(subset=["site", "asin"], keep="first", maintain_order=True)
        .join(seen, on=["site", "asin"], how="left")
    )


def _now_literal(now: datetime | None) -> pl.Expr:
    stamp = now or datetime.now(UTC)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return pl.lit(stamp, dtype=UTC_TS)


def _validated(frames: list[tuple[Table, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    out = {table.name: _sorted(table, frame) for table, frame in frames}
    problems = [line for name, frame in out.items() for line in validate(name, frame)]
    if problems:
        raise StandardiseOutputError(
            "standardise produced rows that break the table models (a bug in core/standardise.py, "
            "not bad input):\n  " + "\n  ".join(problems)
        )
    return out


def standardise(
    parsed: ParsedPayloads,
    *,
    previous_prices: pl.DataFrame | None = None,
    price_spike_ratio: float = 3.0,
    plausibility: PlausibilityBounds | None = None,
    now: datetime | None = None,
) -> StandardiseResult:
    """Turn parsed payloads into the mart tables (see the module docstring for every rule).

    ``previous_prices``: (site, asin, price[, date][, flag_price_spike]) of the day before the batch's
    first date, used for price spikes on that date (a row flagged as a spike is no reference).
    ``plausibility``: the bounds values must lie in (default: ``PlausibilityBounds()``). ``now`` stamps
    ``quarantined_at`` of the rows quarantined here (default: the current UTC time; parser rows keep
    theirs). Bad input never raises: it is quarantined and counted. Raises ``ValueError`` for wiring
    mistakes (a parsed frame without its columns, a ratio <= 1) and :class:`StandardiseOutputError`
    if the output breaks its own models.
    """
    if not price_spike_ratio > 1:
        raise ValueError(f"standardise: price_spike_ratio must be > 1, got {price_spike_ratio}")
    bounds = plausibility or PlausibilityBounds()
    now_lit = _now_literal(now)
    universe = _require(parsed.universe, UNIVERSE_SCHEMA, "universe").select("site", "date", "asin").unique()
    slices = universe.select("site", "date").unique()
    rejected: list[pl.DataFrame] = [QUARANTINE.conform(parsed.rejected)]

    # --- mart: place, dedupe, range/plausibility checks, listing attributes, spikes --------------
    points, out = _place(_require(parsed.points, POINTS_SCHEMA, "points"), universe, slices,
                         table=MART_TIMESERIES_DAILY, record_columns=list(POINTS_SCHEMA), now=now_lit)  # fmt: skip
    rejected += out
    placed_per_slice = points.group_by("site", "date").agg(pl.len().alias("_placed"))
    points, mart_dups = _latest(points, ["site", "date", "asin"])
    points, out = _clean_points(points, now_lit, bounds)
    rejected += out
    products, out = _place(_require(parsed.products, PRODUCTS_SCHEMA, "products"), universe, slices,
                           table=DIM_ASIN, record_columns=list(PRODUCTS_SCHEMA), now=now_lit)  # fmt: skip
    rejected += out
    products, product_dups = _latest(products, ["site", "date", "asin"])
    products, out = _clean_products(products, now_lit, bounds)
    rejected += out
    mart = points.join(
        products.select("site", "date", "asin", *_PRODUCT_ATTRIBUTES), on=["site", "date", "asin"], how="left"
    )
    mart = mart.join(plaus.previous_prices(mart, previous_prices), on=["site", "asin", "date"], how="left")
    mart = mart.with_columns(flag_price_spike=plaus.spike_flags(price_spike_ratio))

    # --- facts: dedupe, then the latest version must be valid --------------------------------------
    reviews, review_dups = _latest(
        _require(parsed.reviews, REVIEWS_SCHEMA, "reviews"), ["site", "asin", "review_id"]
    )
    reviews, out = _clean_reviews(reviews, now_lit)
    rejected += out
    keywords, keyword_dups = _latest(
        _require(parsed.keywords, KEYWORDS_SCHEMA, "keywords"), ["site", "date", "asin", "keyword"]
    )
    keywords, out = _clean_keywords(keywords, now_lit, bounds)
    rejected += out
    quarantine = _collapse_quarantine(
        pl.concat(rejected).with_columns(pl.col("quarantined_at").fill_null(now_lit))
    )

    out_frames = _validated(
        [
            (MART_TIMESERIES_DAILY, mart),
            (DIM_ASIN, _dim_asin(products, mart)),
            (FACT_REVIEWS, reviews),
            (FACT_KEYWORDS, keywords),
            (QUARANTINE, quarantine),
        ]
    )
    report = quality_report(
        universe=universe,
        mart=out_frames[MART_TIMESERIES_DAILY.name],
        quarantine=out_frames[QUARANTINE.name],
        placed_per_slice=placed_per_slice,
        duplicates={
            MART_TIMESERIES_DAILY.name: mart_dups,
            DIM_ASIN.name: product_dups,
            FACT_REVIEWS.name: review_dups,
            FACT_KEYWORDS.name: keyword_dups,
        },
    )
    return StandardiseResult(
        mart=out_frames[MART_TIMESERIES_DAILY.name],
        dim_asin=out_frames[DIM_ASIN.name],
        fact_reviews=out_frames[FACT_REVIEWS.name],
        fact_keywords=out_frames[FACT_KEYWORDS.name],
        quarantine=out_frames[QUARANTINE.name],
        report=report,
    )
