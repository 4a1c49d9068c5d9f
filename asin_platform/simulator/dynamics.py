"""The daily stages of a site's generation: demand level, prices, sales and ranks, reviews, sellers.

Each takes the static stages of ``generate.py`` and returns (n_asins x horizon_days) matrices; see
``market.py``'s docstring for the model and ``generate.build_site`` for the order they run in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from asin_platform.simulator.catalog import CATEGORIES, RESELLERS, WEEKDAY_SHAPE
from asin_platform.simulator.numerics import carry, episodes, step_matrix
from asin_platform.simulator.state import (
    S_BSR_NOISE,
    S_BUYBOX,
    S_DRIFT,
    S_OFFERS,
    S_PRICE_SIZE,
    S_PRICE_STEP,
    S_PROMO,
    S_REVIEWS,
    S_SALES_NOISE,
    S_STARS,
    S_STOCKOUT,
    S_UNITS,
    Breakouts,
    Listing,
    Precursors,
    Products,
    SiteContext,
)

MAX_REVIEWS_PER_DAY = 1023  # review ids reserve 10 bits for the review's number within its day


@dataclass(frozen=True)
class Prices:
    price_c: np.ndarray  # int32 price in hundredths of the local currency, -1 = no offer
    no_offer: np.ndarray  # stock-out days
    listed_mask: np.ndarray  # day >= listing day
    price_effect: np.ndarray  # demand multiplier of the price against the product's base price


@dataclass(frozen=True)
class Sales:
    expected: np.ndarray
    units: np.ndarray
    velocity: np.ndarray
    bsr_root: np.ndarray
    bsr_sub: np.ndarray


@dataclass(frozen=True)
class Reviews:
    rev_off: np.ndarray
    stars: np.ndarray
    verified: np.ndarray
    review_count: np.ndarray
    rating10: np.ndarray


def season_tables(epoch: date, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _ar1_drift(ctx: SiteContext, p: Products) -> np.ndarray:
    """AR(1) in log space: loop over days, vectorised over products."""
    n, horizon = ctx.n, ctx.horizon
    eps = ctx.gen(S_DRIFT).standard_normal((n, horizon), dtype=np.float32)
    sigma = (0.004 + 0.012 * p.u[:, 5]).astype(np.float32)
    drift = np.empty((n, horizon), dtype=np.float32)
    state = np.zeros(n, dtype=np.float32)
    for k in range(horizon):
        state = np.float32(0.996) * state + sigma * eps[:, k]
        drift[:, k] = state
    return drift


def demand_level(ctx: SiteContext, p: Products, lst: Listing, pre: Precursors, b: Breakouts) -> np.ndarray:
    """Units/day before seasonality and price: base x drift x launch curve x listing improvements x
    precursor traction x breakout."""
    horizon, t = ctx.horizon, ctx.t
    loglev = _ar1_drift(ctx, p)
    loglev += np.log(p.base).astype(np.float32)[:, None]
    age = t[None, :] - p.listed[:, None]
    tau = 10 + 50 * p.u[:, 6]
    new_rows = np.flatnonzero(p.launched)
    loglev[new_rows] += np.log(
        0.15 + 0.85 * (1.0 - np.exp(-np.maximum(age[new_rows], 0) / tau[new_rows, None]))
    ).astype(np.float32)
    # listing improvements lift conversion
    for slot in range(3):
        effect = (
            0.04 * lst.ev_images[:, slot]
            + 0.02 * lst.ev_bullets[:, slot]
            + 0.10 * lst.ev_aplus[:, slot]
            + 0.05 * lst.ev_video[:, slot]
            + 0.001 * lst.ev_title[:, slot]
        )
        rows = np.flatnonzero(lst.ev_day[:, slot] < horizon)
        loglev[rows] += step_matrix(lst.ev_day[rows, slot], effect[rows], horizon)
    # early traction in the precursor window (fades for decoys)
    tr = np.flatnonzero(pre.show[:, 0])
    beta = 0.2 + 0.6 * pre.pu[tr, 13]
    ramp_in = np.clip((t[None, :] - pre.p0[tr, None]) / np.maximum(pre.lead[tr, None], 1), 0.0, 1.0)
    ramp_out = 1.0 - np.clip((t[None, :] - pre.pre_end[tr, None]) / 14.0, 0.0, 1.0)
    loglev[tr] += (np.log1p(beta)[:, None] * ramp_in * ramp_out).astype(np.float32)
    loglev[b.bo_rows] += b.bo_log
    return np.exp(loglev)


def _regular_log_price(ctx: SiteContext, p: Products, pre: Precursors) -> tuple[np.ndarray, np.ndarray]:
    """(base log price per product, daily regular log price): rare random steps and precursor cuts."""
    n, horizon = ctx.n, ctx.horizon
    fx_price = np.array([c.price_median for c in CATEGORIES])[p.cat] * ctx.fx
    logp0 = (np.log(fx_price) + 0.45 * p.z[:, 4]).astype(np.float32)
    changes = ctx.gen(S_PRICE_STEP).random((n, horizon), dtype=np.float32) < 1.0 / 90.0
    steps = np.zeros((n, horizon), dtype=np.float32)
    steps[changes] = ctx.gen(S_PRICE_SIZE).standard_normal(int(changes.sum()), dtype=np.float32) * np.float32(
        0.07
    )
    logreg = np.cumsum(steps, axis=1)
    logreg += logp0[:, None]
    cut_rows = np.flatnonzero(pre.show[:, 2])
    cut_day = pre.p0[cut_rows] + (pre.pu[cut_rows, 14] * pre.lead[cut_rows] / 2).astype(np.int32)
    logreg[cut_rows] += step_matrix(cut_day, np.log(1.0 - (0.1 + 0.15 * pre.pu[cut_rows, 15])), horizon)
    return logp0, logreg


def prices(ctx: SiteContext, p: Products, pre: Precursors, event: np.ndarray) -> Prices:
    """Offer prices: regular price minus promotions (clustered on shopping events), stock-outs, rounding."""
    n, horizon, t = ctx.n, ctx.horizon, ctx.t
    logp0, logreg = _regular_log_price(ctx, p, pre)
    prng = ctx.gen(S_PROMO)
    promo_p = np.full(horizon, 1.0 / 75.0, dtype=np.float32)
    promo_p[event >= 1.5] *= 8.0  # deals cluster on Prime Day / Black Friday
    promo_start = prng.random((n, horizon), dtype=np.float32) < promo_p[None, :]
    n_promo = int(promo_start.sum())
    _, promo_depth = episodes(
        promo_start, prng.integers(2, 11, size=n_promo), (0.1 + 0.2 * prng.random(n_promo)).astype(np.float32)
    )
    logoffer = logreg + np.log1p(-promo_depth)
    srng = ctx.gen(S_STOCKOUT)
    out_start = srng.random((n, horizon), dtype=np.float32) < 0.002
    no_offer, _ = episodes(out_start, srng.integers(1, 7, size=int(out_start.sum())), None)
    price = np.exp(logoffer.astype(np.float64))
    if ctx.whole_currency:
        cents = np.where(price >= 1000, np.round(price / 100) * 100 - 20, np.round(price / 10) * 10) * 100
    else:
        cents = np.where(price >= 10, np.round(price) * 100 - 1, np.round(price * 2) * 50 - 1)
    listed_mask = t[None, :] >= p.listed[:, None]
    price_c = np.where(no_offer | ~listed_mask, -1, np.maximum(cents, 1)).astype(np.int32)
    elasticity = (1.2 + 1.3 * p.u[:, 17]).astype(np.float32)
    price_effect = np.exp(-elasticity[:, None] * (logoffer - logp0[:, None]))
    return Prices(price_c=price_c, no_offer=no_offer, listed_mask=listed_mask, price_effect=price_effect)


def _velocity(p: Products, expected: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The sales velocity the rank reflects: an EWMA of units, blended with expected sales so a
    long-tail product's rank drifts between sales instead of collapsing to the category's bottom."""
    n, horizon = expected.shape
    velocity = np.empty((n, horizon), dtype=np.float32)
    v = np.where(p.listed < 0, expected[:, 0], 0.0).astype(np.float32)
    for k in range(horizon):
        v = np.float32(0.6) * v + np.float32(0.4) * (
            np.float32(0.4) * expected[:, k] + np.float32(0.6) * units[:, k]
        )
        velocity[:, k] = v
    return velocity


def sales_and_rank(ctx: SiteContext, p: Products, level: np.ndarray, season: np.ndarray, pr: Prices) -> Sales:
    """Expected and sampled units, then the root / sub rank as the inverse power law of velocity."""
    n, horizon = ctx.n, ctx.horizon
    expected = level * season[p.cat] * pr.price_effect
    expected[pr.no_offer | ~pr.listed_mask] = 0.0
    noise = np.exp(
        ctx.gen(S_SALES_NOISE).standard_normal((n, horizon), dtype=np.float32) * np.float32(0.3) - 0.045
    )
    units = ctx.gen(S_UNITS).poisson(expected * noise).astype(np.int32)
    velocity = _velocity(p, expected, units)
    zr = ctx.gen(S_BSR_NOISE).standard_normal((n, horizon), dtype=np.float32)
    # inverse power law in log space (float32 is exact for integer ranks below 2**24)
    log_root = np.log(np.maximum(velocity, np.float32(1e-6)))
    np.subtract(np.log(p.a_i).astype(np.float32)[:, None], log_root, out=log_root)
    log_root *= (1.0 / p.b_i).astype(np.float32)[:, None]
    log_root += np.float32(0.1) * zr
    root = np.clip(np.rint(np.exp(log_root)), 1, np.round(p.max_i).astype(np.float32)[:, None])
    log_root += np.log(p.share_i).astype(np.float32)[:, None] + np.float32(0.05) * zr[:, ::-1]
    sub_rank = np.clip(
        np.rint(np.exp(log_root)), 1, np.round(p.max_i * p.share_i).astype(np.float32)[:, None]
    )
    # New launches are unranked until their first sale.
    ranked = pr.listed_mask & ((p.listed[:, None] < 0) | (np.cumsum(units, axis=1) > 0))
    return Sales(
        expected=expected,
        units=units,
        velocity=velocity,
        bsr_root=np.where(ranked, root, 0).astype(np.int32),
        bsr_sub=np.where(ranked, sub_rank, 0).astype(np.int32),
    )


def _stars(
    ctx: SiteContext, k_rev: np.ndarray, mean_rating: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per review: stars drawn around the product's mean rating and the verified flag.

    Returns (offsets of each cell's reviews, stars, verified, star sum per cell)."""
    n, horizon = k_rev.shape
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
    star_rng = ctx.gen(S_STARS)
    su = star_rng.random(n_rev)
    stars = np.ones(n_rev, dtype=np.int8)
    for j in range(4):
        stars += su > cdf[prod_of, j]
    verified = star_rng.random(n_rev) < 0.88
    star_sum = np.bincount(cell_of, weights=stars, minlength=flat_k.size).reshape(n, horizon)
    return rev_off, stars, verified, star_sum


def reviews(
    ctx: SiteContext, p: Products, pre: Precursors, b: Breakouts, units: np.ndarray, listed_mask: np.ndarray
) -> Reviews:
    """Reviews at 1-2% of units plus the precursor burst; cumulative count and running mean rating."""
    n, horizon, t, u = ctx.n, ctx.horizon, ctx.t, p.u
    rrng = ctx.gen(S_REVIEWS)
    rate = 0.01 + 0.01 * u[:, 18]
    k_rev = np.zeros((n, horizon), dtype=np.int32)
    sold_r, sold_c = np.nonzero(units)  # most cells sell nothing: draw only where something sold
    k_rev[sold_r, sold_c] = rrng.binomial(units[sold_r, sold_c], rate[sold_r])
    rv = np.flatnonzero(pre.show[:, 1])
    burst_start = pre.p0[rv] + (pre.pu[rv, 3] * pre.lead[rv] / 2).astype(np.int32)
    burst_end = np.where(b.onset[rv] >= 0, b.onset[rv] + b.ramp[rv], pre.pre_end[rv])
    in_burst = (t[None, :] >= burst_start[:, None]) & (t[None, :] < burst_end[:, None]) & listed_mask[rv]
    lam = (0.15 + 0.65 * pre.pu[rv, 4])[:, None] * in_burst
    k_rev[rv] += rrng.poisson(lam).astype(np.int32)
    np.minimum(k_rev, MAX_REVIEWS_PER_DAY, out=k_rev)
    mean_rating = 3.5 + 1.3 * u[:, 19]
    rev_off, stars, verified, star_sum = _stars(ctx, k_rev, mean_rating)
    listed = p.listed
    init_count = np.where(
        listed < 0, rrng.poisson(p.base * np.maximum(-listed, 0) * rate * (0.3 + 0.7 * u[:, 21])), 0
    ).astype(np.int64)
    init_sum = np.round(init_count * np.clip(mean_rating + 0.1 * p.z[:, 5], 1, 5))
    review_count = (init_count[:, None] + np.cumsum(k_rev, axis=1)).astype(np.int32)
    total_stars = init_sum[:, None] + np.cumsum(star_sum, axis=1)
    rating10 = np.where(review_count > 0, np.round(10 * total_stars / np.maximum(review_count, 1)), 0).astype(
        np.int16
    )
    return Reviews(
        rev_off=rev_off, stars=stars, verified=verified, review_count=review_count, rating10=rating10
    )


def sellers(
    ctx: SiteContext, p: Products, b: Breakouts, no_offer: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(offer count, buy-box holder code) per day: sellers pile into breakouts two weeks in, and the
    buy box is sticky (changes hands on ~8% of days, to the brand, Amazon or a reseller)."""
    n, horizon = ctx.n, ctx.horizon
    orng = ctx.gen(S_OFFERS)
    o0 = 1 + np.floor(-np.log1p(-p.u[:, 22]) / 0.7)
    ostep = orng.random((n, horizon), dtype=np.float32)
    odrift = np.cumsum((ostep < 0.006).astype(np.int16) - (ostep > 0.994).astype(np.int16), axis=1)
    offers = o0[:, None] + odrift
    lagged = np.zeros((b.bo_rows.size, horizon), dtype=np.float32)
    lagged[:, 14:] = b.bo_log[:, :-14] if horizon > 14 else 0.0
    pile_k = 2.0 + 4.0 * b.bo_u[:, 8]
    offers[b.bo_rows] += np.round(pile_k[:, None] * lagged / np.log(10.0)).astype(np.int16)
    offers = np.where(no_offer, 0, np.clip(offers, 1, 60)).astype(np.int16)
    byrng = ctx.gen(S_BUYBOX)
    switch = byrng.random((n, horizon), dtype=np.float32) < 0.08
    switch[:, 0] = True
    pick = byrng.random(int(switch.sum()), dtype=np.float32)
    codes = np.where(
        pick < 0.6, 0, np.where(pick < 0.75, 1, 2 + ((pick - 0.75) / 0.25 * len(RESELLERS)).astype(np.int8))
    )
    holder = carry(switch, codes.astype(np.int8))
    holder[offers <= 1] = 0  # a lone seller is the brand itself
    holder[offers == 0] = -1
    return offers, holder.astype(np.int8)
