"""The market's knobs (``MarketConfig``), the state generated for one site (``SiteState``) and the
outputs of the generation stages that feed it.

``generate.build_site`` runs the stages (``generate.py``, ``dynamics.py``) and fills a ``SiteState``;
``Market`` and the Keepa encoder only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from asin_platform.simulator.catalog import SITE_IDS

# Named random streams of the generator: adding a stream never shifts the draws of another.
S_STATIC_U, S_STATIC_Z, S_BRANDS = 1, 2, 3
S_DRIFT, S_PRICE_STEP, S_PRICE_SIZE, S_PROMO, S_STOCKOUT = 10, 11, 12, 13, 14
S_SALES_NOISE, S_UNITS, S_BSR_NOISE, S_REVIEWS, S_STARS = 20, 21, 22, 23, 24
S_OFFERS, S_BUYBOX, S_BREAKOUT, S_DECOY, S_KEYWORDS = 30, 31, 40, 41, 50


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


# ---------------------------------------------------------------------------- stage outputs
NEVER = np.int32(1 << 30)  # "event never happens" day index
N_KEYWORD_SLOTS = 5


@dataclass(frozen=True)
class SiteContext:
    """What every stage of one site needs: the config, the site's constants, the day axis."""

    cfg: MarketConfig
    site: str
    site_id: int
    scale: float  # market size relative to the US
    fx: float  # local currency per USD
    whole_currency: bool  # prices are whole numbers (JP, IN)

    @property
    def n(self) -> int:
        return self.cfg.asins_per_site

    @property
    def horizon(self) -> int:
        return self.cfg.horizon_days

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.horizon, dtype=np.int32)

    def gen(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.site_id, stream])


@dataclass(frozen=True)
class Products:
    """Static draws per product: category, launch day, base demand through the power law, brand."""

    u: np.ndarray  # (n, 40) static uniforms
    z: np.ndarray  # (n, 16) static normals
    cat: np.ndarray
    sub: np.ndarray
    head: np.ndarray
    adjective: np.ndarray
    launched: np.ndarray  # launched after the epoch
    listed: np.ndarray
    a_i: np.ndarray  # the product's category power law (site-scaled a, b) and category size
    b_i: np.ndarray
    max_i: np.ndarray
    share_i: np.ndarray  # its sub-category's share of the category
    bsr0: np.ndarray  # base root rank
    base: np.ndarray  # base demand, units/day
    brands: list[str]


@dataclass(frozen=True)
class Listing:
    """Initial listing attributes and three listing-improvement events per product.

    Event slot 0 is the precursor improvement (filled by ``precursors``), slots 1-2 organic ones."""

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


@dataclass(frozen=True)
class Breakouts:
    onset: np.ndarray  # day index, -1 = none
    bo_rows: np.ndarray  # generation indices of breakout ASINs
    bo_u: np.ndarray  # (len(bo_rows), 12) uniforms of each breakout
    bo_log: np.ndarray  # (len(bo_rows), T) log demand multiplier
    ramp: np.ndarray
    peak: np.ndarray  # NaN = none


@dataclass(frozen=True)
class Precursors:
    """Decoys and the precursor signals (of breakouts and decoys) in the 1-3 weeks before the anchor."""

    decoy: np.ndarray
    pu: np.ndarray  # (n, 16) uniforms of the precursor draws
    show: np.ndarray  # (n, 5): traction, reviews, price cut, listing, keywords
    lead: np.ndarray  # days the precursors start ahead of the anchor
    p0: np.ndarray  # first precursor day
    pre_end: np.ndarray  # when a decoy's signals fade
    kw_gain: np.ndarray
    kw_gain_start: np.ndarray


@dataclass(frozen=True)
class Keywords:
    kw_text: list[str]  # the site's keyword table (global keyword id -> text)
    kw_volume: np.ndarray  # base monthly search volume per keyword id
    kw_cat: np.ndarray  # category of each keyword id (for seasonal volume)
    kw_ids: np.ndarray  # (n, slots) keyword ids
    kw_active: np.ndarray  # (n, slots)
    kw_base: np.ndarray  # (n, slots) baseline log organic rank


@dataclass(frozen=True)
class SiteCatalog:
    """A site's products: identity and static attributes, by generation index."""

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


@dataclass(frozen=True)
class SiteState(Keywords, Listing, SiteCatalog):
    """Everything generated for one site. Matrices are (n_asins, horizon_days), asin-major.

    The listing arrays and the keyword table are declared once, by the stage outputs ``Listing``
    and ``Keywords``; a ``SiteState`` carries them as its own fields (``state.ev_day``). Field order
    (catalog, listing, keywords, then the fields below) is that of the bases in reverse: the market
    pin (test_market_pin.py) hashes the fields in this order."""

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
