"""Keepa ``/product`` responses -> :class:`ParsedPayloads` (pure: no Dagster, no I/O, no clock).

Keepa (https://keepa.com/#!api) answers a product request with the body
``{"timestamp", "tokensLeft", "refillIn", "refillRate", "tokenFlowReduction", "processingTimeInMs",
"products": [...]}``. Each product carries its history as change logs in ``csv[i]``: flat
``[keepa_minute, value, keepa_minute, value, ...]`` arrays (``[t, price, shipping, ...]`` triples for the
``*_SHIPPING`` series), where a point holds until the next one and ``-1`` / ``-2`` open a gap (no offer,
no rank, no data). Times are minutes since 2011-01-01 UTC; prices are in the smallest currency unit
(cents, but whole yen on JP); ratings are tenths of stars.

The daily rule that turns a change log into one value per UTC day is :func:`daily_values`; the field
mapping onto the platform's rows is :func:`parse_keepa_product`. Both are documented, with the reasons,
in ``docs/keepa.md``.

Work is vectorised where it matters: every history of every product in a batch of payloads is stacked
into one long frame and resolved with a single ``join_asof`` (plus one group-by for the median rule),
so parsing cost grows with the number of points, not with Python calls per product and day.
Layout: ``format`` (time, domains, csv indexes), ``daily`` (change log -> daily values), ``fields``
(scalar product fields), ``parser`` (products -> rows). Keepa's token accounting belongs to the client
(``asin_platform/resources/upstream/keepa_tokens.py``).
"""

from asin_platform.core.keepa.daily import daily_values, decode_history
from asin_platform.core.keepa.fields import KeepaParseResult
from asin_platform.core.keepa.format import (
    DOMAIN_TO_SITE,
    KEEPA_EPOCH_UNIX_MINUTES,
    KEEPA_EXTRAS_SCHEMA,
    LISTING_MAX_LAG_DAYS,
    PRODUCT_ENDPOINT,
    SHIPPING_SERIES,
    SITE_TO_DOMAIN,
    SOURCE,
    CsvIndex,
    KeepaFormatError,
    currency_divisor,
    keepa_minutes_to_utc,
    utc_to_keepa_minutes,
)
from asin_platform.core.keepa.parser import (
    parse_keepa,
    parse_keepa_detailed,
    parse_keepa_product,
    parse_keepa_product_detailed,
)

__all__ = [
    "DOMAIN_TO_SITE",
    "KEEPA_EPOCH_UNIX_MINUTES",
    "KEEPA_EXTRAS_SCHEMA",
    "LISTING_MAX_LAG_DAYS",
    "SHIPPING_SERIES",
    "SITE_TO_DOMAIN",
    "SOURCE",
    "PRODUCT_ENDPOINT",
    "CsvIndex",
    "KeepaFormatError",
    "KeepaParseResult",
    "currency_divisor",
    "daily_values",
    "decode_history",
    "keepa_minutes_to_utc",
    "parse_keepa",
    "parse_keepa_detailed",
    "parse_keepa_product",
    "parse_keepa_product_detailed",
    "utc_to_keepa_minutes",
]
