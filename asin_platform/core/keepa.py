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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import Any, Literal, overload

import numpy as np
import polars as pl

from asin_platform.core.parsed import (
    KEYWORDS_SCHEMA,
    POINTS_SCHEMA,
    PRODUCTS_SCHEMA,
    REVIEWS_SCHEMA,
    UNIVERSE_SCHEMA,
    ParsedPayloads,
)
from asin_platform.schemas import QUARANTINE, UTC_TS

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
    "TokenStatus",
    "currency_divisor",
    "daily_values",
    "decode_history",
    "keepa_minutes_to_utc",
    "parse_keepa",
    "parse_keepa_detailed",
    "parse_keepa_product",
    "parse_keepa_product_detailed",
    "parse_token_status",
    "utc_to_keepa_minutes",
    "wait_seconds",
]

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


class KeepaFormatError(ValueError):
    """A Keepa history array does not have the documented shape."""


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


# --------------------------------------------------------------------------------------------------------
# One history
# --------------------------------------------------------------------------------------------------------


def _split_history(arr: Sequence[int] | None, *, triples: bool) -> tuple[np.ndarray, np.ndarray]:
    """(keepa minutes, raw values) of a flat history; triples are folded to price + shipping.

    A triple whose price or shipping is a gap marker becomes a gap: the total is unknown.
    """
    if arr is None:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    width = 3 if triples else 2
    try:
        flat = np.asarray(arr, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise KeepaFormatError(f"history is not a flat list of integers: {exc}") from exc
    if flat.ndim != 1 or flat.size % width:
        raise KeepaFormatError(
            f"history of length {flat.size} is not a sequence of {'triples' if triples else 'pairs'}"
        )
    rows = flat.reshape(-1, width)
    times, values = rows[:, 0], rows[:, 1]
    if triples:
        shipping = rows[:, 2]
        gap = np.isin(values, _GAP_MARKERS) | np.isin(shipping, _GAP_MARKERS)
        values = np.where(gap, _GAP_MARKERS[0], values + shipping)
    return times, values


def _window(times: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The points that can decide days in [lo, hi) (Keepa minutes): the last one before ``lo`` and all
    before ``hi``. Keepa arrays are chronological; an unsorted one is kept whole rather than guessed at."""
    if times.size < 2 or bool(np.any(times[1:] < times[:-1])):
        return times, values
    start = max(int(np.searchsorted(times, lo, side="left")) - 1, 0)
    stop = int(np.searchsorted(times, hi, side="left"))
    return times[start:stop], values[start:stop]


def _null_markers(expr: pl.Expr) -> pl.Expr:
    # Only the documented markers become null; any other negative value is kept so that standardise
    # can quarantine it instead of it silently disappearing here.
    return pl.when(expr.is_in(list(_GAP_MARKERS))).then(None).otherwise(expr)


def decode_history(arr: Sequence[int] | None, *, triples: bool = False) -> pl.DataFrame:
    """Decode one Keepa history into ``(ts: Datetime UTC, value: Float64)``, in array order.

    ``-1`` / ``-2`` become null values but stay as rows: they mark the start of a gap. Values keep
    Keepa's units (cents, tenths of stars); ``triples=True`` (the ``*_SHIPPING`` series, see
    :data:`SHIPPING_SERIES`) returns price + shipping. ``None`` (a missing series) gives an empty frame.
    """
    times, values = _split_history(arr, triples=triples)
    return pl.DataFrame({"ts": times, "value": values}, schema={"ts": pl.Int64, "value": pl.Int64}).select(
        ts=keepa_minutes_to_utc(pl.col("ts")),
        value=_null_markers(pl.col("value")).cast(pl.Float64),
    )


# --------------------------------------------------------------------------------------------------------
# Change log -> daily values
# --------------------------------------------------------------------------------------------------------

Rule = Literal["last", "median"]
DaysArg = Sequence[date] | tuple[date, date]


def _as_days(days: DaysArg) -> list[date]:
    """A 2-tuple ``(start, end)`` is an inclusive range; any other sequence is the explicit days."""
    if isinstance(days, tuple) and len(days) == 2 and all(isinstance(d, date) for d in days):
        start, end = days
        if end < start:
            raise ValueError(f"day range ends ({end}) before it starts ({start})")
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    out = sorted(set(days))
    for day in out:
        # datetime is a date subclass; refusing it avoids silently mixing instants and UTC days.
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TypeError(f"days must be datetime.date values, got {day!r}")
    return out


def _day_start(expr: pl.Expr) -> pl.Expr:
    return expr.cast(UTC_TS)


def _resolve_days(
    hist: pl.DataFrame,
    targets: pl.DataFrame,
    by: list[str],
    median_points: pl.Expr | None,
) -> pl.DataFrame:
    """The vectorised daily rule over many histories at once.

    ``hist``: ``by`` + ``ts`` (Datetime UTC) + ``value`` (null = gap marker), any order;
    ``targets``: ``by`` + ``date``. Returns ``targets`` + ``value``. ``median_points`` selects the
    history rows whose days use the median rule (``None``: every series uses the "last" rule).
    """
    key = [*by, "ts"]
    # A stable sort keeps array order among equal times, so dropping every row whose successor has
    # the same key resolves a duplicated minute to the later entry, as a change log reads. (A shift
    # comparison, not unique(): the frame is sorted already and hashing millions of keys is not free.)
    same_as_next = pl.all_horizontal([pl.col(c) == pl.col(c).shift(-1) for c in key]).fill_null(False)
    points = hist.sort(key, maintain_order=True).filter(~same_as_next)
    ends = targets.with_columns(_next_midnight=_day_start(pl.col("date")) + timedelta(days=1)).sort(
        [*by, "_next_midnight"]
    )
    # The value in force at the end of day d is the last change strictly before the next midnight,
    # however old; a gap marker in force yields null, and so does a day before the first change.
    resolved = ends.join_asof(
        points,
        left_on="_next_midnight",
        right_on="ts",
        by=by,
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # sorted above within each group; polars cannot verify it with `by`
    ).drop("_next_midnight", "ts")
    if median_points is None:
        return resolved
    # Stats of untargeted days are dropped by the left join below; points were already cut to the
    # requested window by the caller (see _window), so filtering them to targets first saves nothing.
    day_stats = (
        points.filter(median_points)
        .group_by([*by, pl.col("ts").dt.date().alias("date")])
        # median() skips nulls: gap markers inside a day do not vote; a day of only markers is null.
        .agg(_median=pl.col("value").median(), _points=pl.len())
    )
    return (
        resolved.join(day_stats, on=[*by, "date"], how="left")
        .with_columns(
            value=pl.when(pl.col("_points").is_not_null()).then(pl.col("_median")).otherwise(pl.col("value"))
        )
        .drop("_median", "_points")
    )


def daily_values(history: pl.DataFrame, days: DaysArg, *, rule: Rule = "last") -> pl.DataFrame:
    """One value per UTC day from a Keepa change log (``decode_history`` output).

    ``days``: explicit days (any sequence, e.g. a list) or an inclusive ``(start, end)`` 2-tuple.

    Rule "last" (prices, counts, rating): the value of day ``d`` is the value in force at the end of
    ``d`` (UTC), i.e. of the last point with ``ts < d + 1 day``, however old that point is. If that
    point is a gap marker (-1/-2) the day is null, and a day before the first point is null.

    Rule "median" (sales ranks): if day ``d`` has points (``d <= ts < d + 1 day``), the median of their
    non-gap values (gap markers do not vote; a day whose points are all markers is null); if it has
    none, the "last" value carried into the day. The median is over points, not time-weighted:
    Keepa samples ranks every few hours, and a rank that changed at 23:00 is one vote, not 23 hours.

    Returns ``(date: Date, value)`` sorted by date, one row per requested day.
    """
    if rule not in ("last", "median"):
        raise ValueError(f"rule must be 'last' or 'median', got {rule!r}")
    targets = pl.DataFrame({"date": _as_days(days)}, schema={"date": pl.Date}).with_columns(
        _k=pl.lit(0, pl.Int32)
    )
    hist = history.select("ts", "value").with_columns(_k=pl.lit(0, pl.Int32))
    median = pl.lit(True) if rule == "median" else None
    return _resolve_days(hist, targets, ["_k"], median).sort("date").select("date", "value")


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
    """Keepa minutes -> UTC date; 0 and negatives mean "not known" in Keepa's scalar time fields."""
    m = _positive_int(minutes)
    return keepa_minutes_to_utc(m).date() if m is not None else None


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


@dataclass
class _Batch:
    """Accumulates products of many payloads, then resolves every history in one vectorised pass."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    target_k: list[int] = field(default_factory=list)
    target_date: list[date] = field(default_factory=list)
    target_snapshot: list[bool] = field(default_factory=list)
    hist_k: list[np.ndarray] = field(default_factory=list)
    hist_series: list[np.ndarray] = field(default_factory=list)
    hist_t: list[np.ndarray] = field(default_factory=list)
    hist_v: list[np.ndarray] = field(default_factory=list)
    seller_k: list[int] = field(default_factory=list)
    seller_t: list[int] = field(default_factory=list)
    seller_v: list[str | None] = field(default_factory=list)
    attrs: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(
        self,
        *,
        site: str | None,
        day: date | None,
        payload_id: str | None,
        table: str,
        asin: str | None,
        reason: str,
        detail: str,
        record: Any,
        at: datetime | None,
    ) -> None:
        # quarantined_at is the payload's fetched_at: the parser stays deterministic (no clock).
        self.rejected.append(
            {
                "site": site,
                "date": day,
                "payload_id": payload_id,
                "table_name": table,
                "asin": asin,
                "reason": reason,
                "detail": detail,
                "record": _excerpt(record),
                "quarantined_at": at,
            }
        )

    def add_product(
        self,
        product: Any,
        site: str,
        days: list[date],
        *,
        payload_id: str,
        fetched_at: datetime,
        listing_max_lag_days: int | None,
    ) -> None:
        reject_day = days[-1] if days else None
        common = {"site": site, "day": reject_day, "payload_id": payload_id, "at": fetched_at}
        if not isinstance(product, Mapping):
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=None,
                reason="unexpected_shape",
                detail="product entry is not a JSON object",
                record=product,
            )
            return
        asin = product.get("asin")
        if not isinstance(asin, str) or not asin.strip():
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=None,
                reason="missing_key",
                detail="product has no 'asin'",
                record=product,
            )
            return
        domain = SITE_TO_DOMAIN[site]
        product_domain = product.get("domainId")
        if product_domain is not None and product_domain != domain:
            # A product from another marketplace would be read in the wrong currency: refuse it.
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=asin,
                reason="site_mismatch",
                detail=f"product domainId {product_domain} is not site {site}'s domain {domain}",
                record=product,
            )
            return
        try:
            series = self._product_series(product)
            sellers = self._buybox_history(product)
        except KeepaFormatError as exc:
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=asin,
                reason="malformed_history",
                detail=str(exc),
                record=product,
            )
            return

        k = len(self.keys)
        fetched_day = fetched_at.astimezone(UTC).date()
        keepa_listed = _keepa_date(product.get("listedSince"))
        tracking_since = _keepa_date(product.get("trackingSince"))
        known_since = min((d for d in (keepa_listed, tracking_since) if d is not None), default=None)
        # Days after the fetch have not happened for this payload; days before the product existed
        # (as far as Keepa knows) are not in its universe: selecting them would use the future.
        emitted = [d for d in days if d <= fetched_day and (known_since is None or d >= known_since)]
        if not emitted:
            return
        oldest_snapshot = (
            None if listing_max_lag_days is None else fetched_day - timedelta(days=listing_max_lag_days)
        )
        for day in emitted:
            self.target_k.append(k)
            self.target_date.append(day)
            self.target_snapshot.append(oldest_snapshot is None or day >= oldest_snapshot)

        tree = _category_tree(product)
        tree_ids = [cat_id for cat_id, _ in tree]
        sub_category = _sub_category(product, tree_ids)
        if sub_category is not None:
            # JSON object keys are strings; a dict built in Python may use int keys.
            raw = next(v for key, v in product["salesRanks"].items() if str(key) == sub_category)
            try:
                series[_S_BSR_SUB] = _split_history(raw, triples=False)
            except KeepaFormatError as exc:
                series[_S_BSR_SUB] = _split_history(None, triples=False)
                self.reject(
                    **common,
                    table="mart_timeseries_daily",
                    asin=asin,
                    reason="malformed_history",
                    detail=f"salesRanks[{sub_category}]: {exc}; bsr_sub left null",
                    record={"asin": asin, "salesRanks": {sub_category: raw}},
                )
        # Only the last change before the first day and the changes up to the end of the last day can
        # matter; dropping the rest here keeps a years-long history from flooding the sort and join.
        lo = utc_to_keepa_minutes(datetime.combine(emitted[0], time(), UTC))
        hi = utc_to_keepa_minutes(datetime.combine(emitted[-1] + timedelta(days=1), time(), UTC))
        for code, (all_times, all_values) in series.items():
            times, values = _window(all_times, all_values, lo, hi)
            if times.size:
                self.hist_k.append(np.full(times.size, k, dtype=np.int64))
                self.hist_series.append(np.full(times.size, code, dtype=np.int8))
                self.hist_t.append(times)
                self.hist_v.append(values)
        for minute, seller in sellers:
            self.seller_k.append(k)
            self.seller_t.append(minute)
            self.seller_v.append(seller)

        title = product.get("title")
        features = product.get("features")
        root_id = tree_ids[0] if tree_ids else None
        if root_id is None and _positive_int(product.get("rootCategory")) is not None:
            root_id = str(product["rootCategory"])
        monthly_sold = product.get("monthlySold")
        self.keys.append(
            {
                "k": k,
                "site": site,
                "asin": asin,
                "payload_id": payload_id,
                "fetched_at": fetched_at,
                "divisor": currency_divisor(domain),
            }
        )
        self.attrs.append(
            {
                "k": k,
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
                    if isinstance(monthly_sold, int)
                    and not isinstance(monthly_sold, bool)
                    and monthly_sold >= 0
                    else None
                ),
                "sales_rank_reference": (
                    str(product["salesRankReference"])
                    if _positive_int(product.get("salesRankReference")) is not None
                    else None
                ),
                "bsr_sub_category_id": sub_category,
            }
        )

    @staticmethod
    def _product_series(product: Mapping[str, Any]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        csv = product.get("csv")
        csv = csv if isinstance(csv, list) else []
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for code, index in _CSV_SERIES.items():
            # A series Keepa did not send (csv shorter than the index, or null) is simply no data.
            raw = csv[index] if index < len(csv) else None
            try:
                out[code] = _split_history(raw, triples=index in SHIPPING_SERIES)
            except KeepaFormatError as exc:
                raise KeepaFormatError(f"csv[{int(index)}] ({index.name}): {exc}") from exc
        try:
            out[_S_MONTHLY_SOLD] = _split_history(product.get("monthlySoldHistory"), triples=False)
        except KeepaFormatError as exc:
            raise KeepaFormatError(f"monthlySoldHistory: {exc}") from exc
        return out

    @staticmethod
    def _buybox_history(product: Mapping[str, Any]) -> list[tuple[int, str | None]]:
        """``buyBoxSellerIdHistory``: ["minute", "sellerId", ...] strings; "-1" none, "-2" unknown."""
        raw = product.get("buyBoxSellerIdHistory")
        if raw is None:
            return []
        if not isinstance(raw, list) or len(raw) % 2:
            raise KeepaFormatError("buyBoxSellerIdHistory is not a list of (time, sellerId) pairs")
        out: list[tuple[int, str | None]] = []
        for i in range(0, len(raw), 2):
            try:
                minute = int(raw[i])
            except (TypeError, ValueError) as exc:
                raise KeepaFormatError(f"buyBoxSellerIdHistory time {raw[i]!r} is not an integer") from exc
            seller = raw[i + 1]
            out.append((minute, None if seller in ("-1", "-2", None, "") else str(seller)))
        return out

    # ----------------------------------------------------------------------------------------------------

    def finish(self) -> KeepaParseResult:
        rejected = _conform(pl.DataFrame(self.rejected or None, schema=QUARANTINE.schema), QUARANTINE.schema)
        if not self.target_k:
            empty = ParsedPayloads.empty()
            empty.rejected = rejected
            return KeepaParseResult(empty, pl.DataFrame(schema=KEEPA_EXTRAS_SCHEMA))

        keys = pl.DataFrame(
            self.keys,
            schema={
                "k": pl.Int64,
                "site": pl.Utf8,
                "asin": pl.Utf8,
                "payload_id": pl.Utf8,
                "fetched_at": UTC_TS,
                "divisor": pl.Int64,
            },
        )
        targets = pl.DataFrame(
            {"k": self.target_k, "date": self.target_date, "snapshot": self.target_snapshot},
            schema={"k": pl.Int64, "date": pl.Date, "snapshot": pl.Boolean},
        )
        wide = self._resolve_series(targets.select("k", "date"))
        sellers = self._resolve_sellers(targets.select("k", "date"))
        attrs = pl.DataFrame(
            self.attrs,
            schema={
                "k": pl.Int64,
                "title": pl.Utf8,
                "brand": pl.Utf8,
                "category_id": pl.Utf8,
                "category_path": pl.Utf8,
                "subcategory_id": pl.Utf8,
                "title_length": pl.Int32,
                "bullet_count": pl.Int32,
                "image_count": pl.Int32,
                "has_aplus": pl.Boolean,
                "attribute_flag_count": pl.Int32,
                "listed_since": pl.Date,
                "tracking_since": pl.Date,
                "keepa_listed_since": pl.Date,
                "monthly_sold_now": pl.Int64,
                "sales_rank_reference": pl.Utf8,
                "bsr_sub_category_id": pl.Utf8,
            },
        )

        rows = targets.join(keys, on="k").join(wide, on=["k", "date"], how="left")
        rows = rows.join(sellers, on=["k", "date"], how="left").with_columns(source=pl.lit(SOURCE))
        points = rows.with_columns(
            # Lower of Amazon's own offer and the lowest new offer in force: what a buyer is shown
            # first. Keepa's NEW already includes Amazon except when Amazon is the only offer, and
            # min_horizontal skips a null, so either series alone still yields a price.
            # Round to the currency's minor unit: cents / 100 in floating point is 20.990000000000002.
            price=(pl.min_horizontal("amazon", "new") / pl.col("divisor")).round(2),
            bsr_root=pl.col("bsr_root").round(0),  # a median of an even count can be x.5
            bsr_sub=pl.col("bsr_sub").round(0),
            # Tenths of stars -> stars. Amazon's lowest average is 1 star, so Keepa's 0 can only mean
            # "not rated yet": null, rather than a daily rating_out_of_range quarantine row.
            rating=pl.when(pl.col("rating") != 0).then((pl.col("rating") / 10).round(1)),
        )
        with_attrs = rows.join(attrs, on="k", how="left")
        products = with_attrs.filter(pl.col("snapshot"))
        extras = with_attrs.with_columns(
            # The history says what was in force each day; the scalar is only "now", so it may stand in
            # for snapshot days alone (same leakage reasoning as the listing attributes).
            monthly_sold=pl.coalesce(
                pl.col("monthly_sold"), pl.when(pl.col("snapshot")).then(pl.col("monthly_sold_now"))
            )
        )
        parsed = ParsedPayloads(
            universe=_conform(rows, UNIVERSE_SCHEMA),
            products=_conform(products, PRODUCTS_SCHEMA),
            points=_conform(points, POINTS_SCHEMA),
            # Keepa has no review texts or keyword ranks: these stay empty for this source.
            reviews=pl.DataFrame(schema=REVIEWS_SCHEMA),
            keywords=pl.DataFrame(schema=KEYWORDS_SCHEMA),
            rejected=rejected,
        )
        return KeepaParseResult(parsed, _conform(extras, KEEPA_EXTRAS_SCHEMA))

    def _resolve_series(self, targets: pl.DataFrame) -> pl.DataFrame:
        """(k, date) -> one Float64 column per series, all products and days in one pass."""
        hist = pl.DataFrame(
            {
                "k": _concat(self.hist_k, np.int64),
                "series": _concat(self.hist_series, np.int8),
                "ts": _concat(self.hist_t, np.int64),
                "value": _concat(self.hist_v, np.int64),
            },
            schema={"k": pl.Int64, "series": pl.Int8, "ts": pl.Int64, "value": pl.Int64},
        ).with_columns(
            ts=keepa_minutes_to_utc(pl.col("ts")),
            value=_null_markers(pl.col("value")).cast(pl.Float64),
        )
        codes = pl.DataFrame({"series": list(_SERIES_NAMES)}, schema={"series": pl.Int8})
        long = _resolve_days(
            hist,
            targets.join(codes, how="cross"),
            ["k", "series"],
            pl.col("series").is_in(_MEDIAN_SERIES),
        )
        wide = long.pivot(on="series", index=["k", "date"], values="value")
        return wide.rename({str(code): name for code, name in _SERIES_NAMES.items()})

    def _resolve_sellers(self, targets: pl.DataFrame) -> pl.DataFrame:
        hist = pl.DataFrame(
            {"k": self.seller_k, "ts": self.seller_t, "value": self.seller_v},
            schema={"k": pl.Int64, "ts": pl.Int64, "value": pl.Utf8},
        ).with_columns(ts=keepa_minutes_to_utc(pl.col("ts")))
        return _resolve_days(hist, targets, ["k"], None).rename({"value": "buybox_seller"})


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Select ``schema``'s columns in order, cast to its dtypes; absent columns become null."""
    return frame.select(
        [(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in schema.items()]
    )


def parse_keepa_product_detailed(
    product: Mapping[str, Any],
    site: str,
    days: DaysArg,
    *,
    payload_id: str,
    fetched_at: datetime,
    listing_max_lag_days: int | None = LISTING_MAX_LAG_DAYS,
) -> KeepaParseResult:
    """:func:`parse_keepa_product` plus the Keepa-only side frame (:data:`KEEPA_EXTRAS_SCHEMA`)."""
    if site not in SITE_TO_DOMAIN:
        raise ValueError(f"unknown site {site!r}; Keepa sites are {sorted(SITE_TO_DOMAIN)}")
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    batch = _Batch()
    batch.add_product(
        product,
        site,
        _as_days(days),
        payload_id=payload_id,
        fetched_at=fetched_at,
        listing_max_lag_days=listing_max_lag_days,
    )
    return batch.finish()


def parse_keepa_product(
    product: Mapping[str, Any],
    site: str,
    days: DaysArg,
    *,
    payload_id: str,
    fetched_at: datetime,
    listing_max_lag_days: int | None = LISTING_MAX_LAG_DAYS,
) -> ParsedPayloads:
    """One Keepa product object -> platform rows for ``days`` (explicit days or a ``(start, end)`` tuple).

    - points: one row per emitted day; price = lower of csv[0] AMAZON and csv[1] NEW in force (cents
      / 100, whole yen on JP); bsr_root = csv[3] SALES and bsr_sub = the sub-category ``salesRanks``
      history, both with the "median" rule; rating = csv[16] / 10; review_count = csv[17];
      new_offer_count = csv[11]; buybox_seller from ``buyBoxSellerIdHistory`` (only sent with the
      ``offers`` request parameter) -- all others with the "last" rule of :func:`daily_values`.
    - products: the listing snapshot, for emitted days no more than ``listing_max_lag_days`` before
      ``fetched_at`` (``None``: every emitted day, accepting that old days get today's listing).
    - universe: the product, for every emitted day.
    - Emitted days: requested days up to ``fetched_at``'s UTC date and not before the product existed
      as far as Keepa knows (``listedSince`` / ``trackingSince``, the earlier).
    - rejected: ``missing_key`` (no asin), ``site_mismatch`` (``domainId`` of another site),
      ``malformed_history`` (an array of the wrong shape), ``unexpected_shape`` (not an object).
      A missing series (``csv[i]`` null or absent) is no data, not an error.
    """
    return parse_keepa_product_detailed(
        product,
        site,
        days,
        payload_id=payload_id,
        fetched_at=fetched_at,
        listing_max_lag_days=listing_max_lag_days,
    ).parsed


def parse_keepa_detailed(
    raw: pl.DataFrame, *, listing_max_lag_days: int | None = LISTING_MAX_LAG_DAYS
) -> KeepaParseResult:
    """:func:`parse_keepa` plus the Keepa-only side frame (:data:`KEEPA_EXTRAS_SCHEMA`)."""
    batch = _Batch()
    # Failed fetches (status != 200 or error set) are already recorded in raw_payloads by ingestion;
    # they carry no product data (same convention as the unified parser).
    rows = raw.filter(
        (pl.col("source") == SOURCE)
        & (pl.col("endpoint") == PRODUCT_ENDPOINT)
        & (pl.col("status") == 200)
        & pl.col("error").is_null()
    )
    for row in rows.iter_rows(named=True):
        site, day, payload_id = row["site"], row["date"], row["payload_id"]
        fetched_at = row["fetched_at"]
        common = {"site": site, "day": day, "payload_id": payload_id, "asin": None, "at": fetched_at}
        if fetched_at is None:
            batch.reject(
                **common,
                table="raw_payloads",
                reason="missing_key",
                detail="raw row has no fetched_at: the day cut-offs cannot be applied",
                record=row["body"] or "",
            )
            continue
        if site not in SITE_TO_DOMAIN:
            batch.reject(
                **common,
                table="raw_payloads",
                reason="unknown_site",
                detail=f"site {site!r} has no Keepa domain",
                record=row["body"] or "",
            )
            continue
        # Reasons match the unified parser: unreadable text is malformed_json, readable JSON that is not
        # a product response is unexpected_shape (standardise counts both as unusable payloads).
        reason, error = None, None
        try:
            body = json.loads(row["body"]) if row["body"] is not None else None
        except ValueError as exc:  # JSONDecodeError is a ValueError
            body, reason, error = None, "malformed_json", f"body is not valid JSON: {exc}"
        if reason is None:
            if body is None:
                reason, error = "malformed_json", "empty body (null)"
            elif not isinstance(body, dict):
                reason, error = "unexpected_shape", "body is not a JSON object"
            elif not isinstance(body.get("products"), list):
                reason, error = "unexpected_shape", "body has no 'products' list"
        if reason is not None:
            batch.reject(
                **common,
                table="raw_payloads",
                reason=reason,
                detail=f"{PRODUCT_ENDPOINT}: {error}",
                record=row["body"] or "",
            )
            continue
        for product in body["products"]:
            batch.add_product(
                product,
                site,
                [day],
                payload_id=payload_id,
                fetched_at=fetched_at,
                listing_max_lag_days=listing_max_lag_days,
            )
    return batch.finish()


def parse_keepa(
    raw: pl.DataFrame, *, listing_max_lag_days: int | None = LISTING_MAX_LAG_DAYS
) -> ParsedPayloads:
    """RAW_PAYLOADS rows -> ParsedPayloads, for rows with source "keepa", endpoint "/product", status 200.

    Each row's ``date`` is its partition day: the parser emits that day only (see
    :func:`parse_keepa_product` for the mapping). Rows with another status or with ``error`` set are
    failed requests whose failure is already recorded in raw_payloads; they carry no product data and
    are skipped. A body that is not JSON is rejected as ``malformed_json``, valid JSON that is not an
    object with a ``products`` list as ``unexpected_shape`` (table ``raw_payloads``, the reasons the
    unified parser uses); record-level problems are rejected per product.
    """
    return parse_keepa_detailed(raw, listing_max_lag_days=listing_max_lag_days).parsed


# --------------------------------------------------------------------------------------------------------
# Token accounting
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStatus:
    """Keepa's token bucket as reported by a response (every response, a 429 included, carries it)."""

    tokens_left: int  # may be negative: Keepa lets a request overdraw the bucket
    refill_in_ms: int  # until the next refill
    refill_rate_per_min: int  # tokens added per minute
    timestamp_ms: int | None = None  # server time of the response


def parse_token_status(body: Mapping[str, Any]) -> TokenStatus:
    """Read ``tokensLeft`` / ``refillIn`` / ``refillRate`` / ``timestamp`` from a Keepa response body."""
    values: dict[str, int] = {}
    for key in ("tokensLeft", "refillIn", "refillRate"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Keepa response has no integer {key!r} (got {value!r})")
        values[key] = value
    timestamp = body.get("timestamp")
    return TokenStatus(
        tokens_left=values["tokensLeft"],
        refill_in_ms=values["refillIn"],
        refill_rate_per_min=values["refillRate"],
        timestamp_ms=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


def wait_seconds(status: TokenStatus, needed: int) -> float:
    """Seconds to wait before a request costing ``needed`` tokens can be sent.

    0 when ``tokens_left >= needed``; otherwise ``refillIn`` plus the deficit
    (``needed - tokens_left``, larger when the bucket is overdrawn) at ``refillRate`` per minute. This
    never undershoots whether Keepa refills continuously or once a minute (it overshoots by at most one
    refill period in the latter case), and a 429 costs more than the slack.
    """
    if needed <= status.tokens_left:
        return 0.0
    if status.refill_rate_per_min <= 0:
        raise ValueError("Keepa reports a refill rate of 0: the bucket will never refill (plan expired?)")
    deficit = needed - status.tokens_left
    return status.refill_in_ms / 1000 + deficit / status.refill_rate_per_min * 60
