"""Keepa mode of the simulator: the same ``Market`` answering Keepa's ``GET /product`` and ``GET /token``.

The unified API serves one value per (site, asin, day). Keepa serves the same market as **change logs**
(``docs/keepa.md``): flat ``[keepa_minute, value, ...]`` arrays in ``csv[i]`` where a point holds until
the next one and ``-1`` opens a gap. This module re-encodes the market's daily values so that the
platform's Keepa parser (``core/keepa.py``) recovers exactly the unified API's values for every
(site, asin, day) it emits:

- "last"-rule series (price, rating, review count, offer count, monthly sold, buy-box seller): one
  point on each day the daily value changed, at a seeded minute between 00:00 and 20:00 UTC, so the
  value in force at the end of the day is the day's value. The first point of a window is the last
  change at or before the window start, with its original (older) time, as Keepa does with ``days``.
- Sales ranks (``csv[3]`` and ``salesRanks``, "median" rule): three samples a day (about 02:00,
  10:00, 18:00) whose median is the day's rank (one above, one below, in a seeded order), like
  Keepa's several rank samples a day. An unranked day is one ``-1`` point.
- Prices in the smallest currency unit (cents; whole yen on JP), rating in tenths of a star,
  ``listedSince`` / ``trackingSince`` in Keepa minutes, a category tree of numeric browse-node ids.

What a response is "as of" (Keepa answers with *its* current state): the real UTC clock, or the
instant in the request header ``X-Simulated-Now`` (ISO 8601; a simulator-only extension the simulated
client sends, so a test or a demo can fetch a past day "the way it looked then"). Points after that
instant are not served; the response ``timestamp`` is that instant.

Tokens, per access key (``KeepaPlan``): a bucket refilled with ``refill_rate`` tokens once a minute, up
to an hour's worth (Keepa lets unused tokens expire after 60 minutes). A request is admitted when the
bucket holds more than 0 tokens (else HTTP 429 with the token status), and then charged in full even
if that overdraws the bucket (``tokensLeft`` goes negative). Cost per product returned: 1, plus 1
with ``rating=1`` on about one product-day in 14 (Keepa charges the extra token only when it refreshes
the rating; the client budgets the worst case), plus 2 with ``buybox=1``. ``stats``, ``history``,
``days``, ``aplus`` and ``videos`` are free. ASINs the market does not know, or that are not listed yet
at the response instant, are left out of ``products`` and cost nothing. ``/token`` is free.

Errors: an unknown key is HTTP 402 (Keepa's "payment required": no valid plan for that key), bad
parameters are 400, both with ``{"error": {"type", "message"}}`` plus the token fields when the key is
known. Request-level faults of ``FaultConfig`` apply (5xx, latency, timeout, malformed body), drawn
like the unified routes' but from the Keepa routes' own request counter. Not simulated (400 if sent):
``offers``, ``stock``, ``update``, ``only-live-offers``, ``code``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time as _time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asin_platform.core.keepa import (
    DOMAIN_TO_SITE,
    SITE_TO_DOMAIN,
    CsvIndex,
    currency_divisor,
    utc_to_keepa_minutes,
)
from asin_platform.simulator.catalog import CATEGORIES, RESELLERS, SITE_IDS
from asin_platform.simulator.market import Market, _Site
from asin_platform.simulator.server import FaultConfig, SimulatorStats, _uniform

SIMULATED_NOW_HEADER = "X-Simulated-Now"
MAX_ASINS = 100
CSV_LENGTH = max(CsvIndex) + 1
# Parameters of Keepa's product request that the simulator does not model: refusing them beats
# silently answering without the data they would have added.
UNSUPPORTED_PARAMS = ("offers", "stock", "update", "only-live-offers", "code")
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

_MASK64 = (1 << 64) - 1
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


# ---------------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class KeepaPlan:
    """A Keepa access key's plan: ``refill_rate`` tokens a minute, an hour's worth at most."""

    refill_rate: int = 20
    initial_tokens: int | None = None  # None: a full bucket

    @property
    def capacity(self) -> int:
        return self.refill_rate * 60


DEFAULT_KEEPA_KEYS: dict[str, KeepaPlan] = {"demo-keepa-key": KeepaPlan(refill_rate=5000)}


class KeepaBucket:
    """Keepa's token bucket for one key: refills once a minute, may be overdrawn by a request."""

    def __init__(self, plan: KeepaPlan, clock: Callable[[], float]) -> None:
        if plan.refill_rate < 1:
            raise ValueError("refill_rate must be >= 1")
        self.plan = plan
        self.clock = clock
        self.tokens = plan.capacity if plan.initial_tokens is None else plan.initial_tokens
        self.next_refill = clock() + 60.0
        self.lock = threading.Lock()

    def _advance(self, now: float) -> None:
        # Caller holds the lock. Whole minutes since the last refill, each adding refill_rate tokens;
        # an overdrawn bucket climbs back, a bucket at or above capacity stays (tokens expire).
        if now >= self.next_refill:
            ticks = 1 + int((now - self.next_refill) // 60.0)
            if self.tokens < self.plan.capacity:
                self.tokens = min(self.plan.capacity, self.tokens + ticks * self.plan.refill_rate)
            self.next_refill += ticks * 60.0

    def _status(self, now: float) -> dict[str, Any]:
        return {
            "tokensLeft": int(self.tokens),
            "refillIn": max(0, int(math.ceil((self.next_refill - now) * 1000))),
            "refillRate": self.plan.refill_rate,
            "tokenFlowReduction": 0.0,
        }

    def status(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self._advance(now)
            return self._status(now)

    def admit(self) -> tuple[bool, dict[str, Any]]:
        """(admitted, status): Keepa runs a request whenever the balance is positive."""
        with self.lock:
            now = self.clock()
            self._advance(now)
            return self.tokens > 0, self._status(now)

    def charge(self, tokens: int) -> dict[str, Any]:
        """Take ``tokens`` (the balance may go negative) and return the status after it."""
        with self.lock:
            now = self.clock()
            self._advance(now)
            self.tokens -= tokens
            return self._status(now)

    def set_tokens(self, tokens: int) -> None:
        """Tests: the balance another consumer of the same key left behind (may be negative)."""
        with self.lock:
            self._advance(self.clock())
            self.tokens = tokens


class KeepaServerState:
    """Keepa-mode state of one app (``app.state.keepa``): buckets by key and counters."""

    def __init__(self, keys: dict[str, KeepaPlan], clock: Callable[[], float]) -> None:
        self.buckets = {key: KeepaBucket(plan, clock) for key, plan in keys.items()}
        self.lock = threading.Lock()
        self.requests = 0  # fault-eligible /product requests (the fault draw counter)
        self.tokens_consumed = 0
        self.products_served = 0

    def bucket(self, key: str) -> KeepaBucket:
        return self.buckets[key]

    def next_request(self) -> int:
        with self.lock:
            n = self.requests
            self.requests += 1
            return n

    def served(self, products: int, tokens: int) -> None:
        with self.lock:
            self.products_served += products
            self.tokens_consumed += tokens


def key_label(key: str) -> str:
    """How a key appears in stats: a short hash, never the key."""
    return "keepa:" + hashlib.sha256(key.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------ encoding
def _unit(*keys: Any) -> np.ndarray:
    """Uniforms in [0, 1) from broadcastable integer keys (splitmix64 chain): seeded, order-free."""
    arrays = np.broadcast_arrays(*[np.asarray(k).astype(np.int64).astype(np.uint64) for k in keys])
    h = np.zeros(arrays[0].shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            x = h ^ a
            x = x + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = x ^ (x >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


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
        self.data: _Site = market._site(site)
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


# -------------------------------------------------------------------------------------------- routes
class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _int_param(
    request: Request, name: str, default: int | None, lo: int, hi: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"parameter '{name}' must be an integer, got '{raw[:40]}'") from None
    if value < lo or (hi is not None and value > hi):
        raise _BadRequest(f"parameter '{name}' out of range: {value}")
    return value


def _now(request: Request, data_clock: Callable[[], datetime]) -> datetime:
    raw = request.headers.get(SIMULATED_NOW_HEADER)
    if not raw:
        return data_clock()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _BadRequest(f"bad {SIMULATED_NOW_HEADER} '{raw[:40]}': expected an ISO 8601 instant") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def keepa_routes(
    market: Market,
    keys: dict[str, KeepaPlan],
    *,
    stats: SimulatorStats,
    faults: FaultConfig,
    clock: Callable[[], float],
    data_clock: Callable[[], datetime] | None = None,
) -> tuple[list[Route], KeepaServerState]:
    """The ``/product`` and ``/token`` routes over ``market`` and their state (``app.state.keepa``).

    ``clock`` drives the token buckets (a fake one in tests); ``data_clock`` is the instant responses
    are as of when the request has no ``X-Simulated-Now`` header (default: the real UTC time).
    """
    state = KeepaServerState(keys, clock)
    data_clock = data_clock or (lambda: datetime.now(UTC))

    def respond(status: int, body: dict[str, Any] | bytes) -> Response:
        stats.record_status(status)
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        return Response(payload, status_code=status, media_type="application/json")

    def error(status: int, kind: str, message: str, tokens: dict[str, Any] | None = None) -> Response:
        body: dict[str, Any] = dict(tokens or {})
        body["error"] = {"type": kind, "message": message}
        return respond(status, body)

    def stamp(body: dict[str, Any], now: datetime, started: float) -> dict[str, Any]:
        body["timestamp"] = int(now.timestamp() * 1000)
        body["processingTimeInMs"] = int((_time.perf_counter() - started) * 1000)
        return body

    async def token(request: Request) -> Response:
        started = _time.perf_counter()
        key = request.query_params.get("key", "")
        if key not in state.buckets:
            return error(402, "invalidKey", "unknown access key or no valid plan")
        try:
            now = _now(request, data_clock)
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message)
        return respond(200, stamp({**state.bucket(key).status(), "tokensConsumed": 0}, now, started))

    async def product(request: Request) -> Response:
        started = _time.perf_counter()
        key = request.query_params.get("key", "")
        bucket = state.buckets.get(key)
        if bucket is None:
            return error(402, "invalidKey", "unknown access key or no valid plan")
        admitted, status = bucket.admit()
        try:
            now = _now(request, data_clock)
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message, status)
        if not admitted:
            return respond(429, stamp({**status, "tokensConsumed": 0}, now, started))
        stats.record_accept(key_label(key), clock())

        n = state.next_request()

        def draw(kind: str) -> float:
            # Salted apart from the unified routes' draws (+1000), which count their own requests.
            return _uniform(
                faults.seed, n, 1000 + ["error_5xx", "latency", "timeout", "malformed"].index(kind)
            )

        if faults.active:
            if faults.latency_ms > 0:
                stats.record_fault("latency")
                await asyncio.sleep(faults.latency_ms / 1000.0 * (0.5 + draw("latency")))
            if draw("timeout") < faults.timeout_rate:
                stats.record_fault("timeout")
                await asyncio.sleep(faults.timeout_seconds)
            if draw("error_5xx") < faults.error_5xx_rate:
                stats.record_fault("error_5xx")
                return error(500, "internal", "injected upstream failure", status)

        try:
            unsupported = [p for p in UNSUPPORTED_PARAMS if p in request.query_params]
            if unsupported:
                raise _BadRequest(f"parameter(s) {unsupported} are not simulated")
            domain = _int_param(request, "domain", None, 1)
            site = DOMAIN_TO_SITE.get(domain or 0)
            if site is None or not market.has_site(site):
                raise _BadRequest(f"domain {domain} is not served by this simulator")
            asins = [a.strip() for a in request.query_params.get("asin", "").split(",") if a.strip()]
            if not asins:
                raise _BadRequest("missing parameter 'asin' (comma-separated ASINs)")
            if len(asins) > MAX_ASINS:
                raise _BadRequest(f"too many ASINs: {len(asins)} > {MAX_ASINS} per request")
            params = {
                "history": bool(_int_param(request, "history", 1, 0, 1)),
                "days": _int_param(request, "days", None, 1),
                "stats": _int_param(request, "stats", None, 0),
                "rating": bool(_int_param(request, "rating", 0, 0, 1)),
                "aplus": bool(_int_param(request, "aplus", 0, 0, 1)),
                "videos": bool(_int_param(request, "videos", 0, 0, 1)),
                "buybox": bool(_int_param(request, "buybox", 0, 0, 1)),
            }
        except _BadRequest as exc:
            return error(400, "badRequest", exc.message, status)

        def build() -> tuple[list[dict[str, Any]], int]:
            return keepa_products(market, site, asins, now, **params)

        # First touch of a site generates it (~1 s): off the event loop, as the unified routes do.
        products, cost = build() if market.is_ready(site) else await run_in_threadpool(build)
        status = bucket.charge(cost)
        state.served(len(products), cost)
        body = stamp({**status, "tokensConsumed": cost, "products": products}, now, started)
        payload = json.dumps(body, separators=(",", ":")).encode()
        if faults.active and draw("malformed") < faults.malformed_rate:
            stats.record_fault("malformed")  # charged, then cut: the tokens are gone, like a real drop
            payload = payload[: max(1, int(len(payload) * (0.2 + 0.6 * _uniform(faults.seed, n, 1105))))]
        return respond(200, payload)

    routes = [Route("/product", product, methods=["GET"]), Route("/token", token, methods=["GET"])]
    return routes, state
