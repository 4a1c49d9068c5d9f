"""`asin-platform backtest`: walk-forward retrain-and-evaluate over a range of cut-offs.

    asin-platform backtest --start 2025-06-01 --end 2025-12-01 --every 28d

Reads features_daily and the mart from the warehouse (or ``--features``/``--mart`` Parquet files),
calls core.backtest.walk_forward and writes ``<output>/backtest.csv`` (one row per fold, ranker
and k), ``backtest.md`` (the per-fold NDCG@20 / P@20 table) and ``backtest.png`` (the plot). The
oracle is drawn from the bundled simulator's hidden state when the data comes from it.
"""

from __future__ import annotations

import argparse
import re
from datetime import date
from pathlib import Path

import polars as pl

from asin_platform.commands._args import (
    check_sites,
    check_start_end,
    lever_flag_error,
    parse_date,
    parse_params,
    read_table,
)
from asin_platform.commands._lightgbm import fatal_lines_held_back
from asin_platform.errors import UserError
from asin_platform.levers import BacktestWindow, LeverError
from asin_platform.settings import Settings

MART_COLUMNS = ["site", "date", "asin", "category_id", "bsr_root"]


def parse_every(text: str) -> int:
    """``28d`` or ``28`` -> 28 (days); ``4w`` -> 28. Only the form is checked here: the range (at
    least a day) is ``BacktestWindow.every_days``', checked with the other values in cmd_backtest."""
    match = re.fullmatch(r"(\d+)\s*([dw]?)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a period: {text!r} (write e.g. 28d or 4w)")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def check_cutoffs(start: date, end: date, every: int) -> None:
    """The cut-offs --start, --end and --every make (as many as core.backtest.folds makes, without
    making them) against the bound of the asset's ``folds`` (``BacktestWindow``): each trains a
    model. Too many is a UserError naming the three flags."""
    cutoffs = -(-(end - start).days // every)  # start, start + every, ... before end
    try:
        BacktestWindow.overlaid(BacktestWindow(), {"folds": cutoffs})
    except LeverError as exc:
        raise UserError(
            f"--start {start} --end {end} --every {every} make {cutoffs:,} cut-offs, each a model to train "
            f"(folds: {exc.reason}): give a longer --every or a shorter range"
        ) from None


def _load(
    args: argparse.Namespace, settings: Settings, sites: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Features and the mart behind them: from the warehouse, or the --features/--mart files."""
    if args.features or args.mart:
        if not (args.features and args.mart):
            raise UserError("file mode needs both --features and --mart (Parquet files)")
        features = read_table(args.features, "--features")
        mart = read_table(args.mart, "--mart", columns=MART_COLUMNS)
        features, mart = (f.filter(pl.col("site").is_in(sites)) for f in (features, mart))
    else:
        from asin_platform.assets.outcomes import backtest_frames
        from asin_platform.commands._runtime import cli_warehouse, warehouse_errors

        with warehouse_errors():
            warehouse = cli_warehouse(settings)
            features, mart = backtest_frames(
                warehouse, settings, sites, args.start, args.end, args.train_days
            )
    if features.is_empty() or mart.is_empty():
        raise UserError(
            f"no features or mart rows around {args.start}..{args.end}: materialise features_daily first "
            "(asin-platform features-build) or pass --features/--mart"
        )
    return features, mart


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.assets.outcomes import backtest_options, backtest_plot, simulator_oracle_of
    from asin_platform.core.backtest import fold_table, folds, markdown, walk_forward
    from asin_platform.core.ranker import LightGBMError, lightgbm_refusal

    check_start_end(args.start, args.end)
    if args.start == args.end:
        raise UserError("--start equals --end: a fold evaluates the days after its cut-off; widen the range")
    sites = check_sites(args.sites, settings)
    # before the data is read: --params parsed, --rounds checked against scale.ranker.rounds' bounds,
    # --every here and --train-days, --sample-every in backtest_options against BacktestWindow's
    try:
        BacktestWindow.overlaid(BacktestWindow(), {"every_days": args.every})
        options = backtest_options(
            settings, sites, train_days=args.train_days, sample_every=args.sample_every,
            params=parse_params(args.params), rounds=args.rounds,
        )  # fmt: skip
    except LeverError as exc:
        raise lever_flag_error(exc, flags={"every_days": "--every"}) from None
    check_cutoffs(args.start, args.end, args.every)
    features, mart = _load(args, settings, sites)
    oracle = None if args.no_oracle else simulator_oracle_of(settings)
    try:
        with fatal_lines_held_back():  # LightGBM's own stderr line of a refusal: the line below says it
            results = walk_forward(
                features, mart, folds(args.start, args.end, args.every), options, oracle=oracle, log=print
            )
    except LightGBMError as exc:  # --params (or the settings' levers): nothing written
        raise UserError(
            f"backtest {args.start}..{args.end}: LightGBM refused to train a fold's ranker "
            f"({lightgbm_refusal(exc)}); fix what LightGBM refused (--params, --rounds or scale.ranker "
            "in the settings) and run backtest again"
        ) from exc
    except ValueError as exc:
        raise UserError(f"backtest {args.start}..{args.end}: {exc}") from exc
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results.write_csv(out / "backtest.csv")
    table = fold_table(results)
    text = markdown(table)
    (out / "backtest.md").write_text(text + "\n")
    (out / "backtest.png").write_bytes(backtest_plot(table))
    print(text)
    print(f"{table.height} fold(s) -> {out}/backtest.csv, backtest.md, backtest.png")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    window = BacktestWindow()  # the defaults and bounds the walk_forward_backtest asset's config has
    p = sub.add_parser(
        "backtest",
        help="walk-forward: retrain as of each cut-off, evaluate NDCG@20 / P@20 on the following window",
    )
    p.add_argument("--start", type=parse_date, required=True, help="first cut-off")
    p.add_argument("--end", type=parse_date, required=True, help="last evaluated day")
    p.add_argument(
        "--every", type=parse_every, default=window.every_days,
        help=f"days between cut-offs, e.g. 28d or 4w, at most a year (default {window.every_days}d)",
    )  # fmt: skip
    p.add_argument("--sites", nargs="+", help="sites (default: all configured)")
    p.add_argument(
        "--train-days", type=int, default=window.train_days,
        help=f"reference dates behind each cut-off, 1..3,650 (default {window.train_days})",
    )  # fmt: skip
    p.add_argument(
        "--sample-every", type=int, default=window.sample_every,
        help=f"keep every n-th training reference date, 1..365 (default {window.sample_every})",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=300, help="boosting rounds (early stopping on valid)")
    p.add_argument("--params", help="LightGBM params as a JSON object or a JSON file, over the defaults")
    p.add_argument("--features", help="features_daily Parquet (file mode; default: the warehouse)")
    p.add_argument("--mart", help="mart_timeseries_daily Parquet (file mode)")
    p.add_argument("--no-oracle", action="store_true", help="skip the simulator oracle")
    p.add_argument("--output", default="artifacts/backtest", help="directory for csv, md and png")
    p.set_defaults(func=cmd_backtest)
