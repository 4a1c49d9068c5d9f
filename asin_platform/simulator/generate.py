"""Generate one site of the synthetic market, stage by stage (the recipe is in ``market.py``'s docstring).

``build_site`` runs the stages in order; each is a function of the site context and the earlier
stages' outputs, drawing from its own named random streams (``np.random.default_rng([seed, site_id,
stream])`` over whole (n_asins x horizon_days) matrices), so a value never depends on which ASINs or
dates a caller asks for, and adding a stream never shifts another's draws. Static stages (products,
listing, breakouts, precursors, keywords) live here; the daily dynamics in ``dynamics.py``.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from asin_platform.simulator import dynamics
from asin_platform.simulator.catalog import (
    ADJECTIVES,
    BRAND_SYLLABLES,
    CATEGORIES,
    CURRENCY,
    SITE_IDS,
    SITE_SCALE,
)
from asin_platform.simulator.numerics import base36, hash64, logistic01
from asin_platform.simulator.state import (
    N_KEYWORD_SLOTS,
    NEVER,
    S_BRANDS,
    S_BREAKOUT,
    S_DECOY,
    S_KEYWORDS,
    S_STATIC_U,
    S_STATIC_Z,
    Breakouts,
    Keywords,
    Listing,
    MarketConfig,
    Precursors,
    Products,
    SiteContext,
    SiteState,
)


def site_context(cfg: MarketConfig, site: str) -> SiteContext:
    _, fx, whole_currency = CURRENCY[site]
    return SiteContext(cfg, site, SITE_IDS.index(site), SITE_SCALE[site], fx, whole_currency)


def brand_names(rng: np.random.Generator, count: int) -> list[str]:
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


def make_asins(seed: int, site_id: int, n: int) -> np.ndarray:
    """ "B0" + 8 base-36 characters, a hash of (seed, site, index); collisions re-hashed with a salt."""
    idx = np.arange(n, dtype=np.int64)
    codes = hash64(seed, site_id, idx, 0xA51) % np.uint64(36**8)
    asins = np.char.add("B0", base36(codes, 8))
    salt = 1
    while True:
        _, first = np.unique(asins, return_index=True)
        dup = np.setdiff1d(idx, first)
        if dup.size == 0:
            return asins
        codes = hash64(seed, site_id, dup, 0xA51 + salt) % np.uint64(36**8)
        asins[dup] = np.char.add("B0", base36(codes, 8))
        salt += 1


def products(ctx: SiteContext) -> Products:
    """Category, launch day, base demand and brand: one (n, k) draw per stream so row i is stable in n."""
    n, horizon, cfg = ctx.n, ctx.horizon, ctx.cfg
    n_cat = len(CATEGORIES)
    cat_a = np.array([c.a for c in CATEGORIES]) * ctx.scale
    cat_b = np.array([c.b for c in CATEGORIES])
    cat_max = np.array([c.max_rank for c in CATEGORIES]) * math.sqrt(ctx.scale)
    cat_w = np.array([c.weight for c in CATEGORIES])
    u = ctx.gen(S_STATIC_U).random((n, 40))
    z = ctx.gen(S_STATIC_Z).standard_normal((n, 16))
    cat = np.searchsorted(np.cumsum(cat_w / cat_w.sum()), u[:, 0], side="right").clip(0, n_cat - 1)
    sub = (u[:, 1] * 3).astype(np.int8)
    launched = u[:, 3] < cfg.launch_share
    listed = np.where(
        launched, 1 + (u[:, 4] * (horizon - 1)).astype(np.int32), -(30 + (u[:, 4] * 1500).astype(np.int32))
    ).astype(np.int32)
    a_i, b_i, max_i = cat_a[cat], cat_b[cat], cat_max[cat]
    log10_bsr0 = np.clip(math.log10(4e4) + 0.7 * z[:, 0], 2.3, np.log10(0.8 * max_i))
    bsr0 = 10.0**log10_bsr0
    n_brands = max(5, n // 6)
    brand_pool = brand_names(ctx.gen(S_BRANDS), n_brands)
    brand_pick = (u[:, 14] ** 1.5 * n_brands).astype(np.int64)  # a few brands own many products
    return Products(
        u=u,
        z=z,
        cat=cat,
        sub=sub,
        head=(u[:, 2] * 3).astype(np.int8),
        adjective=(u[:, 13] * len(ADJECTIVES)).astype(np.int8),
        launched=launched,
        listed=listed,
        a_i=a_i,
        b_i=b_i,
        max_i=max_i,
        share_i=np.array([[s.share for s in c.subcategories] for c in CATEGORIES])[cat, sub],
        bsr0=bsr0,
        base=a_i * bsr0 ** (-b_i),
        brands=[brand_pool[k] for k in brand_pick],
    )


def listing(ctx: SiteContext, p: Products) -> Listing:
    """Listing quality and the organic listing improvements (some products, any time: slots 1-2)."""
    n, horizon, u, z = ctx.n, ctx.horizon, p.u, p.z
    quality = u[:, 7]
    ev_day = np.full((n, 3), NEVER, dtype=np.int32)
    ev_title = np.zeros((n, 3), dtype=np.int16)
    ev_bullets = np.zeros((n, 3), dtype=np.int8)
    ev_images = np.zeros((n, 3), dtype=np.int8)
    ev_aplus = np.zeros((n, 3), dtype=bool)
    ev_video = np.zeros((n, 3), dtype=bool)
    ev_brand_story = np.zeros((n, 3), dtype=bool)
    for slot, col in ((1, 15), (2, 20)):
        has = u[:, col] < 0.35
        ev_day[:, slot] = np.where(has, (u[:, col + 1] * horizon).astype(np.int32), NEVER)
        ev_images[:, slot] = (u[:, col + 2] < 0.6).astype(np.int8)
        ev_bullets[:, slot] = (u[:, col + 3] < 0.5).astype(np.int8)
        ev_aplus[:, slot] = u[:, col + 4] < 0.25
        ev_video[:, slot] = u[:, col + 4] > 0.85
        ev_brand_story[:, slot] = (u[:, col + 2] > 0.85) | (u[:, col + 3] > 0.85)
        ev_title[:, slot] = np.where(u[:, col + 3] < 0.5, 10 + (u[:, col + 1] * 20).astype(np.int16), 0)
    return Listing(
        title_target=np.clip(np.round(50 + 110 * quality + 15 * z[:, 3]), 30, 190).astype(np.int16),
        bullets=np.clip(np.round(1.5 + quality * 3 + 0.8 * z[:, 2]), 0, 5).astype(np.int8),
        images=np.clip(np.round(1 + quality * 6 + z[:, 1]), 1, 8).astype(np.int8),
        aplus=u[:, 8] < 0.1 + 0.5 * quality,
        video=u[:, 9] < 0.05 + 0.4 * quality,
        size_chart=u[:, 10] < 0.2,
        brand_story=u[:, 11] < 0.1 + 0.4 * quality,
        prime=u[:, 12] < 0.8,
        ev_day=ev_day,
        ev_title=ev_title,
        ev_bullets=ev_bullets,
        ev_images=ev_images,
        ev_aplus=ev_aplus,
        ev_video=ev_video,
        ev_brand_story=ev_brand_story,
    )


def _breakout_onsets(ctx: SiteContext, p: Products, brng: np.random.Generator) -> np.ndarray:
    """Onsets stratified over the horizon so every few weeks holds some; -1 = no breakout."""
    n, horizon = ctx.n, ctx.horizon
    onset = np.full(n, -1, dtype=np.int32)
    lo, hi = 35, horizon - 21
    m = int(round(ctx.cfg.breakout_rate * n)) if hi > lo else 0
    keys = brng.random(n)
    eligible = p.bsr0 >= 3000  # a breakout climbs from the long tail; a top seller has no room to 1000x
    strata = lo + ((np.arange(m) + brng.random(m)) / max(m, 1) * (hi - lo)).astype(np.int32)
    for day in brng.permutation(strata):
        cand = np.flatnonzero(eligible & (onset < 0) & (p.listed <= day - 35))
        if cand.size:
            onset[cand[np.argmin(keys[cand])]] = day
    return onset


def breakouts(ctx: SiteContext, p: Products) -> Breakouts:
    """Demand growing 10x-1000x over 2-8 weeks (logistic ramp, a third in two stages), some decaying."""
    n, t = ctx.n, ctx.t
    brng = ctx.gen(S_BREAKOUT)
    onset = _breakout_onsets(ctx, p, brng)
    bo_rows = np.flatnonzero(onset >= 0)
    bo_u = brng.random((n, 12))[bo_rows]
    cap = (p.bsr0[bo_rows] / 3.0) ** p.b_i[bo_rows]  # peak rank stays >= ~3
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
    g_single = logistic01(x, steep[:, None])
    g_multi = stage1[:, None] * logistic01(x / 0.4, steep[:, None]) + (1 - stage1[:, None]) * logistic01(
        (x - 0.7) / 0.3, steep[:, None]
    )
    g = np.where(multi[:, None], g_multi, g_single) * (rel >= 0)
    fade = 1.0 - decay_frac[:, None] * np.clip((rel - ramp_rows[:, None]) / decay_days[:, None], 0.0, 1.0)
    ramp = np.zeros(n, dtype=np.int32)
    ramp[bo_rows] = ramp_rows
    peak = np.full(n, np.nan)
    peak[bo_rows] = peak_rows
    bo_log = (np.log(peak_rows)[:, None] * g * fade).astype(np.float32)
    return Breakouts(onset=onset, bo_rows=bo_rows, bo_u=bo_u, bo_log=bo_log, ramp=ramp, peak=peak)


def precursors(ctx: SiteContext, p: Products, b: Breakouts, lst: Listing) -> Precursors:
    """Pick the decoys and draw every precursor; writes the precursor listing event (slot 0) into ``lst``.

    Precursor strength = P(each precursor is present): breakouts strong/medium/weak, decoys
    strong/medium."""
    n, horizon, onset = ctx.n, ctx.horizon, b.onset
    drng = ctx.gen(S_DECOY)
    d_keys = drng.random(n)
    d_day = (28 + drng.random(n) * (horizon - 35)).astype(np.int32)
    decoy_ok = (onset < 0) & (p.listed <= d_day - 35)
    n_decoy = int(round(ctx.cfg.decoy_rate * n))
    decoy = np.zeros(n, dtype=bool)
    decoy[np.flatnonzero(decoy_ok)[np.argsort(d_keys[decoy_ok])[:n_decoy]]] = True
    pu = drng.random((n, 16))
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
    lst.ev_day[:, 0] = np.where(slot0, p0 + (pu[:, 8] * lead).astype(np.int32), NEVER)
    lst.ev_images[:, 0] = np.where(slot0, 2 + (pu[:, 9] * 3).astype(np.int8), 0)
    lst.ev_bullets[:, 0] = np.where(slot0, 2, 0)
    lst.ev_aplus[:, 0] = slot0
    lst.ev_video[:, 0] = slot0 & (pu[:, 10] < 0.7)
    lst.ev_brand_story[:, 0] = slot0 & (pu[:, 10] < 0.4)
    lst.ev_title[:, 0] = np.where(slot0, 20 + (pu[:, 11] * 30).astype(np.int16), 0)
    return Precursors(
        decoy=decoy,
        pu=pu,
        show=show,
        lead=lead,
        p0=p0,
        pre_end=pre_end,
        kw_gain=np.where(show[:, 4], 0.4 + 0.6 * pu[:, 12], 0.0).astype(np.float32),
        kw_gain_start=np.where(show[:, 4], p0, NEVER).astype(np.int32),
    )


def keyword_table(scale: float) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The site's keywords (global id -> text), their base monthly search volume and category."""
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
    return kw_text, np.asarray(kw_volume), np.asarray(kw_cat)


def keywords(ctx: SiteContext, p: Products) -> Keywords:
    """Each product's keyword slots (its own bare head term first) and baseline organic ranks."""
    n = ctx.n
    kw_text, vol_arr, kw_cat = keyword_table(ctx.scale)
    per_sub = 3 * 4
    krng = ctx.gen(S_KEYWORDS)
    kkeys = krng.random((n, per_sub))
    own = p.head.astype(np.int64) * 4  # the product's own bare head term ranks first
    kkeys[np.arange(n), own] = -1.0
    slots = np.argsort(kkeys, axis=1)[:, :N_KEYWORD_SLOTS]
    kw_ids = ((p.cat * 3 + p.sub).astype(np.int64) * per_sub)[:, None] + slots
    kw_active = np.arange(N_KEYWORD_SLOTS)[None, :] < (3 + (krng.random(n) * 3).astype(np.int64))[:, None]
    kw_base = (
        np.log(25.0)
        + 0.8 * krng.standard_normal((n, N_KEYWORD_SLOTS))
        - 0.5 * np.log(p.base / np.median(p.base))[:, None]
        + 0.3 * np.log(vol_arr[kw_ids] / np.median(vol_arr))
        + np.where(np.arange(N_KEYWORD_SLOTS) == 0, 0.0, 0.7)[None, :]
    ).astype(np.float32)
    return Keywords(kw_text, vol_arr, kw_cat, kw_ids, kw_active, kw_base)


def build_site(cfg: MarketConfig, site: str) -> SiteState:
    """Run every stage for ``site`` and gather the state the market serves from."""
    ctx = site_context(cfg, site)
    p = products(ctx)
    lst = listing(ctx, p)
    b = breakouts(ctx, p)
    pre = precursors(ctx, p, b, lst)
    level = dynamics.demand_level(ctx, p, lst, pre, b)
    weekly, yearly, event = dynamics.season_tables(cfg.epoch, ctx.horizon)
    price = dynamics.prices(ctx, p, pre, event)
    sales = dynamics.sales_and_rank(ctx, p, level, (weekly * yearly).astype(np.float32), price)
    reviews = dynamics.reviews(ctx, p, pre, b, sales.units, price.listed_mask)
    offers, buybox = dynamics.sellers(ctx, p, b, price.no_offer)
    kw = keywords(ctx, p)
    asins = make_asins(cfg.seed, ctx.site_id, ctx.n)
    return SiteState(
        site=site,
        site_id=ctx.site_id,
        dates=[(cfg.epoch + timedelta(days=k)).isoformat() for k in range(ctx.horizon)],
        asins=asins,
        order=np.argsort(asins, kind="stable"),
        index={a: k for k, a in enumerate(asins.tolist())},
        listed=p.listed,
        cat=p.cat.astype(np.int8),
        sub=p.sub,
        head=p.head,
        adjective=p.adjective,
        brands=p.brands,
        **vars(lst),
        **vars(kw),
        kw_gain=pre.kw_gain,
        kw_gain_start=pre.kw_gain_start,
        base=p.base,
        onset=b.onset,
        ramp=b.ramp,
        peak=b.peak,
        decoy=pre.decoy,
        bo_rows=b.bo_rows,
        bo_mult=np.exp(b.bo_log),
        season_year=yearly,
        price_c=price.price_c,
        bsr_root=sales.bsr_root,
        bsr_sub=sales.bsr_sub,
        **vars(reviews),
        offers=offers,
        buybox=buybox,
        units=sales.units,
        expected=sales.expected.astype(np.float32),
        level=level.astype(np.float32),
        velocity=sales.velocity,
    )
