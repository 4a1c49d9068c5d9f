"""Checks on the model layer: the promotion gate, prediction coverage, feature drift.

* ``ranker_beats_baseline`` (blocking): the newest model's validation NDCG@20 is above the
  baseline Explosive Score's. When it fails the run stops before ``predictions_rank_daily``, and
  the model was not promoted either (storage.register_model and core.model_files.save_model apply the
  same gate, ``core.model_files.promotion_refusal``: a model with no baseline to compare with fails it too),
  so later runs keep predicting with the last model that passed.
* ``predictions_coverage`` (blocking, per partition): every feature row got a prediction.
* ``prediction_feature_drift`` (WARN, per partition): PSI of the partition's features against the
  training distribution of the model that scored them (the profile stored in its card).
"""

import dagster as dg
import polars as pl

from asin_platform.checks.ingest import KEYS, md_table, read_slices
from asin_platform.checks.partitioned import Verdict, keys_frame, partition_check, verdicts_from_frame
from asin_platform.core.drift import PSI_WARN, drift_report
from asin_platform.partitions import DateSite
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings
from asin_platform.storage.registry import NoModelError, load_registered, registry


def gate_result(warehouse: Warehouse) -> dg.AssetCheckResult:
    """The newest registered model's gate (found through the warehouse's model registry, so it works
    whatever store the model lives in)."""
    try:
        model = load_registered(warehouse, "newest")
    except (NoModelError, FileNotFoundError) as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    gate = model.card.get("gate") or {}
    metrics = model.card.get("metrics", {}).get("valid", {})
    table = pl.DataFrame(
        [
            {"ranker": name, **{k: v for k, v in values.items() if "@" in k}}
            for name, values in metrics.items()
        ]
    )
    return dg.AssetCheckResult(
        passed=gate.get("passed") is True,
        description=(
            f"validation {gate.get('metric')}: model {gate.get('model'):.4f} vs baseline {gate.get('baseline'):.4f}"
            if gate.get("model") is not None and gate.get("baseline") is not None
            else "no baseline comparison in the model card"
        ),
        metadata={
            "model_version": model.version,
            "promoted": bool(model.card.get("promoted")),
            "model_valid_ndcg@20": gate.get("model"),
            "baseline_valid_ndcg@20": gate.get("baseline"),
            "valid_metrics": md_table(table) if table.height else "n/a",
            # a refitted model's validation figures are its early-stopped fit's (card "refit")
            **({"valid_metrics_of": of} if (of := model.card.get("metrics", {}).get("valid_of")) else {}),
        },
    )


def prediction_coverage_verdicts(
    warehouse: Warehouse, parts: list[DateSite], threshold: float
) -> dict[str, Verdict]:
    key = [*KEYS, "asin"]
    features = read_slices(warehouse, "features_daily", parts, columns=key)
    predictions = read_slices(warehouse, "predictions_rank_daily", parts, columns=key)
    frame = (
        keys_frame(parts)
        .join(features.group_by(KEYS).agg(pl.len().cast(pl.Int64).alias("feature_rows")), on=KEYS, how="left")
        .join(
            predictions.join(features, on=key, how="semi")
            .group_by(KEYS)
            .agg(pl.len().cast(pl.Int64).alias("predicted")),
            on=KEYS,
            how="left",
        )
        .join(
            predictions.join(features, on=key, how="anti")
            .group_by(KEYS)
            .agg(pl.len().cast(pl.Int64).alias("orphan_predictions")),
            on=KEYS,
            how="left",
        )
        .with_columns(pl.col("feature_rows", "predicted", "orphan_predictions").fill_null(0))
        .with_columns(
            coverage=pl.when(pl.col("feature_rows") > 0)
            .then(pl.col("predicted") / pl.col("feature_rows"))
            .otherwise(0.0),
            threshold=pl.lit(threshold),
        )
        .with_columns(
            passed=(pl.col("feature_rows") > 0)
            & (pl.col("coverage") >= threshold)
            & (pl.col("orphan_predictions") == 0)
        )
    )
    return verdicts_from_frame(
        frame,
        lambda row: (
            f"coverage {row['coverage']:.1%} of {row['feature_rows']} feature rows; "
            f"{row['orphan_predictions']} orphan prediction(s)"
        ),
        ["coverage", "threshold", "feature_rows", "predicted", "orphan_predictions"],
    )


def drift_verdicts(warehouse: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
    try:
        model = load_registered(warehouse, "promoted")
    except (NoModelError, FileNotFoundError) as exc:
        return {str(p.key): Verdict(False, str(exc)) for p in parts}
    profile = model.card.get("drift_profile")
    if not profile:
        return {str(p.key): Verdict(True, "model card has no drift profile") for p in parts}
    features = read_slices(warehouse, "features_daily", parts)
    verdicts = {}
    for (site, day), part in features.partition_by(KEYS, as_dict=True).items():
        report = drift_report(profile, part, group=str(site))
        drifted = report.filter(pl.col("psi") > PSI_WARN)
        verdicts[str(DateSite(day, site).key)] = Verdict(
            passed=drifted.is_empty(),
            description=(
                f"{drifted.height} feature(s) drifted (PSI > {PSI_WARN}): "
                + ", ".join(sorted(drifted["feature"]))
                if drifted.height
                else f"no feature above PSI {PSI_WARN}"
            ),
            metadata={
                "model_version": model.version,
                "max_psi": float(report["psi"].max() or 0.0),  # type: ignore[arg-type]
                "drifted_features": drifted.height,
                "psi_top_10": md_table(report.select("feature", "psi", "status").head(10)),
            },
        )
    return verdicts


def build_checks(
    settings: Settings, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The model checks; the models directory and thresholds are taken from ``settings``."""
    threshold = settings.thresholds.coverage_min

    @dg.asset_check(
        asset="ranker_model",
        blocking=True,
        description="The newest model beats the baseline Explosive Score on validation NDCG@20 (blocking: "
        "predictions do not go out with a model that does not).",
    )
    def ranker_beats_baseline(warehouse: Warehouse) -> dg.AssetCheckResult:
        return gate_result(warehouse)

    predictions_coverage = partition_check(
        lambda warehouse, parts: prediction_coverage_verdicts(warehouse, parts, threshold),
        name="predictions_coverage",
        asset="predictions_rank_daily",
        partitions_def=partitions_def,
        blocking=True,
        description=f"Predictions / feature rows of each partition >= {threshold:.0%}, and no prediction for "
        "an ASIN without features.",
    )
    prediction_feature_drift = partition_check(
        drift_verdicts,
        name="prediction_feature_drift",
        asset="predictions_rank_daily",
        partitions_def=partitions_def,
        description=f"PSI of each feature vs the scoring model's training data <= {PSI_WARN} (WARN).",
        severity=dg.AssetCheckSeverity.WARN,
    )

    return [ranker_beats_baseline, predictions_coverage, prediction_feature_drift, ranker_not_refused]


# --- H-retrain: the retraining's promotion verdict (issue 14) ---------------------------------------


def verdict_result(warehouse: Warehouse) -> dg.AssetCheckResult:
    """WARN when the registry's newest model was refused (the promoted one keeps predicting)."""
    rows = registry(warehouse)
    if rows.is_empty():
        return dg.AssetCheckResult(passed=False, description="the model registry holds no model")
    newest = rows.row(0, named=True)
    promoted = rows.filter(pl.col("promoted"))["version"].to_list()
    refused = newest["verdict"] == "rejected"
    return dg.AssetCheckResult(
        passed=not refused,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{newest['version']} refused: {newest['verdict_reason']}"
            if refused
            else f"{newest['version']} {newest['verdict'] or 'registered'}: {newest['verdict_reason'] or 'no verdict'}"
        ),
        metadata={
            "model_version": newest["version"],
            "verdict": newest["verdict"] or "none",
            "reason": newest["verdict_reason"] or "",
            "backtest_ndcg@20_new": newest["backtest_ndcg_20"],
            "compared_version": newest["compared_version"] or "none",
            "backtest_ndcg@20_current": newest["compared_backtest_ndcg_20"],
            "promoted_version": promoted[0] if promoted else "none",
        },
    )


@dg.asset_check(
    asset="ranker_model",
    description="The newest model was not refused by the retraining's promotion rule (mean NDCG@20 on the "
    "latest walk-forward folds >= the promoted model's - settings.promotion.tolerance); WARN, since a "
    "refused model leaves the promoted one predicting.",
)
def ranker_not_refused(warehouse: Warehouse) -> dg.AssetCheckResult:
    return verdict_result(warehouse)
