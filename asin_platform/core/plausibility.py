"""Plausibility rules of ``standardise``: values outside the configured bounds, required fields that
are missing, and price spikes that ignore untrusted references.

The bounds come from settings (``PlausibilityBounds``) as a parameter; nothing here reads settings.
A value the basic range rules of ``standardise`` already reject (a BSR <= 0, a negative count, a
rating outside 1..5) keeps its own reason; ``implausible_value`` is for what passes those but not the
bounds (a BSR of 10**12, a price of 1e12, 4,000 images).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

from asin_platform.settings import PlausibilityBounds

IMPLAUSIBLE = "implausible_value"
LISTING_FIELD_MISSING = "listing_field_missing"
SEARCH_VOLUME_MISSING = "search_volume_missing"

POINT_FIELDS = ("bsr_root", "bsr_sub", "price", "rating", "review_count", "new_offer_count")
LISTING_FIELDS = ("title_length", "bullet_count", "image_count", "attribute_flag_count")
# Listing fields a product row must carry: without them the listing features are silently missing.
REQUIRED_LISTING_FIELDS = ("title_length", "bullet_count", "image_count")
# The mart flag each point field's invalid value sets (counts have none: the quarantine row is the trace).
FLAG_OF = {
    "bsr_root": "flag_bsr_invalid",
    "bsr_sub": "flag_bsr_invalid",
    "rating": "flag_rating_invalid",
    "price": "flag_price_invalid",
}


def _basic_rule(name: str) -> pl.Expr:
    """The sign/range rule ``standardise`` applies to ``name`` anyway (it has its own reason)."""
    col = pl.col(name)
    if name in ("bsr_root", "bsr_sub", "price"):
        return col <= 0
    if name == "rating":
        return (col < 1) | (col > 5)
    return col < 0


def _limits(name: str, bounds: PlausibilityBounds) -> tuple[pl.Expr, pl.Expr]:
    if name != "price":
        low, high = getattr(bounds, name)
        return pl.lit(float(low)), pl.lit(float(high))
    sites = list(bounds.price_by_site)
    low = pl.col("site").replace_strict(
        sites, [float(bounds.price_by_site[s][0]) for s in sites], default=float(bounds.price[0])
    )
    high = pl.col("site").replace_strict(
        sites, [float(bounds.price_by_site[s][1]) for s in sites], default=float(bounds.price[1])
    )
    return low, high


def implausible(name: str, bounds: PlausibilityBounds) -> pl.Expr:
    """True where ``name`` is outside its bounds but passes the basic rule; never null."""
    low, high = _limits(name, bounds)
    value = pl.col(name).cast(pl.Float64)
    return (((value < low) | (value > high)) & ~_basic_rule(name)).fill_null(False)


def implausible_any(names: Sequence[str], bounds: PlausibilityBounds) -> pl.Expr:
    return pl.any_horizontal(implausible(n, bounds) for n in names)


def implausible_detail(names: Sequence[str], bounds: PlausibilityBounds) -> pl.Expr:
    """``price=1e12 outside 0.01..100000; bsr_root=...``: every implausible field of the row."""
    parts = []
    for name in names:
        low, high = _limits(name, bounds)
        text = pl.format(f"{name}={{}} outside {{}}..{{}}", pl.col(name), low, high)
        parts.append(pl.when(implausible(name, bounds)).then(text))
    return pl.concat_str(parts, separator="; ", ignore_nulls=True)


def null_implausible(names: Sequence[str], bounds: PlausibilityBounds) -> list[pl.Expr]:
    return [pl.when(implausible(n, bounds)).then(None).otherwise(pl.col(n)).alias(n) for n in names]


def missing_any(names: Sequence[str]) -> pl.Expr:
    return pl.any_horizontal(pl.col(n).is_null() for n in names)


def missing_detail(names: Sequence[str], what: str) -> pl.Expr:
    text = pl.concat_str(
        [pl.when(pl.col(n).is_null()).then(pl.lit(n)) for n in names], separator=", ", ignore_nulls=True
    )
    return pl.format(f"{what} without {{}}", text)


def spike_flags(ratio: float) -> pl.Expr:
    """``flag_price_spike`` of mart rows: the price against the previous calendar day's, where that
    reference is trusted.

    A reference is not trusted when it was nulled (invalid or implausible: no reference) or is itself
    a flagged spike: a one-day 10x price must not make the next, correct day a spike too. So in a run
    of consecutive candidate days only every other one is flagged (day 2 vs day 1: spike; day 3 vs the
    spiked day 2: not judged; day 4 vs day 3: judged again). For the batch's first day the previous
    mart row's own ``flag_price_spike`` (when ``previous`` carries it) stands for "flagged".
    Reads ``_prev_price`` and ``_prev_flagged`` (joined from ``previous_prices``).
    """
    change = pl.col("price") / pl.col("_prev_price")
    candidate = (
        (pl.col("_prev_price") > 0) & ((change > ratio) | (change < 1 / ratio)) & ~pl.col("_prev_flagged")
    ).fill_null(False)
    by = ["site", "asin"]
    run = (~candidate).cum_sum().over(by, order_by="date")
    nth = candidate.cast(pl.Int32).cum_sum().over([*by, run], order_by="date")
    return candidate & (nth % 2 == 1)


def previous_prices(mart: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    """(site, asin, date, _prev_price, _prev_flagged): the price of the calendar day before ``date``.

    The batch's own rows come first; ``previous`` (the previous day's mart: site, asin, price, and
    optionally date and flag_price_spike) fills the day before each site's first batch date, or the
    day after each of its own dates when it carries a ``date`` column.
    """
    parts = [
        mart.select(
            "site",
            "asin",
            pl.col("date") + timedelta(days=1),
            pl.col("price").alias("_prev_price"),
            pl.lit(False).alias("_prev_flagged"),
        )
    ]
    if previous is not None and previous.height:
        missing = [c for c in ("site", "asin", "price") if c not in previous.columns]
        if missing:
            raise ValueError(f"standardise: previous_prices lacks column(s) {missing}")
        has_flag = "flag_price_spike" in previous.columns
        flagged = pl.col("flag_price_spike").fill_null(False) if has_flag else pl.lit(False)
        prev = previous.select(
            pl.col("site").cast(pl.Utf8),
            pl.col("asin").cast(pl.Utf8),
            pl.col("price").cast(pl.Float64).alias("_prev_price"),
            flagged.cast(pl.Boolean).alias("_prev_flagged"),
            *([pl.col("date").cast(pl.Date)] if "date" in previous.columns else []),
        )
        if "date" in prev.columns:
            prev = prev.with_columns(pl.col("date") + timedelta(days=1))
        else:
            first_dates = mart.group_by("site").agg(pl.col("date").min())
            prev = prev.join(first_dates, on="site", how="inner")
        parts.append(prev.select("site", "asin", "date", "_prev_price", "_prev_flagged"))
    return pl.concat(parts).unique(subset=["site", "asin", "date"], keep="first", maintain_order=True)
