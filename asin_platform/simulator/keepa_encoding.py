"""Keepa product objects over the market: the encoding half of the simulator's Keepa mode.

How daily values become Keepa change logs ("last"-rule series, three rank samples a day, currency
units, category nodes) is described in ``keepa.py``'s docstring; this module builds the objects
(``keepa_products``), ``keepa.py`` serves them with Keepa's tokens and errors.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np

from asin_platform.core.keepa import SITE_TO_DOMAIN, CsvIndex, currency_divisor, utc_to_keepa_minutes
from asin_platform.simulator.catalog import CATEGORIES, RESELLERS, SITE_IDS
from asin_platform.simulator.market import Market
from asin_platform.simulator.numerics import hash_uniform as _unit
from asin_platform.simulator.state import SiteState

CSV_LENGTH = max(CsvIndex) + 1
# Rank samples per day and their base minute of the day (jittered by up to 59 minutes).
RANK_SAMPLE_MINUTES = (120, 600, 1080)
# "Last"-rule changes happen at a seeded minute in [0, 20:00): always before a day-end fetch.
CHANGE_WINDOW_MINUTES = 20 * 60
RATING_REFRESH_EVERY_DAYS = 14

# Amazon's own seller id on the marketplaces where it is well known; elsewhere a synthetic one.
AMAZON_SELLER_IDS: dict[str, str] = {
    "US": "ATVPDKIKX0DER",
    "UK": "A3P5ROKL5A1OLE",
    "DE": "A3JWKAKR8XB7XF",
    "FR": "A1X6FK5RDHNB96",
    "JP": "AN1VRQENFRJN5",
    "CA": "A3DWYIK6Y9EEQB",
    "IT": "A11IL2PNWYJU7H",
    "ES": "A1AT7YVPFBWXBL",
}

_PERMUTATIONS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
# Salts of the seeded draws, one per use, so adding one never shifts another.
_U_CHANGE, _U_RANK_JITTER, _U_RANK_SPREAD, _U_RANK_ORDER, _U_RATING_COST, _U_TRACKING = range(1, 7)


# ------------------------------------------------------------------------------------------ categories
def _node_id(*parts: str) -> int:
    """A stable synthetic browse-node id (Keepa category ids are integers; the catalogue's are names)."""
    return 100_000 + zlib.crc32("/".join(parts).encode()) % 900_000_000


def category_node_id(category_id: str) -> int:
    """Keepa ``catId`` of a catalogue root category (``categoryTree[0]``, ``rootCategory``)."""
    return _node_id(category_id)


def subcategory_node_id(subcategory_id: str) -> int:
    """Keepa ``catId`` of a catalogue sub-category (the deepest ``categoryTree`` node)."""
    return _node_id("sub", subcategory_id)


def _category_tree(cat: int, sub: int) -> list[dict[str, Any]]:
    """Root node, the sub-category's path nodes, the leaf: names joined give the unified category_path."""
    c = CATEGORIES[cat]
    s = c.subcategories[sub]
    tree = [{"catId": category_node_id(c.id), "name": c.name}]
    for depth, name in enumerate(s.path):
        last = depth == len(s.path) - 1
        node = subcategory_node_id(s.id) if last else _node_id("path", c.id, *s.path[: depth + 1])
        tree.append({"catId": node, "name": name})
    return tree


# ------------------------------------------------------------------------------------------ encoding
@dataclass(frozen=True)
class _Window:
    """Days (indices into the market's horizon) one product's histories cover."""

    start: int  # first day with data: the listing day, or the market epoch for older products
    lo: int  # first day of the requested ``days`` window (== start without ``days``)
    hi: int  # the response instant's day, clipped to the horizon
    now_minute: int  # points after this Keepa minute are not served


class _Encoder:
    """Builds Keepa product objects for one (site, response instant)."""

    def __init__(self, market: Market, site: str, now: datetime) -> None:
        self.market = market
        self.site = site
        self.domain = SITE_TO_DOMAIN[site]
        self.data: SiteState = market._site(site)
        self.seed = market.config.seed
        self.site_id = SITE_IDS.index(site)
        epoch = market.config.epoch
        self.epoch_minute = utc_to_keepa_minutes(datetime.combine(epoch, time(), UTC))
        self.now = now
        self.now_minute = utc_to_keepa_minutes(now)
        self.now_day = (now.date() - epoch).days

    def day_minute(self, days: np.ndarray | int) -> np.ndarray:
        return self.epoch_minute + np.asarray(days, dtype=np.int64) * 1440

    # -- series ------------------------------------------------------------------------------------
    def _flat(self, times: np.ndarray, values: np.ndarray, now_minute: int) -> list[int]:
        keep = times <= now_minute
        return np.column_stack((times[keep], values[keep])).ravel().tolist()

    def changes(
        self, i: int, series: int, row: np.ndarray, w: _Window, *, drop: int | None = None
    ) -> list[int]:
        """A "last"-rule history: the change in force at the window start, then every change.

        ``drop``: a value that is "no data yet" rather than a value (rating 0 before any review):
        its points are left out, so days before the first real value are null.
        """
        head = row[w.start : w.lo + 1]
        moved = np.flatnonzero(head[1:] != head[:-1])
        first = w.start + (int(moved[-1]) + 1 if moved.size else 0)
        tail = row[w.lo : w.hi + 1]
        days = np.concatenate(([first], w.lo + 1 + np.flatnonzero(tail[1:] != tail[:-1]))).astype(np.int64)
        offsets = (_unit(self.seed, self.site_id, i, series, days, _U_CHANGE) * CHANGE_WINDOW_MINUTES).astype(
            np.int64
        )
        values = row[days].astype(np.int64)
        times = self.day_minute(days) + offsets
        if drop is not None:
            keep = values != drop
            times, values = times[keep], values[keep]
        return self._flat(times, values, w.now_minute)

    def ranks(self, i: int, series: int, row: np.ndarray, w: _Window) -> list[int]:
        """A "median"-rule history: three samples a day around the day's rank; -1 when unranked."""
        first = max(w.start, w.lo - 1)  # the day before the window carries into it
        days = np.arange(first, w.hi + 1, dtype=np.int64)
        v = row[days].astype(np.int64)
        ranked = v > 0
        spread = 0.03 + 0.12 * _unit(self.seed, self.site_id, i, series, days, _U_RANK_SPREAD)
        above = np.maximum(v + 1, np.round(v * (1 + spread)).astype(np.int64))
        below = np.maximum(1, np.minimum(v - 1, np.round(v * (1 - spread)).astype(np.int64)))
        order = (_unit(self.seed, self.site_id, i, series, days, _U_RANK_ORDER) * 6).astype(np.int64)
        samples = np.take_along_axis(np.stack([above, v, below], axis=1), _PERMUTATIONS[order], axis=1)
        jitter = (
            _unit(self.seed, self.site_id, i, series, days[:, None], np.arange(3)[None, :], _U_RANK_JITTER)
            * 60
        ).astype(np.int64)
        times = self.day_minute(days)[:, None] + np.asarray(RANK_SAMPLE_MINUTES)[None, :] + jitter
        keep = np.repeat(ranked[:, None], 3, axis=1)
        # An unranked day is one -1 at its first sample time, written only when the rank was lost
        # that day (Keepa logs changes; repeating the marker would add nothing).
        was_ranked = np.concatenate(([True], ranked[:-1]))
        lost = ~ranked & was_ranked
        keep[:, 0] |= lost
        samples[:, 0] = np.where(ranked, samples[:, 0], -1)
        return self._flat(times[keep], samples[keep], w.now_minute)

    # -- products ---------------------------------------------------------------------------------
    def window(self, i: int, days: int | None) -> _Window | None:
        data = self.data
        listed = int(data.listed[i])
        if self.now_day < 0 or listed > self.now_day:
            return None  # not listed yet at the response instant: Keepa has nothing on it
        start = max(listed, 0)
        hi = min(self.now_day, data.horizon - 1)
        lo = start if days is None else min(hi, max(start, self.now_day - days))
        return _Window(start=start, lo=lo, hi=hi, now_minute=self.now_minute)

    def seller_id(self, i: int, code: int) -> str:
        if code < 0:
            return "-1"
        if code == 1 and self.site in AMAZON_SELLER_IDS:
            return AMAZON_SELLER_IDS[self.site]
        name = (
            f"{self.data.brands[i]} Direct" if code == 0 else ("Amazon" if code == 1 else RESELLERS[code - 2])
        )
        digest = hashlib.sha256(f"{self.site}|{name}".encode()).hexdigest().upper()
        return "A" + digest[:13]

    def monthly_sold(self, i: int, w: _Window) -> np.ndarray:
        """Amazon's "bought in past month" badge per day: a floor of the trailing 30 days' units
        (50, 100, 200, ..., 1000, 2000, ...); -1 below 50 (no badge shown)."""
        units = self.data.units[i, : w.hi + 1].astype(np.int64)
        cum = np.cumsum(units)
        trailing = cum - np.concatenate((np.zeros(30, dtype=np.int64), cum[:-30]))[: cum.size]
        magnitude = 10 ** np.floor(np.log10(np.maximum(trailing, 1))).astype(np.int64)
        badge = np.where(trailing < 100, 50, trailing // magnitude * magnitude)
        return np.where(trailing < 50, -1, badge)

    def product(
        self,
        i: int,
        w: _Window,
        listing: dict[str, Any],
        title: str,
        *,
        history: bool,
        stats: int | None,
        rating: bool,
        aplus: bool,
        videos: bool,
        buybox: bool,
    ) -> dict[str, Any]:
        data = self.data
        asin = str(data.asins[i])
        cat, sub = int(data.cat[i]), int(data.sub[i])
        c = CATEGORIES[cat]
        root_node = category_node_id(c.id)
        leaf_node = subcategory_node_id(c.subcategories[sub].id)
        div = currency_divisor(self.domain)
        price_c = data.price_c[i].astype(np.int64)
        new = np.where(price_c >= 0, price_c * div // 100, -1)
        amazon = np.where((data.buybox[i] == 1) & (price_c >= 0), new, -1)
        monthly = self.monthly_sold(i, w)

        csv: list[list[int] | None] | None = None
        sales_ranks: dict[str, list[int]] | None = None
        monthly_history: list[int] | None = None
        if history:
            csv = [None] * CSV_LENGTH
            csv[CsvIndex.AMAZON] = self.changes(i, CsvIndex.AMAZON, amazon, w)
            csv[CsvIndex.NEW] = self.changes(i, CsvIndex.NEW, new, w)
            csv[CsvIndex.SALES] = self.ranks(i, CsvIndex.SALES, data.bsr_root[i], w)
            csv[CsvIndex.COUNT_NEW] = self.changes(i, CsvIndex.COUNT_NEW, data.offers[i], w)
            if rating:  # Keepa sends the rating and review-count histories only with rating=1
                csv[CsvIndex.RATING] = self.changes(i, CsvIndex.RATING, data.rating10[i], w, drop=0) or None
                csv[CsvIndex.COUNT_REVIEWS] = self.changes(i, CsvIndex.COUNT_REVIEWS, data.review_count[i], w)
            sales_ranks = {
                str(root_node): csv[CsvIndex.SALES],
                str(leaf_node): self.ranks(i, 100, data.bsr_sub[i], w),
            }
            monthly_history = self.changes(i, 101, monthly, w, drop=-1) or None

        images = [{"l": f"{asin}-{k}L.jpg", "m": f"{asin}-{k}M.jpg"} for k in range(int(listing["images"]))]
        phrases = c.title_phrases
        listed_minute = int(self.day_minute(int(data.listed[i])))
        tracking_offset = int(_unit(self.seed, self.site_id, i, _U_TRACKING)[()] * 600)
        product: dict[str, Any] = {
            "asin": asin,
            "domainId": self.domain,
            "productType": 0,
            "parentAsin": None,
            "title": title,
            "brand": data.brands[i],
            "manufacturer": data.brands[i],
            "rootCategory": root_node,
            "categories": [leaf_node],
            "categoryTree": _category_tree(cat, sub),
            "features": [f"{phrases[(i + k) % len(phrases)]}" for k in range(int(listing["bullets"]))],
            "imagesCSV": ",".join(img["l"] for img in images),
            "images": images,
            "listedSince": listed_minute,
            # Keepa's tracking starts with its first data: the listing day, or the market's first day.
            "trackingSince": int(self.day_minute(w.start)) + tracking_offset,
            "lastUpdate": self.now_minute,
            "salesRankReference": root_node,
            "salesRanks": sales_ranks,
            "csv": csv,
            "monthlySoldHistory": monthly_history,
        }
        if monthly[w.hi] > 0:
            product["monthlySold"] = int(monthly[w.hi])
        if listing["brand_story"]:
            product["brandStoreName"] = data.brands[i]
            product["brandStoreUrl"] = f"/stores/{data.brands[i]}/page/{asin}"
        if aplus and listing["aplus"]:
            product["aPlus"] = [
                {"module": [{"text": [f"Why {data.brands[i]}?"], "image": [f"{asin}-ap.jpg"]}]}
            ]
        if videos and listing["video"]:
            product["videos"] = [{"title": title[:60], "image": f"{asin}-v.jpg", "duration": 30}]
        if buybox and history:
            sellers = data.buybox[i].astype(np.int64)
            pairs = self.changes(i, 102, sellers, w)
            product["buyBoxSellerIdHistory"] = [
                str(v) if k % 2 == 0 else self.seller_id(i, int(v)) for k, v in enumerate(pairs)
            ]
        if stats is not None:
            hi = w.hi
            current = [-1] * CSV_LENGTH
            current[CsvIndex.AMAZON] = int(amazon[hi])
            current[CsvIndex.NEW] = int(new[hi])
            current[CsvIndex.SALES] = int(data.bsr_root[i, hi]) or -1
            current[CsvIndex.COUNT_NEW] = int(data.offers[i, hi])
            current[CsvIndex.RATING] = int(data.rating10[i, hi]) or -1
            current[CsvIndex.COUNT_REVIEWS] = int(data.review_count[i, hi])
            product["stats"] = {"current": current, "buyBoxIsPrimeEligible": bool(data.prime[i])}
        return product

    def products(
        self,
        asins: list[str],
        *,
        history: bool = True,
        days: int | None = None,
        stats: int | None = None,
        rating: bool = True,
        aplus: bool = False,
        videos: bool = False,
        buybox: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """(products in request order, tokens they cost)."""
        data = self.data
        rows: list[tuple[int, _Window]] = []
        seen: set[str] = set()
        for asin in asins:
            k = data.index.get(asin)
            if k is None or asin in seen:
                continue
            seen.add(asin)
            w = self.window(k, days)
            if w is not None:
                rows.append((k, w))
        if not rows:
            return [], 0
        idx = np.asarray([k for k, _ in rows], dtype=np.int64)
        listing_day = min(max(self.now_day, 0), data.horizon - 1)
        listing = self.market._listing(data, idx, listing_day)
        titles = self.market._titles(data, idx, listing["title_target"])
        out: list[dict[str, Any]] = []
        cost = 0
        for row, (k, w) in enumerate(rows):
            attrs = {name: values[row] for name, values in listing.items()}
            product = self.product(
                k, w, attrs, titles[row], history=history, stats=stats, rating=rating, aplus=aplus,
                videos=videos, buybox=buybox,
            )  # fmt: skip
            out.append(product)
            cost += 1 + 2 * buybox
            if (
                rating
                and _unit(self.seed, self.site_id, k, w.hi, _U_RATING_COST)[()]
                < 1 / RATING_REFRESH_EVERY_DAYS
            ):
                cost += 1
        return out, cost


def keepa_products(
    market: Market,
    site: str,
    asins: list[str],
    now: datetime,
    **params: Any,
) -> tuple[list[dict[str, Any]], int]:
    """Keepa product objects for ``asins`` of ``site`` as of ``now`` and their token cost (no HTTP).

    ``params``: ``history`` (default True), ``days``, ``stats``, ``rating`` (default True), ``aplus``,
    ``videos``, ``buybox``, as in the request.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return _Encoder(market, site, now.astimezone(UTC)).products(asins, **params)


def day_end(day: date) -> datetime:
    """The last minute of a UTC day: a response as of then describes that day completely."""
    return datetime.combine(day, time(23, 59), UTC)
