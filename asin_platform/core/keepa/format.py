"""Keepa's wire format: time (minutes since 2011), domains and currencies, csv history indexes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import overload

import polars as pl

from asin_platform.schemas import UTC_TS

SOURCE = "keepa"
PRODUCT_ENDPOINT = "/product"

# Keepa time is minutes since 2011-01-01T00:00Z; that instant is 21,564,000 minutes after the Unix epoch.
KEEPA_EPOCH_UNIX_MINUTES = 21_564_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Platform site -> Keepa domain id. Keepa calls the UK marketplace "GB" (co.uk); 7 was China (retired).
SITE_TO_DOMAIN: dict[str, int] = {
    "US": 1,
    "UK": 2,
    "DE": 3,
    "FR": 4,
    "JP": 5,
    "CA": 6,
    "IT": 8,
    "ES": 9,
    "IN": 10,
    "MX": 11,
    "BR": 12,
}
DOMAIN_TO_SITE: dict[int, str] = {domain: site for site, domain in SITE_TO_DOMAIN.items()}

# Keepa states prices in the smallest currency unit; yen has none, so JP prices are already whole units.
_NO_MINOR_UNIT_DOMAINS = frozenset({5})

# Listing attributes are a snapshot as of the fetch. Asserting them for a day long before the fetch would
# leak later listing changes into history, so products rows are emitted only for days at most this many
# days before the fetch (a partition day is normally fetched the next morning).
LISTING_MAX_LAG_DAYS = 2

# -1: no offer / no rank / no data at that time; -2: unknown. Both open a gap in the change log.
_GAP_MARKERS = (-1, -2)


class CsvIndex(IntEnum):
    """Index of each history in a Keepa product's ``csv`` array (Keepa's ``Product.CsvType``)."""

    AMAZON = 0
    NEW = 1
    USED = 2
    SALES = 3
    LISTPRICE = 4
    COLLECTIBLE = 5
    REFURBISHED = 6
    NEW_FBM_SHIPPING = 7
    LIGHTNING_DEAL = 8
    WAREHOUSE = 9
    NEW_FBA = 10
    COUNT_NEW = 11
    COUNT_USED = 12
    COUNT_REFURBISHED = 13
    COUNT_COLLECTIBLE = 14
    EXTRA_INFO_UPDATES = 15
    RATING = 16
    COUNT_REVIEWS = 17
    BUY_BOX_SHIPPING = 18
    USED_NEW_SHIPPING = 19
    USED_VERY_GOOD_SHIPPING = 20
    USED_GOOD_SHIPPING = 21
    USED_ACCEPTABLE_SHIPPING = 22
    COLLECTIBLE_NEW_SHIPPING = 23
    COLLECTIBLE_VERY_GOOD_SHIPPING = 24
    COLLECTIBLE_GOOD_SHIPPING = 25
    COLLECTIBLE_ACCEPTABLE_SHIPPING = 26
    REFURBISHED_SHIPPING = 27
    EBAY_NEW_SHIPPING = 28
    EBAY_USED_SHIPPING = 29
    TRADE_IN = 30
    RENT = 31
    BUY_BOX_USED_SHIPPING = 32
    PRIME_EXCL = 33
    COUNT_NEW_FBA = 34
    COUNT_NEW_FBM = 35


# Series whose arrays are [t, price, shipping] triples (Keepa's ``isWithShipping``).
SHIPPING_SERIES: frozenset[int] = frozenset(
    {CsvIndex.NEW_FBM_SHIPPING, *range(CsvIndex.BUY_BOX_SHIPPING, CsvIndex.EBAY_USED_SHIPPING + 1)}
    | {CsvIndex.BUY_BOX_USED_SHIPPING}
)

# Columns Keepa can fill that the mart has no column for yet (see docs/keepa.md, "Unmapped").
KEEPA_EXTRAS_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8,
    "date": pl.Date,
    "asin": pl.Utf8,
    "monthly_sold": pl.Int64,  # Amazon's "bought in past month" (a floor such as 1000), in force that day
    "tracking_since": pl.Date,  # when Keepa started tracking the product
    "keepa_listed_since": pl.Date,  # Keepa's listedSince alone (null when Keepa does not know it)
    "sales_rank_reference": pl.Utf8,  # category id of the root BSR (csv[3])
    "bsr_sub_category_id": pl.Utf8,  # category id whose salesRanks history became bsr_sub
    "payload_id": pl.Utf8,
    "fetched_at": UTC_TS,
}


# Keepa's fields are Java ints: a larger magnitude (2**62, 1e12) is not a value Keepa can send.
MAX_MAGNITUDE = 2**31 - 1


class KeepaFormatError(ValueError):
    """A Keepa history array does not have the documented shape."""

    reason = "malformed_history"  # the quarantine reason of what it rejects


class ImplausibleValueError(KeepaFormatError):
    """A Keepa value of the right shape that Keepa cannot have sent: a float where Keepa sends integer
    cents or minutes (truncating 1234.9 would store 12.34), a boolean, an absurd magnitude."""

    reason = "implausible_value"


# --------------------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------------------


@overload
def keepa_minutes_to_utc(minutes: int | str) -> datetime: ...


@overload
def keepa_minutes_to_utc(minutes: pl.Expr) -> pl.Expr: ...


def keepa_minutes_to_utc(minutes: int | str | pl.Expr) -> datetime | pl.Expr:
    """Keepa minutes -> UTC instant: a tz-aware ``datetime``, or a ``Datetime("us", "UTC")`` expression.

    Strings are accepted because ``buyBoxSellerIdHistory`` stores its times as strings.
    """
    if isinstance(minutes, pl.Expr):
        # Integer -> Datetime casts count time units since the Unix epoch, here microseconds.
        return ((minutes.cast(pl.Int64) + KEEPA_EPOCH_UNIX_MINUTES) * 60_000_000).cast(UTC_TS)
    return _UNIX_EPOCH + timedelta(minutes=int(minutes) + KEEPA_EPOCH_UNIX_MINUTES)


def utc_to_keepa_minutes(instant: datetime) -> int:
    """UTC instant -> Keepa minutes (floored to the minute; a naive datetime is taken as UTC)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return int((instant - _UNIX_EPOCH) // timedelta(minutes=1)) - KEEPA_EPOCH_UNIX_MINUTES


def currency_divisor(domain_id: int) -> int:
    """What a Keepa price is divided by to get currency units: 100 (cents), or 1 on JP (whole yen)."""
    return 1 if domain_id in _NO_MINOR_UNIT_DOMAINS else 100
