"""Supervised samples for the ranker: targets from the future mart, temporal splits with an embargo.

One sample = one (site, reference date T, asin) row of ``features_daily``: the ASIN universe of T is
exactly the products the mart (hence the features) held on T, so nothing chosen from the future
decides who is in a query. Features are the row's own ``features_daily`` values (computed from the
calendar window ending on T); targets compare the **future** (T, T+H] with the **past**
observation window (T-W, T] of the mart, both as calendar windows (a missing day stays missing).

Targets (per row; ``est_sales`` = the BSR -> units/day power law of ``core.sales`` with the
calibration, ``bsr_pctl`` = ``core.features.bsr_percentile`` of each mart day, 1 = best)::

    past_sales   = mean est_sales over (T-W, T]        past_pctl   = mean bsr_pctl over (T-W, T]
    future_sales = mean est_sales over (T, T+H]        future_pctl = mean bsr_pctl over (T, T+H]
    sales_ratio  = future_sales / past_sales           pctl_gain   = future_pctl - past_pctl

    valid    = >= MIN_PAST_DAYS days with a BSR in the past window
               and >= ceil(MIN_FUTURE_SHARE * H) days with a BSR in the future window
    explodes = valid and sales_ratio >= r and pctl_gain >= p        (binary target, 0/1)

A missing future is never a positive: a row that is not ``valid`` (delisted, out of stock without a
rank, too few observed days) gets ``explodes = 0`` and relevance 0 in the bin / rank samples, and a
null log ratio, hence **no row**, in the reg samples. A row whose horizon ends after the last mart
day of its site is dropped from all three: its future has not happened yet, which is "unknown",
not "missing".

Relevance grades for lambdarank (integers 0..4; grade >= 2 exactly when ``explodes``)::

    4  explodes and sales_ratio >= r**3      (>= 4.1x with r = 1.6)
    3  explodes and sales_ratio >= r**2      (>= 2.56x)
    2  explodes
    1  valid, not explodes, sales_ratio >= sqrt(r) and pctl_gain >= p / 2     (a near miss)
    0  everything else, including every row without a valid future

Regression target: ``log_sales_ratio = ln(sales_ratio)`` (valid rows only).

Temporal split: the reference dates with a fully elapsed horizon span [d0, d1]; after removing two
embargo gaps of E >= H days, ``split_fractions`` of the rest go to train, valid and test, in date
order. Train ends on day a, valid starts on a + E + 1, so a train row's horizon (T, T+H] ends on
a + H <= a + E, before the first valid reference date: no training label sees a valid day, and the
same holds between valid and test. Rows whose horizon would still reach the next split's first day
(only possible if a caller bypasses the E >= H check) are dropped, not kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from asin_platform.core.features import bsr_percentile
from asin_platform.core.sales import FALLBACK_A, FALLBACK_B, estimate_sales, validate_calibration
from asin_platform.levers import SamplesWindow
from asin_platform.schemas import FEATURES_DAILY, Table, register
from asin_platform.settings import Thresholds, Windows

SPLITS: tuple[str, ...] = ("train", "valid", "test")
QUERY: tuple[str, ...] = ("site", "date")  # one lambdarank query per (site, reference date)
KEY: tuple[str, ...] = ("site", "date", "asin")
MIN_PAST_DAYS = 7  # days with a BSR the observation window needs for a past mean
MIN_FUTURE_SHARE = 0.5  # share of the horizon's days that must carry a BSR for a future mean
MAX_GRADE = 4
# Thresholds are compared with this slack: window means come from differences of running sums,
# so a ratio that is exactly r on paper can land 1e-15 below it.
EPS = 1e-9
TARGETS: dict[str, tuple[str, ...]] = {
    "bin": ("explodes",),
    "rank": ("relevance", "explodes"),
    "reg": ("log_sales_ratio",),
}


def feature_columns(frame: pl.DataFrame | None = None) -> tuple[str, ...]:
    """The model's inputs: every numeric or boolean column of ``features_daily`` except the key.

    Derived from the FEATURES_DAILY contract, so a feature added there is a model input with no
    change here. With ``frame``, only those present in it (in contract order)."""
    columns = tuple(
        c
        for c, dtype in FEATURES_DAILY.schema.items()
        if c not in FEATURES_DAILY.key and (dtype.is_numeric() or dtype == pl.Boolean)
    )
    return columns if frame is None else tuple(c for c in columns if c in frame.columns)


FEATURE_COLUMNS: tuple[str, ...] = feature_columns()


def _samples_table(kind: str) -> Table:
    targets: dict[str, pl.DataType] = {
        "explodes": pl.Int8(),
        "relevance": pl.Int8(),
        "log_sales_ratio": pl.Float64(),
    }
    schema: dict[str, pl.DataType] = {
        "site": pl.Utf8(),
        "date": pl.Date(),
        "asin": pl.Utf8(),
        "category_id": pl.Utf8(),
        "split": pl.Utf8(),
        **{c: FEATURES_DAILY.schema[c] for c in FEATURE_COLUMNS},
        **{t: targets[t] for t in TARGETS[kind]},
    }
    return Table(f"train_samples_{kind}", schema, key=KEY)


# Warehouse tables (DDL: sql/*/003_model.sql). The feature columns come from FEATURES_DAILY, so
# the migration must follow when features change; test_schemas catches a mismatch.
TRAIN_SAMPLES_BIN = register(_samples_table("bin"))
TRAIN_SAMPLES_RANK = register(_samples_table("rank"))
TRAIN_SAMPLES_REG = register(_samples_table("reg"))
SAMPLE_TABLES: dict[str, Table] = {
    "bin": TRAIN_SAMPLES_BIN,
    "rank": TRAIN_SAMPLES_RANK,
    "reg": TRAIN_SAMPLES_REG,
}


@dataclass(frozen=True)
class LabelConfig:
    """Windows and thresholds of the targets (defaults = settings.windows / settings.thresholds)."""

    observation: int = 28
    horizon: int = 30
    embargo: int = 30
    sales_ratio: float = 1.6
    pctl_gain: float = 0.2
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    sample_every: int = 1  # keep every n-th reference date (days counted from the first)

    def __post_init__(self) -> None:
        """Checked against the bounds declared where the values are set, not a copy of them: the
        windows and embargo >= horizon (leakage) of ``settings.Windows``, the thresholds of
        ``settings.Thresholds``, the shares and the stride of ``levers.SamplesWindow``. A value out of
        range is their ``LeverError`` (a ValueError) naming the setting: ``horizon 0: input should
        be greater than or equal to 1``, ``label_sales_ratio 1.0: ...``."""
        Windows.overlaid(
            Windows(), {"observation": self.observation, "horizon": self.horizon, "embargo": self.embargo}
        )
        Thresholds.overlaid(
            Thresholds(), {"label_sales_ratio": self.sales_ratio, "label_bsr_pctl_gain": self.pctl_gain}
        )
        SamplesWindow.overlaid(
            SamplesWindow(), {"split_fractions": self.split_fractions, "sample_every": self.sample_every}
        )

    @property
    def min_future_days(self) -> int:
        return math.ceil(MIN_FUTURE_SHARE * self.horizon)


@dataclass(frozen=True)
class SplitWindows:
    """Inclusive reference-date ranges of each split."""

    train: tuple[date, date]
    valid: tuple[date, date]
    test: tuple[date, date]

    def as_dict(self) -> dict[str, tuple[date, date]]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def to_json(self) -> dict[str, list[str]]:
        return {k: [a.isoformat(), b.isoformat()] for k, (a, b) in self.as_dict().items()}


def split_windows(first: date, last: date, config: LabelConfig) -> SplitWindows:
    """Train / valid / test reference-date ranges over [first, last] with ``embargo`` days between."""
    span = (last - first).days + 1
    usable = span - 2 * config.embargo
    if usable < 3:
        raise ValueError(
            f"{span} reference days ({first}..{last}) cannot hold three splits and two embargo gaps "
            f"of {config.embargo} days: extend the data or shorten the windows"
        )
    total = sum(config.split_fractions)
    n_train = max(1, round(usable * config.split_fractions[0] / total))
    n_valid = max(1, round(usable * config.split_fractions[1] / total))
    n_train = min(n_train, usable - 2)
    n_valid = min(n_valid, usable - n_train - 1)
    gap = timedelta(days=config.embargo)
    train = (first, first + timedelta(days=n_train - 1))
    valid = (train[1] + gap + timedelta(days=1), train[1] + gap + timedelta(days=n_valid))
    test = (valid[1] + gap + timedelta(days=1), last)
    return SplitWindows(train, valid, test)


@dataclass
class Samples:
    """The three sample frames (each sorted by split, site, date, asin) and what describes them."""

    bin: pl.DataFrame
    rank: pl.DataFrame
    reg: pl.DataFrame
    windows: SplitWindows
    config: LabelConfig
    features: tuple[str, ...]
    summary: pl.DataFrame = field(default_factory=pl.DataFrame)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {"bin": self.bin, "rank": self.rank, "reg": self.reg}

    def summary_dict(self) -> dict[str, Any]:
        """JSON-ready summary: windows, config, features and per-split counts."""
        return {
            "windows": self.windows.to_json(),
            "config": {
                "observation": self.config.observation,
                "horizon": self.config.horizon,
                "embargo": self.config.embargo,
                "sales_ratio": self.config.sales_ratio,
                "pctl_gain": self.config.pctl_gain,
                "split_fractions": list(self.config.split_fractions),
                "sample_every": self.config.sample_every,
            },
            "features": list(self.features),
            "splits": [
                {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()}
                for row in self.summary.iter_rows(named=True)
            ],
        }

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """``train_samples_{bin,rank,reg}.parquet`` and ``train_samples_summary.json``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for kind, frame in self.frames().items():
            paths[kind] = out / f"train_samples_{kind}.parquet"
            frame.write_parquet(paths[kind])
        paths["summary"] = out / "train_samples_summary.json"
        paths["summary"].write_text(json.dumps(self.summary_dict(), indent=2) + "\n")
        return paths


def daily_targets_inputs(mart: pl.DataFrame | pl.LazyFrame, calibration: pl.DataFrame | None) -> pl.LazyFrame:
    """Per mart row: estimated sales and BSR percentile, with per-(site, asin) running sums.

    The running sums (``c_*``) make every calendar-window mean two lookups: the sum over (a, b] is
    c(b) - c(a), where c(d) is the running sum of the last row on or before d."""
    if calibration is None:
        from asin_platform.core.sales import default_calibration

        sites = mart.lazy().select(pl.col("site").unique()).collect()["site"].to_list()
        calibration = default_calibration(sites)
    cal = validate_calibration(calibration)
    est = estimate_sales(
        pl.col("bsr_root"), pl.col("a").fill_null(FALLBACK_A), pl.col("b").fill_null(FALLBACK_B)
    )
    by = ["site", "asin"]
    return (
        mart.lazy()
        .select("site", "date", "asin", "category_id", "bsr_root")
        .join(cal.lazy(), on=["site", "category_id"], how="left")
        .with_columns(est_sales=est, bsr_pctl=bsr_percentile())
        .sort("site", "asin", "date")
        .select(
            "site",
            "date",
            "asin",
            pl.col("est_sales").fill_null(0.0).cum_sum().over(by).alias("c_sales"),
            pl.col("est_sales").is_not_null().cast(pl.Int64).cum_sum().over(by).alias("c_n"),
            pl.col("bsr_pctl").fill_null(0.0).cum_sum().over(by).alias("c_pctl"),
            pl.col("bsr_pctl").is_not_null().cast(pl.Int64).cum_sum().over(by).alias("c_pn"),
        )
        .sort("date")
    )


def compute_targets(
    mart: pl.DataFrame | pl.LazyFrame,
    reference: pl.DataFrame,
    config: LabelConfig,
    calibration: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Targets for the (site, date, asin) rows of ``reference`` (see the module docstring).

    Returns the reference key plus past/future means, ``sales_ratio``, ``pctl_gain``, ``valid``,
    ``explodes``, ``relevance`` and ``log_sales_ratio``."""
    cums = daily_targets_inputs(mart, calibration).collect()
    sums = ["c_sales", "c_n", "c_pctl", "c_pn"]
    w, h = timedelta(days=config.observation), timedelta(days=config.horizon)

    def at(offset: timedelta, suffix: str) -> pl.DataFrame:
        # running sums of the last mart row on or before T + offset (none -> 0: nothing observed)
        left = reference.select(*KEY).with_columns(_at=pl.col("date") + offset).sort("_at")
        joined = left.join_asof(
            cums.rename({"date": "_at"}),
            on="_at",
            by=["site", "asin"],
            strategy="backward",
            check_sortedness=False,
        )
        return joined.select(*KEY, *[pl.col(c).fill_null(0).alias(c + suffix) for c in sums])

    now, before, after = at(timedelta(0), ""), at(-w, "_b"), at(h, "_f")
    r, p = config.sales_ratio, config.pctl_gain
    frame = now.join(before, on=list(KEY)).join(after, on=list(KEY))
    past_n = pl.col("c_n") - pl.col("c_n_b")
    fut_n = pl.col("c_n_f") - pl.col("c_n")
    past_pn = pl.col("c_pn") - pl.col("c_pn_b")
    fut_pn = pl.col("c_pn_f") - pl.col("c_pn")
    valid = (past_n >= MIN_PAST_DAYS) & (fut_n >= config.min_future_days) & (past_pn > 0) & (fut_pn > 0)
    frame = frame.select(
        *KEY,
        past_days=past_n,
        future_days=fut_n,
        past_sales=(pl.col("c_sales") - pl.col("c_sales_b")) / past_n,
        future_sales=(pl.col("c_sales_f") - pl.col("c_sales")) / fut_n,
        past_pctl=(pl.col("c_pctl") - pl.col("c_pctl_b")) / past_pn,
        future_pctl=(pl.col("c_pctl_f") - pl.col("c_pctl")) / fut_pn,
        valid=valid,
    ).with_columns(
        sales_ratio=pl.when(pl.col("valid") & (pl.col("past_sales") > 0)).then(
            pl.col("future_sales") / pl.col("past_sales")
        ),
        pctl_gain=pl.when(pl.col("valid")).then(pl.col("future_pctl") - pl.col("past_pctl")),
    )
    ratio, gain = pl.col("sales_ratio"), pl.col("pctl_gain")
    # a null ratio or gain (no valid future) makes every comparison null -> filled as "no"
    explodes = ((ratio >= r - EPS) & (gain >= p - EPS)).fill_null(False)
    near = ((ratio >= math.sqrt(r) - EPS) & (gain >= p / 2 - EPS)).fill_null(False)
    return frame.with_columns(
        explodes=explodes.cast(pl.Int8),
        relevance=pl.when(explodes & (ratio >= r**3 - EPS))
        .then(4)
        .when(explodes & (ratio >= r**2 - EPS))
        .then(3)
        .when(explodes)
        .then(2)
        .when(near)
        .then(1)
        .otherwise(0)
        .cast(pl.Int8),
        log_sales_ratio=pl.when(ratio > 0).then(ratio.log()),
    )


def _assign_split(windows: SplitWindows, horizon: int) -> pl.Expr:
    d = pl.col("date")
    h = timedelta(days=horizon)
    expr = pl.lit(None, dtype=pl.Utf8)
    bounds = windows.as_dict()
    nxt = {"train": bounds["valid"][0], "valid": bounds["test"][0], "test": None}
    for name in reversed(SPLITS):
        lo, hi = bounds[name]
        inside = d.is_between(lo, hi)
        if nxt[name] is not None:
            # a horizon reaching the next split's first reference day would leak it into this label
            inside = inside & (d + h < nxt[name])
        expr = pl.when(inside).then(pl.lit(name)).otherwise(expr)
    return expr


def build_samples(
    features: pl.DataFrame,
    mart: pl.DataFrame | pl.LazyFrame,
    *,
    observation: int = 28,
    horizon: int = 30,
    embargo: int = 30,
    sales_ratio: float = 1.6,
    pctl_gain: float = 0.2,
    calibration: pl.DataFrame | None = None,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    sample_every: int = 1,
    first_date: date | None = None,
) -> Samples:
    """Bin / rank / reg samples from ``features_daily`` rows and the mart they were built from.

    Reference dates are the feature dates whose horizon has fully elapsed in the mart of their
    site (T + H <= last mart day), from ``first_date`` on (default: the first feature date),
    thinned to every ``sample_every``-th day. See the module docstring for targets and splits.
    """
    config = LabelConfig(
        observation, horizon, embargo, sales_ratio, pctl_gain, tuple(split_fractions), sample_every
    )
    feats = feature_columns(features)
    mart_lf = mart.lazy()
    last_by_site = mart_lf.group_by("site").agg(pl.col("date").max().alias("_last")).collect()
    h = timedelta(days=horizon)
    rows = features.join(last_by_site, on="site", how="inner").filter(pl.col("date") + h <= pl.col("_last"))
    if first_date is not None:
        rows = rows.filter(pl.col("date") >= first_date)
    if rows.is_empty():
        raise ValueError(f"no feature rows with a {horizon}-day horizon inside the mart")
    d0, d1 = rows["date"].min(), rows["date"].max()
    assert isinstance(d0, date) and isinstance(d1, date)
    if sample_every > 1:
        rows = rows.filter(((pl.col("date") - d0).dt.total_days() % sample_every) == 0)
    windows = split_windows(d0, d1, config)
    rows = rows.with_columns(split=_assign_split(windows, horizon)).filter(pl.col("split").is_not_null())

    targets = compute_targets(mart_lf, rows.select(*KEY), config, calibration)
    base = (
        rows.select(*KEY, "category_id", "split", *feats)
        .join(targets.select(*KEY, "explodes", "relevance", "log_sales_ratio"), on=list(KEY), how="left")
        # a row the mart cannot label is never a positive
        .with_columns(pl.col("explodes", "relevance").fill_null(0))
        .with_columns(_order=pl.col("split").replace_strict({s: i for i, s in enumerate(SPLITS)}))
        .sort("_order", "site", "date", "asin")
        .drop("_order")
    )
    frames = {
        kind: SAMPLE_TABLES[kind].conform(
            base if kind != "reg" else base.filter(pl.col("log_sales_ratio").is_not_null())
        )
        for kind in TARGETS
    }
    samples = Samples(frames["bin"], frames["rank"], frames["reg"], windows, config, feats)
    samples.summary = summarize(samples)
    return samples


def summarize(samples: Samples) -> pl.DataFrame:
    """Per split: rows, positives, queries (with >= 1 positive), grade counts, date range."""
    rank = samples.rank
    per_query = rank.group_by("split", *QUERY).agg(pos=pl.col("explodes").sum())
    queries = per_query.group_by("split").agg(
        queries=pl.len(), queries_with_positive=(pl.col("pos") > 0).sum()
    )
    grades = [(pl.col("relevance") == g).sum().alias(f"grade_{g}") for g in range(MAX_GRADE + 1)]
    stats = rank.group_by("split").agg(
        pl.len().alias("rows"),
        pl.col("explodes").cast(pl.Int64).sum().alias("positives"),
        *grades,
        pl.col("date").min().alias("first_date"),
        pl.col("date").max().alias("last_date"),
        pl.col("asin").n_unique().alias("asins"),
    )
    reg_rows = samples.reg.group_by("split").agg(reg_rows=pl.len())
    order = pl.DataFrame({"split": list(SPLITS)})
    return (
        order.join(stats, on="split", how="left")
        .join(queries, on="split", how="left")
        .join(reg_rows, on="split", how="left")
        .with_columns(positive_rate=pl.col("positives") / pl.col("rows"))
        .select(
            "split",
            "rows",
            "positives",
            "positive_rate",
            "queries",
            "queries_with_positive",
            *[f"grade_{g}" for g in range(MAX_GRADE + 1)],
            "reg_rows",
            "asins",
            "first_date",
            "last_date",
        )
    )


def check_no_leakage(frame: pl.DataFrame, horizon: int) -> list[str]:
    """Problems if any split's last horizon reaches the next split's first reference date."""
    problems = []
    bounds = frame.group_by("split").agg(lo=pl.col("date").min(), hi=pl.col("date").max())
    spans = {row["split"]: (row["lo"], row["hi"]) for row in bounds.iter_rows(named=True)}
    for a, b in zip(SPLITS, SPLITS[1:], strict=False):
        if a in spans and b in spans and spans[a][1] + timedelta(days=horizon) >= spans[b][0]:
            problems.append(f"{a} ends {spans[a][1]}: its horizon reaches {b}, which starts {spans[b][0]}")
    return problems


def read_samples(path: str | Path, splits: Sequence[str] | None = None) -> pl.DataFrame:
    """A samples Parquet file (optionally only some splits)."""
    frame = pl.scan_parquet(path)
    if splits is not None:
        frame = frame.filter(pl.col("split").is_in(list(splits)))
    return frame.collect()
