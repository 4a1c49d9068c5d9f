"""Pins the generated market, so a refactor of the generation stages cannot drift.

The fingerprint covers every array and list of the generated per-site state (``SiteState``) of a
small market, plus what the API serves for a few ASINs: per field its shape, dtype and three moments
(sum, sum of squares, position-weighted sum, so a reordering shows too). It was a SHA-256 of the raw
bytes, taken from the one-function generator before ``_build_site`` was split into named stages; but
numpy's exp/log differ in the last float32 bit between CPU dispatch levels (AVX2 vs AVX-512: seen
between two machines, reproduced with ``NPY_DISABLE_CPU_FEATURES=X86_V3``), which moves ~40 of 9,000
integer BSR cells by 1-2, so bytes cannot be pinned across machines. The moments are compared at a
relative 1e-5: ulp noise passes, any real change of the market model does not.
If a deliberate change of the market model moves them, regenerate with
``python -c "from asin_platform_tests.simulator.test_market_pin import fingerprint; print(fingerprint())"``
and say why in the commit.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import numpy as np
import pytest

from asin_platform.simulator import Market, MarketConfig

PIN_CONFIG = MarketConfig(seed=5, sites=("US", "JP"), asins_per_site=60, horizon_days=150)
PIN_DAY = date(2025, 3, 20)


# Taken on this generation (unchanged since the digest pin of e5e5358: same bytes on one machine).
EXPECTED: dict[str, list[Any]] = {
    "US.site": [["str", 1], 2.0, 4.0, 2.0],
    "US.site_id": [["int", 1], 0.0, 0.0, 0.0],
    "US.dates": [["list", 150], 1500.0, 15000.0, 113250.0],
    "US.asins": [["ndarray", 60], 600.0, 6000.0, 18300.0],
    "US.order": [["int64", [60]], 1770.0, 70210.0, 53945.0],
    "US.index": [["dict", 60], 1770.0, 70210.0, 53945.0],
    "US.listed": [["int32", [60]], -27251.0, 31044029.0, -768936.0],
    "US.cat": [["int8", [60]], 204.0, 1046.0, 6479.0],
    "US.sub": [["int8", [60]], 68.0, 112.0, 2173.0],
    "US.head": [["int8", [60]], 56.0, 92.0, 1672.0],
    "US.adjective": [["int8", [60]], 258.0, 1592.0, 8109.0],
    "US.brands": [["list", 60], 334.0, 1988.0, 10355.0],
    "US.title_target": [["int16", [60]], 6569.0, 801803.0, 191560.0],
    "US.bullets": [["int8", [60]], 190.0, 692.0, 5661.0],
    "US.images": [["int8", [60]], 250.0, 1364.0, 7397.0],
    "US.aplus": [["bool", [60]], 18.0, 18.0, 331.0],
    "US.video": [["bool", [60]], 14.0, 14.0, 393.0],
    "US.size_chart": [["bool", [60]], 15.0, 15.0, 461.0],
    "US.brand_story": [["bool", [60]], 14.0, 14.0, 429.0],
    "US.prime": [["bool", [60]], 51.0, 51.0, 1525.0],
    "US.ev_day": [["int32", [60, 3]], 136365215578.0, 1.4642103108506996e20, 12086038341129.0],
    "US.ev_title": [["int16", [60, 3]], 1291.0, 30539.0, 111821.0],
    "US.ev_bullets": [["int8", [60, 3]], 65.0, 71.0, 5726.0],
    "US.ev_images": [["int8", [60, 3]], 91.0, 127.0, 8218.0],
    "US.ev_aplus": [["bool", [60, 3]], 33.0, 33.0, 3240.0],
    "US.ev_video": [["bool", [60, 3]], 15.0, 15.0, 1400.0],
    "US.ev_brand_story": [["bool", [60, 3]], 26.0, 26.0, 2266.0],
    "US.kw_text": [["list", 288], 6010.0, 137636.0, 841792.0],
    "US.kw_volume": [["float64", [288]], 5619600.0, 231708750000.0, 876796100.0],
    "US.kw_cat": [["int64", [288]], 1008.0, 5040.0, 200088.0],
    "US.kw_ids": [["int64", [60, 5]], 42371.0, 8216475.0, 6632445.0],
    "US.kw_active": [["bool", [60, 5]], 247.0, 247.0, 37223.0],
    "US.kw_base": [["float32", [60, 5]], 1151.6388959884644, 4888.173470505499, 170544.3942760229],
    "US.kw_gain": [["float32", [60]], 3.367217779159546, 2.8783052379653924, 88.26165133714676],
    "US.kw_gain_start": [["int32", [60]], 60129542326.0, 6.456360425798344e19, 1850057165911.0],
    "US.base": [["float64", [60]], 487.3846604460281, 20760.76695583817, 17680.973903364924],
    "US.onset": [["int32", [60]], 98.0, 14404.0, -876.0],
    "US.ramp": [["int32", [60]], 66.0, 2756.0, 614.0],
    "US.peak": [["float64", [60]], 778.0580135161581, 655119.8995371767, 1719.3151726044157],
    "US.decoy": [["bool", [60]], 3.0, 3.0, 135.0],
    "US.bo_rows": [["int64", [2]], 13.0, 109.0, 23.0],
    "US.bo_mult": [["float32", [2, 150]], 21512.515417695045, 15500432.690315925, 3195212.452042341],
    "US.season_year": [["float64", [8, 150]], 1204.3344452313454, 1221.9199125555456, 726870.6778444303],
    "US.price_c": [["int32", [60, 150]], 17884050.0, 68399290400.0, 79151684750.0],
    "US.bsr_root": [["int32", [60, 150]], 1091050899.0, 738567010970135.0, 4518607264922.0],
    "US.bsr_sub": [["int32", [60, 150]], 74164480.0, 3890262542832.0, 298727067417.0],
    "US.rating10": [["int16", [60, 150]], 231512.0, 9833800.0, 996556263.0],
    "US.review_count": [["int32", [60, 150]], 577281.0, 327185107.0, 2938451821.0],
    "US.offers": [["int16", [60, 150]], 16662.0, 50630.0, 76426965.0],
    "US.buybox": [["int8", [60, 150]], 9748.0, 89488.0, 41403746.0],
    "US.units": [["int32", [60, 150]], 121670.0, 35846924.0, 473331891.0],
    "US.expected": [["float32", [60, 150]], 118823.5829106425, 29988494.132759586, 467008985.50736296],
    "US.level": [["float32", [60, 150]], 96376.6383442441, 13136919.897135817, 412050246.6716989],
    "US.velocity": [["float32", [60, 150]], 119026.12347502692, 30872403.10031099, 468520723.1258223],
    "US.rev_off": [["int64", [9001]], 9894231.0, 13523754435.0, 56525470777.0],
    "US.stars": [["int8", [1877]], 7596.0, 33416.0, 7364569.0],
    "US.verified": [["bool", [1877]], 1629.0, 1629.0, 1537922.0],
    "US.served.products": [["tuple", 220], 3915.0, 337531.0, 433200.0],
    "US.served.series": [["tuple", 1944], 15166765.31, 6088788634879.364, 13025919245.489998],
    "US.served.reviews": [["list", 1970], 15435.0, 164111.0, 15202924.0],
    "US.served.keywords": [["tuple", 156], 1065428.0, 46187897084.0, 83328960.0],
    "JP.site": [["str", 1], 2.0, 4.0, 2.0],
    "JP.site_id": [["int", 1], 4.0, 16.0, 4.0],
    "JP.dates": [["list", 150], 1500.0, 15000.0, 113250.0],
    "JP.asins": [["ndarray", 60], 600.0, 6000.0, 18300.0],
    "JP.order": [["int64", [60]], 1770.0, 70210.0, 52058.0],
    "JP.index": [["dict", 60], 1770.0, 70210.0, 52058.0],
    "JP.listed": [["int32", [60]], -36313.0, 39912773.0, -1097106.0],
    "JP.cat": [["int8", [60]], 201.0, 993.0, 5631.0],
    "JP.sub": [["int8", [60]], 67.0, 115.0, 1980.0],
    "JP.head": [["int8", [60]], 57.0, 91.0, 1863.0],
    "JP.adjective": [["int8", [60]], 288.0, 1944.0, 8411.0],
    "JP.brands": [["list", 60], 350.0, 2180.0, 10296.0],
    "JP.title_target": [["int16", [60]], 6406.0, 756418.0, 196262.0],
    "JP.bullets": [["int8", [60]], 184.0, 654.0, 5490.0],
    "JP.images": [["int8", [60]], 264.0, 1370.0, 8045.0],
    "JP.aplus": [["bool", [60]], 22.0, 22.0, 615.0],
    "JP.video": [["bool", [60]], 16.0, 16.0, 441.0],
    "JP.size_chart": [["bool", [60]], 9.0, 9.0, 232.0],
    "JP.brand_story": [["bool", [60]], 20.0, 20.0, 587.0],
    "JP.prime": [["bool", [60]], 51.0, 51.0, 1645.0],
    "JP.ev_day": [["int32", [60, 3]], 142807665830.0, 1.5333856011271098e20, 13039521020579.0],
    "JP.ev_title": [["int16", [60, 3]], 1397.0, 30139.0, 133983.0],
    "JP.ev_bullets": [["int8", [60, 3]], 75.0, 81.0, 7024.0],
    "JP.ev_images": [["int8", [60, 3]], 76.0, 86.0, 7079.0],
    "JP.ev_aplus": [["bool", [60, 3]], 27.0, 27.0, 2631.0],
    "JP.ev_video": [["bool", [60, 3]], 22.0, 22.0, 1795.0],
    "JP.ev_brand_story": [["bool", [60, 3]], 32.0, 32.0, 2679.0],
    "JP.kw_text": [["list", 288], 6010.0, 137636.0, 841792.0],
    "JP.kw_volume": [["float64", [288]], 1966860.0, 28384321875.0, 306878635.0],
    "JP.kw_cat": [["int64", [288]], 1008.0, 5040.0, 200088.0],
    "JP.kw_ids": [["int64", [60, 5]], 41823.0, 7897927.0, 5822081.0],
    "JP.kw_active": [["bool", [60, 5]], 232.0, 232.0, 35489.0],
    "JP.kw_base": [["float32", [60, 5]], 1150.3800294399261, 4758.213720667178, 175853.04218447208],
    "JP.kw_gain": [["float32", [60]], 2.2484587132930756, 1.3738887616301012, 31.850624293088913],
    "JP.kw_gain_start": [["int32", [60]], 60129542420.0, 6.4563604257983455e19, 1891933099674.0],
    "JP.base": [["float64", [60]], 86.83362721745965, 314.6035073277599, 2431.944398842078],
    "JP.onset": [["int32", [60]], 105.0, 13655.0, -895.0],
    "JP.ramp": [["int32", [60]], 90.0, 4052.0, 574.0],
    "JP.peak": [["float64", [60]], 483.5488881710611, 236472.4017564717, 4033.624907858295],
    "JP.decoy": [["bool", [60]], 3.0, 3.0, 68.0],
    "JP.bo_rows": [["int64", [2]], 11.0, 121.0, 22.0],
    "JP.bo_mult": [["float32", [2, 150]], 21363.810148715973, 7573633.732193287, 5631356.242594123],
    "JP.season_year": [["float64", [8, 150]], 1204.3344452313454, 1221.9199125555456, 726870.6778444303],
    "JP.price_c": [["int32", [60, 150]], 2546765645.0, 1024363995001355.0, 10773720094741.0],
    "JP.bsr_root": [["int32", [60, 150]], 936900347.0, 418843770928713.0, 4933822523584.0],
    "JP.bsr_sub": [["int32", [60, 150]], 66102219.0, 2240136204067.0, 346628281331.0],
    "JP.rating10": [["int16", [60, 150]], 260478.0, 11017180.0, 1142357191.0],
    "JP.review_count": [["int32", [60, 150]], 85703.0, 7429933.0, 325131943.0],
    "JP.offers": [["int16", [60, 150]], 21893.0, 82779.0, 96047774.0],
    "JP.buybox": [["int8", [60, 150]], 11360.0, 97502.0, 41524496.0],
    "JP.units": [["int32", [60, 150]], 51836.0, 33293672.0, 115551002.0],
    "JP.expected": [["float32", [60, 150]], 47927.08002265915, 23874339.432633344, 108594832.06367904],
    "JP.level": [["float32", [60, 150]], 37403.204732738435, 12454818.635382647, 91300092.78861429],
    "JP.velocity": [["float32", [60, 150]], 49388.05011985474, 26777127.825151753, 111287814.00421783],
    "JP.rev_off": [["int64", [9001]], 4686953.0, 2982794201.0, 25621703271.0],
    "JP.stars": [["int8", [696]], 3174.0, 14978.0, 1097735.0],
    "JP.verified": [["bool", [696]], 595.0, 595.0, 208990.0],
    "JP.served.products": [["tuple", 219], 4307.0, 442329.0, 515474.0],
    "JP.served.series": [["tuple", 1768], 23827343.9, 4176486722606.41, 20808072033.6],
    "JP.served.reviews": [["list", 60], 466.0, 4978.0, 14069.0],
    "JP.served.keywords": [["tuple", 111], 281607.0, 5455927595.0, 16796382.0],
}


def _numbers(value: object) -> list[float]:
    """Every number in a nested payload, in a stable order (dict keys sorted)."""
    if isinstance(value, bool):
        return [float(value)]
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _numbers(value[key])]
    if isinstance(value, list | tuple):
        return [x for item in value for x in _numbers(item)]
    if isinstance(value, np.ndarray):
        return _numbers(value.tolist())
    return [float(len(str(value)))]


def _moments(value: object) -> list[Any]:
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        x = np.nan_to_num(value.astype(np.float64).ravel(), nan=-1.0)
        shape: Any = [str(value.dtype), list(value.shape)]
    else:
        x = np.array(_numbers(value), dtype=np.float64)
        shape = [type(value).__name__, len(x)]
    w = np.arange(1, len(x) + 1, dtype=np.float64)
    return [shape, float(x.sum()), float((x * x).sum()), float((x * w).sum())]


def fingerprint() -> dict[str, list[Any]]:
    market = Market(PIN_CONFIG)
    out: dict[str, list[Any]] = {}
    for site in PIN_CONFIG.sites:
        data = market._site(site)
        for f in dataclasses.fields(data):
            if f.name == "lookups":
                continue
            out[f"{site}.{f.name}"] = _moments(getattr(data, f.name))
        asins = market.universe(site, PIN_DAY)[:12]
        served = {
            "products": market.products(site, asins, PIN_DAY),
            "series": market.timeseries(site, asins, date(2025, 3, 1), PIN_DAY),
            "reviews": market.reviews(site, asins, date(2025, 1, 1), PIN_DAY),
            "keywords": market.keywords(site, asins, PIN_DAY),
        }
        for name, payload in served.items():
            out[f"{site}.served.{name}"] = _moments(payload)
    return out


def test_market_matches_the_pinned_generation() -> None:
    got = fingerprint()
    assert sorted(got) == sorted(EXPECTED)
    for name, (shape, *moments) in EXPECTED.items():
        assert got[name][0] == shape, name
        assert got[name][1:] == pytest.approx(moments, rel=1e-5, abs=1e-6), name
