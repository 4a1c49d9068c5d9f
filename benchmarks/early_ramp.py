"""Early-ramp candidates on the sparse-breakout market, one by one, on cached features and samples.

The market of benchmarks/model_quality.py with the simulator's default horizon (1200 days: few
breakouts per query). Features, rank samples and the oracle's scores are built once and cached as
Parquet under $TMPDIR/asin_platform_benchmarks/early_ramp_h<horizon>_hist/, then every candidate trains
the ranker (``core.ranker.build_ranker``, the settings' levers plus the candidate's changes) and is
scored on the validation and test windows. Prints one markdown row per candidate:

    .venv/bin/python benchmarks/early_ramp.py                      # every candidate
    .venv/bin/python benchmarks/early_ramp.py base xs snr          # some

The table in docs/model_quality.md (*Early-ramp detection*) was made with it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from model_quality import cached_tables  # noqa: E402

from asin_platform.core.features import build_features  # noqa: E402
from asin_platform.core.history_features import HISTORY_COLUMNS  # noqa: E402
from asin_platform.core.labels import build_samples, feature_columns  # noqa: E402
from asin_platform.core.metrics import add_baseline_scores, compare_rankers, oracle_scores  # noqa: E402
from asin_platform.core.predict import add_model_scores  # noqa: E402
from asin_platform.core.ranker import RankerParams, build_ranker  # noqa: E402
from asin_platform.core.ranker_features import set_columns  # noqa: E402
from asin_platform.core.sales import default_calibration  # noqa: E402
from asin_platform.settings import RankerLevers, ScoreWeights  # noqa: E402
from asin_platform.simulator import Market, MarketConfig  # noqa: E402
from asin_platform.simulator.catalog import SALES_PRIOR  # noqa: E402

SITES = ("US", "UK", "DE", "JP")
KEY = ["site", "date", "asin"]
# directions known from how a breakout shows (BSR falls, percentile, reviews and keyword ranks improve)
MONOTONE = {
    "bsr_log_slope_7d": -1,
    "bsr_log_slope_14d": -1,
    "bsr_pctl_change_7d": 1,
    "review_velocity_7d": 1,
    "review_velocity_14d": 1,
    "kw_mean_rank_change_7d": -1,
}
# and of the history columns: a BSR that fell the week before, one below its own usual level, a review burst
MONOTONE_HIST = {**MONOTONE, "bsr_log_drop_7d_prior": 1, "bsr_log_z_7d_prior": -1, "review_burst_z_7d": 1}


@dataclass(frozen=True)
class Candidate:
    what: str
    sets: tuple[str, ...] = ()
    levers: dict[str, Any] = field(default_factory=dict)
    lightgbm: dict[str, Any] = field(default_factory=dict)
    sample_every: int = 2
    monotone: bool = False
    monotone_hist: bool = False
    drop: tuple[str, ...] = ()  # features_daily columns left out


CANDIDATES: dict[str, Candidate] = {
    "base": Candidate("features_daily columns only, the settings' levers"),
    "nohist": Candidate(
        "features_daily without the history columns (core/history_features.py)", drop=HISTORY_COLUMNS
    ),
    "xs_hist": Candidate("+ ranks within (site, date) of 5 history columns", ("xs_hist",)),
    "mono_hist": Candidate(
        "monotone constraints of `monotone` plus BSR drop up, own-level z down, review burst up",
        monotone_hist=True,
    ),
    "ratios": Candidate("+ 7d vs 30d sales, slope / review-velocity / percentile accelerations", ("ratios",)),
    "xs": Candidate(
        "+ ratios, ranks within (site, date) and robust z within (site, date, category)", ("ratios", "xs")
    ),
    "snr": Candidate("+ Poisson z of 7d vs 30d sales, BSR slopes x sqrt(units in window)", ("snr",)),
    "reviews": Candidate("+ reviews per unit sold (7d, 30d), review excess over 1.5% of sales", ("reviews",)),
    "monotone": Candidate(
        "monotone constraints on 7/14d slopes, 7d percentile, review velocity, kw", monotone=True
    ),
    "xendcg": Candidate("objective rank_xendcg instead of lambdarank", lightgbm={"objective": "rank_xendcg"}),
    "neg03": Candidate(
        "30% of grade-0 training rows (per-key draw, every relevant row kept)",
        levers={"negative_fraction": 0.3},
    ),
    "gain31": Candidate("label_gain grade 4 = 31 (instead of 15)", lightgbm={"label_gain": [0, 1, 3, 7, 31]}),
    "every1": Candidate("every reference date (twice the training rows)", sample_every=1),
}


def cached_frames(horizon: int, cache: Path, log=print) -> dict[str, pl.DataFrame]:
    """Rank samples (every 1 and 2 days) and the oracle's valid/test scores of the sparse market."""
    folder = cache / f"early_ramp_h{horizon}_hist"
    names = ("rank_e1", "rank_e2", "oracle")
    if all((folder / f"{n}.parquet").exists() for n in names):
        return {n: pl.read_parquet(folder / f"{n}.parquet") for n in names}
    market = Market(
        MarketConfig(seed=7, sites=SITES, asins_per_site=5000, horizon_days=horizon, breakout_rate=0.04)
    )
    start = market.first_day
    tables = cached_tables(market, start, start + timedelta(days=299), cache, log)
    dates = sorted(tables.mart["date"].unique().to_list())[30:]
    calibration = default_calibration(list(SITES), SALES_PRIOR)
    features = build_features(
        tables.mart.lazy(), tables.keywords.lazy(), dates, lookback=30, calibration=calibration
    )
    frames = {f"rank_e{e}": build_samples(features, tables.mart, sample_every=e).rank for e in (1, 2)}
    evaluated = frames["rank_e2"].filter(pl.col("split").is_in(["valid", "test"]))
    first, last = evaluated["date"].min(), evaluated["date"].max()
    truth = pl.concat(
        [market.ground_truth(s, first - timedelta(days=28), last + timedelta(days=30)) for s in SITES]
    )
    frames["oracle"] = oracle_scores(evaluated.select(KEY), truth, horizon=30, observation=28).select(
        *KEY, "oracle_score"
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.write_parquet(folder / f"{name}.parquet")
    return frames


def evaluate(name: str, cand: Candidate, frames: dict[str, pl.DataFrame]) -> dict[str, Any]:
    rank = frames[f"rank_e{cand.sample_every}"]
    features = [f for f in feature_columns(rank) if f not in cand.drop] + list(set_columns(cand.sets))
    lightgbm = dict(cand.lightgbm)
    if cand.monotone or cand.monotone_hist:
        directions = MONOTONE_HIST if cand.monotone_hist else MONOTONE
        lightgbm["monotone_constraints"] = [directions.get(f, 0) for f in features]
    levers = RankerParams.of(RankerLevers().model_dump(), **cand.levers, lightgbm=lightgbm)
    trained = build_ranker(rank, levers, features=features)
    # evaluated on the oracle's rows: the every-2-days reference dates of valid and test
    rows = rank.join(frames["oracle"], on=KEY)
    rows = add_model_scores(rows, trained.booster, trained.features, num_iteration=trained.best_iteration)
    out: dict[str, Any] = {"candidate": name, "what": cand.what, "trees": trained.best_iteration}
    for split in ("valid", "test"):
        table = compare_rankers(
            rows.filter(pl.col("split") == split),
            {"model": "model_score", "oracle": "oracle_score"},
            relevance="relevance",
            positive="explodes",
        )
        at20 = {r["ranker"]: r["ndcg"] for r in table.filter(pl.col("k") == 20).iter_rows(named=True)}
        out[f"{split}_ndcg20"] = at20["model"]
        out[f"{split}_oracle"] = at20["oracle"]
    out["test_vs_oracle"] = out["test_ndcg20"] / out["test_oracle"]
    out["train_s"] = trained.training_seconds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("candidates", nargs="*", help=f"default: all of {', '.join(CANDIDATES)}")
    parser.add_argument("--horizon-days", type=int, default=1200)
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "asin_platform_benchmarks"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}")
    started = time.perf_counter()
    frames = cached_frames(args.horizon_days, Path(args.cache_dir))
    # the levers' hard negatives are the top-baseline grade-0 rows of each query, as in model_quality.py
    weights = ScoreWeights()
    frames = {n: add_baseline_scores(f, weights) if n.startswith("rank") else f for n, f in frames.items()}
    print(f"frames ready in {time.perf_counter() - started:.0f} s", flush=True)
    print("| candidate | what | trees | valid NDCG@20 | test NDCG@20 | test model/oracle |")
    print("|---|---|---|---|---|---|")
    for name in args.candidates or CANDIDATES:
        r = evaluate(name, CANDIDATES[name], frames)
        print(
            f"| {name} | {r['what']} | {r['trees']} | {r['valid_ndcg20']:.3f} | {r['test_ndcg20']:.3f} | "
            f"{r['test_vs_oracle']:.3f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
