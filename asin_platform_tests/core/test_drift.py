"""Feature drift (core/drift.py): PSI values and the per-site profile."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from asin_platform.core.drift import drift_report, psi, reference_profile


def _frame(shift: float = 0.0, n: int = 5000, seed: int = 0, site: str = "US") -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "site": [site] * n,
            "x": rng.normal(shift, 1.0, n),
            "flag": rng.random(n) < 0.3,
            "sparse": np.where(rng.random(n) < 0.5, np.nan, rng.normal(0, 1, n)),
        }
    ).with_columns(pl.col("sparse").fill_nan(None))


def test_psi_formula() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert math.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))  # empty bins are floored


def test_same_distribution_is_stable_and_a_shift_is_flagged() -> None:
    profile = reference_profile(_frame(seed=0), ["x", "flag", "sparse"])
    assert json.loads(json.dumps(profile)) == profile  # travels in the model card
    same = drift_report(profile, _frame(seed=1), group="US")
    assert (same["psi"] < 0.05).all() and set(same["status"]) == {"ok"}
    shifted = drift_report(profile, _frame(shift=1.0, seed=1), group="US")
    x = shifted.filter(pl.col("feature") == "x").row(0, named=True)
    assert x["psi"] > 0.25 and x["status"] == "drift"
    assert shifted["feature"][0] == "x"  # highest PSI first


def test_null_share_counts_and_missing_features_are_reported() -> None:
    profile = reference_profile(_frame(), ["x", "sparse"])
    all_null = _frame(seed=2).with_columns(sparse=pl.lit(None, dtype=pl.Float64))
    report = drift_report(profile, all_null.drop("x"), group="US")
    rows = {r["feature"]: r for r in report.iter_rows(named=True)}
    assert rows["x"]["status"] == "missing" and rows["x"]["psi"] is None
    assert rows["sparse"]["psi"] > 0.25  # half null -> all null


def test_profiles_are_per_site() -> None:
    train = pl.concat([_frame(site="US"), _frame(shift=3.0, site="DE")])
    profile = reference_profile(train, ["x"], by="site")
    assert set(profile["groups"]) == {"US", "DE"}
    de_today = _frame(shift=3.0, seed=5, site="DE")
    assert drift_report(profile, de_today, group="DE")["psi"][0] < 0.05
    assert drift_report(profile, de_today, group="US")["psi"][0] > 0.25
