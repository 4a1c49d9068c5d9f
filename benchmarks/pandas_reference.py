"""A straightforward pandas implementation of build_features + score_baseline (the yardstick).

What a careful engineer would write with pandas idioms: one frame sorted by (site, asin, date) on a
DatetimeIndex, ``groupby(["site", "asin"]).rolling("ND")`` for every calendar window, self-merges on
``date - N`` for the "N days earlier" lags, ``groupby().transform`` for medians and MADs. Same
definitions as ``asin_platform.core.features`` / ``core.score`` (docs/features.md), so the benchmark
also checks that both implementations agree; only float summation order differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

from asin_platform.core.features import PRICE_MIN_DAYS, PROMO_RATIO, SLOPE_MIN_COVERAGE
from asin_platform.core.listing_quality import LISTING_QUALITY
from asin_platform.core.sales import FALLBACK_A, FALLBACK_B
from asin_platform.settings import ScoreWeights

KEY = ["site", "asin"]


def _lag(frame: pd.DataFrame, column: str, days: int) -> pd.Series:
    """``column`` of the same (site, asin) exactly ``days`` calendar days earlier (NaN if absent)."""
    earlier = frame[["site", "asin", "day", column]].copy()
    earlier["day"] = earlier["day"] + days
    merged = frame[["site", "asin", "day"]].merge(earlier, on=["site", "asin", "day"], how="left")
    return pd.Series(merged[column].to_numpy(), index=frame.index)


def build_features_pandas(
    mart: pd.DataFrame,
    keywords: pd.DataFrame,
    target_dates: Sequence[date],
    *,
    lookback: int = 30,
    calibration: pd.DataFrame,
) -> pd.DataFrame:
    targets = sorted(set(target_dates))
    lo, hi = pd.Timestamp(targets[0] - timedelta(days=lookback)), pd.Timestamp(targets[-1])
    m = mart[(mart["date"] >= lo) & (mart["date"] <= hi)].copy()
    m = m.merge(calibration, on=["site", "category_id"], how="left")
    m["a"] = m["a"].fillna(FALLBACK_A)
    m["b"] = m["b"].fillna(FALLBACK_B)
    bsr = m["bsr_root"].where(m["bsr_root"] > 0).astype("float64")
    m["y"] = np.log(bsr)
    m["sales"] = m["a"] * bsr ** (-m["b"])
    m["day"] = (m["date"] - lo).dt.days

    ranked = m["y"].notna() & m["category_id"].notna()
    grp = m[ranked].groupby(["site", "date", "category_id"])["bsr_root"]
    n = grp.transform("count")
    m.loc[ranked, "bsr_pctl"] = (n - grp.rank(method="min") + 1) / n

    ok_price = (m["price"] > 0) & ~m["flag_price_spike"].fillna(False).astype(bool)
    m["p"] = m["price"].where(ok_price)
    m["rc"] = m["review_count"].where(m["review_count"] >= 0)
    m["r"] = m["rating"].where(m["rating"].between(1.0, 5.0))
    has = m["y"].notna().astype("float64")
    m["has"], m["xh"], m["xxh"] = has, m["day"] * has, m["day"] ** 2 * has
    m["yy"], m["xy"] = m["y"].fillna(0.0), (m["day"] * m["y"]).fillna(0.0)
    m["s0"] = m["sales"].fillna(0.0)
    # earliest review count of a window = min of (day, count) packed into one number
    m["rc_key"] = m["day"] * 2.0**32 + m["rc"]

    m = m.sort_values(["site", "asin", "date"]).reset_index(drop=True)
    rolled = m.set_index("date").groupby(KEY, sort=True)

    def roll(column: str, window: int, how: str, min_periods: int = 1) -> np.ndarray:
        r = rolled[column].rolling(f"{window}D", min_periods=min_periods)
        return getattr(r, how)().to_numpy()

    out = m
    for w in (7, 14, 30):
        cnt, sx, sxx = roll("has", w, "sum"), roll("xh", w, "sum"), roll("xxh", w, "sum")
        sy, sxy = roll("yy", w, "sum"), roll("xy", w, "sum")
        denom = cnt * sxx - sx * sx
        slope = (cnt * sxy - sx * sy) / np.where(denom > 0, denom, np.nan)
        need = np.ceil(SLOPE_MIN_COVERAGE * w - 1e-9)
        out[f"bsr_log_slope_{w}d"] = np.where((cnt >= need) & (denom > 0), slope, np.nan)
        if w in (7, 30):
            out[f"est_sales_{w}d_mean"] = np.where(cnt > 0, roll("s0", w, "sum") / np.maximum(cnt, 1), np.nan)
        first = roll("rc_key", w, "min")
        first_day, first_count = np.floor(first / 2.0**32), np.mod(first, 2.0**32)
        days = out["day"].to_numpy() - first_day
        vel = (out["rc"].to_numpy() - first_count) / np.where(days > 0, days, np.nan)
        out[f"review_velocity_{w}d"] = np.where(out["rc"].notna() & (days > 0), vel, np.nan)
    median = roll("p", 30, "median", PRICE_MIN_DAYS)
    out["price_cv_30d"] = roll("p", 30, "std", PRICE_MIN_DAYS) / roll("p", 30, "mean", PRICE_MIN_DAYS)
    out["price_change_vs_median_30d"] = out["p"] / median - 1.0
    promo = out["p"] <= PROMO_RATIO * median
    out["promo_flag"] = promo.where(out["p"].notna() & ~np.isnan(median))
    out["rating_mean_30d"] = roll("r", 30, "mean")

    out["bsr_pctl_change_7d"] = out["bsr_pctl"] - _lag(out, "bsr_pctl", 7)
    out["bsr_pctl_change_30d"] = out["bsr_pctl"] - _lag(out, "bsr_pctl", 30)
    out["rating_change_30d"] = out["r"] - _lag(out, "r", 30)
    out["new_offer_change_14d"] = out["new_offer_count"] - _lag(out, "new_offer_count", 14)

    out = out[out["date"].isin([pd.Timestamp(t) for t in targets])].copy()
    quality = sum(
        (out[c].astype("float64").fillna(0.0) / cap).clip(0.0, 1.0) * w for c, cap, w in LISTING_QUALITY
    )
    known = out[[c for c, _, _ in LISTING_QUALITY]].notna().any(axis=1)
    out["listing_quality_score"] = quality.where(known)
    out["age_days"] = (out["date"] - out["listed_since"]).dt.days

    kw = keywords[keywords["rank"] > 0]
    today = kw[kw["date"].isin([pd.Timestamp(t) for t in targets])]
    counts = (
        today.assign(t10=today["rank"] <= 10, t50=today["rank"] <= 50)
        .groupby(["site", "date", "asin"], as_index=False)[["t10", "t50"]]
        .sum()
    )
    before = kw[["site", "date", "asin", "keyword", "rank"]].copy()
    before["date"] = before["date"] + pd.Timedelta(days=7)
    pairs = today.merge(before, on=["site", "date", "asin", "keyword"], suffixes=("", "_before"))
    change = (
        pairs.assign(d=pairs["rank"] - pairs["rank_before"])
        .groupby(["site", "date", "asin"], as_index=False)["d"]
        .mean()
    )
    out = out.merge(counts, on=["site", "date", "asin"], how="left").merge(
        change, on=["site", "date", "asin"], how="left"
    )
    out["kw_top10_count"] = out["t10"].fillna(0).astype("int64")
    out["kw_top50_count"] = out["t50"].fillna(0).astype("int64")
    out["kw_mean_rank_change_7d"] = out["d"]
    return out.sort_values(["site", "date", "asin"]).reset_index(drop=True)


COMPONENTS = (
    ("bsr_trend", "bsr_log_slope_14d", lambda v: -v, False),
    ("est_sales", "est_sales_7d_mean", lambda v: np.log(v.where(v > 0)), False),
    ("review_velocity", "review_velocity_14d", lambda v: v, False),
    ("listing_quality", "listing_quality_score", lambda v: v, False),
    ("keyword_gain", "kw_mean_rank_change_7d", lambda v: -v, False),
    ("price_volatility", "price_cv_30d", lambda v: v, True),
)


def score_baseline_pandas(
    features: pd.DataFrame,
    weights: ScoreWeights,
    *,
    min_category_size: int = 30,
    mad_floor: float = 1e-3,
    clip: float = 5.0,
) -> pd.DataFrame:
    f = features.sort_values(["site", "date", "asin"]).reset_index(drop=True)
    cat_keys = [f["site"], f["date"], f["category_id"].fillna("\x00")]
    site_keys = [f["site"], f["date"]]
    size = f.groupby(cat_keys)["asin"].transform("size")
    use_cat = f["category_id"].notna() & (size >= min_category_size)
    score = np.zeros(len(f))
    parts: list[pd.Series] = []
    for name, feature, orient, penalty in COMPONENTS:
        v = orient(f[feature].astype("float64"))
        z = {}
        for label, keys in (("cat", cat_keys), ("site", site_keys)):
            med = v.groupby(keys).transform("median")
            mad = (v - med).abs().groupby(keys).transform("median")
            z[label] = (v - med) / (1.4826 * np.maximum(mad, mad_floor))
        zz = z["cat"].where(use_cat, z["site"]).clip(-clip, clip).fillna(0.0)
        w = (-1.0 if penalty else 1.0) * float(getattr(weights, name))
        f[f"z_{name}"] = zz
        score += w * zz.to_numpy()
        value = v.map("{:.6g}".format).where(v.notna(), "null")
        parts.append(f'"{name}":{{"z":' + zz.round(4).astype(str) + f',"w":{w},"value":' + value + "}")
    f["explosive_score"] = score
    f["scope"] = np.where(use_cat, "category", "site")
    reason = parts[0]
    for part in parts[1:]:
        reason = reason + "," + part
    f["reason"] = "{" + reason + ',"scope":"' + f["scope"] + '"}'
    order = f.sort_values(
        ["site", "date", "category_id", "explosive_score", "asin"], ascending=[True, True, True, False, True]
    )
    f.loc[order.index, "rank_in_category"] = order.groupby(["site", "date", "category_id"]).cumcount() + 1
    order = f.sort_values(["site", "date", "explosive_score", "asin"], ascending=[True, True, False, True])
    f.loc[order.index, "rank_in_site"] = order.groupby(["site", "date"]).cumcount() + 1
    return f
