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
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from asin_platform.simulator.catalog import (
    ADJECTIVES,
    BRAND_SYLLABLES,
    CATEGORIES,
    CURRENCY,
    RESELLERS,
    SITE_IDS,
    SITE_SCALE,
    WEEKDAY_SHAPE,
)

# Named random streams: adding a stream never shifts the draws of another.
_S_STATIC_U, _S_STATIC_Z, _S_BRANDS = 1, 2, 3
_S_DRIFT, _S_PRICE_STEP, _S_PRICE_SIZE, _S_PROMO, _S_STOCKOUT = 10, 11, 12, 13, 14
_S_SALES_NOISE, _S_UNITS, _S_BSR_NOISE, _S_REVIEWS, _S_STARS = 20, 21, 22, 23, 24
_S_OFFERS, _S_BUYBOX, _S_BREAKOUT, _S_DECOY, _S_KEYWORDS = 30, 31, 40, 41, 50

_NEVER = np.int32(1 << 30)  # "event never happens" day index
N_KEYWORD_SLOTS = 5
KEYWORD_MAX_RANK = 100  # organic positions beyond this are "not ranked" (absent from the response)
MAX_REVIEWS_PER_DAY = 1023  # review ids reserve 10 bits for the review's number within its day
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class MarketConfig:
    """Knobs of the synthetic market. Everything downstream is a pure function of these."""

    seed: int = 7
    sites: tuple[str, ...] = ("US", "UK", "DE", "JP")
    asins_per_site: int = 2000
    epoch: date = date(2025, 1, 1)
    horizon_days: int = 1200
    breakout_rate: float = 0.04  # share of ASINs that break out once within the horizon
    decoy_rate: float = 0.05  # share of ASINs that show breakout precursors but do not break out
    launch_share: float = 0.30  # share of ASINs launched after the epoch

    def __post_init__(self) -> None:
        unknown = [s for s in self.sites if s not in SITE_IDS]
        if unknown:
            raise ValueError(f"unknown site(s) {unknown}; known: {', '.join(SITE_IDS)}")
        if not 10 <= self.asins_per_site < (1 << 20):
            raise ValueError("asins_per_site must be in [10, 2**20)")
        if not 60 <= self.horizon_days < (1 << 12):
            raise ValueError("horizon_days must be in [60, 4096) (review ids reserve 12 bits for the day)")
        for name in ("breakout_rate", "decoy_rate", "launch_share"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name} must be in [0, 0.5]")


class UnknownSiteError(KeyError):
    """The site is not simulated by this market."""


# ----------------------------------------------------------------------------------------------
# Counter-based hashing: noise that depends only on its key, never on what else was computed.
# ----------------------------------------------------------------------------------------------


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 with good avalanche."""
    x = np.asarray(x, dtype=np.uint64).copy()
    x += np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _hash(*keys: Any) -> np.ndarray:
    """Hash broadcastable integer keys into uint64."""
    arrays = np.broadcast_arrays(*[np.asarray(k).astype(np.int64).astype(np.uint64) for k in keys])
    h = np.zeros(arrays[0].shape, dtype=np.uint64)
    for a in arrays:
        h = _mix64(h ^ a)
    return h


def _hash_uniform(*keys: Any) -> np.ndarray:
    return (_hash(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _hash_normal(*keys: Any) -> np.ndarray:
    """Standard normal via Box-Muller on two hashed uniforms."""
    u1 = _hash_uniform(*keys, 1)
    u2 = _hash_uniform(*keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


_B36 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width uppercase base-36 strings of uint64 values (vectorised)."""
    v = np.asarray(values, dtype=np.uint64).copy()
    chars = np.empty((v.size, width), dtype="<U1")
    for pos in range(width - 1, -1, -1):
        chars[:, pos] = _B36[(v % np.uint64(36)).astype(np.int64)]
        v //= np.uint64(36)
    return chars.view(f"<U{width}").reshape(-1)


def _logistic01(x: np.ndarray, steep: np.ndarray) -> np.ndarray:
    """A logistic ramp rescaled to go exactly from 0 at x=0 to 1 at x=1 (0 before, 1 after)."""
    lo = 1.0 / (1.0 + np.exp(steep * 0.5))
    hi = 1.0 / (1.0 + np.exp(-steep * 0.5))
    s = 1.0 / (1.0 + np.exp(-steep * (np.clip(x, 0.0, 1.0) - 0.5)))
    return (s - lo) / (hi - lo)


# ----------------------------------------------------------------------------------------------
# Per-site generated state
# ----------------------------------------------------------------------------------------------


@dataclass
class _Site:
    """Everything generated for one site. Matrices are (n_asins, horizon_days), asin-major."""

    site: str
    site_id: int
    dates: list[str]  # ISO string of each day index
    asins: np.ndarray  # <U10, by generation index
    order: np.ndarray  # generation indices sorted by ASIN string
    index: dict[str, int]
    listed: np.ndarray  # listed_since as day offset from the epoch (negative = before it)
    cat: np.ndarray
    sub: np.ndarray  # 0..2 within the category
    head: np.ndarray  # 0..2 head term within the sub-category
    adjective: np.ndarray
    brands: list[str]  # by generation index
    # listing: initial values and three events (slot 0 = precursor improvement, 1-2 = organic)
    title_target: np.ndarray
    bullets: np.ndarray
    images: np.ndarray
    aplus: np.ndarray
    video: np.ndarray
    size_chart: np.ndarray
    brand_story: np.ndarray
    prime: np.ndarray
    ev_day: np.ndarray
    ev_title: np.ndarray
    ev_bullets: np.ndarray
    ev_images: np.ndarray
    ev_aplus: np.ndarray
    ev_video: np.ndarray
    ev_brand_story: np.ndarray
    # keywords
    kw_text: list[str]  # the site's keyword table (global keyword id -> text)
    kw_volume: np.ndarray  # base monthly search volume per keyword id
    kw_cat: np.ndarray  # category of each keyword id (for seasonal volume)
    kw_ids: np.ndarray  # (n, slots) keyword ids
    kw_active: np.ndarray  # (n, slots)
    kw_base: np.ndarray  # (n, slots) baseline log organic rank
    kw_gain: np.ndarray  # (n,) log-rank gain from precursor SEO work
    kw_gain_start: np.ndarray
    base: np.ndarray  # base demand, units/day
    # breakouts
    onset: np.ndarray  # day index, -1 = none
    ramp: np.ndarray
    peak: np.ndarray  # NaN = none
    decoy: np.ndarray
    bo_rows: np.ndarray  # generation indices of breakout ASINs
    bo_mult: np.ndarray  # (len(bo_rows), T) demand multiplier
    season_year: np.ndarray  # (n_cat, T) yearly seasonality incl. events (for keyword volumes)
    # daily matrices
    price_c: np.ndarray  # int32 price in hundredths of the local currency, -1 = no offer
    bsr_root: np.ndarray  # int32, 0 = not ranked
    bsr_sub: np.ndarray
    rating10: np.ndarray  # int16 running mean rating x10, 0 = no reviews
    review_count: np.ndarray  # int32
    offers: np.ndarray  # int16
    buybox: np.ndarray  # int8: -1 none, 0 brand, 1 Amazon, 2+ reseller
    units: np.ndarray  # int32 (hidden)
    expected: np.ndarray  # float32 expected units/day (hidden)
    level: np.ndarray  # float32 demand level (hidden)
    velocity: np.ndarray  # float32 sales velocity the BSR reflects (hidden)
    rev_off: np.ndarray  # int64 (n*T+1) offsets of each cell's reviews in the flat review arrays
    stars: np.ndarray  # int8 per review
    verified: np.ndarray  # bool per review
    lookups: dict[str, pl.Series] = field(default_factory=dict)  # string columns for frames, built once

    @property
    def n(self) -> int:
        return int(self.asins.size)

    @property
    def horizon(self) -> int:
        return len(self.dates)


def _season_tables(epoch: date, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_cat, T) weekly and yearly (with shopping events) multipliers, and the (T,) event factor."""
    days = [epoch + timedelta(days=k) for k in range(horizon)]
    dow = np.array([d.weekday() for d in days])
    doy = np.array([d.timetuple().tm_yday for d in days], dtype=np.float64)
    event = np.ones(horizon)
    for k, d in enumerate(days):
        if d.month == 7:
            # Prime Day: the second Tuesday of July and the day after.
            first_tue = 1 + (1 - date(d.year, 7, 1).weekday()) % 7
            if first_tue + 7 <= d.day <= first_tue + 8:
                event[k] = 2.0
        elif d.month in (11, 12):
            thanksgiving = 1 + (3 - date(d.year, 11, 1).weekday()) % 7 + 21
            black_friday = date(d.year, 11, thanksgiving + 1)
            if 0 <= (d - black_friday).days <= 3:  # Black Friday .. Cyber Monday
                event[k] = 1.8
            elif d.month == 12 and d.day <= 20:
                event[k] = 1.25
    shape = np.array(WEEKDAY_SHAPE)
    shape = (shape - shape.mean()) / np.abs(shape - shape.mean()).max()
    weekly = np.stack([1.0 + c.weekly_amp * shape[dow] for c in CATEGORIES])
    yearly = np.stack(
        [1.0 + c.yearly_amp * np.cos(2 * np.pi * (doy - c.yearly_peak_doy) / 365.25) for c in CATEGORIES]
    )
    return weekly, yearly * event[None, :], event


def _step_matrix(days: np.ndarray, values: np.ndarray, horizon: int) -> np.ndarray:
    """Rows of ``values`` switched on from ``days`` onwards: (len(days), horizon) float32."""
    t = np.arange(horizon, dtype=np.int32)
    return (t[None, :] >= days[:, None]).astype(np.float32) * values[:, None].astype(np.float32)


def _episodes(
    starts: np.ndarray, lengths: np.ndarray, depth: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Turn episode start flags (n, T) into an "active" mask and the active episode's depth.

    Uses running maxima instead of a Python loop: the end of the latest episode started so far
    decides whether day t is inside one; the latest start's depth is carried forward.
    """
    n, horizon = starts.shape
    t = np.arange(horizon, dtype=np.int32)
    rows, cols = np.nonzero(starts)
    end = np.full((n, horizon), -1, dtype=np.int32)
    end[rows, cols] = cols + lengths
    active = np.maximum.accumulate(end, axis=1) > t[None, :]
    if depth is None:
        return active, np.zeros((0, 0), dtype=np.float32)
    return active, np.where(active, _carry(starts, depth.astype(np.float32)), np.float32(0.0))


def _carry(starts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Carry each start's value forward until the next start in the row (0 before the first one).

    ``values`` holds one value per True cell of ``starts`` in row-major order.
    """
    n, horizon = starts.shape
    rows, cols = np.nonzero(starts)
    last = np.zeros((n, horizon), dtype=np.int32)
    last[rows, cols] = cols
    np.maximum.accumulate(last, axis=1, out=last)
    at = np.zeros((n, horizon), dtype=values.dtype)
    at[rows, cols] = values
    carried = np.take_along_axis(at, last, axis=1)
    carried[~np.maximum.accumulate(starts, axis=1)] = 0
    return carried


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    """Invented, pronounceable brand names ("Lumora", "Vinsaka")."""
    syl = np.array(BRAND_SYLLABLES)
    n_syl = rng.integers(2, 4, size=count)
    picks = rng.integers(0, syl.size, size=(count, 3))
    names: list[str] = []
    seen: set[str] = set()
    for k in range(count):
        name = "".join(syl[picks[k, : n_syl[k]]]).capitalize()
        while name in seen:  # keep brands distinct (deterministic: suffix a syllable)
            name += syl[(k + len(name)) % syl.size]
        seen.add(name)
        names.append(name)
    return names


def _make_asins(seed: int, site_id: int, n: int) -> np.ndarray:
    """ "B0" + 8 base-36 characters, a hash of (seed, site, index); collisions re-hashed with a salt."""
    idx = np.arange(n, dtype=np.int64)
    codes = _hash(seed, site_id, idx, 0xA51) % np.uint64(36**8)
    asins = np.char.add("B0", _base36(codes, 8))
    salt = 1
    while True:
        _, first = np.unique(asins, return_index=True)
        dup = np.setdiff1d(idx, first)
        if dup.size == 0:
            return asins
        codes = _hash(seed, site_id, dup, 0xA51 + salt) % np.uint64(36**8)
        asins[dup] = np.char.add("B0", _base36(codes, 8))
        salt += 1


def _build_site(cfg: MarketConfig, site: str) -> _Site:  # noqa: C901 - one linear recipe
    n, horizon = cfg.asins_per_site, cfg.horizon_days
    site_id = SITE_IDS.index(site)
    scale = SITE_SCALE[site]
    _, fx, whole_currency = CURRENCY[site]

    def gen(stream: int) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, site_id, stream])

    t = np.arange(horizon, dtype=np.int32)
    n_cat = len(CATEGORIES)
    cat_a = np.array([c.a for c in CATEGORIES]) * scale
    cat_b = np.array([c.b for c in CATEGORIES])
    cat_max = np.array([c.max_rank for c in CATEGORIES]) * math.sqrt(scale)
    cat_w = np.array([c.weight for c in CATEGORIES])

    # ---- static product attributes: one (n, k) draw per stream so row i is stable in n ----
    u = gen(_S_STATIC_U).random((n, 40))
    z = gen(_S_STATIC_Z).standard_normal((n, 16))
    cat = np.searchsorted(np.cumsum(cat_w / cat_w.sum()), u[:, 0], side="right").clip(0, n_cat - 1)
    sub = (u[:, 1] * 3).astype(np.int8)
    head = (u[:, 2] * 3).astype(np.int8)
    adjective = (u[:, 13] * len(ADJECTIVES)).astype(np.int8)
    launched = u[:, 3] < cfg.launch_share
    listed = np.where(
        launched, 1 + (u[:, 4] * (horizon - 1)).astype(np.int32), -(30 + (u[:, 4] * 1500).astype(np.int32))
    ).astype(np.int32)
    a_i, b_i, max_i = cat_a[cat], cat_b[cat], cat_max[cat]
    share_i = np.array([[s.share for s in c.subcategories] for c in CATEGORIES])[cat, sub]
    log10_bsr0 = np.clip(math.log10(4e4) + 0.7 * z[:, 0], 2.3, np.log10(0.8 * max_i))
    bsr0 = 10.0**log10_bsr0
    base = a_i * bsr0 ** (-b_i)

    n_brands = max(5, n // 6)
    brand_rng = gen(_S_BRANDS)
    brand_pool = _brand_names(brand_rng, n_brands)
    brand_pick = (u[:, 14] ** 1.5 * n_brands).astype(np.int64)  # a few brands own many products
    brands = [brand_pool[k] for k in brand_pick]

    quality = u[:, 7]
    images = np.clip(np.round(1 + quality * 6 + z[:, 1]), 1, 8).astype(np.int8)
    bullets = np.clip(np.round(1.5 + quality * 3 + 0.8 * z[:, 2]), 0, 5).astype(np.int8)
    aplus = u[:, 8] < 0.1 + 0.5 * quality
    video = u[:, 9] < 0.05 + 0.4 * quality
    size_chart = u[:, 10] < 0.2
    brand_story = u[:, 11] < 0.1 + 0.4 * quality
    prime = u[:, 12] < 0.8
    title_target = np.clip(np.round(50 + 110 * quality + 15 * z[:, 3]), 30, 190).astype(np.int16)

    ev_day = np.full((n, 3), _NEVER, dtype=np.int32)
    ev_title = np.zeros((n, 3), dtype=np.int16)
    ev_bullets = np.zeros((n, 3), dtype=np.int8)
    ev_images = np.zeros((n, 3), dtype=np.int8)
    ev_aplus = np.zeros((n, 3), dtype=bool)
    ev_video = np.zeros((n, 3), dtype=bool)
    ev_brand_story = np.zeros((n, 3), dtype=bool)
    for slot, col in ((1, 15), (2, 20)):  # organic listing improvements, some products, any time
        has = u[:, col] < 0.35
        ev_day[:, slot] = np.where(has, (u[:, col + 1] * horizon).astype(np.int32), _NEVER)
        ev_images[:, slot] = (u[:, col + 2] < 0.6).astype(np.int8)
        ev_bullets[:, slot] = (u[:, col + 3] < 0.5).astype(np.int8)
        ev_aplus[:, slot] = u[:, col + 4] < 0.25
        ev_video[:, slot] = u[:, col + 4] > 0.85
        ev_brand_story[:, slot] = (u[:, col + 2] > 0.85) | (u[:, col + 3] > 0.85)
        ev_title[:, slot] = np.where(u[:, col + 3] < 0.5, 10 + (u[:, col + 1] * 20).astype(np.int16), 0)

    # ---- breakouts: onsets stratified over the horizon so every few weeks holds some ----
    brng = gen(_S_BREAKOUT)
    onset = np.full(n, -1, dtype=np.int32)
    lo, hi = 35, horizon - 21
    m = int(round(cfg.breakout_rate * n)) if hi > lo else 0
    keys = brng.random(n)
    eligible = bsr0 >= 3000  # a breakout climbs from the long tail; a top seller has no room to 1000x
    strata = lo + ((np.arange(m) + brng.random(m)) / max(m, 1) * (hi - lo)).astype(np.int32)
    for day in brng.permutation(strata):
        cand = np.flatnonzero(eligible & (onset < 0) & (listed <= day - 35))
        if cand.size:
            onset[cand[np.argmin(keys[cand])]] = day
    bo_rows = np.flatnonzero(onset >= 0)
    mb = bo_rows.size
    bo_u = brng.random((n, 12))[bo_rows]
    cap = (bsr0[bo_rows] / 3.0) ** b_i[bo_rows]  # peak rank stays >= ~3
    peak_rows = np.clip(10.0 ** (1.0 + 2.0 * bo_u[:, 0] ** 1.3), 10.0, np.maximum(cap, 10.0))
    ramp_rows = (14 + bo_u[:, 1] * 43).astype(np.int32)  # 2..8 weeks
    multi = bo_u[:, 2] < 0.35  # two-stage (slow) breakouts
    stage1 = 0.3 + 0.3 * bo_u[:, 3]
    steep = 6.0 + 8.0 * bo_u[:, 4]  # low = near-linear slow climb, high = sudden
    decays = bo_u[:, 5] < 0.5
    decay_frac = np.where(decays, 0.2 + 0.3 * bo_u[:, 6], 0.0)
    decay_days = 90 + 210 * bo_u[:, 7]
    rel = (t[None, :] - onset[bo_rows, None]).astype(np.float64)
    x = rel / ramp_rows[:, None]
    g_single = _logistic01(x, steep[:, None])
    g_multi = stage1[:, None] * _logistic01(x / 0.4, steep[:, None]) + (1 - stage1[:, None]) * _logistic01(
        (x - 0.7) / 0.3, steep[:, None]
    )
    g = np.where(multi[:, None], g_multi, g_single) * (rel >= 0)
    fade = 1.0 - decay_frac[:, None] * np.clip((rel - ramp_rows[:, None]) / decay_days[:, None], 0.0, 1.0)
    bo_log = (np.log(peak_rows)[:, None] * g * fade).astype(np.float32)
    ramp = np.zeros(n, dtype=np.int32)
    ramp[bo_rows] = ramp_rows
    peak = np.full(n, np.nan)
    peak[bo_rows] = peak_rows

    # ---- decoys and precursors ----
    drng = gen(_S_DECOY)
    d_keys = drng.random(n)
    d_day = (28 + drng.random(n) * (horizon - 35)).astype(np.int32)
    decoy_ok = (onset < 0) & (listed <= d_day - 35)
    n_decoy = int(round(cfg.decoy_rate * n))
    decoy = np.zeros(n, dtype=bool)
    decoy[np.flatnonzero(decoy_ok)[np.argsort(d_keys[decoy_ok])[:n_decoy]]] = True
    pu = drng.random((n, 16))
    # precursor strength: P(each precursor is present) - breakouts strong/medium/weak, decoys strong/medium
    p_show = np.where(
        onset >= 0,
        np.where(pu[:, 0] < 0.55, 0.85, np.where(pu[:, 0] < 0.8, 0.5, 0.1)),
        np.where(pu[:, 0] < 0.5, 0.8, 0.5),
    )
    has_pre = (onset >= 0) | decoy
    anchor = np.where(onset >= 0, onset, d_day)
    lead = (7 + pu[:, 1] * 15).astype(np.int32)  # precursors start 1-3 weeks ahead
    p0 = anchor - lead
    show = has_pre[:, None] & (pu[:, 2:7] < p_show[:, None])  # traction, reviews, price, listing, kw
    # how long a decoy's signals last before fading (a breakout's persist into the breakout)
    pre_end = np.where(onset >= 0, horizon + 10_000, anchor + (7 + pu[:, 7] * 21).astype(np.int32))

    slot0 = show[:, 3]
    ev_day[:, 0] = np.where(slot0, p0 + (pu[:, 8] * lead).astype(np.int32), _NEVER)
    ev_images[:, 0] = np.where(slot0, 2 + (pu[:, 9] * 3).astype(np.int8), 0)
    ev_bullets[:, 0] = np.where(slot0, 2, 0)
    ev_aplus[:, 0] = slot0
    ev_video[:, 0] = slot0 & (pu[:, 10] < 0.7)
    ev_brand_story[:, 0] = slot0 & (pu[:, 10] < 0.4)
    ev_title[:, 0] = np.where(slot0, 20 + (pu[:, 11] * 30).astype(np.int16), 0)

    kw_gain = np.where(show[:, 4], 0.4 + 0.6 * pu[:, 12], 0.0).astype(np.float32)
    kw_gain_start = np.where(show[:, 4], p0, _NEVER).astype(np.int32)

    # ---- demand level ----
    eps = gen(_S_DRIFT).standard_normal((n, horizon), dtype=np.float32)
    sigma = (0.004 + 0.012 * u[:, 5]).astype(np.float32)
    drift = np.empty((n, horizon), dtype=np.float32)
    state = np.zeros(n, dtype=np.float32)
    for k in range(horizon):  # AR(1) in log space: loop over days, vectorised over products
        state = np.float32(0.996) * state + sigma * eps[:, k]
        drift[:, k] = state
    loglev = drift
    loglev += np.log(base).astype(np.float32)[:, None]
    age = t[None, :] - listed[:, None]
    tau = 10 + 50 * u[:, 6]
    new_rows = np.flatnonzero(launched)
    loglev[new_rows] += np.log(
        0.15 + 0.85 * (1.0 - np.exp(-np.maximum(age[new_rows], 0) / tau[new_rows, None]))
    ).astype(np.float32)
    # listing improvements lift conversion
    for slot in range(3):
        effect = (
            0.04 * ev_images[:, slot]
            + 0.02 * ev_bullets[:, slot]
            + 0.10 * ev_aplus[:, slot]
            + 0.05 * ev_video[:, slot]
            + 0.001 * ev_title[:, slot]
        )
        rows = np.flatnonzero(ev_day[:, slot] < horizon)
        loglev[rows] += _step_matrix(ev_day[rows, slot], effect[rows], horizon)
    # early traction in the precursor window (fades for decoys)
    tr = np.flatnonzero(show[:, 0])
    beta = 0.2 + 0.6 * pu[tr, 13]
    ramp_in = np.clip((t[None, :] - p0[tr, None]) / np.maximum(lead[tr, None], 1), 0.0, 1.0)
    ramp_out = 1.0 - np.clip((t[None, :] - pre_end[tr, None]) / 14.0, 0.0, 1.0)
    loglev[tr] += (np.log1p(beta)[:, None] * ramp_in * ramp_out).astype(np.float32)
    loglev[bo_rows] += bo_log
    level = np.exp(loglev)
    del loglev, drift, eps

    # ---- price ----
    fx_price = np.array([c.price_median for c in CATEGORIES])[cat] * fx
    logp0 = (np.log(fx_price) + 0.45 * z[:, 4]).astype(np.float32)
    changes = gen(_S_PRICE_STEP).random((n, horizon), dtype=np.float32) < 1.0 / 90.0
    steps = np.zeros((n, horizon), dtype=np.float32)
    steps[changes] = gen(_S_PRICE_SIZE).standard_normal(int(changes.sum()), dtype=np.float32) * np.float32(
        0.07
    )
    logreg = np.cumsum(steps, axis=1)
    logreg += logp0[:, None]
    cut_rows = np.flatnonzero(show[:, 2])
    cut_day = p0[cut_rows] + (pu[cut_rows, 14] * lead[cut_rows] / 2).astype(np.int32)
    logreg[cut_rows] += _step_matrix(cut_day, np.log(1.0 - (0.1 + 0.15 * pu[cut_rows, 15])), horizon)
    weekly, yearly, event = _season_tables(cfg.epoch, horizon)
    prng = gen(_S_PROMO)
    promo_p = np.full(horizon, 1.0 / 75.0, dtype=np.float32)
    promo_p[event >= 1.5] *= 8.0  # deals cluster on Prime Day / Black Friday
    promo_start = prng.random((n, horizon), dtype=np.float32) < promo_p[None, :]
    n_promo = int(promo_start.sum())
    promo_on, promo_depth = _episodes(
        promo_start, prng.integers(2, 11, size=n_promo), (0.1 + 0.2 * prng.random(n_promo)).astype(np.float32)
    )
    logoffer = logreg + np.log1p(-promo_depth)
    srng = gen(_S_STOCKOUT)
    out_start = srng.random((n, horizon), dtype=np.float32) < 0.002
    no_offer, _ = _episodes(out_start, srng.integers(1, 7, size=int(out_start.sum())), None)
    price = np.exp(logoffer.astype(np.float64))
    if whole_currency:
        cents = np.where(price >= 1000, np.round(price / 100) * 100 - 20, np.round(price / 10) * 10) * 100
    else:
        cents = np.where(price >= 10, np.round(price) * 100 - 1, np.round(price * 2) * 50 - 1)
    listed_mask = t[None, :] >= listed[:, None]
    price_c = np.where(no_offer | ~listed_mask, -1, np.maximum(cents, 1)).astype(np.int32)
    del cents, price, changes, steps, promo_start
    elasticity = (1.2 + 1.3 * u[:, 17]).astype(np.float32)
    price_effect = np.exp(-elasticity[:, None] * (logoffer - logp0[:, None]))
    del logoffer, logreg

    # ---- sales ----
    expected = level * (weekly * yearly).astype(np.float32)[cat] * price_effect
    expected[no_offer | ~listed_mask] = 0.0
    del price_effect
    noise = np.exp(
        gen(_S_SALES_NOISE).standard_normal((n, horizon), dtype=np.float32) * np.float32(0.3) - 0.045
    )
    units = gen(_S_UNITS).poisson(expected * noise).astype(np.int32)
    del noise
    # The rank reflects recent sales velocity: an EWMA of units, blended with expected sales so a
    # long-tail product's rank drifts between sales instead of collapsing to the category's bottom.
    velocity = np.empty((n, horizon), dtype=np.float32)
    v = np.where(listed < 0, expected[:, 0], 0.0).astype(np.float32)
    for k in range(horizon):
        v = np.float32(0.6) * v + np.float32(0.4) * (
            np.float32(0.4) * expected[:, k] + np.float32(0.6) * units[:, k]
        )
        velocity[:, k] = v
    zr = gen(_S_BSR_NOISE).standard_normal((n, horizon), dtype=np.float32)
    # inverse power law in log space (float32 is exact for integer ranks below 2**24)
    log_root = np.log(np.maximum(velocity, np.float32(1e-6)))
    np.subtract(np.log(a_i).astype(np.float32)[:, None], log_root, out=log_root)
    log_root *= (1.0 / b_i).astype(np.float32)[:, None]
    log_root += np.float32(0.1) * zr
    root = np.clip(np.rint(np.exp(log_root)), 1, np.round(max_i).astype(np.float32)[:, None])
    log_root += np.log(share_i).astype(np.float32)[:, None] + np.float32(0.05) * zr[:, ::-1]
    sub_rank = np.clip(np.rint(np.exp(log_root)), 1, np.round(max_i * share_i).astype(np.float32)[:, None])
    del log_root
    ranked = listed_mask & ((listed[:, None] < 0) | (np.cumsum(units, axis=1) > 0))
    bsr_root = np.where(ranked, root, 0).astype(np.int32)
    bsr_sub = np.where(ranked, sub_rank, 0).astype(np.int32)
    del root, sub_rank, zr

    # ---- reviews ----
    rrng = gen(_S_REVIEWS)
    rate = 0.01 + 0.01 * u[:, 18]
    k_rev = np.zeros((n, horizon), dtype=np.int32)
    sold_r, sold_c = np.nonzero(units)  # most cells sell nothing: draw only where something sold
    k_rev[sold_r, sold_c] = rrng.binomial(units[sold_r, sold_c], rate[sold_r])
    rv = np.flatnonzero(show[:, 1])
    burst_start = p0[rv] + (pu[rv, 3] * lead[rv] / 2).astype(np.int32)
    burst_end = np.where(onset[rv] >= 0, onset[rv] + ramp[rv], pre_end[rv])
    in_burst = (t[None, :] >= burst_start[:, None]) & (t[None, :] < burst_end[:, None]) & listed_mask[rv]
    lam = (0.15 + 0.65 * pu[rv, 4])[:, None] * in_burst
    k_rev[rv] += rrng.poisson(lam).astype(np.int32)
    np.minimum(k_rev, MAX_REVIEWS_PER_DAY, out=k_rev)
    mean_rating = 3.5 + 1.3 * u[:, 19]
    thetas = np.linspace(-3.0, 3.0, 601)
    probs = np.exp(thetas[:, None] * np.arange(1, 6)[None, :])
    probs /= probs.sum(axis=1, keepdims=True)
    theta = np.interp(mean_rating, probs @ np.arange(1, 6), thetas)
    cdf = np.cumsum(np.exp(theta[:, None] * np.arange(1, 6)[None, :]), axis=1)
    cdf /= cdf[:, -1:]
    flat_k = k_rev.ravel()
    rev_off = np.zeros(flat_k.size + 1, dtype=np.int64)
    np.cumsum(flat_k, out=rev_off[1:])
    n_rev = int(rev_off[-1])
    cell_of = np.repeat(np.arange(flat_k.size, dtype=np.int64), flat_k)
    prod_of = cell_of // horizon
    star_rng = gen(_S_STARS)
    su = star_rng.random(n_rev)
    stars = np.ones(n_rev, dtype=np.int8)
    for j in range(4):
        stars += su > cdf[prod_of, j]
    verified = star_rng.random(n_rev) < 0.88
    star_sum = np.bincount(cell_of, weights=stars, minlength=flat_k.size).reshape(n, horizon)
    del cell_of, prod_of, su
    init_count = np.where(
        listed < 0, rrng.poisson(base * np.maximum(-listed, 0) * rate * (0.3 + 0.7 * u[:, 21])), 0
    ).astype(np.int64)
    init_sum = np.round(init_count * np.clip(mean_rating + 0.1 * z[:, 5], 1, 5))
    review_count = (init_count[:, None] + np.cumsum(k_rev, axis=1)).astype(np.int32)
    total_stars = init_sum[:, None] + np.cumsum(star_sum, axis=1)
    rating10 = np.where(review_count > 0, np.round(10 * total_stars / np.maximum(review_count, 1)), 0).astype(
        np.int16
    )
    del total_stars, star_sum

    # ---- sellers ----
    orng = gen(_S_OFFERS)
    o0 = 1 + np.floor(-np.log1p(-u[:, 22]) / 0.7)
    ostep = orng.random((n, horizon), dtype=np.float32)
    odrift = np.cumsum((ostep < 0.006).astype(np.int16) - (ostep > 0.994).astype(np.int16), axis=1)
    offers = o0[:, None] + odrift
    lagged = np.zeros((mb, horizon), dtype=np.float32)
    lagged[:, 14:] = bo_log[:, :-14] if horizon > 14 else 0.0
    pile_k = 2.0 + 4.0 * bo_u[:, 8]
    offers[bo_rows] += np.round(pile_k[:, None] * lagged / np.log(10.0)).astype(np.int16)
    offers = np.where(no_offer, 0, np.clip(offers, 1, 60)).astype(np.int16)
    # The buy box is sticky: it changes hands on ~8% of days, to the brand, Amazon or a reseller.
    byrng = gen(_S_BUYBOX)
    switch = byrng.random((n, horizon), dtype=np.float32) < 0.08
    switch[:, 0] = True
    pick = byrng.random(int(switch.sum()), dtype=np.float32)
    codes = np.where(
        pick < 0.6, 0, np.where(pick < 0.75, 1, 2 + ((pick - 0.75) / 0.25 * len(RESELLERS)).astype(np.int8))
    )
    holder = _carry(switch, codes.astype(np.int8))
    holder[offers <= 1] = 0  # a lone seller is the brand itself
    holder[offers == 0] = -1
    buybox = holder.astype(np.int8)
    del ostep, odrift, switch, holder

    # ---- keywords ----
    kw_text: list[str] = []
    kw_volume: list[float] = []
    kw_cat: list[int] = []
    for ci, c in enumerate(CATEGORIES):
        for s in c.subcategories:
            for h, vol in zip(s.heads, s.head_volume, strict=True):
                for mi, mod in enumerate(c.modifiers):
                    text = h if not mod else (f"{h} {mod}" if mod.startswith("for") else f"{mod} {h}")
                    kw_text.append(text)
                    kw_volume.append(vol * (1.0, 0.35, 0.25, 0.2)[mi] * scale)
                    kw_cat.append(ci)
    per_sub = 3 * 4
    krng = gen(_S_KEYWORDS)
    kkeys = krng.random((n, per_sub))
    own = head.astype(np.int64) * 4  # the product's own bare head term ranks first
    kkeys[np.arange(n), own] = -1.0
    slots = np.argsort(kkeys, axis=1)[:, :N_KEYWORD_SLOTS]
    kw_ids = ((cat * 3 + sub).astype(np.int64) * per_sub)[:, None] + slots
    kw_active = np.arange(N_KEYWORD_SLOTS)[None, :] < (3 + (krng.random(n) * 3).astype(np.int64))[:, None]
    vol_arr = np.asarray(kw_volume)
    kw_base = (
        np.log(25.0)
        + 0.8 * krng.standard_normal((n, N_KEYWORD_SLOTS))
        - 0.5 * np.log(base / np.median(base))[:, None]
        + 0.3 * np.log(vol_arr[kw_ids] / np.median(vol_arr))
        + np.where(np.arange(N_KEYWORD_SLOTS) == 0, 0.0, 0.7)[None, :]
    ).astype(np.float32)

    asins = _make_asins(cfg.seed, site_id, n)
    return _Site(
        site=site,
        site_id=site_id,
        dates=[(cfg.epoch + timedelta(days=k)).isoformat() for k in range(horizon)],
        asins=asins,
        order=np.argsort(asins, kind="stable"),
        index={a: k for k, a in enumerate(asins.tolist())},
        listed=listed,
        cat=cat.astype(np.int8),
        sub=sub,
        head=head,
        adjective=adjective,
        brands=brands,
        title_target=title_target,
        bullets=bullets,
        images=images,
        aplus=aplus,
        video=video,
        size_chart=size_chart,
        brand_story=brand_story,
        prime=prime,
        ev_day=ev_day,
        ev_title=ev_title,
        ev_bullets=ev_bullets,
        ev_images=ev_images,
        ev_aplus=ev_aplus,
        ev_video=ev_video,
        ev_brand_story=ev_brand_story,
        kw_text=kw_text,
        kw_volume=vol_arr,
        kw_cat=np.asarray(kw_cat),
        kw_ids=kw_ids,
        kw_active=kw_active,
        kw_base=kw_base,
        kw_gain=kw_gain,
        kw_gain_start=kw_gain_start,
        base=base,
        onset=onset,
        ramp=ramp,
        peak=peak,
        decoy=decoy,
        bo_rows=bo_rows,
        bo_mult=np.exp(bo_log),
        season_year=yearly,
        price_c=price_c,
        bsr_root=bsr_root,
        bsr_sub=bsr_sub,
        rating10=rating10,
        review_count=review_count,
        offers=offers,
        buybox=buybox,
        units=units,
        expected=expected.astype(np.float32),
        level=level.astype(np.float32),
        velocity=velocity,
        rev_off=rev_off,
        stars=stars,
        verified=verified,
    )


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
        self._sites: dict[str, _Site] = {}
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

    def _site(self, site: str) -> _Site:
        data = self._sites.get(site)
        if data is not None:
            return data
        lock = self._locks.get(site)
        if lock is None:
            raise UnknownSiteError(site)
        with lock:  # one generation per site even under concurrent first requests
            data = self._sites.get(site)
            if data is None:
                data = _build_site(self.config, site)
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
    def _resolve(data: _Site, asins: list[str]) -> tuple[list[int], list[str]]:
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

    def _listing(self, data: _Site, idx: np.ndarray, d: int) -> dict[str, np.ndarray]:
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

    def _titles(self, data: _Site, idx: np.ndarray, targets: np.ndarray) -> list[str]:
        """Amazon-style titles grown phrase by phrase up to the listing's target length."""
        n_phr = len(CATEGORIES[0].title_phrases)
        order = np.argsort(
            _hash_uniform(self.config.seed, data.site_id, idx[:, None], np.arange(n_phr)[None, :], 0x717),
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

    def _seller_name(self, data: _Site, i: int, code: int) -> str | None:
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
        salt = _mix64(np.array([self.config.seed & _MASK64], dtype=np.uint64))[0]
        return np.char.add("R", _base36(_mix64(key ^ salt), 13))

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
        noise = _hash_normal(self.config.seed, data.site_id, idx[:, None], slots[None, :], d, 0x4B57)
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

    def _frame_cells(self, data: _Site, start: date, end: date) -> tuple[np.ndarray, np.ndarray] | None:
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

    def _lookups(self, data: _Site) -> dict[str, pl.Series]:
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
