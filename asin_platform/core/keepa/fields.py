"""Keepa product fields -> platform values: series codes, scalar helpers, the parse result (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from asin_platform.core.keepa.format import MAX_MAGNITUDE, CsvIndex, keepa_minutes_to_utc
from asin_platform.core.parsed import (
    ParsedPayloads,
)

# --------------------------------------------------------------------------------------------------------
# Products -> rows
# --------------------------------------------------------------------------------------------------------

# Long-frame series codes (small ints keep the stacked frame cheap); names become pivoted columns.
_S_AMAZON, _S_NEW, _S_BSR_ROOT, _S_BSR_SUB, _S_RATING, _S_REVIEWS, _S_OFFERS, _S_MONTHLY_SOLD = range(8)
_SERIES_NAMES = {
    _S_AMAZON: "amazon",
    _S_NEW: "new",
    _S_BSR_ROOT: "bsr_root",
    _S_BSR_SUB: "bsr_sub",
    _S_RATING: "rating",
    _S_REVIEWS: "review_count",
    _S_OFFERS: "new_offer_count",
    _S_MONTHLY_SOLD: "monthly_sold",
}
_CSV_SERIES = {
    _S_AMAZON: CsvIndex.AMAZON,
    _S_NEW: CsvIndex.NEW,
    _S_BSR_ROOT: CsvIndex.SALES,
    _S_RATING: CsvIndex.RATING,
    _S_REVIEWS: CsvIndex.COUNT_REVIEWS,
    _S_OFFERS: CsvIndex.COUNT_NEW,
}
_MEDIAN_SERIES = [_S_BSR_ROOT, _S_BSR_SUB]

_RECORD_EXCERPT_CHARS = 2000


@dataclass
class KeepaParseResult:
    """``parsed`` feeds standardise; ``extras`` holds Keepa fields the mart has no column for yet."""

    parsed: ParsedPayloads
    extras: pl.DataFrame  # KEEPA_EXTRAS_SCHEMA


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _keepa_date(minutes: Any) -> date | None:
    """Keepa minutes -> UTC date; 0 and negatives mean "not known" in Keepa's scalar time fields, and
    a magnitude beyond Keepa's int range is no time at all."""
    m = _positive_int(minutes)
    return keepa_minutes_to_utc(m).date() if m is not None and m <= MAX_MAGNITUDE else None


def _checked_date(raw: Any, name: str, fetched_day: date) -> tuple[date | None, str]:
    """(date, "") of a Keepa scalar time field (``listedSince``, ``trackingSince``), or (None, why)
    when Keepa cannot have sent it: not integer minutes, or after the fetch. (None, "") = unknown."""
    value = _keepa_date(raw)
    if value is not None and value > fetched_day:
        return None, f"{name} {value} is after the fetch date {fetched_day}"
    if isinstance(raw, bool | float) or (isinstance(raw, int) and raw > MAX_MAGNITUDE):
        return None, f"{name} {raw!r} is not a Keepa time (integer minutes)"
    return value, ""


def _excerpt(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return text[:_RECORD_EXCERPT_CHARS]


def _category_tree(product: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    tree = product.get("categoryTree") or []
    return [
        (str(entry["catId"]), entry.get("name"))
        for entry in tree
        if isinstance(entry, Mapping) and entry.get("catId") is not None
    ]


def _sub_category(product: Mapping[str, Any], tree_ids: list[str]) -> str | None:
    """The ``salesRanks`` key that becomes bsr_sub: the deepest categoryTree node that has a rank.

    ``salesRankReference`` (and ``rootCategory``) name the root rank, already csv[3], so they are
    excluded. When no ranked key is in the tree (Amazon ranks some products in a classification outside
    the browse path), the first remaining key is used. JSON key order carries no meaning in Keepa's
    documentation, which is why the tree depth decides first.
    """
    ranks = product.get("salesRanks")
    if not isinstance(ranks, Mapping) or not ranks:
        return None
    root_ids = {str(product.get("salesRankReference")), str(product.get("rootCategory"))}
    candidates = [str(k) for k in ranks if str(k) not in root_ids]
    for cat_id in reversed(tree_ids):
        if cat_id in candidates:
            return cat_id
    return candidates[0] if candidates else None


def _image_count(product: Mapping[str, Any]) -> int | None:
    images = product.get("images")
    if isinstance(images, list):
        return sum(1 for image in images if image)
    csv_names = product.get("imagesCSV")
    if isinstance(csv_names, str):
        return sum(1 for name in csv_names.split(",") if name.strip())
    return None  # neither field: unknown, not zero


def _attribute_flags(product: Mapping[str, Any]) -> int:
    """Count of listing-quality flags Keepa can observe, mirroring the unified API's attribute_flags.

    video: ``videos`` non-empty; brand_story: a Brand Store (``brandStoreName`` / ``brandStoreUrl``);
    prime: ``stats.buyBoxIsPrimeEligible`` is true. The unified API's size_chart has no Keepa field and
    never counts, so Keepa's count is 0..3.
    """
    stats = product.get("stats")
    flags = (
        bool(product.get("videos")),
        bool(product.get("brandStoreName") or product.get("brandStoreUrl")),
        isinstance(stats, Mapping) and stats.get("buyBoxIsPrimeEligible") is True,
    )
    return sum(flags)


def _product_attrs(
    product: Mapping[str, Any],
    tree: list[tuple[str, str | None]],
    sub_category: str | None,
    keepa_listed: date | None,
    tracking_since: date | None,
) -> dict[str, Any]:
    """The product's listing attributes (LISTING_SCHEMA) and Keepa's own extras, as of the fetch."""
    title = product.get("title")
    features = product.get("features")
    tree_ids = [cat_id for cat_id, _ in tree]
    root_id = tree_ids[0] if tree_ids else None
    if root_id is None and _positive_int(product.get("rootCategory")) is not None:
        root_id = str(product["rootCategory"])
    monthly_sold = product.get("monthlySold")
    return {
        "title": title if isinstance(title, str) else None,
        "brand": product["brand"] if isinstance(product.get("brand"), str) else None,
        "category_id": root_id,
        "category_path": " > ".join(name or "" for _, name in tree) if tree else None,
        "subcategory_id": tree_ids[-1] if tree_ids else None,
        "title_length": len(title) if isinstance(title, str) else None,
        "bullet_count": len(features) if isinstance(features, list) else 0,
        "image_count": _image_count(product),
        "has_aplus": bool(product.get("aPlus")),
        "attribute_flag_count": _attribute_flags(product),
        # Keepa's listedSince is 0 when unknown; trackingSince is the earliest date Keepa can vouch
        # for, so it stands in (it can only be later than the true listing date).
        "listed_since": keepa_listed if keepa_listed is not None else tracking_since,
        "tracking_since": tracking_since,
        "keepa_listed_since": keepa_listed,
        "monthly_sold_now": (
            monthly_sold
            if isinstance(monthly_sold, int) and not isinstance(monthly_sold, bool) and monthly_sold >= 0
            else None
        ),
        "sales_rank_reference": (
            str(product["salesRankReference"])
            if _positive_int(product.get("salesRankReference")) is not None
            else None
        ),
        "bsr_sub_category_id": sub_category,
    }
