"""Labels and temporal splits (core/labels.py): targets on hand-built series, integer grades, the
embargo, and no leakage from the future into features, labels or the ASIN universe.

``sim_mart`` / ``sim_features`` (a small simulated market mapped straight to the mart) are reused
by the other model-layer tests."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import polars as pl
import pytest

from asin_platform.core.features import build_features
from asin_platform.core.labels import (
    FEATURE_COLUMNS,
    KEY,
    LabelConfig,
    build_samples,
    check_no_leakage,
    compute_targets,
    feature_columns,
    split_windows,
)
from asin_platform.levers import LeverError
from asin_platform.schemas import FACT_KEYWORDS, FEATURES_DAILY, MART_TIMESERIES_DAILY
from asin_platform.simulator import Market, MarketConfig

D0 = date(2025, 1, 1)
SIM_SITES = ("US", "DE")


# ------------------------------------------------------------------------------ shared test data


@lru_cache(maxsize=4)
def sim_market(n: int = 150, days: int = 170, seed: int = 3) -> Market:
    # many breakouts, so a small market still has positives in every split
    return Market(
        MarketConfig(seed=seed, sites=SIM_SITES, asins_per_site=n, horizon_days=days, breakout_rate=0.25)
    )


def mart_from_market(market: Market, start: date | None = None, end: date | None = None) -> pl.DataFrame:
    """The simulator's daily points as mart rows (no listing attributes, nothing flagged)."""
    start, end = start or market.first_day, end or market.last_day
    points = pl.concat([market.timeseries_frame(s, start, end) for s in market.sites])
    return MART_TIMESERIES_DAILY.conform(
        points.with_columns(
            flag_bsr_invalid=False,
            flag_rating_invalid=False,
            flag_price_invalid=False,
            flag_price_spike=False,
            source=pl.lit("unified"),
            payload_id=pl.lit("sim"),
            fetched_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)),
        )
    )


@lru_cache(maxsize=4)
def sim_mart(n: int = 150, days: int = 170, seed: int = 3) -> pl.DataFrame:
    return mart_from_market(sim_market(n, days, seed))


def features_of(mart: pl.DataFrame, lookback: int = 30) -> pl.DataFrame:
    dates = sorted(mart["date"].unique().to_list())[lookback:]
    return build_features(mart.lazy(), FACT_KEYWORDS.empty().lazy(), dates, lookback=lookback)


@lru_cache(maxsize=4)
def sim_features(n: int = 150, days: int = 170, seed: int = 3) -> pl.DataFrame:
    return features_of(sim_mart(n, days, seed))


# ------------------------------------------------------------------------------- hand-built series


def hand_mart(series: dict[str, list[int | None]], start: date = D0) -> pl.DataFrame:
    """Mart rows for one site and category: ASIN -> BSR per day (None = no row that day)."""
    rows = [
        {
            "site": "US",
            "date": start + timedelta(days=i),
            "asin": asin,
            "category_id": "beauty",
            "bsr_root": bsr,
        }
        for asin, values in series.items()
        for i, bsr in enumerate(values)
        if bsr is not None
    ]
    return MART_TIMESERIES_DAILY.conform(pl.DataFrame(rows))


CALIBRATION = pl.DataFrame({"site": ["US"], "category_id": ["beauty"], "a": [10_000.0], "b": [1.0]})
DAYS = 100
T_INDEX = 49  # reference date = day 49: past window days 22..49, future days 50..79


def _targets(series: dict[str, list[int | None]], **config: float) -> dict[str, dict]:
    mart = hand_mart(series)
    ref = mart.filter(pl.col("date") == D0 + timedelta(days=T_INDEX)).select(*KEY)
    out = compute_targets(mart, ref, LabelConfig(**config), CALIBRATION)  # type: ignore[arg-type]
    return {row["asin"]: row for row in out.iter_rows(named=True)}


def _step(before: int, after: int, at: int = T_INDEX + 1, days: int = DAYS) -> list[int | None]:
    return [before if i < at else after for i in range(days)]


def test_targets_on_hand_built_series() -> None:
    # sales = 10000 / bsr: a BSR falling 10000 -> 2000 the day after T multiplies sales by 5
    series = {
        "JUMP": _step(10_000, 2_000),  # x5 sales, climbs from 4th to 1st of 5
        "FLAT": _step(5_000, 5_000),
        "SLIP": _step(3_000, 3_500),
        "TAIL": _step(20_000, 20_000),
        "DOWN": _step(8_000, 40_000),  # x0.2 sales
    }
    t = _targets(series)
    jump = t["JUMP"]
    assert jump["past_days"] == 28 and jump["future_days"] == 30
    assert jump["sales_ratio"] == pytest.approx(5.0)
    # percentile (n - rank + 1) / n: JUMP is 4th of 5 (0.4) before, 1st (1.0) after
    assert jump["past_pctl"] == pytest.approx(0.4) and jump["future_pctl"] == pytest.approx(1.0)
    assert jump["pctl_gain"] == pytest.approx(0.6)
    assert jump["explodes"] == 1
    assert jump["relevance"] == 4  # 5 >= 1.6 ** 3
    assert jump["log_sales_ratio"] == pytest.approx(math.log(5.0))
    assert t["FLAT"]["sales_ratio"] == pytest.approx(1.0) and t["FLAT"]["explodes"] == 0
    assert t["DOWN"]["explodes"] == 0 and t["DOWN"]["relevance"] == 0
    assert t["DOWN"]["log_sales_ratio"] == pytest.approx(math.log(0.2))


def test_explodes_needs_both_the_sales_ratio_and_the_percentile_gain() -> None:
    # x2 sales but still last of the category on both sides: no percentile gain -> not a positive
    series = {"A": _step(1_000, 1_000), "B": _step(2_000, 2_000), "SMALL": _step(40_000, 20_000)}
    t = _targets(series)
    assert t["SMALL"]["sales_ratio"] == pytest.approx(2.0)
    assert t["SMALL"]["pctl_gain"] == pytest.approx(0.0)
    assert t["SMALL"]["explodes"] == 0
    # and a percentile gain without the sales ratio is not one either: overtakes a product that
    # collapsed (0.33 -> 0.67) with x1.1 sales
    series = {"A": _step(1_000, 1_000), "B": _step(2_000, 50_000), "C": _step(22_000, 20_000)}
    t = _targets(series)
    assert t["C"]["pctl_gain"] == pytest.approx(1 / 3) and t["C"]["sales_ratio"] == pytest.approx(1.1)
    assert t["C"]["explodes"] == 0


def test_relevance_grades_follow_the_documented_thresholds() -> None:
    # r = 1.6: grade 2 from 1.6x, 3 from 2.56x, 4 from 4.096x; 1 = near miss (>= 1.265x, gain >= 0.1)
    base = {f"F{i}": _step(30_000 + 2_000 * i, 30_000 + 2_000 * i) for i in range(8)}  # steady field
    expected = {4.2: 4, 3.0: 3, 1.7: 2, 1.1: 0}
    for ratio, grade in expected.items():
        # last of 9 before (pctl 1/9); a ratio >= 1.6 makes it the best (pctl 1.0)
        row = _targets({**base, "G": _step(50_000, round(50_000 / ratio))})["G"]
        assert row["sales_ratio"] == pytest.approx(ratio, rel=1e-4)
        assert row["relevance"] == grade, (ratio, row)
        assert row["explodes"] == int(grade >= 2)
        assert isinstance(row["relevance"], int)
    # near miss: x1.3 sales (>= sqrt 1.6, < 1.6) passing 3 of the 8 (a gain of 3/9)
    near = _targets({**base, "G": _step(50_000, round(50_000 / 1.3))})["G"]
    assert math.sqrt(1.6) <= near["sales_ratio"] < 1.6 and near["pctl_gain"] >= 0.1
    assert near["relevance"] == 1 and near["explodes"] == 0


def test_missing_future_is_never_a_positive() -> None:
    # GONE jumps for two days, then leaves the mart: 2 of 30 future days observed
    gone = [10_000] * (T_INDEX + 1) + [500, 500] + [None] * (DAYS - T_INDEX - 3)
    # NORANK has rows but no BSR (unranked) after T
    norank = [10_000] * (T_INDEX + 1) + [None] * (DAYS - T_INDEX - 1)
    series = {"GONE": gone, "NORANK": norank, "X": _step(5_000, 5_000), "Y": _step(7_000, 7_000)}
    mart = hand_mart(series)
    # NORANK keeps rows with a null BSR (a product that lost its rank is still listed)
    extra = hand_mart({"NORANK": [None] * (T_INDEX + 1) + [1] * (DAYS - T_INDEX - 1)}).with_columns(
        bsr_root=pl.lit(None, dtype=pl.Int64)
    )
    mart = pl.concat([mart, extra])
    ref = mart.filter(pl.col("date") == D0 + timedelta(days=T_INDEX)).select(*KEY)
    t = {r["asin"]: r for r in compute_targets(mart, ref, LabelConfig(), CALIBRATION).iter_rows(named=True)}
    for asin in ("GONE", "NORANK"):
        assert t[asin]["valid"] is False
        assert t[asin]["explodes"] == 0 and t[asin]["relevance"] == 0
        assert t[asin]["log_sales_ratio"] is None


def test_samples_drop_unlabelable_rows_from_reg_only_and_rows_without_elapsed_horizon() -> None:
    mart, features = sim_mart(), sim_features()
    samples = build_samples(features, mart, sample_every=3)
    last = mart["date"].max()
    for frame in samples.frames().values():
        assert frame["date"].max() + timedelta(days=30) <= last  # the horizon has happened
        assert frame.select(pl.struct(*KEY).is_duplicated().any()).item() is False
    assert samples.bin.height == samples.rank.height >= samples.reg.height
    assert samples.reg["log_sales_ratio"].null_count() == 0
    assert samples.rank["relevance"].dtype == pl.Int8
    assert set(samples.rank["relevance"].unique().to_list()) <= {0, 1, 2, 3, 4}
    # grade >= 2 exactly when the binary target is 1
    assert samples.rank.select(((pl.col("relevance") >= 2) == (pl.col("explodes") == 1)).all()).item()
    assert samples.bin["explodes"].sum() > 0


def test_feature_columns_are_derived_from_the_features_contract() -> None:
    numeric = [
        c
        for c, t in FEATURES_DAILY.schema.items()
        if c not in ("site", "date", "asin") and (t.is_numeric() or t == pl.Boolean)
    ]
    assert list(FEATURE_COLUMNS) == numeric
    assert "category_id" not in FEATURE_COLUMNS and len(FEATURE_COLUMNS) >= 20
    assert feature_columns(pl.DataFrame({"bsr_pctl": [1.0], "x": [1]})) == ("bsr_pctl",)


# ------------------------------------------------------------------------------- splits / leakage


def test_split_windows_keep_an_embargo_of_at_least_the_horizon() -> None:
    config = LabelConfig(horizon=30, embargo=30)
    w = split_windows(D0, D0 + timedelta(days=299), config)
    assert w.train[0] == D0 and w.test[1] == D0 + timedelta(days=299)
    assert (w.valid[0] - w.train[1]).days == 31 and (w.test[0] - w.valid[1]).days == 31
    with pytest.raises(ValueError, match="embargo"):
        LabelConfig(horizon=30, embargo=20)
    with pytest.raises(ValueError, match="cannot hold"):
        split_windows(D0, D0 + timedelta(days=60), config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # settings.Windows' bounds and its embargo >= horizon rule
        ({"horizon": 30, "embargo": 20}, "embargo 20: input should be at least the horizon (30 days), so no "
         "training label reaches a later split"),
        ({"observation": 0}, "observation 0: input should be greater than or equal to 1"),
        ({"horizon": 400, "embargo": 400}, "horizon 400: input should be less than or equal to 365"),
        # settings.Thresholds' (named as the settings name them)
        ({"sales_ratio": 1.0}, "label_sales_ratio 1.0: input should be greater than 1"),
        ({"pctl_gain": math.nan}, "label_bsr_pctl_gain nan: input should be a finite number"),
        # levers.SamplesWindow's
        ({"split_fractions": (0.6, 0.0, 0.2)}, "split_fractions (0.6, 0.0, 0.2): input should be greater than 0 (item 2)"),
        ({"sample_every": 0}, "sample_every 0: input should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_label_config_is_checked_against_the_bounds_of_the_settings_and_the_samples(
    config: dict, message: str
) -> None:
    """LabelConfig keeps no copy of the bounds: the settings' and levers.SamplesWindow's are checked,
    so the core, the settings file and build-labels' flags accept the same values."""
    with pytest.raises(LeverError) as excinfo:
        LabelConfig(**config)
    assert str(excinfo.value) == message


def test_label_config_at_the_bounds_is_accepted() -> None:
    # the backtest's shares (0.7, 0.25, 0.05) too
    config = LabelConfig(365, 365, 365, 100.0, 1.0, (0.7, 0.25, 0.05), 365)
    assert (config.horizon, config.sales_ratio, config.split_fractions) == (365, 100.0, (0.7, 0.25, 0.05))


def test_no_training_horizon_reaches_a_later_split() -> None:
    """Fails if any label of a split was computed from a day inside the next split."""
    samples = build_samples(sim_features(), sim_mart(), horizon=30, embargo=30)
    for frame in samples.frames().values():
        assert check_no_leakage(frame, horizon=30) == []
        spans = {
            s: (
                frame.filter(pl.col("split") == s)["date"].min(),
                frame.filter(pl.col("split") == s)["date"].max(),
            )
            for s in ("train", "valid", "test")
        }
        assert spans["train"][1] + timedelta(days=30) < spans["valid"][0]
        assert spans["valid"][1] + timedelta(days=30) < spans["test"][0]
    # the checker itself catches an overlap
    bad = samples.rank.with_columns(
        split=pl.when(pl.col("date") == samples.windows.valid[0]).then(pl.lit("train")).otherwise("split")
    )
    assert check_no_leakage(bad, horizon=30)


def test_perturbing_the_future_changes_nothing_known_before_it() -> None:
    """Features of T, and labels whose horizon ends by the cut, ignore every mart row after it."""
    mart = sim_mart()
    cut = mart["date"].min() + timedelta(days=110)
    # scramble everything after the cut: BSRs, prices, reviews, and a brand-new ASIN
    noisy = mart.with_columns(
        bsr_root=pl.when(pl.col("date") > cut).then(pl.col("bsr_root") // 7 + 1).otherwise("bsr_root"),
        price=pl.when(pl.col("date") > cut).then(pl.col("price") * 3).otherwise("price"),
        review_count=pl.when(pl.col("date") > cut)
        .then(pl.col("review_count") + 500)
        .otherwise("review_count"),
    )
    newcomer = noisy.filter(pl.col("date") > cut).head(40).with_columns(asin=pl.lit("B0NEWCOMER"))
    noisy = pl.concat([noisy, newcomer]).unique(subset=list(KEY), keep="first")
    f_clean, f_noisy = features_of(mart), features_of(noisy)
    before = pl.col("date") <= cut
    assert f_clean.filter(before).equals(f_noisy.filter(before))

    config = LabelConfig()
    ref = f_clean.filter(pl.col("date") + timedelta(days=config.horizon) <= cut).select(*KEY)
    t_clean = compute_targets(mart, ref, config).sort(*KEY)
    t_noisy = compute_targets(noisy, ref, config).sort(*KEY)
    assert t_clean.equals(t_noisy)
    # the ASIN universe of a day is that day's mart: the newcomer is in no earlier query
    samples = build_samples(f_noisy, noisy)
    assert samples.rank.filter(pl.col("asin") == "B0NEWCOMER").filter(before).is_empty()


def test_write_samples_and_summary(tmp_path) -> None:
    samples = build_samples(sim_features(), sim_mart(), sample_every=5)
    paths = samples.write(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "train_samples_bin.parquet",
        "train_samples_rank.parquet",
        "train_samples_reg.parquet",
        "train_samples_summary.json",
    }
    back = pl.read_parquet(paths["rank"])
    assert back.equals(samples.rank)
    assert {"split", *FEATURE_COLUMNS, "relevance", "explodes"} <= set(back.columns)
    summary = json.loads(paths["summary"].read_text())
    assert [s["split"] for s in summary["splits"]] == ["train", "valid", "test"]
    assert all(s["positives"] >= 0 and s["queries"] > 0 for s in summary["splits"])
    assert (
        summary["config"]["horizon"] == 30
        and summary["windows"]["train"][0] <= summary["windows"]["valid"][0]
    )
