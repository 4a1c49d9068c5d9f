"""Training layer: ``features_daily`` + mart -> ``train_samples`` -> ``ranker_model``; ``model_evaluation``
lives in assets/evaluation.py and is built here with them (group ``model``).

Thin Dagster shell over core.labels, core.ranker, core.tuning and core.metrics (the CLI's
build-labels / train-rank / tune-rank / eval-metrics call the same functions). All three assets are
unpartitioned: a model is trained on a window of many days and sites at once.

Models are written to the artifact store (``storage.artifacts_url``, default the local
``artifacts_dir``) and registered in the warehouse's ``model_registry`` (asin_platform/storage): the
newest row is what the evaluation looks at, the promoted row (the newest model that beat the
baseline on validation and did no worse than its predecessor on the latest walk-forward folds,
``judge_candidate``) is what ``predictions_rank_daily`` uses, on whichever machine it runs.
"""

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import dagster as dg

from asin_platform.assets._metadata import metadata_table
from asin_platform.assets._plots import line_plot_png, png_markdown
from asin_platform.assets.evaluation import model_evaluation
from asin_platform.assets.outcomes import backtest_frames, backtest_options
from asin_platform.core.backtest import (
    Contender,
    PromotionVerdict,
    compare_on_folds,
    latest_folds,
    promotion_verdict,
    seen_through,
)
from asin_platform.core.held_out import held_out_record
from asin_platform.core.labels import SAMPLE_TABLES, Samples, build_samples
from asin_platform.core.metrics import (
    add_baseline_scores,
)
from asin_platform.core.model_files import gate_figure, promotion_refusal
from asin_platform.core.outcomes import realised_through
from asin_platform.core.ranker import (
    LightGBMError,
    TrainedRanker,
    feature_importance,
    lightgbm_refusal,
)
from asin_platform.core.ranker_levers import RankerParams, build_ranker, refit_summary
from asin_platform.core.sales import default_calibration
from asin_platform.core.tuning import FAIL_REASON, NoCompletedTrialError, tune_ranker
from asin_platform.levers import LeverError, RankerLevers, SamplesWindow, TuningRun, json_object
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.simulator.catalog import SALES_PRIOR
from asin_platform.storage import (
    ArtifactStore,
    NoModelError,
    artifacts_store,
    load_registered,
    register_model,
)
from asin_platform.storage.tuning_db import run_storage, shown_storage

# ---------------------------------------------------------------------------------- train_samples


# the samples window's defaults and bounds: levers.SamplesWindow (build-labels --sample-every shares them)
_SAMPLES = SamplesWindow()


class TrainSamplesConfig(dg.Config):
    """``end_date``, ``days`` and ``sample_every`` are checked by ``levers.SamplesWindow`` (a date as
    YYYY-MM-DD, the bounds) before anything is read, ``end_date`` also against the settings'
    ``partitions_start`` (not on these fields: Dagster would fail the step with pydantic's traceback)."""

    end_date: str | None = None  # last mart day whose data labels may use, YYYY-MM-DD (default: the newest)
    days: int = _SAMPLES.days  # reference dates in the window (train + valid + test + two embargo gaps)
    sample_every: int = _SAMPLES.sample_every  # keep every n-th reference date (a long window at lower cost)


def train_samples(
    context: dg.AssetExecutionContext,
    config: TrainSamplesConfig,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Supervised samples (bin / rank / reg) over the configured window: features of each
    reference date T with targets from the mart's (T, T+H] against (T-W, T]; a temporal
    train / valid / test split with an embargo of >= H days between them. Written to the
    train_samples_{bin,rank,reg} tables and as Parquet under `<artifacts>/samples` in the artifact store.
    An ``end_date`` that is not a date or precedes the partitions, or a ``days`` or ``sample_every``
    out of range, fails in one line before anything is read."""
    given = {"end_date": config.end_date or None, "days": config.days, "sample_every": config.sample_every}
    try:
        window = SamplesWindow.overlaid(_SAMPLES, given)
    except LeverError as exc:
        raise dg.Failure(f"train_samples config {exc}") from None
    if window.end_date is not None and window.end_date < settings.partitions_start:
        raise dg.Failure(
            f"train_samples config end_date {window.end_date}: before the first partition, "
            f"{settings.partitions_start} (partitions_start in the settings); give a later day or leave it "
            "unset for the newest mart day"
        )
    w, t = settings.windows, settings.thresholds
    newest = warehouse.query("SELECT max(date) AS d FROM mart_timeseries_daily")["d"][0]
    if newest is None:
        raise dg.Failure("mart_timeseries_daily is empty: materialise the mart and features first")
    end = window.end_date or newest
    ref_end = end - timedelta(days=w.horizon)
    ref_start = ref_end - timedelta(days=window.days - 1)
    features = warehouse.read("features_daily", start=ref_start, end=ref_end)
    mart = warehouse.read(
        "mart_timeseries_daily",
        start=ref_start - timedelta(days=w.observation),
        end=end,
        columns=["site", "date", "asin", "category_id", "bsr_root"],
    )
    if features.is_empty():
        raise dg.Failure(
            f"no features_daily rows in {ref_start}..{ref_end}: materialise features_daily first"
        )
    try:
        samples = build_samples(
            features,
            mart,
            observation=w.observation,
            horizon=w.horizon,
            embargo=w.embargo,
            sales_ratio=t.label_sales_ratio,
            pctl_gain=t.label_bsr_pctl_gain,
            calibration=default_calibration(settings.sites, SALES_PRIOR),
            sample_every=window.sample_every,
        )
    except ValueError as exc:
        raise dg.Failure(f"cannot build samples over {ref_start}..{ref_end}: {exc}") from exc

    # The tables hold one training set: replace everything, in one transaction for all three.
    with warehouse.transaction() as tx:
        for kind, frame in samples.frames().items():
            table = SAMPLE_TABLES[kind].name
            tx.execute(f'DELETE FROM "{table}"')
            if frame.height:
                tx.replace_slices(
                    table, frame, sites=frame["site"].unique().to_list(),
                    start=frame["date"].min(), end=frame["date"].max(),
                )  # fmt: skip
    samples_url = write_samples(samples, artifacts_store(settings))
    context.log.info(
        f"samples over {ref_start}..{ref_end}: "
        + ", ".join(f"{k} {f.height:,} rows" for k, f in samples.frames().items())
    )
    summary = samples.summary
    positives = {r["split"]: int(r["positives"] or 0) for r in summary.iter_rows(named=True)}
    return dg.MaterializeResult(
        metadata={
            "rows_bin": samples.bin.height,
            "rows_rank": samples.rank.height,
            "rows_reg": samples.reg.height,
            "positives_by_split": dg.MetadataValue.json(positives),
            "summary": metadata_table(summary),
            "windows": dg.MetadataValue.json(samples.windows.to_json()),
            "features": len(samples.features),
            "label_definition": dg.MetadataValue.md(
                f"explodes = mean est. sales over (T, T+{w.horizon}] / over (T-{w.observation}, T] "
                f">= {t.label_sales_ratio} and BSR percentile gain >= {t.label_bsr_pctl_gain}; "
                f"embargo {w.embargo} days; grades 0..4 (core/labels.py)"
            ),
            "parquet": samples_url,
        }
    )


def write_samples(samples: Samples, store: ArtifactStore) -> str:
    """``samples/train_samples_{bin,rank,reg}.parquet`` + the summary in the store, as
    ``core.labels.Samples.write`` lays them out on disk; returns where they are."""
    for kind, frame in samples.frames().items():
        store.write_frame(f"samples/train_samples_{kind}.parquet", frame)
    store.write_text(
        "samples/train_samples_summary.json", json.dumps(samples.summary_dict(), indent=2) + "\n"
    )
    return f"{store}/samples"


# ----------------------------------------------------------------------------------- ranker_model


# the Optuna search's defaults and bounds: levers.TuningRun (tune-rank's flags share them)
_TUNING = TuningRun()


class RankerModelConfig(dg.Config):
    """Unset levers are the settings' (``scale.ranker``): the same as the CLI's and the backtest's.
    A lever given is checked against the same bounds as the setting, ``trials`` and ``timeout``
    against ``levers.TuningRun``'s and ``params_json`` read as a JSON object (``checked_config``),
    before the run reads anything. The bounds are not on these fields because Dagster would then
    fail the step with pydantic's traceback instead of one line."""

    tune: bool = False  # run (or resume) the Optuna search before training
    trials: int = _TUNING.trials  # completed trials the study should hold (levers.TuningRun: 1..10,000)
    # seconds this run may search, > 0 and at most a week (levers.TuningRun, as tune-rank --timeout);
    # unset: until the study holds its trials
    timeout: float | None = _TUNING.timeout
    rounds: int | None = None  # max boosting rounds
    early_stopping: int | None = None  # rounds without a validation NDCG@20 gain
    params_json: str = ""  # LightGBM params laid over the levers, as a JSON object
    negative_fraction: float | None = None  # share of the other grade-0 rows kept in large queries
    hard_negative_fraction: float | None = None  # share of grade-0 rows kept as the baseline's top
    min_query_rows: int | None = None  # only queries of more rows than this are sampled (>= 0)
    refit_factor: float | None = None  # > 0: refit on train + valid with this x the early-stopped trees


# what LightGBM refuses in ranker_model (tuning or training) is the run's: say what to fix, in its terms
REFUSED_FIX = (
    "fix what LightGBM refused (params_json, the config's levers or scale.ranker in the settings) "
    "and materialise again"
)


def checked_config(config: RankerModelConfig, settings: Settings) -> tuple[RankerLevers, dict[str, Any]]:
    """The run config checked before the run reads anything: ``settings.scale.ranker`` with the
    config's levers laid over it (an unset one keeps the setting; ``RankerLevers.overlaid``, the
    settings' bounds), ``trials`` and ``timeout`` (``TuningRun.overlaid``) and the LightGBM params
    of ``params_json`` (``levers.json_object``, as the CLI's ``--params``; then what the ranker refuses
    of them before LightGBM sees them, ``core.ranker.merged_params``). A mistake is a ``dg.Failure``
    of one line naming the config field, the value and what is wrong with it."""
    given = {
        "rounds": config.rounds,
        "early_stopping": config.early_stopping,
        "negative_fraction": config.negative_fraction,
        "hard_negative_fraction": config.hard_negative_fraction,
        "min_query_rows": config.min_query_rows,
        "refit_factor": config.refit_factor,
    }
    try:
        levers = RankerLevers.overlaid(settings.scale.ranker, given)
        TuningRun.overlaid(_TUNING, {"trials": config.trials, "timeout": config.timeout})
        params = json_object("params_json", config.params_json)
    except LeverError as exc:
        raise dg.Failure(f"ranker_model config {exc}") from None
    try:  # params the ranker refuses before LightGBM sees them (core.ranker.merged_params)
        RankerParams.of(levers.model_dump(), lightgbm=params).lightgbm_params()
    except (ValueError, TypeError) as exc:
        raise dg.Failure(f"ranker_model config params_json: {exc}") from None
    return levers, params


def _learning_curve(history: dict[str, list[float]]) -> dg.MarkdownMetadataValue | None:
    """Validation NDCG per boosting round, one line per metric (None without a history)."""
    if not history:
        return None
    series = {name: (range(1, len(values) + 1), values) for name, values in history.items()}
    png = line_plot_png([("validation NDCG", series)], "validation NDCG per boosting round")
    return png_markdown(png, "validation NDCG")


def ranker_model(
    context: dg.AssetExecutionContext,
    config: RankerModelConfig,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """LightGBM lambdarank over (site, date) queries, early-stopped on validation NDCG@20, saved in
    the artifact store as `models/<version>/model.txt` + `card.json` and registered in
    `model_registry`. Promoted (what predictions use, on any machine) only if it beats the baseline
    Explosive Score on validation and does not do worse than the promoted model on the latest
    walk-forward folds (`settings.promotion`: mean NDCG@20 >= current - tolerance, both models on the
    same rows); a refused model stays registered as `rejected` with the reason and both figures,
    shown here as `promotion_verdict`, `promotion_reason` and `promotion_folds`. Optional Optuna tuning on
    validation only, resumable (config `tune`, `trials`, `timeout`: seconds this run may search)."""
    checked, params = checked_config(config, settings)  # before any read
    levers = RankerParams.of(checked.model_dump())
    samples = warehouse.read("train_samples_rank")
    if samples.is_empty():
        raise dg.Failure("train_samples_rank is empty: materialise train_samples first")
    samples = add_baseline_scores(
        samples, settings.score_weights, min_category_size=settings.min_category_size
    )
    # the held-out windows, so that model_evaluation scores the model on these rows, not on whatever
    # train_samples holds when it runs (core.held_out)
    extra: dict[str, Any] = {"run_id": context.run.run_id, "held_out": held_out_record(samples)}
    if config.tune:
        # one study every worker shares: the PostgreSQL warehouse in production (storage/tuning_db.py)
        study = run_storage(settings, warehouse)
        try:
            result = tune_ranker(
                samples,
                trials=config.trials,
                study_path=study,
                base_params=params,
                levers=levers,
                timeout=config.timeout,
                on_trial=lambda _s, t: context.log.info(
                    f"trial {t.number}: {t.state.name} {t.value}"
                    + (f" ({t.user_attrs[FAIL_REASON]})" if FAIL_REASON in t.user_attrs else "")
                ),
            )
        except NoCompletedTrialError as exc:  # every trial failed: say why, not a traceback
            raise dg.Failure(f"ranker_model tuning: {exc}; {REFUSED_FIX}") from exc
        params = result.best_params
        extra["tuning"] = {
            "study": shown_storage(study),
            "trials": result.completed_trials,
            "ran_now": result.ran_now,
            "best_valid_ndcg@20": result.best_value,
        }
    try:
        trained = build_ranker(
            samples, replace(levers, lightgbm=params), compare={"baseline": "explosive_score"}
        )
    except LightGBMError as exc:  # the params, levers or samples: nothing trained or registered
        raise dg.Failure(
            f"ranker_model training: LightGBM refused to train the ranker ({lightgbm_refusal(exc)}); "
            f"{REFUSED_FIX}"
        ) from exc
    except ValueError as exc:  # e.g. a window too short to hold a positive in every split
        raise dg.Failure(f"cannot train the ranker: {exc}") from exc
    verdict = judge_candidate(warehouse, settings, trained)
    saved = register_model(warehouse, artifacts_store(settings), trained, extra=extra, verdict=verdict)
    gate = saved.card["gate"]
    refit = trained.refit
    refit_note = (
        f" (refitted: {refit_summary(refit)}; valid figures of {refit['valid_metrics_of']})" if refit else ""
    )
    context.log.info(
        f"model {saved.version}: {trained.best_iteration} trees in {trained.training_seconds:.1f} s{refit_note}; "
        # a figure is None when there was no baseline to compare with (then the verdict is rejected)
        f"valid NDCG@20 {gate_figure(gate['model'])} vs baseline {gate_figure(gate['baseline'])}; "
        f"{verdict.status}: {verdict.reason}"
    )
    card_view = {k: v for k, v in saved.card.items() if k not in ("drift_profile", "feature_importance")}
    metadata: dict[str, Any] = {
        "model_version": saved.version,
        "promoted": saved.promoted,
        **verdict_metadata(verdict),
        "model_path": saved.shown_url,
        "best_iteration": trained.best_iteration,
        "training_seconds": round(trained.training_seconds, 2),
        "train_rows": trained.rows["train"],
        "valid_ndcg@20": gate["model"],
        "baseline_valid_ndcg@20": gate["baseline"],
        "valid_metrics": metadata_table(trained.valid_metrics),
        # a refitted model: its trees and what the validation figures above belong to
        **(
            {
                "refit": refit_summary(refit),
                "valid_metrics_of": refit["valid_metrics_of"],
            }
            if refit
            else {}
        ),
        "feature_importance": metadata_table(feature_importance(trained.booster).head(25)),
        "card": dg.MetadataValue.json(card_view),
    }
    curve = _learning_curve(trained.history)
    if curve:
        metadata["learning_curve"] = curve
    return dg.MaterializeResult(metadata=metadata)


# ------------------------------------------------------------------- promotion: champion / challenger


def judge_candidate(warehouse: Warehouse, settings: Settings, trained: TrainedRanker) -> PromotionVerdict:
    """Whether a newly trained model may replace the promoted one (also the CLI's train-rank):
    refused without a passing validation gate (``promotion_refusal``: it lost to the baseline, or
    there was no baseline to compare with); accepted with a note when nothing is promoted yet; else
    both models score the same rows of the latest ``settings.promotion.folds`` walk-forward folds
    (the days after either learned from) and it is accepted only if its mean NDCG@20 is not below
    the promoted model's minus ``settings.promotion.tolerance``."""
    refusal = promotion_refusal(trained.gate())
    if refusal is not None:
        return PromotionVerdict(False, refusal)
    try:
        current = load_registered(warehouse, "promoted")
    except NoModelError:
        return PromotionVerdict(True, "first promotion: no promoted model to compare with")
    p = settings.promotion
    newest = warehouse.query("SELECT max(date) AS d FROM mart_timeseries_daily")["d"][0]
    if newest is None:
        return PromotionVerdict(
            False, "not compared: mart_timeseries_daily is empty", current=current.version
        )
    end = realised_through(newest, settings.windows.horizon)
    cutoffs = latest_folds(end, p.folds, p.every_days)
    sites = list(settings.sites)
    features, mart = backtest_frames(warehouse, settings, sites, cutoffs[0].cutoff, end, train_days=0)
    contenders = {
        "candidate": Contender(
            None, trained.booster, trained.features, trained.best_iteration,
            seen_through({"data_window": trained.data_window}),
        ),
        "current": Contender(
            current.version, current.booster, current.features, None, seen_through(current.card)
        ),
    }  # fmt: skip
    try:
        results = compare_on_folds(features, mart, cutoffs, contenders, backtest_options(settings, sites))
    except ValueError as exc:  # e.g. the promoted model needs a feature column no longer built
        return PromotionVerdict(
            False, f"not compared: {exc}; {current.version} stays", current=current.version
        )
    return promotion_verdict(results, tolerance=p.tolerance, current=current.version)


def verdict_metadata(verdict: PromotionVerdict) -> dict[str, Any]:
    """The verdict in ranker_model's metadata: status, reason, both figures, the per-fold table."""
    metadata: dict[str, Any] = {
        "promotion_verdict": verdict.status,
        "promotion_reason": verdict.reason,
        "compared_with": verdict.current or "none",
    }
    if verdict.candidate_ndcg is not None and verdict.current_ndcg is not None:
        metadata["backtest_ndcg@20_new"] = verdict.candidate_ndcg
        metadata["backtest_ndcg@20_current"] = verdict.current_ndcg
    if verdict.folds is not None:
        metadata["promotion_folds"] = metadata_table(verdict.folds)
    return metadata


def build_assets(settings: Settings, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The unpartitioned model assets (``partitions_def`` is not used: a model spans many partitions;
    run-time values come from the settings resource)."""
    model = {"group_name": "model", "tags": {"layer": "model"}}
    return [
        dg.asset(
            deps=["features_daily", "mart_timeseries_daily"], kinds={"polars", "lightgbm", "table"}, **model
        )(train_samples),
        dg.asset(deps=["train_samples"], kinds={"lightgbm"}, **model)(ranker_model),
        dg.asset(deps=["ranker_model", "train_samples"], kinds={"polars", "table"}, **model)(
            model_evaluation
        ),
    ]
