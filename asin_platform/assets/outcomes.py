"""Realised outcomes: once the label horizon H has passed, what happened to each day's lists.

Thin shell over core.outcomes: for each (date, site) partition, the day's predictions and baseline
scores are labelled with the targets the ranker was trained on, computed from the mart over
(T - W, T + H], and each ranker's NDCG@k / precision@k is written to ``realised_outcomes``. A
partition whose horizon has not passed yet (the mart does not reach T + H) writes no row and says
"pending" in its metadata; it is realised by a later materialisation (the daily chain re-runs it).
"""

import warnings
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import add_metadata_by_partition, figures_by_partition, metadata_table
from asin_platform.assets._plots import line_plot_png, png_markdown
from asin_platform.assets._slices import ranged_asset, write_segments
from asin_platform.core.backtest import BacktestOptions, fold_table, folds, walk_forward
from asin_platform.core.labels import LabelConfig
from asin_platform.core.outcomes import realised_outcomes as compute_outcomes
from asin_platform.core.outcomes import realised_through
from asin_platform.core.ranker import LightGBMError, lightgbm_refusal
from asin_platform.core.ranker_levers import RankerParams
from asin_platform.core.sales import default_calibration
from asin_platform.levers import BacktestWindow, LeverError, RankerLevers, json_object
from asin_platform.partitions import DATE_DIM, SITE_DIM, partitions_of_context
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.simulator.catalog import SALES_PRIOR
from asin_platform.storage import artifacts_store

SERIES_DAYS = 180  # how far back the realised-quality plot looks


def label_config(settings: Settings) -> LabelConfig:
    """The training labels' windows and thresholds: outcomes are judged by the same yardstick."""
    w, t = settings.windows, settings.thresholds
    return LabelConfig(
        observation=w.observation,
        horizon=w.horizon,
        embargo=max(w.embargo, w.horizon),
        sales_ratio=t.label_sales_ratio,
        pctl_gain=t.label_bsr_pctl_gain,
    )


def realising_mart_day(settings: Settings) -> dg.AssetDep:
    """Partition (T, site) depends on the mart of (T + H, site): the day that realises its labels,
    so automation that follows inputs re-runs it when that day lands, not when T's predictions do."""
    h = settings.windows.horizon
    # Both mapping classes are beta in Dagster 1.13; the warning would greet every CLI command.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _realising_dep(h)


def _realising_dep(h: int) -> dg.AssetDep:
    return dg.AssetDep(
        "mart_timeseries_daily",
        partition_mapping=dg.MultiPartitionMapping(
            {
                DATE_DIM: dg.DimensionPartitionMapping(
                    DATE_DIM,
                    dg.TimeWindowPartitionMapping(
                        start_offset=h, end_offset=h, allow_nonexistent_upstream_partitions=True
                    ),
                ),
                SITE_DIM: dg.DimensionPartitionMapping(SITE_DIM, dg.IdentityPartitionMapping()),
            }
        ),
    )


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``realised_outcomes`` over ``partitions_def``, and the unpartitioned ``walk_forward_backtest``."""
    return [
        ranged_asset(
            realised_outcomes,
            partitions_def,
            deps=["predictions_rank_daily", "score_baseline_daily", realising_mart_day(settings)],  # type: ignore[list-item]
            group_name="model",
            kinds={"polars", "table"},
            layer="outcomes",
        ),
        dg.asset(
            deps=["features_daily", "mart_timeseries_daily"],
            group_name="model",
            kinds={"lightgbm", "polars"},
            tags={"layer": "model"},
        )(walk_forward_backtest),
    ]


def realised_outcomes(
    context: dg.AssetExecutionContext, warehouse: Warehouse, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """NDCG@k and precision@k (k = 10, 20, 50) of the model's and the baseline's list of each
    (date, site) against the realised labels, once the horizon H has passed (the targets of
    core.labels over the mart's (T, T+H]). A partition still inside its horizon writes nothing and
    its metadata says `status: pending` with the day it will be realised. Each site's newest day in
    the run shows the realised-quality series (precision@20, NDCG@20) as a plot."""
    config = label_config(settings)
    h, w = timedelta(days=config.horizon), timedelta(days=config.observation)
    now = datetime.now(UTC)

    def build(site: str, start: date, end: date) -> pl.DataFrame:
        predictions = warehouse.read("predictions_rank_daily", sites=[site], start=start, end=end)
        baseline = warehouse.read(
            "score_baseline_daily", sites=[site], start=start, end=end,
            columns=["site", "date", "asin", "explosive_score"],
        )  # fmt: skip
        mart = warehouse.read(
            "mart_timeseries_daily", sites=[site], start=start - w, end=end + h,
            columns=["site", "date", "asin", "category_id", "bsr_root"],
        )  # fmt: skip
        calibration = default_calibration([site], SALES_PRIOR)
        return compute_outcomes(
            predictions, baseline, mart, config, calibration=calibration, evaluated_at=now
        )

    frame = write_segments(context, warehouse, "realised_outcomes", build)
    at_k = frame.filter(pl.col("k") == 20)
    figures = figures_by_partition(
        at_k,
        [
            pl.col("precision").filter(pl.col("ranker") == r).first().alias(f"{r}_precision@20")
            for r in ("model", "baseline")
        ]
        + [
            pl.col("ndcg").filter(pl.col("ranker") == r).first().alias(f"{r}_ndcg@20")
            for r in ("model", "baseline")
        ]
        + [pl.col("positives").first().alias("positives"), pl.col("items").first().alias("items")],
    )
    parts = partitions_of_context(context)
    newest = {part.site: part for part in parts}
    by_partition: dict[str, dict[str, Any]] = {}
    for part in parts:
        metadata: dict[str, Any] = (
            {"status": "realised", **figures[part]}
            if part in figures
            else _pending(warehouse, part.site, part.day, config.horizon)
        )
        if newest[part.site] == part:
            metadata.update(quality_plot(warehouse, part.site, part.day))
        by_partition[part.key] = metadata
    add_metadata_by_partition(context, by_partition)
    context.log.info(f"realised_outcomes: {frame.height} rows for {len(figures)} of {len(parts)} partitions")
    return dg.MaterializeResult()


def _pending(warehouse: Warehouse, site: str, day: date, horizon: int) -> dict[str, Any]:
    last = warehouse.query("SELECT max(date) AS d FROM mart_timeseries_daily WHERE site = ?", [site])["d"][0]
    through = realised_through(last, horizon) if last is not None else None
    return {
        "status": "pending",
        "realised_on": str(day + timedelta(days=horizon)),
        "mart_through": str(last),
        "realised_through": str(through),
    }


def quality_plot(warehouse: Warehouse, site: str, day: date) -> dict[str, dg.MarkdownMetadataValue]:
    """Realised precision@20 and NDCG@20 of model and baseline per prediction date, to ``day``."""
    series = warehouse.read(
        "realised_outcomes", sites=[site], start=day - timedelta(days=SERIES_DAYS), end=day
    ).filter(pl.col("k") == 20)
    if series.is_empty():
        return {}
    panels = []
    for metric in ("precision", "ndcg"):
        lines = {}
        for ranker in ("model", "baseline"):
            rows = series.filter(pl.col("ranker") == ranker).sort("date")
            lines[ranker] = (rows["date"].to_list(), rows[metric].to_list())
        panels.append((f"realised {metric}@20", lines))
    png = line_plot_png(panels, f"Realised quality of the lists, {site}, to {day}")
    return {"realised_quality": png_markdown(png, "realised quality")}


# ------------------------------------------------------------------------- walk-forward backtest


# the window's defaults and bounds: levers.BacktestWindow (the CLI's flags share them)
_WINDOW = BacktestWindow()


class BacktestConfig(dg.Config):
    """Checked before anything is read: ``rounds`` against the bounds of ``scale.ranker.rounds``,
    the window (``folds``, ``every_days``, ``train_days``, ``sample_every``) against
    ``levers.BacktestWindow``'s (each at least 1; at most 100 folds, 365 days between cut-offs or as
    the stride, 3,650 training dates), ``params_json`` read as a JSON object (``levers.json_object``,
    as the CLI's ``--params``). The bounds are not on these fields because Dagster would then fail the
    step with pydantic's traceback instead of one line."""

    folds: int = _WINDOW.folds  # cut-offs, every_days apart, ending where the newest labels are realised
    every_days: int = _WINDOW.every_days
    train_days: int = _WINDOW.train_days  # reference dates behind each cut-off used for training
    sample_every: int = _WINDOW.sample_every
    rounds: int = 300
    params_json: str | None = None  # LightGBM params over the defaults, as JSON
    oracle: bool = True  # the simulator oracle (only when the data comes from it)


def backtest_options(settings: Settings, sites: list[str], **overrides: Any) -> BacktestOptions:
    """The walk-forward options of ``settings`` (labels and ranker levers as in training) plus the
    run's overrides. The overrides that are ranker levers (``rounds``, ``early_stopping``) are checked
    against the settings' bounds by ``RankerLevers.overlaid``, those of the window (``train_days``,
    ``sample_every``) against ``BacktestWindow``'s: ``LeverError`` names the first out of range, so a
    caller builds the options before it reads any data."""
    RankerLevers.overlaid(
        settings.scale.ranker, {k: v for k, v in overrides.items() if k in RankerLevers.model_fields}
    )
    BacktestWindow.overlaid(_WINDOW, {k: v for k, v in overrides.items() if k in BacktestWindow.model_fields})
    return BacktestOptions(
        config=label_config(settings),
        calibration=default_calibration(sites, SALES_PRIOR),
        score_weights=settings.score_weights,
        min_category_size=settings.min_category_size,
        levers=RankerParams.of(settings.scale.ranker.model_dump()),
        **overrides,
    )


def backtest_frames(
    warehouse: Warehouse, settings: Settings, sites: list[str], start: date, end: date, train_days: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """features_daily and the mart a walk-forward over cut-offs [start, end] needs."""
    w = settings.windows
    first = start - timedelta(days=train_days + w.horizon + w.observation)
    last = end + timedelta(days=w.horizon)
    features = warehouse.read("features_daily", sites=sites, start=first, end=last)
    mart = warehouse.read(
        "mart_timeseries_daily", sites=sites, start=first - timedelta(days=w.observation), end=last,
        columns=["site", "date", "asin", "category_id", "bsr_root"],
    )  # fmt: skip
    return features, mart


def simulator_oracle_of(settings: Settings) -> Any:
    """The oracle callback of core.backtest: the simulator's hidden state, when it knows the ASINs."""
    from asin_platform.assets.evaluation import simulator_oracle

    return lambda keys: simulator_oracle(keys, settings, settings.windows.horizon)


def backtest_plot(table: pl.DataFrame) -> bytes:
    """NDCG@20 and P@20 of each ranker per fold (core.backtest.fold_table)."""
    cutoffs = table["cutoff"].to_list()
    panels = []
    for metric in ("ndcg@20", "P@20"):
        columns = [c for c in table.columns if c.startswith(metric + " ")]
        panels.append((metric, {c.split(" ", 1)[1]: (cutoffs, table[c].to_list()) for c in columns}))
    return line_plot_png(panels, "Walk-forward backtest: each fold's evaluation window after its cut-off")


def walk_forward_backtest(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Walk-forward backtest of the ranker (core.backtest): for each of the last `folds` cut-offs,
    `every_days` apart and ending where the newest labels are realised, retrain on the labels known
    on the cut-off and score the following window; NDCG@20 / P@20 per fold of model, baseline,
    random and (simulated data) the oracle, as a table and a plot; the folds' rows as
    `backtest/backtest.csv` in the artifacts store. A ``rounds`` or a window value (``folds``,
    ``every_days``, ``train_days``, ``sample_every``) out of range, or a ``params_json`` that is not
    a JSON object, fails in one line before anything is read."""
    sites = list(settings.sites)
    try:
        # folds and every_days here; train_days and sample_every with rounds in backtest_options
        BacktestWindow.overlaid(_WINDOW, {"folds": config.folds, "every_days": config.every_days})
        options = backtest_options(
            settings, sites, train_days=config.train_days, sample_every=config.sample_every,
            params=json_object("params_json", config.params_json), rounds=config.rounds,
        )  # fmt: skip
    except LeverError as exc:
        raise dg.Failure(f"walk_forward_backtest config {exc}") from None
    newest = warehouse.query("SELECT max(date) AS d FROM mart_timeseries_daily")["d"][0]
    if newest is None:
        raise dg.Failure("mart_timeseries_daily is empty: materialise the mart and features first")
    end = realised_through(newest, settings.windows.horizon)
    start = end - timedelta(days=config.folds * config.every_days)
    features, mart = backtest_frames(warehouse, settings, sites, start, end, config.train_days)
    oracle = simulator_oracle_of(settings) if config.oracle else None
    try:
        results = walk_forward(
            features, mart, folds(start, end, config.every_days), options, oracle=oracle, log=context.log.info
        )
    except LightGBMError as exc:  # params_json or the settings' levers: no fold trained
        raise dg.Failure(
            f"walk-forward over {start}..{end}: LightGBM refused to train a fold's ranker "
            f"({lightgbm_refusal(exc)}); fix what LightGBM refused (params_json, rounds or scale.ranker "
            "in the settings) and materialise again"
        ) from exc
    except ValueError as exc:
        raise dg.Failure(f"walk-forward over {start}..{end}: {exc}") from exc
    # the artifacts store (a local folder by default, object storage in production): a later run's pod finds it
    path = artifacts_store(settings).write_frame("backtest/backtest.csv", results)
    table = fold_table(results)
    means = results.filter(pl.col("k") == 20).group_by("ranker").agg(pl.col("ndcg").mean())
    return dg.MaterializeResult(
        metadata={
            "folds": metadata_table(table, digits=3),
            "plot": png_markdown(backtest_plot(table), "walk-forward backtest"),
            "path": path,
            **{f"mean_ndcg@20_{r}": float(v) for r, v in means.iter_rows()},
        }
    )
