"""Keepa ``/product`` products -> platform rows (pure): the field mapping of ``parse_keepa_product`` and
the batch entry points over ``raw_payloads`` rows (``parse_keepa``); the format is described in the
package docstring and ``docs/keepa.md``.

Every history of every product in a batch of payloads is stacked into one long frame and resolved
with a single ``join_asof`` (plus one group-by for the median rule), so parsing cost grows with the
number of points, not with Python calls per product and day. Values Keepa cannot have sent (floats,
booleans, magnitudes beyond its int range, dates after the fetch) are quarantined, never coerced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl

from asin_platform.core import ranges
from asin_platform.core.keepa.daily import (
    DaysArg,
    _as_days,
    _null_markers,
    _resolve_days,
    _split_history,
    _window,
)
from asin_platform.core.keepa.fields import (
    _CSV_SERIES,
    _MEDIAN_SERIES,
    _S_BSR_SUB,
    _S_MONTHLY_SOLD,
    _SERIES_NAMES,
    KeepaParseResult,
    _category_tree,
    _checked_date,
    _excerpt,
    _product_attrs,
    _sub_category,
)
from asin_platform.core.keepa.format import (
    KEEPA_EXTRAS_SCHEMA,
    LISTING_MAX_LAG_DAYS,
    PRODUCT_ENDPOINT,
    SHIPPING_SERIES,
    SITE_TO_DOMAIN,
    SOURCE,
    KeepaFormatError,
    currency_divisor,
    keepa_minutes_to_utc,
    utc_to_keepa_minutes,
)
from asin_platform.core.parsed import (
    KEYWORDS_SCHEMA,
    POINTS_SCHEMA,
    PRODUCTS_SCHEMA,
    REVIEWS_SCHEMA,
    UNIVERSE_SCHEMA,
    ParsedPayloads,
)
from asin_platform.schemas import LISTING_SCHEMA, QUARANTINE, UTC_TS


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
        """One product of a payload: checked, its days chosen, its histories windowed, its attributes
        kept (each step below); a product that fails a check is quarantined and adds nothing."""
        # filed under the payload's own day: the first of a range payload's days (where it is stored)
        reject_day = days[0] if days else None
        fetched_day = fetched_at.astimezone(UTC).date()
        common = {"site": site, "day": reject_day, "payload_id": payload_id, "at": fetched_at}
        checked = self._checked_product(product, site, common)
        if checked is None:
            return
        asin, series, sellers = checked
        k = len(self.keys)
        keepa_listed, tracking_since = (
            self._known_date(product, name, fetched_day, common, asin)
            for name in ("listedSince", "trackingSince")
        )
        emitted = self._add_targets(
            k, days, fetched_day, (keepa_listed, tracking_since), listing_max_lag_days
        )
        if not emitted:
            return
        tree = _category_tree(product)
        tree_ids = [cat_id for cat_id, _ in tree]
        sub_category = _sub_category(product, tree_ids)
        if sub_category is not None:
            series[_S_BSR_SUB] = self._sub_category_history(product, sub_category, common, asin)
        self._add_history(k, series, sellers, emitted)
        self.keys.append(
            {
                "k": k,
                "site": site,
                "asin": asin,
                "payload_id": payload_id,
                "fetched_at": fetched_at,
                "divisor": currency_divisor(SITE_TO_DOMAIN[site]),
            }
        )
        self.attrs.append(
            {"k": k, **_product_attrs(product, tree, sub_category, keepa_listed, tracking_since)}
        )

    def _checked_product(
        self, product: Any, site: str, common: dict[str, Any]
    ) -> tuple[str, dict[int, tuple[np.ndarray, np.ndarray]], list[tuple[int, str | None]]] | None:
        """(asin, series, buy box sellers) of a well-formed product of ``site``; else quarantined, None."""
        table = "mart_timeseries_daily"
        if not isinstance(product, Mapping):
            self.reject(
                **common,
                table=table,
                asin=None,
                reason="unexpected_shape",
                detail="product entry is not a JSON object",
                record=product,
            )
            return None
        asin = product.get("asin")
        if not isinstance(asin, str) or not asin.strip():
            self.reject(
                **common,
                table=table,
                asin=None,
                reason="missing_key",
                detail="product has no 'asin'",
                record=product,
            )
            return None
        domain = SITE_TO_DOMAIN[site]
        product_domain = product.get("domainId")
        if product_domain is not None and product_domain != domain:
            # A product from another marketplace would be read in the wrong currency: refuse it.
            self.reject(
                **common,
                table=table,
                asin=asin,
                reason="site_mismatch",
                detail=f"product domainId {product_domain} is not site {site}'s domain {domain}",
                record=product,
            )
            return None
        try:
            return asin, self._product_series(product), self._buybox_history(product)
        except KeepaFormatError as exc:
            self.reject(**common, table=table, asin=asin, reason=exc.reason, detail=str(exc), record=product)
            return None

    def _add_targets(
        self,
        k: int,
        days: list[date],
        fetched_day: date,
        known: tuple[date | None, date | None],
        listing_max_lag_days: int | None,
    ) -> list[date]:
        """The days product ``k`` is emitted for (added as targets, each marked whether its listing
        snapshot may be used); ``known``: Keepa's listedSince and trackingSince."""
        known_since = min((d for d in known if d is not None), default=None)
        # Days after the fetch have not happened for this payload; days before the product existed
        # (as far as Keepa knows) are not in its universe: selecting them would use the future.
        emitted = [d for d in days if d <= fetched_day and (known_since is None or d >= known_since)]
        oldest_snapshot = (
            None if listing_max_lag_days is None else fetched_day - timedelta(days=listing_max_lag_days)
        )
        for day in emitted:
            self.target_k.append(k)
            self.target_date.append(day)
            self.target_snapshot.append(oldest_snapshot is None or day >= oldest_snapshot)
        return emitted

    def _sub_category_history(
        self, product: Mapping[str, Any], sub_category: str, common: dict[str, Any], asin: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sub-category's BSR history; an unreadable one is quarantined and left empty."""
        # JSON object keys are strings; a dict built in Python may use int keys.
        raw = next(v for key, v in product["salesRanks"].items() if str(key) == sub_category)
        try:
            return _split_history(raw, triples=False)
        except KeepaFormatError as exc:
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=asin,
                reason=exc.reason,
                detail=f"salesRanks[{sub_category}]: {exc}; bsr_sub left null",
                record={"asin": asin, "salesRanks": {sub_category: raw}},
            )
            return _split_history(None, triples=False)

    def _add_history(
        self,
        k: int,
        series: dict[int, tuple[np.ndarray, np.ndarray]],
        sellers: list[tuple[int, str | None]],
        emitted: list[date],
    ) -> None:
        """Product ``k``'s history changes that can matter for the emitted days, and its buy box sellers."""
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

    def _known_date(
        self, product: Mapping[str, Any], name: str, fetched_day: date, common: dict[str, Any], asin: str
    ) -> date | None:
        """A Keepa date field, or None when unknown or implausible (quarantined, never written)."""
        value, problem = _checked_date(product.get(name), name, fetched_day)
        if problem:
            self.reject(
                **common,
                table="mart_timeseries_daily",
                asin=asin,
                reason="implausible_value",
                detail=f"{problem}; left null",
                record={"asin": asin, name: product.get(name)},
            )
        return value

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
                raise type(exc)(f"csv[{int(index)}] ({index.name}): {exc}") from exc
        try:
            out[_S_MONTHLY_SOLD] = _split_history(product.get("monthlySoldHistory"), triples=False)
        except KeepaFormatError as exc:
            raise type(exc)(f"monthlySoldHistory: {exc}") from exc
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
                **LISTING_SCHEMA,
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
    rows = ranges.with_coverage(
        raw.filter(
            (pl.col("source") == SOURCE)
            & (pl.col("endpoint") == PRODUCT_ENDPOINT)
            & (pl.col("status") == 200)
            & pl.col("error").is_null()
        )
    ).with_columns(_days=pl.date_ranges("cover_start", "cover_end"))
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
                row["_days"],
                payload_id=payload_id,
                fetched_at=fetched_at,
                listing_max_lag_days=listing_max_lag_days,
            )
    return batch.finish()


def parse_keepa(
    raw: pl.DataFrame, *, listing_max_lag_days: int | None = LISTING_MAX_LAG_DAYS
) -> ParsedPayloads:
    """RAW_PAYLOADS rows -> ParsedPayloads, for rows with source "keepa", endpoint "/product", status 200.

    Each row's ``date`` is its partition day: the parser emits that day only, or every day of a range
    payload's ``covers`` (``core/ranges.py``; the mart clips them to the slice it builds) (see
    :func:`parse_keepa_product` for the mapping). Rows with another status or with ``error`` set are
    failed requests whose failure is already recorded in raw_payloads; they carry no product data and
    are skipped. A body that is not JSON is rejected as ``malformed_json``, valid JSON that is not an
    object with a ``products`` list as ``unexpected_shape`` (table ``raw_payloads``, the reasons the
    unified parser uses); record-level problems are rejected per product.
    """
    return parse_keepa_detailed(raw, listing_max_lag_days=listing_max_lag_days).parsed
