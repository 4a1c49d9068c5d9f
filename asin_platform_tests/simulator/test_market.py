"""The market model: determinism, purity, contract shapes and the realism the features rely on."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from asin_platform.simulator import Market, MarketConfig, UnknownSiteError
from asin_platform.simulator.catalog import CATEGORY_CALIBRATION
from asin_platform_tests.simulator.conftest import DAY, SMALL


def _dump(market: Market, site: str, asins: list[str], day: date) -> str:
    """Everything the API serves for these ASINs around ``day``, as canonical JSON."""
    return json.dumps(
        {
            "universe": market.universe(site, day),
            "products": market.products(site, asins, day),
            "series": market.timeseries(site, asins, day - timedelta(days=20), day),
            "reviews": market.reviews(site, asins, day - timedelta(days=30), day),
            "keywords": market.keywords(site, asins, day),
        },
        sort_keys=True,
    )


def test_same_seed_same_json_different_seed_differs(small_market: Market) -> None:
    asins = small_market.universe("US", DAY)[:25]
    again = Market(SMALL)
    assert _dump(again, "US", asins, DAY) == _dump(small_market, "US", asins, DAY)
    other = Market(MarketConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1}))
    assert other.universe("US", DAY) != small_market.universe("US", DAY)


def test_values_do_not_depend_on_what_else_is_requested(small_market: Market) -> None:
    asins = small_market.universe("US", DAY)[:40]
    target = asins[7]
    fresh = Market(SMALL)  # a different request history: a single ASIN, a single day, first
    one_series, _ = fresh.timeseries("US", [target], DAY, DAY)
    many_series, _ = small_market.timeseries("US", asins, DAY - timedelta(days=30), DAY + timedelta(days=5))
    point = next(s for s in many_series if s["asin"] == target)["points"]
    assert one_series[0]["points"][0] == next(p for p in point if p["date"] == DAY.isoformat())
    one_kw, _ = fresh.keywords("US", [target], DAY)
    many_kw, _ = small_market.keywords("US", asins, DAY)
    assert one_kw[0] == next(k for k in many_kw if k["asin"] == target)
    one_prod, _ = fresh.products("US", [target], DAY)
    many_prod, _ = small_market.products("US", list(reversed(asins)), DAY)
    assert one_prod[0] == next(p for p in many_prod if p["asin"] == target)
    one_rev = fresh.reviews("US", [target], DAY - timedelta(days=60), DAY)
    many_rev = small_market.reviews("US", asins, DAY - timedelta(days=60), DAY)
    assert one_rev == [r for r in many_rev if r["asin"] == target]


def test_frame_matches_api(small_market: Market) -> None:
    frame = small_market.timeseries_frame("US", DAY, DAY)
    asins = frame["asin"].to_list()[:100]
    items, _ = small_market.timeseries("US", asins, DAY, DAY)
    api = pl.DataFrame(
        [{"asin": s["asin"], **s["points"][0]} for s in items],
        schema_overrides={"price": pl.Float64, "rating": pl.Float64},
    )
    cols = [
        "asin",
        "price",
        "bsr_root",
        "bsr_sub",
        "rating",
        "review_count",
        "new_offer_count",
        "buybox_seller",
    ]
    got = frame.filter(pl.col("asin").is_in(asins)).select(cols)
    assert got.cast({"bsr_root": pl.Int64, "bsr_sub": pl.Int64, "new_offer_count": pl.Int64}).equals(
        api.select(cols).cast({"bsr_root": pl.Int64, "bsr_sub": pl.Int64, "new_offer_count": pl.Int64})
    )
    assert frame["asin"].is_sorted()


def test_asin_format_and_universe_growth(small_market: Market) -> None:
    first = small_market.universe("US", SMALL.epoch)
    last = small_market.universe("US", SMALL.epoch + timedelta(days=SMALL.horizon_days - 1))
    assert first == sorted(first) and set(first) < set(last)
    assert 0.6 < len(first) / SMALL.asins_per_site < 0.8  # ~70% exist at the epoch
    assert all(len(a) == 10 and a.startswith("B0") and a.isalnum() and a.upper() == a for a in last)
    assert small_market.universe("US", SMALL.epoch - timedelta(days=1)) == []
    assert set(small_market.universe("DE", DAY)).isdisjoint(small_market.universe("US", DAY))


def test_contract_shapes_and_edges(small_market: Market) -> None:
    asins = small_market.universe("US", DAY)[:5]
    products, not_found = small_market.products("US", [*asins, "B0NOTREAL1", asins[0]], DAY)
    assert not_found == ["B0NOTREAL1"] and [p["asin"] for p in products] == asins
    p = products[0]
    assert set(p) == {
        "asin", "site", "title", "brand", "category_id", "category_path", "subcategory_id", "listing", "listed_since",
    }  # fmt: skip
    assert p["listing"]["title_length"] == len(p["title"]) and 0 <= p["listing"]["bullet_count"] <= 5
    assert 1 <= p["listing"]["image_count"] <= 9
    assert set(p["listing"]["attribute_flags"]) == {"video", "size_chart", "brand_story", "prime"}
    assert p["category_id"] in CATEGORY_CALIBRATION and date.fromisoformat(p["listed_since"]) <= DAY
    # A launch is unknown on a day before it was listed, and has no points before listed_since.
    late = sorted(set(small_market.universe("US", date(2025, 8, 1))) - set(small_market.universe("US", DAY)))[
        0
    ]
    assert small_market.products("US", [late], DAY) == ([], [late])
    series, _ = small_market.timeseries("US", [late], SMALL.epoch, date(2025, 8, 1))
    listed = small_market.products("US", [late], date(2025, 8, 1))[0][0]["listed_since"]
    assert series[0]["points"] and min(pt["date"] for pt in series[0]["points"]) >= listed
    # Outside the horizon: no data, no crash.
    far = SMALL.epoch + timedelta(days=5000)
    assert small_market.timeseries("US", asins, far, far)[0][0]["points"] == []
    assert small_market.reviews("US", asins, far, far) == []
    assert small_market.keywords("US", asins, far) == ([], asins)
    with pytest.raises(UnknownSiteError):
        small_market.universe("FR", DAY)


def test_reviews_sorted_unique_and_consistent_with_counts(small_market: Market) -> None:
    asins = small_market.universe("US", DAY)
    reviews = small_market.reviews("US", asins, DAY - timedelta(days=40), DAY)
    keys = [(r["date"], r["review_id"]) for r in reviews]
    assert keys == sorted(keys) and len({r["review_id"] for r in reviews}) == len(reviews) > 0
    assert all(1 <= r["rating"] <= 5 for r in reviews)
    # Each ASIN's review_count grows by exactly the number of reviews served for the window.
    frame = small_market.timeseries_frame("US", DAY - timedelta(days=41), DAY).sort("asin", "date")
    growth = frame.group_by("asin").agg(
        (pl.col("review_count").last() - pl.col("review_count").first()).alias("n"), pl.first("date")
    )
    # a product launched inside the window starts from its launch-day count, which includes that day
    growth = growth.filter(pl.col("date") == DAY - timedelta(days=41)).filter(pl.col("n") > 0)
    per_asin = pl.DataFrame(reviews).group_by("asin").len()
    assert growth.height > 10
    assert growth.join(per_asin, on="asin", how="left").filter(pl.col("n") != pl.col("len")).height == 0


def test_power_law_per_category(medium_market: Market) -> None:
    frame = medium_market.timeseries_frame("US", date(2025, 1, 1), date(2025, 12, 31))
    truth = medium_market.ground_truth("US", date(2025, 1, 1), date(2025, 12, 31))
    both = frame.join(truth, on=["site", "date", "asin", "category_id"])
    cal = medium_market.calibration("US")
    for row in cal.iter_rows(named=True):
        sub = both.filter(
            (pl.col("category_id") == row["category_id"])
            & pl.col("bsr_root").is_between(10, row["max_rank"] // 2)
        )
        x = np.log(sub["bsr_root"].to_numpy())
        y = np.log(sub["sales_velocity"].to_numpy())  # the sales the rank reflects
        slope, _ = np.polyfit(x, y, 1)
        r2 = np.corrcoef(x, y)[0, 1] ** 2
        assert 0.88 <= -slope <= 1.07, (row["category_id"], slope)
        assert abs(-slope - row["b"]) < 0.05 and r2 > 0.95
        # Expected daily sales (before sampling noise) follow the same law, a little noisier.
        daily = sub.filter(pl.col("latent_demand") > 0)
        assert np.corrcoef(np.log(daily["bsr_root"]), np.log(daily["latent_demand"]))[0, 1] ** 2 > 0.85
    assert frame["bsr_root"].max() > 2e5 and frame["bsr_root"].min() < 100


def test_breakouts(medium_market: Market) -> None:
    truth = medium_market.ground_truth("US", MEDIUM_START, MEDIUM_END)
    per = truth.group_by("asin").agg(
        pl.first("breakout_onset"), pl.first("breakout_peak_multiplier"), pl.first("breakout_ramp_days")
    )
    breakouts = per.filter(pl.col("breakout_onset").is_not_null())
    assert 0.02 <= breakouts.height / per.height <= 0.06
    assert breakouts["breakout_peak_multiplier"].is_between(10, 1000).all()
    assert breakouts["breakout_ramp_days"].is_between(14, 56).all()
    # Onsets spread over the horizon: every 8-week window holds some.
    onsets = breakouts["breakout_onset"].sort()
    starts = pl.date_range(
        MEDIUM_START + timedelta(days=35), MEDIUM_END - timedelta(days=21 + 56), "28d", eager=True
    )
    assert all(((onsets >= s) & (onsets < s + timedelta(days=56))).any() for s in starts)
    # Realised demand before the onset vs after the ramp: one to three orders of magnitude.
    j = truth.join(breakouts.select("asin"), on="asin").with_columns(
        rel=(pl.col("date") - pl.col("breakout_onset")).dt.total_days()
    )
    before = (
        j.filter(pl.col("rel").is_between(-28, -22))
        .group_by("asin")
        .agg(pl.col("demand_level").mean().alias("b"))
    )
    after = j.filter(pl.col("rel").is_between(pl.col("breakout_ramp_days"), pl.col("breakout_ramp_days") + 6))
    after = after.group_by("asin").agg(
        pl.col("demand_level").mean().alias("a"), pl.first("breakout_peak_multiplier")
    )
    ratio = before.join(after, on="asin").with_columns(r=pl.col("a") / pl.col("b"))
    assert ratio.height > 20
    assert (ratio["r"] / ratio["breakout_peak_multiplier"]).is_between(0.5, 3.0).mean() > 0.9
    assert truth.filter(pl.col("decoy"))["breakout_onset"].is_null().all()


def test_precursors_are_partly_observable(medium_market: Market) -> None:
    truth = medium_market.ground_truth("US", MEDIUM_START, MEDIUM_END)
    frame = medium_market.timeseries_frame("US", MEDIUM_START, MEDIUM_END)
    onsets = (
        truth.filter(pl.col("breakout_onset").is_not_null()).group_by("asin").agg(pl.first("breakout_onset"))
    )
    onsets = onsets.filter(pl.col("breakout_onset") > MEDIUM_START + timedelta(days=60))
    j = frame.join(onsets, on="asin").with_columns(
        rel=(pl.col("date") - pl.col("breakout_onset")).dt.total_days()
    )

    def review_gain(lo: int, hi: int) -> pl.DataFrame:
        w = j.filter(pl.col("rel").is_between(lo, hi))
        return w.group_by("asin").agg(
            (pl.col("review_count").max() - pl.col("review_count").min()).alias("g")
        )

    early, late = review_gain(-60, -30), review_gain(-29, 0)
    both = early.join(late, on="asin", suffix="_late")
    # Reviews accelerate ahead of the onset for many (not all) breakouts: a signal, not a giveaway.
    share = (both["g_late"] > both["g"]).mean()
    assert 0.4 < share < 1.0


def test_reviews_accrue_with_sales_and_counts_never_drop(medium_market: Market) -> None:
    frame = medium_market.timeseries_frame("US", MEDIUM_START, MEDIUM_END).sort("asin", "date")
    truth = medium_market.ground_truth("US", MEDIUM_START, MEDIUM_END)
    assert (
        frame.with_columns(d=pl.col("review_count").diff().over("asin")).filter(pl.col("d") < 0).height == 0
    )
    new_reviews = frame.group_by("asin").agg(
        (pl.col("review_count").max() - pl.col("review_count").min()).alias("n")
    )
    assert 0.01 <= new_reviews["n"].sum() / truth["units_sold"].sum() <= 0.02
    ratings = frame["rating"].drop_nulls()
    assert ratings.is_between(1.0, 5.0).all() and 3.6 < ratings.mean() < 4.6


def test_weekly_seasonality_visible(medium_market: Market) -> None:
    truth = medium_market.ground_truth("US", MEDIUM_START, MEDIUM_END)
    by_day = truth.group_by(pl.col("date").dt.weekday()).agg(pl.col("latent_demand").sum())["latent_demand"]
    assert by_day.max() / by_day.min() > 1.08


def test_prices_listing_and_offers(medium_market: Market) -> None:
    frame = medium_market.timeseries_frame("US", MEDIUM_START, MEDIUM_END)
    assert 0 < frame["price"].null_count() / frame.height < 0.02  # rare no-offer days
    assert (frame["price"].drop_nulls() > 0).all()
    changes = frame.sort("asin", "date").with_columns(c=pl.col("price").pct_change().over("asin"))
    cuts = changes.filter(pl.col("c").is_between(-0.35, -0.08)).height
    assert cuts > 100  # promotions and price cuts happen
    # Competitors pile in after a breakout.
    truth = medium_market.ground_truth("US", MEDIUM_START, MEDIUM_END)
    j = frame.join(truth.select("date", "asin", "breakout_onset", "breakout_ramp_days"), on=["date", "asin"])
    j = j.filter(pl.col("breakout_onset").is_not_null()).with_columns(
        rel=(pl.col("date") - pl.col("breakout_onset")).dt.total_days()
    )
    pre = j.filter(pl.col("rel").is_between(-30, -20))["new_offer_count"].mean()
    post = j.filter(
        pl.col("rel").is_between(pl.col("breakout_ramp_days") + 20, pl.col("breakout_ramp_days") + 30)
    )
    assert post["new_offer_count"].mean() > pre + 1
    # Listings improve over time for some products.
    asins = medium_market.universe("US", MEDIUM_START)
    before, _ = medium_market.products("US", asins[:300], MEDIUM_START)
    after, _ = medium_market.products("US", asins[:300], MEDIUM_END)
    improved = sum(
        a["listing"]["image_count"] > b["listing"]["image_count"] for a, b in zip(after, before, strict=True)
    )
    assert improved > 10


def test_keywords(medium_market: Market) -> None:
    asins = medium_market.universe("US", DAY)[:100]
    items, not_found = medium_market.keywords("US", asins, DAY)
    assert not not_found and len(items) == 100
    ranked = [k for item in items for k in item["keywords"]]
    assert len(ranked) > 50 and all(1 <= k["rank"] <= 100 and k["search_volume"] > 0 for k in ranked)


def test_calibration_table() -> None:
    market = Market(SMALL)
    cal = market.calibration("DE")
    assert 6 <= cal.height <= 10 and cal["b"].is_between(0.9, 1.05).all()
    us = dict(zip(market.calibration("US")["category_id"], market.calibration("US")["a"], strict=True))
    assert us == {k: a for k, (a, _) in CATEGORY_CALIBRATION.items()}
    assert market.subcategory_calibration("US").height == cal.height * 3


MEDIUM_START = date(2025, 1, 1)
MEDIUM_END = MEDIUM_START + timedelta(days=599)


def test_lazy_generation_is_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from asin_platform.simulator import market as market_module

    calls: list[str] = []
    real = market_module.build_site

    def counting(cfg: MarketConfig, site: str) -> object:
        calls.append(site)
        return real(cfg, site)

    monkeypatch.setattr(market_module, "build_site", counting)
    market = Market(MarketConfig(seed=3, sites=("US",), asins_per_site=50, horizon_days=90))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: market.universe("US", date(2025, 2, 1)), range(8)))
    assert calls == ["US"] and all(r == results[0] for r in results)


def test_market_from_settings() -> None:
    from asin_platform.settings import SimulatorSettings
    from asin_platform.simulator import market_from_settings

    market = market_from_settings(SimulatorSettings(seed=5, asins_per_site=30), ["US", "JP"])
    assert market.config.seed == 5 and market.sites == ("US", "JP") and market.config.asins_per_site == 30
