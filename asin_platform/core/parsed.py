"""The source-agnostic result of parsing raw payloads (unified API or Keepa).

Parsers (``core/unified.py``, ``core/keepa.py``) turn stored response bodies into these typed frames;
``core/standardise.py`` validates, deduplicates and flags them into mart rows. Values here are typed
but not yet range-checked (a BSR of -5 is still present; standardise quarantines it).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from asin_platform.schemas import LISTING_SCHEMA, QUARANTINE, UTC_TS

UNIVERSE_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,
    "asin": pl.Utf8,
    "payload_id": pl.Utf8,
}

PRODUCTS_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,  # the day the listing attributes are as of
    "asin": pl.Utf8,
    **LISTING_SCHEMA,
    "source": pl.Utf8,
    "payload_id": pl.Utf8,
    "fetched_at": UTC_TS,
}

POINTS_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,
    "asin": pl.Utf8,
    "price": pl.Float64,
    "bsr_root": pl.Int64,
    "bsr_sub": pl.Int64,
    "rating": pl.Float64,
    "review_count": pl.Int64,
    "new_offer_count": pl.Int32,
    "buybox_seller": pl.Utf8,
    "source": pl.Utf8,
    "payload_id": pl.Utf8,
    "fetched_at": UTC_TS,
}

REVIEWS_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,
    "asin": pl.Utf8,
    "review_id": pl.Utf8,
    "rating": pl.Int8,
    "verified": pl.Boolean,
    "payload_id": pl.Utf8,
    "fetched_at": UTC_TS,
}

KEYWORDS_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,
    "asin": pl.Utf8,
    "keyword": pl.Utf8,
    "search_volume": pl.Int64,
    "rank": pl.Int32,
    "payload_id": pl.Utf8,
    "fetched_at": UTC_TS,
}


@dataclass
class ParsedPayloads:
    universe: pl.DataFrame  # UNIVERSE_SCHEMA: the tracked ASINs of each (site, date)
    products: pl.DataFrame  # PRODUCTS_SCHEMA
    points: pl.DataFrame  # POINTS_SCHEMA: one row per (site, date, asin) as received (dups possible)
    reviews: pl.DataFrame  # REVIEWS_SCHEMA
    keywords: pl.DataFrame  # KEYWORDS_SCHEMA
    rejected: pl.DataFrame  # QUARANTINE schema: payloads / records that could not be parsed

    @classmethod
    def empty(cls) -> ParsedPayloads:
        return cls(
            universe=pl.DataFrame(schema=UNIVERSE_SCHEMA),
            products=pl.DataFrame(schema=PRODUCTS_SCHEMA),
            points=pl.DataFrame(schema=POINTS_SCHEMA),
            reviews=pl.DataFrame(schema=REVIEWS_SCHEMA),
            keywords=pl.DataFrame(schema=KEYWORDS_SCHEMA),
            rejected=QUARANTINE.empty(),
        )

    @classmethod
    def concat(cls, parts: list[ParsedPayloads]) -> ParsedPayloads:
        if not parts:
            return cls.empty()
        return cls(
            **{
                name: pl.concat([getattr(p, name) for p in parts], how="vertical")
                for name in ("universe", "products", "points", "reviews", "keywords", "rejected")
            }
        )
