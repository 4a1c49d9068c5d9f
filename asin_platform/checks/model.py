"""Checks on the model layer: the promotion gate, prediction coverage, feature drift.

* ``ranker_beats_baseline`` (blocking): the newest model's validation NDCG@20 is above the
  baseline Explosive Score's. When it fails the run stops before ``predictions_rank_daily``, and
  the model was not promoted to ``latest`` either (core.ranker.save_model applies the same gate),
  so later runs keep predicting with the last model that passed.
* ``predictions_coverage``: every feature row of the partition got a prediction.
* ``prediction_feature_drift`` (WARN): PSI of the partition's features against the training
  distribution of the model that scored them (the profile stored in its card), per site.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from asin_platform.checks.ingest import _md, _parts, _read_slices
from asin_platform.core.drift import PSI_WARN, drift_report
from asin_platform.core.ranker import LAST_TRAINED, LATEST, load_model
from asin_platform.partitions import date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import get_settings


def _models_dir() -> Path:
    return Path(get_settings().artifacts_dir) / "models"


@dg.asset_check(
    asset="ranker_model",
    blocking=True,
    description="The newest model beats the baseline Explosive Score on validation NDCG@20 (blocking: "
    "predictions do not go out with a model that does not).",
)
def ranker_beats_baseline() -> dg.AssetCheckResult:
    try:
        model = load_model(_models_dir(), LAST_TRAINED)
    except FileNotFoundError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    gate = model.card.get("gate") or {}
    metrics = model.card.get("metrics", {}).get("valid", {})
    table = pl.DataFrame(
        [
            {"ranker": name, **{k: v for k, v in values.items() if "@" in k}}
            for name, values in metrics.items()
        ]
    )
    passed = gate.get("passed") is True
    return dg.AssetCheckResult(
        passed=passed,
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
            "valid_metrics": _md(table) if table.height else "n/a",
        },
    )


@dg.asset_check(
    asset="predictions_rank_daily",
    partitions_def=date_site_partitions,
    blocking=True,
    description="Predictions / feature rows of each partition >= thresholds.coverage_min, and no "
    "prediction for an ASIN without features.",
)
def predictions_coverage(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    threshold = get_settings().thresholds.coverage_min
    parts = _parts(context)
    key = ["site", "date", "asin"]
    features = _read_slices(warehouse, "features_daily", parts, columns=key)
    predictions = _read_slices(warehouse, "predictions_rank_daily", parts, columns=key)
    per_part = (
        features.group_by("site", "date")
        .agg(pl.len().alias("features"))
        .join(
            predictions.join(features, on=key, how="semi")
            .group_by("site", "date")
            .agg(pl.len().alias("predicted")),
            on=["site", "date"],
            how="left",
        )
        .with_columns(pl.col("predicted").fill_null(0))
        .with_columns(coverage=pl.col("predicted") / pl.col("features"))
        .sort("site", "date")
    )
    orphans = predictions.join(features, on=key, how="anti").height
    low = per_part.filter(pl.col("coverage") < threshold)
    worst = float(per_part["coverage"].min()) if per_part.height else 0.0  # type: ignore[arg-type]
    return dg.AssetCheckResult(
        passed=per_part.height > 0 and low.is_empty() and orphans == 0,
        description=f"min coverage {worst:.1%} over {per_part.height} partition(s); {orphans} orphan prediction(s)",
        metadata={
            "threshold": threshold,
            "min_coverage": worst,
            "feature_rows": features.height,
            "predictions": predictions.height,
            "orphan_predictions": orphans,
            "by_partition": _md(per_part),
        },
    )


@dg.asset_check(
    asset="predictions_rank_daily",
    partitions_def=date_site_partitions,
    description=f"PSI of each feature vs the scoring model's training data <= {PSI_WARN} (WARN).",
)
def prediction_feature_drift(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    try:
        model = load_model(_models_dir(), LATEST)
    except FileNotFoundError as exc:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description=str(exc))
    profile = model.card.get("drift_profile")
    if not profile:
        return dg.AssetCheckResult(
            passed=True, severity=dg.AssetCheckSeverity.WARN, description="model card has no drift profile"
        )
    features = _read_slices(warehouse, "features_daily", _parts(context))
    reports = [
        drift_report(profile, part, group=str(site)).with_columns(site=pl.lit(str(site)))
        for (site,), part in features.partition_by("site", as_dict=True).items()
    ]
    report = pl.concat(reports) if reports else pl.DataFrame(schema={"feature": pl.Utf8, "psi": pl.Float64})
    drifted = report.filter(pl.col("psi") > PSI_WARN) if report.height else report
    top = report.sort("psi", descending=True, nulls_last=True).head(15) if report.height else report
    return dg.AssetCheckResult(
        passed=drifted.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{drifted.height} feature(s) drifted (PSI > {PSI_WARN}): "
            + ", ".join(sorted(set(drifted["feature"].to_list())))
            if drifted.height
            else f"no feature above PSI {PSI_WARN}"
        ),
        metadata={
            "model_version": model.version,
            "max_psi": float(report["psi"].max() or 0.0) if report.height else 0.0,  # type: ignore[arg-type]
            "drifted_features": drifted.height,
            "psi_top_15": _md(top.select("site", "feature", "psi", "status")) if top.height else "n/a",
        },
    )


MODEL_CHECKS = [ranker_beats_baseline, predictions_coverage, prediction_feature_drift]
