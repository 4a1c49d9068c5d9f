"""A deterministic synthetic Amazon market: a pure function of (seed, site, asin, date).

How a site is generated (all numpy, one pass per site, cached):

1. **Products** (static): category / sub-category, brand, listed_since (~70% before the epoch, the rest
   launch over the horizon), base demand drawn as a *base root BSR* (log-normal around 40k) turned into
   units/day through the category power law, price level, listing attributes, keyword slots.
2. **Demand level** (``demand_level``, units/day before seasonality and price):
   ``base * AR(1) drift * launch curve * listing-improvement effects * precursor traction * breakout``.
3. **Expected sales** (``latent_demand``): level x weekly x yearly (+ Prime Day / Black Friday) seasonality
   x price elasticity, zero on no-offer days; **units sold** = Poisson(expected x log-normal noise).
4. **BSR**: the rank reflects a smoothed sales velocity (EWMA of units blended with expected sales); the
   root rank is the category's inverse power law of that velocity with log-noise,
   ``bsr_root = (A / velocity) ** (1 / b) * exp(0.1 * z)`` clipped to [1, category size]; ``bsr_sub`` is
   the root rank times the sub-category share. New launches are unranked until their first sale.
5. **Reviews** arrive at 1-2% of units (binomial) plus, in a precursor window, an early-review burst;
   each review has stars drawn around the product's mean rating (3.5-4.8). ``rating`` is the running mean
   (including the reviews before the epoch), rounded to 0.1; ``review_count`` is cumulative.
6. **Breakouts** (~4% of ASINs, onsets stratified over the horizon): demand grows 10x-1000x over 2-8
   weeks (logistic ramp, a third of them in two stages), some decay slowly afterwards, and competing
   sellers pile in. In the 1-3 weeks before the onset each breakout shows some of: early traction, a
   review burst, a price cut, a listing improvement, keyword rank gains; how many depends on a hidden
   "precursor strength" (strong / medium / weak). **Decoys** (~5% of ASINs) show the same precursors
   and no breakout.

Per-cell randomness comes from ``np.random.default_rng([seed, site_id, stream])`` over whole
(n_asins x horizon_days) matrices, so a value never depends on which ASINs or dates a caller asks
for. The keyword noise is a counter-based hash of (seed, site, asin, slot, day) for the same reason.
The hidden truth (``ground_truth``) is for the project's evaluation code and is never served over HTTP.

Layout: ``state.py`` (``MarketConfig``, the per-site ``SiteState``), ``generate.py`` (``build_site`` and
the static stages: products, listing, breakouts, precursors, keywords), ``dynamics.py`` (the daily
stages: demand level, prices, sales and ranks, reviews, sellers), ``numerics.py`` (seeded hashing and
array helpers); this module holds ``Market``, the contract-shaped accessors over the generated state.
"""

from __future__ import annotations

import math
import threading
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from asin_platform.simulator.catalog import ADJECTIVES, CATEGORIES, RESELLERS, SITE_IDS, SITE_SCALE
from asin_platform.simulator.dynamics import MAX_REVIEWS_PER_DAY
from asin_platform.simulator.generate import build_site
from asin_platform.simulator.numerics import MASK64, base36, hash_normal, hash_uniform, mix64
from asin_platform.simulator.state import N_KEYWORD_SLOTS, MarketConfig, SiteState

KEYWORD_MAX_RANK = 100  # organic positions beyond this are "not ranked" (absent from the response)

__all__ = [
    "GROUND_TRUTH_SCHEMA",
    "KEYWORD_MAX_RANK",
    "MAX_REVIEWS_PER_DAY",
    "N_KEYWORD_SLOTS",
    "TIMESERIES_FRAME_SCHEMA",
    "Market",
    "MarketConfig",
    "UnknownSiteError",
]


class UnknownSiteError(KeyError):
    """The site is not simulated by this market."""


# ----------------------------------------------------------------------------------------------
# Public market
# ----------------------------------------------------------------------------------------------


class Market:
    """The synthetic market: lazy, thread-safe per-site generation and contract-shaped accessors.

    Methods taking ``asins`` keep the caller's order (duplicates collapsed) and report ASINs the site
    does not know in ``not_found``. Products and keywords also treat an ASIN as not found on a day before
    its ``listed_since`` (it does not exist yet); a timeseries of such an ASIN is simply empty.
    Days outside ``[epoch, epoch + horizon_days)`` have no data: empty results, never an error.
    """

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config or MarketConfig()
        self._sites: dict[str, SiteState] = {}
        self._locks = {s: threading.Lock() for s in self.config.sites}

    # -- basics ---------------------------------------------------------------------------------

    @property
    def sites(self) -> tuple[str, ...]:
        return self.config.sites

    @property
    def first_day(self) -> date:
        return self.config.epoch

    @property
    def last_day(self) -> date:
        return self.config.epoch + timedelta(days=self.config.horizon_days - 1)

    def has_site(self, site: str) -> bool:
        return site in self._locks

    def _site(self, site: str) -> SiteState:
        data = self._sites.get(site)
        if data is not None:
            return data
        lock = self._locks.get(site)
        if lock is None:
            raise UnknownSiteError(site)
        with lock:  # one generation per site even under concurrent first requests
            data = self._sites.get(site)
            if data is None:
                data = build_site(self.config, site)
                self._sites[site] = data
        return data

    def is_ready(self, site: str) -> bool:
        """Whether the site is generated already (serving it is then a matter of milliseconds)."""
        return site in self._sites

    def warm(self, sites: tuple[str, ...] | None = None) -> None:
        """Generate (and cache) the given sites now instead of on first use."""
        for site in sites or self.sites:
            self._site(site)

    def knows(self, site: str, asin: str) -> bool:
        """Whether the site has this ASIN at all (on some day of the horizon)."""
        return asin in self._site(site).index

    def _day(self, day: date) -> int | None:
        k = (day - self.config.epoch).days
        return k if 0 <= k < self.config.horizon_days else None

    def _clip_range(self, start: date, end: date) -> tuple[int, int] | None:
        lo = max((start - self.config.epoch).days, 0)
        hi = min((end - self.config.epoch).days, self.config.horizon_days - 1)
        return (lo, hi) if lo <= hi else None

    @staticmethod
    def _resolve(data: SiteState, asins: list[str]) -> tuple[list[int], list[str]]:
        found: list[int] = []
        not_found: list[str] = []
        seen: set[str] = set()
        for asin in asins:
            if asin in seen:
                continue
            seen.add(asin)
            k = data.index.get(asin)
            if k is None:
                not_found.append(asin)
            else:
                found.append(k)
        return found, not_found

    # -- calibration ----------------------------------------------------------------------------

    def calibration(self, site: str) -> pl.DataFrame:
        """Root power law per category: ``sales/day = a * bsr_root ** -b``; ``max_rank`` = category size."""
        if site not in SITE_IDS:
            raise UnknownSiteError(site)
        scale = SITE_SCALE[site]
        return pl.DataFrame(
            {
                "site": [site] * len(CATEGORIES),
                "category_id": [c.id for c in CATEGORIES],
                "a": [c.a * scale for c in CATEGORIES],
                "b": [c.b for c in CATEGORIES],
                "max_rank": [int(round(c.max_rank * math.sqrt(scale))) for c in CATEGORIES],
            }
        )

    def subcategory_calibration(self, site: str) -> pl.DataFrame:
        """Sub-category power law: ``sales/day = a_sub * bsr_sub ** -b`` with ``a_sub = a * share ** b``."""
        if site not in SITE_IDS:
            raise UnknownSiteError(site)
        scale = SITE_SCALE[site]
        rows = [
            {
                "site": site,
                "category_id": c.id,
                "subcategory_id": s.id,
                "share": s.share,
                "a_sub": c.a * scale * s.share**c.b,
                "b": c.b,
                "max_rank_sub": int(round(c.max_rank * math.sqrt(scale) * s.share)),
            }
            for c in CATEGORIES
            for s in c.subcategories
        ]
        return pl.DataFrame(rows)

    # -- contract-shaped accessors --------------------------------------------------------------

    def universe(self, site: str, day: date) -> list[str]:
        """Sorted ASINs tracked on ``day`` (listed on or before it); empty outside the horizon."""
        data = self._site(site)
        d = self._day(day)
        if d is None:
            return []
        order = data.order
        return data.asins[order[data.listed[order] <= d]].tolist()

    def _listing(self, data: SiteState, idx: np.ndarray, d: int) -> dict[str, np.ndarray]:
        active = data.ev_day[idx] <= d
        return {
            "title_target": np.minimum(
                data.title_target[idx] + (data.ev_title[idx] * active).sum(axis=1), 200
            ),
            "bullets": np.clip(data.bullets[idx] + (data.ev_bullets[idx] * active).sum(axis=1), 0, 5),
            "images": np.clip(data.images[idx] + (data.ev_images[idx] * active).sum(axis=1), 1, 9),
            "aplus": data.aplus[idx] | (data.ev_aplus[idx] & active).any(axis=1),
            "video": data.video[idx] | (data.ev_video[idx] & active).any(axis=1),
            "brand_story": data.brand_story[idx] | (data.ev_brand_story[idx] & active).any(axis=1),
        }

    def _titles(self, data: SiteState, idx: np.ndarray, targets: np.ndarray) -> list[str]:
        """Amazon-style titles grown phrase by phrase up to the listing's target length."""
        n_phr = len(CATEGORIES[0].title_phrases)
        order = np.argsort(
            hash_uniform(self.config.seed, data.site_id, idx[:, None], np.arange(n_phr)[None, :], 0x717),
            axis=1,
        )
        titles: list[str] = []
        for row, i in enumerate(idx.tolist()):
            c = CATEGORIES[data.cat[i]]
            head = c.subcategories[data.sub[i]].heads[data.head[i]]
            title = f"{data.brands[i]} {ADJECTIVES[data.adjective[i]]} {head.title()}"
            for p in order[row]:
                if len(title) >= targets[row]:
                    break
                title += ", " + c.title_phrases[p]
            titles.append(title)
        return titles

    def products(self, site: str, asins: list[str], day: date) -> tuple[list[dict[str, Any]], list[str]]:
        """Product-core dicts as of ``day`` (contract shape) and the ASINs not found on that day."""
        data = self._site(site)
        found, not_found = self._resolve(data, asins)
        d = self._day(day)
        if d is None:
            return [], list(dict.fromkeys(asins))  # nothing exists outside the horizon
        idx = np.asarray(found, dtype=np.int64)
        alive = data.listed[idx] <= d
        gone = set(idx[~alive].tolist())
        not_found = [a for a in asins if a in set(not_found) or data.index.get(a) in gone]
        not_found = list(dict.fromkeys(not_found))
        idx = idx[alive]
        if idx.size == 0:
            return [], not_found
        lst = self._listing(data, idx, d)
        titles = self._titles(data, idx, lst["title_target"])
        epoch = self.config.epoch
        out: list[dict[str, Any]] = []
        for row, i in enumerate(idx.tolist()):
            c = CATEGORIES[data.cat[i]]
            s = c.subcategories[data.sub[i]]
            out.append(
                {
                    "asin": str(data.asins[i]),
                    "site": site,
                    "title": titles[row],
                    "brand": data.brands[i],
                    "category_id": c.id,
                    "category_path": [c.name, *s.path],
                    "subcategory_id": s.id,
                    "listing": {
                        "title_length": len(titles[row]),
                        "bullet_count": int(lst["bullets"][row]),
                        "image_count": int(lst["images"][row]),
                        "has_aplus": bool(lst["aplus"][row]),
                        "attribute_flags": {
                            "video": bool(lst["video"][row]),
                            "size_chart": bool(data.size_chart[i]),
                            "brand_story": bool(lst["brand_story"][row]),
                            "prime": bool(data.prime[i]),
                        },
                    },
                    "listed_since": (epoch + timedelta(days=int(data.listed[i]))).isoformat(),
                }
            )
        return out, not_found

    def _seller_name(self, data: SiteState, i: int, code: int) -> str | None:
        if code < 0:
            return None
        if code == 0:
            return f"{data.brands[i]} Direct"
        if code == 1:
            return _AMAZON_NAME[data.site]
        return RESELLERS[code - 2]

    def timeseries(
        self, site: str, asins: list[str], start: date, end: date
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Daily series per ASIN over [start, end] (contract shape); no points before listed_since."""
        data = self._site(site)
        found, not_found = self._resolve(data, asins)
        rng = self._clip_range(start, end)
        items: list[dict[str, Any]] = []
        for i in found:
            points: list[dict[str, Any]] = []
            if rng is not None:
                lo, hi = max(rng[0], int(data.listed[i])), rng[1] + 1
                if lo < hi:
                    price = data.price_c[i, lo:hi].tolist()
                    root = data.bsr_root[i, lo:hi].tolist()
                    sub = data.bsr_sub[i, lo:hi].tolist()
                    rating = data.rating10[i, lo:hi].tolist()
                    count = data.review_count[i, lo:hi].tolist()
                    offers = data.offers[i, lo:hi].tolist()
                    seller = data.buybox[i, lo:hi].tolist()
                    for k in range(hi - lo):
                        points.append(
                            {
                                "date": data.dates[lo + k],
                                "price": price[k] / 100 if price[k] >= 0 else None,
                                "bsr_root": root[k] or None,
                                "bsr_sub": sub[k] or None,
                                "rating": rating[k] / 10 if rating[k] else None,
                                "review_count": count[k],
                                "new_offer_count": offers[k],
                                "buybox_seller": self._seller_name(data, i, seller[k]),
                            }
                        )
            items.append({"asin": str(data.asins[i]), "site": site, "points": points})
        return items, not_found

    def _review_ids(self, site_id: int, i: np.ndarray, t: np.ndarray, j: np.ndarray) -> np.ndarray:
        """'R' + 13 base-36 chars: a seeded bijection of (site, asin, day, number) - unique by design."""
        key = (
            (np.uint64(site_id) << np.uint64(42))
            | (i.astype(np.uint64) << np.uint64(22))
            | (t.astype(np.uint64) << np.uint64(10))
            | j.astype(np.uint64)
        )
        salt = mix64(np.array([self.config.seed & MASK64], dtype=np.uint64))[0]
        return np.char.add("R", base36(mix64(key ^ salt), 13))

    def reviews(self, site: str, asins: list[str], since: date, until: date) -> list[dict[str, Any]]:
        """Reviews written in [since, until] for the ASINs, sorted by (date, review_id)."""
        data = self._site(site)
        found, _ = self._resolve(data, asins)
        rng = self._clip_range(since, until)
        if rng is None or not found:
            return []
        horizon = data.horizon
        parts_i, parts_t, parts_j, parts_pos = [], [], [], []
        for i in found:
            lo, hi = rng[0], rng[1] + 1
            cells = data.rev_off[i * horizon + lo : i * horizon + hi + 1]
            first, last = int(cells[0]), int(cells[-1])
            if last == first:
                continue
            counts = np.diff(cells)
            pos = np.arange(first, last, dtype=np.int64)
            day = np.repeat(np.arange(lo, hi, dtype=np.int64), counts)
            parts_i.append(np.full(pos.size, i, dtype=np.int64))
            parts_t.append(day)
            parts_j.append(pos - np.repeat(cells[:-1], counts))
            parts_pos.append(pos)
        if not parts_pos:
            return []
        ii, tt, jj, pos = (np.concatenate(p) for p in (parts_i, parts_t, parts_j, parts_pos))
        ids = self._review_ids(data.site_id, ii, tt, jj)
        order = np.lexsort((ids, tt))
        stars = data.stars[pos].tolist()
        verified = data.verified[pos].tolist()
        return [
            {
                "review_id": str(ids[k]),
                "asin": str(data.asins[ii[k]]),
                "date": data.dates[tt[k]],
                "rating": stars[k],
                "verified": verified[k],
            }
            for k in order.tolist()
        ]

    def keywords(self, site: str, asins: list[str], day: date) -> tuple[list[dict[str, Any]], list[str]]:
        """Organic keyword ranks on ``day``: rank improves with sales velocity and with SEO precursors."""
        data = self._site(site)
        found, not_found = self._resolve(data, asins)
        d = self._day(day)
        if d is None:
            return [], list(dict.fromkeys(asins))  # nothing exists outside the horizon
        idx = np.asarray(found, dtype=np.int64)
        alive = data.listed[idx] <= d
        gone = set(idx[~alive].tolist())
        not_found = list(dict.fromkeys(a for a in asins if a in set(not_found) or data.index.get(a) in gone))
        idx = idx[alive]
        if idx.size == 0:
            return [], not_found
        slots = np.arange(N_KEYWORD_SLOTS)
        v = np.maximum(data.velocity[idx, d].astype(np.float64), 1e-6)
        gain = data.kw_gain[idx] * np.clip((d - data.kw_gain_start[idx]) / 10.0, 0.0, 1.0)
        noise = hash_normal(self.config.seed, data.site_id, idx[:, None], slots[None, :], d, 0x4B57)
        log_rank = (
            data.kw_base[idx] - 0.6 * np.log(v / data.base[idx])[:, None] - gain[:, None] + 0.25 * noise
        )
        rank = np.maximum(1, np.round(np.exp(np.minimum(log_rank, 20.0)))).astype(np.int64)
        shown = data.kw_active[idx] & (rank <= KEYWORD_MAX_RANK)
        ids = data.kw_ids[idx]
        volume = np.maximum(
            10, np.round(data.kw_volume[ids] * data.season_year[data.kw_cat[ids], d] / 10) * 10
        ).astype(np.int64)
        items: list[dict[str, Any]] = []
        for row, i in enumerate(idx.tolist()):
            cols = np.flatnonzero(shown[row])
            cols = cols[np.argsort(rank[row, cols], kind="stable")]
            items.append(
                {
                    "asin": str(data.asins[i]),
                    "keywords": [
                        {
                            "keyword": data.kw_text[ids[row, c]],
                            "search_volume": int(volume[row, c]),
                            "rank": int(rank[row, c]),
                        }
                        for c in cols.tolist()
                    ],
                }
            )
        return items, not_found

    # -- vectorised frames (tests, benchmarks, evaluation) -------------------------------------

    def _frame_cells(self, data: SiteState, start: date, end: date) -> tuple[np.ndarray, np.ndarray] | None:
        """(asin index, day index) of every listed cell in [start, end], ordered by (date, asin)."""
        rng = self._clip_range(start, end)
        if rng is None:
            return None
        lo, hi = rng
        days = np.arange(lo, hi + 1, dtype=np.int64)
        order = data.order
        listed = data.listed[order] <= days[:, None]  # (days, n) date-major
        di, ai = np.nonzero(listed)
        return order[ai], days[di]

    def _dates_series(self, day_idx: np.ndarray) -> pl.Series:
        return (
            pl.Series("date", day_idx, dtype=pl.Int32) + (self.config.epoch - date(1970, 1, 1)).days
        ).cast(pl.Date)

    def timeseries_frame(self, site: str, start: date, end: date) -> pl.DataFrame:
        """The API's daily points for every tracked ASIN in [start, end] as one frame, by (date, asin)."""
        data = self._site(site)
        cells = self._frame_cells(data, start, end)
        if cells is None:
            return pl.DataFrame(schema=TIMESERIES_FRAME_SCHEMA)
        i, t = cells
        look = self._lookups(data)
        price = data.price_c[i, t]
        rating = data.rating10[i, t]
        code = data.buybox[i, t].astype(np.int64)
        # seller name index: the product's "<brand> Direct", else Amazon / resellers, else the null entry
        seller = np.where(code < 0, look["sellers"].len() - 1, np.where(code == 0, i, data.n + code - 1))
        cat = data.cat[i].astype(np.int64)
        frame = pl.DataFrame(
            {
                "date": self._dates_series(t),
                "asin": look["asins"].gather(i),
                "price": pl.Series(np.where(price >= 0, price / 100.0, np.nan)).fill_nan(None),
                "bsr_root": pl.Series(data.bsr_root[i, t].astype(np.int64)).replace(0, None),
                "bsr_sub": pl.Series(data.bsr_sub[i, t].astype(np.int64)).replace(0, None),
                "rating": pl.Series(np.where(rating > 0, rating / 10.0, np.nan)).fill_nan(None),
                "review_count": pl.Series(data.review_count[i, t].astype(np.int64)),
                "new_offer_count": pl.Series(data.offers[i, t].astype(np.int32)),
                "buybox_seller": look["sellers"].gather(seller),
                "category_id": look["categories"].gather(cat),
                "subcategory_id": look["subcategories"].gather(cat * 3 + data.sub[i]),
            }
        )
        return frame.with_columns(site=pl.lit(site, dtype=pl.Utf8)).select(list(TIMESERIES_FRAME_SCHEMA))

    def _lookups(self, data: SiteState) -> dict[str, pl.Series]:
        """String columns gathered by index: far cheaper than building millions of Python strings."""
        if not data.lookups:
            data.lookups.update(
                asins=pl.Series(data.asins, dtype=pl.Utf8),
                sellers=pl.Series(
                    [*(f"{b} Direct" for b in data.brands), _AMAZON_NAME[data.site], *RESELLERS, None],
                    dtype=pl.Utf8,
                ),
                categories=pl.Series([c.id for c in CATEGORIES], dtype=pl.Utf8),
                subcategories=pl.Series([s.id for c in CATEGORIES for s in c.subcategories], dtype=pl.Utf8),
            )
        return data.lookups

    def ground_truth(self, site: str, start: date, end: date) -> pl.DataFrame:
        """Hidden truth per (site, date, asin) for evaluation; never served over HTTP.

        ``latent_demand`` is the expected units/day (all deterministic effects, before sampling noise);
        ``demand_level`` the same before seasonality and price; ``units_sold`` the sampled sales;
        ``sales_velocity`` the smoothed sales the BSR is derived from. ``in_breakout`` is true during the
        growth phase [onset, onset + ramp); ``breakout_onset`` / ``breakout_peak_multiplier`` describe the
        ASIN's breakout (null when it has none); ``decoy`` marks ASINs with precursors but no breakout.
        """
        data = self._site(site)
        cells = self._frame_cells(data, start, end)
        if cells is None:
            return pl.DataFrame(schema=GROUND_TRUTH_SCHEMA)
        i, t = cells
        onset = data.onset[i]
        has = onset >= 0
        mult = np.ones(i.size, dtype=np.float64)
        bo_pos = np.full(data.n, -1, dtype=np.int64)
        bo_pos[data.bo_rows] = np.arange(data.bo_rows.size)
        sel = np.flatnonzero(has)
        mult[sel] = data.bo_mult[bo_pos[i[sel]], t[sel]]
        look = self._lookups(data)
        frame = pl.DataFrame(
            {
                "date": self._dates_series(t),
                "asin": look["asins"].gather(i),
                "category_id": look["categories"].gather(data.cat[i].astype(np.int64)),
                "latent_demand": data.expected[i, t].astype(np.float64),
                "demand_level": data.level[i, t].astype(np.float64),
                "units_sold": data.units[i, t].astype(np.int64),
                "sales_velocity": data.velocity[i, t].astype(np.float64),
                "breakout_multiplier": mult,
                "in_breakout": has & (t >= onset) & (t < onset + data.ramp[i]),
                "breakout_onset": pl.Series(np.where(has, onset, 0).astype(np.int64)),
                "breakout_ramp_days": pl.Series(data.ramp[i].astype(np.int32)),
                "breakout_peak_multiplier": pl.Series(data.peak[i]).fill_nan(None),
                "decoy": data.decoy[i],
            }
        )
        epoch_days = (self.config.epoch - date(1970, 1, 1)).days
        return frame.with_columns(
            site=pl.lit(site, dtype=pl.Utf8),
            breakout_onset=pl.when(pl.Series(has))
            .then((pl.col("breakout_onset") + epoch_days).cast(pl.Int32).cast(pl.Date))
            .otherwise(None),
            breakout_ramp_days=pl.when(pl.Series(has)).then(pl.col("breakout_ramp_days")).otherwise(None),
        ).select(list(GROUND_TRUTH_SCHEMA))


_AMAZON_NAME: dict[str, str] = {
    "US": "Amazon.com",
    "UK": "Amazon.co.uk",
    "DE": "Amazon.de",
    "FR": "Amazon.fr",
    "JP": "Amazon.co.jp",
    "CA": "Amazon.ca",
    "IT": "Amazon.it",
    "ES": "Amazon.es",
    "IN": "Amazon.in",
    "MX": "Amazon.com.mx",
    "BR": "Amazon.com.br",
}

TIMESERIES_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8(),
    "date": pl.Date(),
    "asin": pl.Utf8(),
    "price": pl.Float64(),
    "bsr_root": pl.Int64(),
    "bsr_sub": pl.Int64(),
    "rating": pl.Float64(),
    "review_count": pl.Int64(),
    "new_offer_count": pl.Int32(),
    "buybox_seller": pl.Utf8(),
    "category_id": pl.Utf8(),
    "subcategory_id": pl.Utf8(),
}

GROUND_TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "site": pl.Utf8(),
    "date": pl.Date(),
    "asin": pl.Utf8(),
    "category_id": pl.Utf8(),
    "latent_demand": pl.Float64(),
    "demand_level": pl.Float64(),
    "units_sold": pl.Int64(),
    "sales_velocity": pl.Float64(),
    "breakout_multiplier": pl.Float64(),
    "in_breakout": pl.Boolean(),
    "breakout_onset": pl.Date(),
    "breakout_ramp_days": pl.Int32(),
    "breakout_peak_multiplier": pl.Float64(),
    "decoy": pl.Boolean(),
}
