"""Training layer: ``features_daily`` + mart -> ``train_samples`` -> ``ranker_model`` -> ``model_evaluation``.

Thin Dagster shell over core.labels, core.ranker, core.tuning and core.metrics (the CLI's
build-labels / train-rank / tune-rank / eval-metrics call the same functions). All three assets are
unpartitioned: a model is trained on a window of many days and sites at once.

Models are written to the artifact store (``storage.artifacts_url``, default the local
``artifacts_dir``) and registered in the warehouse's ``model_registry`` (asin_platform/storage): the
newest row is what the evaluation looks at, the promoted row (the newest model that beat the
baseline on validation and did no worse than its predecessor on the latest walk-forward folds,
``judge_candidate``) is what ``predictions_rank_daily`` uses, on whichever machine it runs.
"""

import base64
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from asin_platform.assets._metadata import metadata_table
from asin_platform.assets.outcomes import backtest_frames, backtest_options
from asin_platform.core.backtest import (
    Contender,
    PromotionVerdict,
    compare_on_folds,
    latest_folds,
    promotion_verdict,
    seen_through,
)
from asin_platform.core.labels import SAMPLE_TABLES, SPLITS, Samples, build_samples
from asin_platform.core.metrics import (
    DEFAULT_KS,
    MODEL_EVALUATION,
    add_baseline_scores,
    add_random_scores,
    compare_rankers,
    oracle_scores,
    ratios,
)
from asin_platform.core.model_files import gate_figure, promotion_refusal
from asin_platform.core.outcomes import realised_through
from asin_platform.core.predict import add_model_scores
from asin_platform.core.ranker import (
    REFIT_VALID_NOTE,
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

RANKERS = {
    "model": "model_score",
    "baseline": "explosive_score",
    "random": "random_score",
    "oracle": "oracle_score",
}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


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


def _learning_curve_png(history: dict[str, list[float]]) -> str | None:
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8), dpi=80)
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, label=name, linewidth=1.2)
    ax.set_xlabel("boosting round", fontsize=8)
    ax.set_ylabel("validation NDCG", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    encoded = _png(fig)
    plt.close(fig)
    return encoded


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
    extra: dict[str, Any] = {"run_id": context.run.run_id}
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
    curve = _learning_curve_png(trained.history)
    if curve:
        metadata["learning_curve"] = dg.MetadataValue.md(f"![validation NDCG](data:image/png;base64,{curve})")
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


# ------------------------------------------------------------------------------- model_evaluation


class ModelEvaluationConfig(dg.Config):
    oracle: bool = True  # rank by the simulator's hidden state too (only when it knows the ASINs)


def oracle_market(settings: Settings, sites: list[str]) -> Any:
    """The simulated market the settings describe (the embedded default upstream)."""
    from asin_platform.simulator import market_from_settings

    return market_from_settings(settings.simulator, sites)


def simulator_oracle(samples: pl.DataFrame, settings: Settings, horizon: int) -> pl.DataFrame | None:
    """The oracle's scores from the bundled simulator's ground truth, or None when the samples do
    not come from it (real data: most ASINs unknown to the simulator)."""
    sites = sorted(set(samples["site"].to_list()) & set(settings.sites))
    if not sites:
        return None
    market = oracle_market(settings, sites)
    # the latent state over the label's windows (T - W, T + H]
    start = samples["date"].min() - timedelta(days=settings.windows.observation)  # type: ignore[operator]
    end = samples["date"].max() + timedelta(days=horizon)  # type: ignore[operator]
    truth = pl.concat([market.ground_truth(site, start, end) for site in sites])  # type: ignore[arg-type]
    scores = oracle_scores(
        samples.select("site", "date", "asin"),
        truth,
        horizon=horizon,
        observation=settings.windows.observation,
    )
    known = scores.join(truth.select("site", "date", "asin"), on=["site", "date", "asin"], how="semi").height
    return scores if known >= 0.9 * samples.height else None


def _early_stopped_valid(table: pl.DataFrame, card: dict[str, Any]) -> pl.DataFrame:
    """``table`` (compare_rankers on the validation split) with the model's rows replaced by its card's
    validation metrics: a refitted model (core.ranker_levers.refit_on_validation) trained on the validation
    rows, so its own figures there would be in-sample; the card's are its early-stopped fit's."""
    card_model = (card.get("metrics") or {}).get("valid", {}).get("model") or {}
    model_rows = table.filter(pl.col("ranker") == "model")
    ks = model_rows["k"].to_list()
    figures = pl.DataFrame(
        {
            "k": ks,
            **{m: [card_model.get(f"{m}@{k}") for k in ks] for m in ("ndcg", "precision", "recall")},
        },
        schema={"k": table.schema["k"], "ndcg": pl.Float64, "precision": pl.Float64, "recall": pl.Float64},
    )
    model_rows = model_rows.drop("ndcg", "precision", "recall").join(figures, on="k", how="left")
    return pl.concat([model_rows.select(table.columns), table.filter(pl.col("ranker") != "model")])


def evaluate_model(
    samples: pl.DataFrame, model: Any, settings: Settings, *, oracle: pl.DataFrame | None
) -> pl.DataFrame:
    """compare_rankers per split (valid, test) with the model, baseline, random and the oracle; a
    refitted model's validation rows are its early-stopped fit's (``_early_stopped_valid``)."""
    scored = add_model_scores(samples, model.booster, model.features)
    scored = add_baseline_scores(scored, settings.score_weights, min_category_size=settings.min_category_size)
    scored = add_random_scores(scored)
    if oracle is not None:
        scored = scored.join(
            oracle.select("site", "date", "asin", "oracle_score"), on=["site", "date", "asin"]
        )
    parts = []
    for split in ("valid", "test"):
        rows = scored.filter(pl.col("split") == split)
        if rows.is_empty() or rows["explodes"].sum() == 0:
            continue
        table = compare_rankers(rows, RANKERS, relevance="relevance", positive="explodes", ks=DEFAULT_KS)
        if split == "valid" and (model.card or {}).get("refit"):
            table = _early_stopped_valid(table, model.card)
        parts.append(
            table.with_columns(
                split=pl.lit(split),
                first_date=pl.lit(rows["date"].min()),
                last_date=pl.lit(rows["date"].max()),
            )
        )
    if not parts:
        raise ValueError("neither the valid nor the test split holds a positive")
    return pl.concat(parts)


def model_evaluation(
    context: dg.AssetExecutionContext,
    config: ModelEvaluationConfig,
    warehouse: Warehouse,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """NDCG / precision / recall @10/20/50 of the newest model beside the baseline Explosive
    Score, a random ranking and the simulator oracle, on the validation and the test split, over
    the queries (site x date) with at least one positive. Upserted into model_evaluation."""
    try:
        model = load_registered(warehouse, "newest")
    except NoModelError as exc:
        raise dg.Failure(str(exc)) from exc
    samples = warehouse.read("train_samples_rank").filter(pl.col("split").is_in(["valid", "test"]))
    oracle = simulator_oracle(samples, settings, settings.windows.horizon) if config.oracle else None
    table = evaluate_model(samples, model, settings, oracle=oracle)
    stored = MODEL_EVALUATION.conform(
        table.with_columns(model_version=pl.lit(model.version), evaluated_at=pl.lit(datetime.now(UTC)))
    )
    warehouse.upsert("model_evaluation", stored)
    metadata: dict[str, Any] = {"model_version": model.version, "oracle": oracle is not None}
    if model.card.get("refit"):
        metadata["valid_model_of"] = REFIT_VALID_NOTE  # the test split is the refitted model's own
    for split in SPLITS[1:]:
        part = table.filter(pl.col("split") == split)
        if part.is_empty():
            continue
        r = ratios(part, "model", k=20)
        # the table holds the split's first and last date: each split is one typed table
        metadata[f"evaluation_{split}"] = metadata_table(part)
        metadata[f"{split}_ndcg@20"] = float(
            part.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))["ndcg"][0]
        )
        metadata[f"{split}_model_vs_baseline_ndcg@20"] = r.get("baseline")
        if "oracle" in r:
            metadata[f"{split}_model_vs_oracle_ndcg@20"] = r["oracle"]
    context.log.info(
        f"evaluated {model.version}: " + ", ".join(f"{k}={v}" for k, v in metadata.items() if "@20" in k)
    )
    return dg.MaterializeResult(metadata=metadata)


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
