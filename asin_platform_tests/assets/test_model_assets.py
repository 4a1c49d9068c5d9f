"""train_samples -> ranker_model -> model_evaluation -> predictions_rank_daily through Dagster on a
tiny simulated market written into a fresh warehouse (both backends), with the model checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import asin_platform.assets.evaluation as evaluation
import asin_platform.assets.training as training
from asin_platform.assets import inference
from asin_platform.checks import model as model_checks
from asin_platform.core.held_out import fingerprint
from asin_platform.core.metrics import MODEL_EVALUATION
from asin_platform.core.ranker import LAST_TRAINED, LATEST, REFIT_VALID_NOTE
from asin_platform.core.score import score_baseline
from asin_platform.partitions import build_date_site_partitions
from asin_platform.schemas import DIM_ASIN
from asin_platform.settings import get_settings
from asin_platform.storage import load_registered
from asin_platform_tests.core.test_labels import sim_features, sim_market, sim_mart

FAST = json.dumps({"num_threads": 1, "learning_rate": 0.1})
RUN_CONFIG = {
    "ops": {
        "train_samples": {"config": {"days": 140, "sample_every": 2}},
        "ranker_model": {"config": {"rounds": 40, "early_stopping": 10, "params_json": FAST}},
    }
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ASIN_PLATFORM__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ASIN_PLATFORM__EXPORTS_DIR", str(tmp_path / "exports"))
    get_settings.cache_clear()
    # the oracle reads the ground truth of the market the test data came from
    monkeypatch.setattr(evaluation, "oracle_market", lambda settings, sites: sim_market())
    yield tmp_path
    get_settings.cache_clear()


def _seed(warehouse) -> pl.Series:
    mart, features = sim_mart(), sim_features()
    sites = mart["site"].unique().to_list()
    with warehouse.transaction() as tx:
        tx.replace_slices(
            "mart_timeseries_daily", mart, sites=sites, start=mart["date"].min(), end=mart["date"].max()
        )
        tx.replace_slices(
            "features_daily", features, sites=sites, start=features["date"].min(), end=features["date"].max()
        )
        last = features.filter(pl.col("date") == features["date"].max())
        tx.replace_slices(
            "score_baseline_daily", score_baseline(last, get_settings().score_weights), sites=sites,
            start=last["date"][0], end=last["date"][0],
        )  # fmt: skip
        dim = mart.group_by("site", "asin").agg(
            pl.col("category_id").last(), first_seen=pl.col("date").min(), last_seen=pl.col("date").max()
        )
        tx.upsert(
            "dim_asin", DIM_ASIN.conform(dim.with_columns(source=pl.lit("unified"), title=pl.col("asin")))
        )
    return features["date"]


def _run(
    warehouse,
    selection: list,
    partition_key: str | None = None,
    ranker: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    samples: dict | None = None,
):
    # config only for the selected assets (Dagster rejects entries for ops outside the run);
    # ``ranker`` / ``samples``: ranker_model / train_samples config entries laid over RUN_CONFIG's;
    # ``instance``: to read the run's logs
    settings = get_settings()
    partitions = build_date_site_partitions(settings)
    ops = {**RUN_CONFIG["ops"]}
    for op, given in (("ranker_model", ranker), ("train_samples", samples)):
        if given:
            ops[op] = {"config": {**ops[op]["config"], **given}}
    run_config = {"ops": {k: v for k, v in ops.items() if k in selection}}
    return dg.materialize(
        [
            *training.build_assets(settings, partitions),
            *inference.build_assets(settings, partitions),
            *model_checks.build_checks(settings, partitions),
        ],
        selection=dg.AssetSelection.assets(*selection) | dg.AssetSelection.checks_for_assets(*selection),
        resources={"warehouse": warehouse, "settings": settings},
        partition_key=partition_key,
        run_config=run_config,
        raise_on_error=False,
        instance=instance or dg.DagsterInstance.ephemeral(),
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_train_evaluate_and_predict(env: Path, warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    dates = _seed(warehouse)
    result = _run(warehouse, ["train_samples", "ranker_model", "model_evaluation"])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert _checks(result) == {"ranker_beats_baseline": True, "ranker_not_refused": True}

    for kind in ("bin", "rank", "reg"):
        stored = warehouse.read(f"train_samples_{kind}")
        assert stored.height > 0 and set(stored["split"]) == {"train", "valid", "test"}
    assert (env / "artifacts" / "samples" / "train_samples_rank.parquet").exists()
    models = env / "artifacts" / "models"
    version = (models / LATEST).read_text().strip()
    assert (models / LAST_TRAINED).read_text().strip() == version
    card = json.loads((models / version / "card.json").read_text())
    assert card["run_id"] == result.run_id and card["gate"]["passed"] is True
    # built from settings.scale.ranker with the run's config over it (build_ranker)
    assert card["levers"]["rounds"] == 40 and card["levers"]["early_stopping"] == 10
    assert card["levers"]["min_query_rows"] == 1000 and card["levers"]["max_bin"] == 63
    # every query here is under min_query_rows: every training row is fitted (no negative sampling)
    assert card["rows"]["train"] == card["rows"]["train_split"]

    meta = result.asset_materializations_for_node("ranker_model")[0].metadata
    assert meta["model_version"].value == version
    importance = meta["feature_importance"]
    assert [c.name for c in importance.schema.columns] == ["feature", "gain", "splits"]
    assert len(importance.records) == 25
    assert "model" in {r.data["ranker"] for r in meta["valid_metrics"].records}
    evaluation = warehouse.read("model_evaluation")
    assert set(evaluation["ranker"]) == {"model", "baseline", "random", "oracle"}
    assert set(evaluation["split"]) == {"valid", "test"} and set(evaluation["k"]) == {10, 20, 50}
    assert (evaluation["queries_kept"] <= evaluation["queries_total"]).all()
    eval_meta = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert eval_meta["oracle"].value is True
    for split in ("valid", "test"):
        rows = [r.data for r in eval_meta[f"evaluation_{split}"].records]
        assert {r["ranker"] for r in rows} == {"model", "baseline", "random", "oracle"}
        assert {r["split"] for r in rows} == {split}

    day = dates.max()
    # TreeSHAP for the day's top 5 only: the other rows' reasons come from path attribution
    monkeypatch.setenv("ASIN_PLATFORM__SCALE__REASONS_PER_QUERY", "5")
    get_settings.cache_clear()
    predicted = _run(warehouse, ["predictions_rank_daily"], partition_key=f"{day}|US")
    assert predicted.success
    checks = _checks(predicted)
    assert checks["predictions_coverage"] is True and "prediction_feature_drift" in checks
    rows = warehouse.read("predictions_rank_daily", sites=["US"], start=day, end=day)
    features = sim_features().filter((pl.col("site") == "US") & (pl.col("date") == day))
    assert rows.height == features.height and set(rows["model_version"]) == {version}
    assert sorted(rows["rank_in_site"].to_list()) == list(range(1, rows.height + 1))
    joined = rows.join(warehouse.read("dim_asin"), on=["site", "asin"], how="inner")
    assert joined.height == rows.height  # joinable with dim_asin
    export = pl.read_csv(env / "exports" / "US" / f"pred_rank_daily_{day:%Y%m%d}.csv")
    assert export["rank_in_site"].to_list()[:3] == [1, 2, 3] and "explosive_score" in export.columns
    assert (env / "exports" / "US" / f"pred_rank_daily_{day:%Y%m%d}.parquet").exists()
    # every prediction carries its reasons; the export and the UI's top 10 show them
    assert rows["reasons"].null_count() == 0 and export["reasons_text"].null_count() == 0
    assert json.loads(export["reasons"][0])[0]["f"] in card["features"]
    meta = predicted.asset_materializations_for_node("predictions_rank_daily")[0].metadata
    top10 = [r.data for r in meta["top_10"].records]
    assert top10[0]["reasons_text"] == export["reasons_text"][0]
    # every row is explained: the top 5 by TreeSHAP, the rest by path attribution, marked in the JSON
    assert meta["explained_rows"].value == rows.height and meta["exact_rows"].value == 5
    marked = export.with_columns(path=pl.col("reasons").str.contains('"m":"path"', literal=True))
    assert marked["path"].to_list() == [r > 5 for r in marked["rank_in_site"].to_list()]
    assert all(it["m"] == "path" for it in json.loads(export["reasons"][5]))
    assert top10[5]["reasons_text"] == export["reasons_text"][5] and "(" in top10[5]["reasons_text"]
    assert meta["top_candidate_window"].value.startswith("![")


def test_a_refitted_model_says_so_and_shows_its_early_stopped_validation(env: Path, warehouse) -> None:
    """refit_factor (asset config over settings.scale.ranker): the saved booster has the scaled trees,
    and the card, the metadata and the gate check label the validation figures as the early-stopped
    fit's (the refit trained on the validation rows)."""
    _seed(warehouse)
    result = _run(
        warehouse, ["train_samples", "ranker_model", "model_evaluation"], ranker={"refit_factor": 1.5}
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    models = env / "artifacts" / "models"
    card = json.loads((models / (models / LAST_TRAINED).read_text().strip() / "card.json").read_text())
    refit = card["refit"]
    assert card["levers"]["refit_factor"] == 1.5 and refit["factor"] == 1.5
    assert refit["rounds"] == round(refit["early_stopped_trees"] * 1.5)
    assert card["num_trees"] == card["best_iteration"] == refit["trees"]
    assert refit["valid_metrics_of"] == REFIT_VALID_NOTE == card["metrics"]["valid_of"] == card["gate"]["of"]
    assert card["data_window"]["train"][1] == card["data_window"]["valid"][1]  # trained through valid
    meta = result.asset_materializations_for_node("ranker_model")[0].metadata
    assert meta["best_iteration"].value == refit["trees"]
    assert meta["valid_metrics_of"].value == REFIT_VALID_NOTE
    assert meta["refit"].value == (
        f"{refit['trees']} trees on train + valid = round({refit['early_stopped_trees']} early-stopped trees x 1.5)"
    )
    assert meta["valid_ndcg@20"].value == pytest.approx(card["gate"]["model"])
    gate = _check(result, "ranker_beats_baseline")
    assert gate.metadata["valid_metrics_of"].value == REFIT_VALID_NOTE
    # model_evaluation: on the validation split the model's rows are the card's (the refit's own
    # would be in-sample), on the test split the refitted model's
    evaluation = warehouse.read("model_evaluation")
    valid = evaluation.filter((pl.col("split") == "valid") & (pl.col("ranker") == "model"))
    assert {r["k"]: r["ndcg"] for r in valid.iter_rows(named=True)} == pytest.approx(
        {k: card["metrics"]["valid"]["model"][f"ndcg@{k}"] for k in (10, 20, 50)}
    )
    assert evaluation.filter(pl.col("split") == "test")["ranker"].n_unique() == 4
    eval_meta = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert eval_meta["valid_model_of"].value == REFIT_VALID_NOTE
    assert eval_meta["valid_ndcg@20"].value == pytest.approx(card["gate"]["model"])


def test_min_query_rows_in_the_config_reaches_the_ranker(env: Path, warehouse) -> None:
    """min_query_rows (config over settings.scale.ranker, as train-rank's --min-query-rows): 0 samples
    the negatives of every training query, the small ones of this market too (111..150 rows, all kept
    under the setting's 1,000, as test_train_evaluate_and_predict's model keeps them)."""
    _seed(warehouse)
    result = _run(warehouse, ["train_samples", "ranker_model"], ranker={"min_query_rows": 0})
    [materialised] = result.asset_materializations_for_node("ranker_model")
    models = env / "artifacts" / "models"
    card = json.loads((models / (models / LAST_TRAINED).read_text().strip() / "card.json").read_text())
    assert card["levers"]["min_query_rows"] == 0
    assert 0 < card["rows"]["train"] < card["rows"]["train_split"]  # negatives sampled
    assert materialised.metadata["train_rows"].value == card["rows"]["train"]


@pytest.mark.parametrize(
    ("ranker", "description"),
    [
        (
            {"refit_factor": -1.0},
            "ranker_model config refit_factor -1.0: input should be greater than or equal to 0",
        ),
        ({"rounds": 0}, "ranker_model config rounds 0: input should be greater than or equal to 1"),
        (
            {"min_query_rows": -1},
            "ranker_model config min_query_rows -1: input should be greater than or equal to 0",
        ),
        (
            {"negative_fraction": 1.5},
            "ranker_model config negative_fraction 1.5: input should be less than or equal to 1",
        ),
        # trials against levers.TuningRun's bounds (tune-rank --trials' too), checked even untuned
        ({"trials": 0}, "ranker_model config trials 0: input should be greater than or equal to 1"),
        (
            {"tune": True, "trials": 10**6},
            "ranker_model config trials 1000000: input should be less than or equal to 10000",
        ),
        # timeout too (tune-rank --timeout's): > 0, at most a week
        ({"tune": True, "timeout": 0}, "ranker_model config timeout 0.0: input should be greater than 0"),
        (
            {"tune": True, "timeout": -30},
            "ranker_model config timeout -30.0: input should be greater than 0",
        ),
        (
            {"tune": True, "timeout": 1e9},
            "ranker_model config timeout 1000000000.0: input should be less than or equal to 604800",
        ),
        # params_json is read by levers.json_object, as the CLI's --params is
        (
            {"params_json": "{bad"},
            "ranker_model config params_json '{bad': not JSON (Expecting property name enclosed in double "
            'quotes: line 1 column 2 (char 1)); give a JSON object, e.g. {"num_leaves": 31}',
        ),
        (
            {"params_json": "[1, 2]"},
            "ranker_model config params_json '[1, 2]': a JSON array, not an object; "
            'give a JSON object, e.g. {"num_leaves": 31}',
        ),
    ],
)
def test_a_config_lever_out_of_range_fails_before_the_samples_are_read(
    env: Path, warehouse, warehouse_reads, ranker: dict, description: str
) -> None:
    """The run config's levers are checked against the settings' bounds (RankerLevers.overlaid), as
    the CLI flags are, and params_json is read as a JSON object: one line naming the field, the value
    and what is wrong, before any table is read."""
    read = warehouse_reads()
    result = _run(warehouse, ["ranker_model"], ranker=ranker)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == description
    assert read == []  # train_samples_rank never read
    assert warehouse.query("SELECT count(*) AS n FROM model_registry")["n"][0] == 0
    assert not (env / "artifacts").exists()  # no model, no tuning study


@pytest.mark.parametrize(("given", "expected"), [({"timeout": 90}, 90.0), ({}, None)])
def test_the_config_timeout_reaches_the_tuning_call(
    env: Path, warehouse, monkeypatch: pytest.MonkeyPatch, given: dict, expected: float | None
) -> None:
    """``timeout`` (seconds this run may search) is passed to core.tuning.tune_ranker as tune-rank's
    --timeout is; unset, the search runs until the study holds its trials (None)."""
    calls: list[dict] = []

    def tune_ranker(samples: pl.DataFrame, **kwargs: object) -> None:
        calls.append(kwargs)
        raise dg.Failure("stopped by the test after the tuning call")

    monkeypatch.setattr(training, "tune_ranker", tune_ranker)
    _seed(warehouse)
    result = _run(warehouse, ["train_samples", "ranker_model"], ranker={"tune": True, "trials": 3, **given})
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert (
        failure.step_failure_data.user_failure_data.description == "stopped by the test after the tuning call"
    )
    [call] = calls
    assert call["timeout"] == expected and call["trials"] == 3


def test_a_search_whose_every_trial_fails_is_a_one_line_failure(env: Path, warehouse) -> None:
    """LightGBM refuses params_json in every trial of ``tune: true``: the study ends with no completed
    trial (core.tuning.NoCompletedTrialError) and the step fails in one line with the failed trials,
    the first one's reason and what to fix; nothing is trained or registered. Was: a RuntimeError
    traceback."""
    _seed(warehouse)
    refused = json.dumps({"num_threads": 1, "objective": "nope"})
    result = _run(
        warehouse,
        ["train_samples", "ranker_model"],
        ranker={"tune": True, "trials": 1, "rounds": 15, "early_stopping": 5, "params_json": refused},
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "ranker_model"
    assert failure.step_failure_data.user_failure_data.description == (
        "ranker_model tuning: study 'lgb_rank' has no completed trial: all 2 trials failed (the first: "
        "LightGBMError: Unknown objective type name: nope); fix what LightGBM refused (params_json, the "
        "config's levers or scale.ranker in the settings) and materialise again"
    )
    assert warehouse.query("SELECT count(*) AS n FROM model_registry")["n"][0] == 0
    assert not (env / "artifacts" / "models").exists()


@pytest.mark.parametrize(
    ("params", "description"),
    [
        (
            {"objective": "nope"},
            "ranker_model training: LightGBM refused to train the ranker (LightGBMError: Unknown "
            "objective type name: nope); fix what LightGBM refused (params_json, the config's levers or "
            "scale.ranker in the settings) and materialise again",
        ),
        (
            {"num_leaves": -1},  # a failed check: its first line, without LightGBM's C++ source location
            "ranker_model training: LightGBM refused to train the ranker (LightGBMError: Check failed: "
            "(num_leaves) > (1)); fix what LightGBM refused (params_json, the config's levers or "
            "scale.ranker in the settings) and materialise again",
        ),
        # refused by the ranker itself (core.ranker.merged_params): with the config, before any read
        (
            {"lambdarank_truncation_level": 10},
            "ranker_model config params_json: lambdarank_truncation_level must be >= 50 (the largest k)",
        ),
    ],
)
def test_params_json_the_training_refuses_is_a_one_line_failure(
    env: Path, warehouse, params: dict, description: str
) -> None:
    """params_json LightGBM refuses without tuning (it says so when training starts): the step fails
    in one line with LightGBM's message (core.ranker.lightgbm_refusal, as a failed trial gives it) and
    what to fix, as a search whose every trial failed does; nothing is trained or registered. Was: a
    LightGBMError traceback."""
    _seed(warehouse)
    params_json = json.dumps({"num_threads": 1, **params})
    result = _run(warehouse, ["train_samples", "ranker_model"], ranker={"params_json": params_json})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "ranker_model"
    assert failure.step_failure_data.user_failure_data.description == description
    assert warehouse.query("SELECT count(*) AS n FROM model_registry")["n"][0] == 0
    assert not (env / "artifacts" / "models").exists()


@pytest.mark.parametrize(
    ("samples", "description"),
    [
        (
            {"sample_every": 0},
            "train_samples config sample_every 0: input should be greater than or equal to 1",
        ),
        (
            {"sample_every": -2},
            "train_samples config sample_every -2: input should be greater than or equal to 1",
        ),
        (
            {"sample_every": 10**6},
            "train_samples config sample_every 1000000: input should be less than or equal to 365",
        ),
        ({"days": 0}, "train_samples config days 0: input should be greater than or equal to 1"),
        ({"days": 10**9}, "train_samples config days 1000000000: input should be less than or equal to 3650"),
        # end_date is read as date.fromisoformat reads it (levers.SamplesWindow), not after the query
        (
            {"end_date": "2025-02-30"},
            "train_samples config end_date '2025-02-30': input should be a date as YYYY-MM-DD",
        ),
        (
            {"end_date": "yesterday"},
            "train_samples config end_date 'yesterday': input should be a date as YYYY-MM-DD",
        ),
        (
            {"end_date": "2025-05-31 "},
            "train_samples config end_date '2025-05-31 ': input should be a date as YYYY-MM-DD",
        ),
        # a day before the partitions holds no data (and 0001-01-01 - H overflowed date arithmetic)
        (
            {"end_date": "0001-01-01"},
            "train_samples config end_date 0001-01-01: before the first partition, 2025-01-01 "
            "(partitions_start in the settings); give a later day or leave it unset for the newest mart day",
        ),
        (
            {"end_date": "2024-12-31"},
            "train_samples config end_date 2024-12-31: before the first partition, 2025-01-01 "
            "(partitions_start in the settings); give a later day or leave it unset for the newest mart day",
        ),
    ],
)
def test_a_samples_config_out_of_range_fails_before_anything_is_read(
    env: Path, warehouse, warehouse_reads, samples: dict, description: str
) -> None:
    """days and sample_every are checked against levers.SamplesWindow's bounds (build-labels
    --sample-every's too) and end_date read as a date no earlier than partitions_start: one line
    naming the field, before the mart is queried or a table is read, and the sample tables and files
    stay as they were."""
    _seed(warehouse)
    touched = warehouse_reads()
    result = _run(warehouse, ["train_samples"], samples=samples)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == description
    assert touched == []
    assert warehouse.query("SELECT count(*) AS n FROM train_samples_rank")["n"][0] == 0
    assert not (env / "artifacts").exists()


def test_end_date_in_the_samples_config_ends_the_labels_there(env: Path, warehouse) -> None:
    """end_date is the last mart day the labels may use (default: the newest, 2025-06-19 here): the
    newest reference date is a horizon (windows.horizon, 30 days) before it."""
    _seed(warehouse)
    newest = "SELECT max(date) AS d FROM train_samples_rank"
    # (end_date, the test split's last day, the newest sample: every 2nd day from 2025-01-31)
    for end_date, last_reference, last_sample in (
        ("2025-05-31", date(2025, 5, 1), date(2025, 5, 1)),
        (None, date(2025, 5, 20), date(2025, 5, 19)),
    ):
        result = _run(warehouse, ["train_samples"], samples={"end_date": end_date})
        assert result.success
        meta = result.asset_materializations_for_node("train_samples")[0].metadata
        assert meta["windows"].value["test"][1] == last_reference.isoformat()
        assert warehouse.query(newest)["d"][0] == last_sample


def test_a_model_losing_to_the_baseline_blocks_predictions(
    env: Path, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    dates = _seed(warehouse)
    assert _run(warehouse, ["train_samples"]).success

    def perfect_baseline(frame: pl.DataFrame, *args, **kwargs) -> pl.DataFrame:
        return frame.with_columns(explosive_score=pl.col("relevance").cast(pl.Float64))

    monkeypatch.setattr(training, "add_baseline_scores", perfect_baseline)
    day = dates.max()
    result = _run(warehouse, ["ranker_model", "predictions_rank_daily"], partition_key=f"{day}|US")
    assert not result.success
    assert _checks(result)["ranker_beats_baseline"] is False
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"ranker_model"}  # predictions never ran
    models = env / "artifacts" / "models"
    assert not (models / LATEST).exists() and (models / LAST_TRAINED).exists()
    assert warehouse.count("predictions_rank_daily") == 0


def test_judge_candidate_refuses_a_model_with_no_baseline_to_compare_with(env: Path, warehouse) -> None:
    """Even with nothing promoted yet (which used to mean "first promotion"): no passing gate, no
    promotion (core.model_files.promotion_refusal)."""
    from asin_platform_tests.core.test_ranker import unvalidated_model

    verdict = training.judge_candidate(warehouse, get_settings(), unvalidated_model())
    assert (verdict.accepted, verdict.reason) == (False, "validation gate: no baseline to compare with")
    assert verdict.current is None and verdict.folds is None


def test_a_model_with_no_baseline_is_registered_rejected_and_reported_as_na(
    env: Path, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit whose validation has no baseline to compare with (gate: model figure, baseline None,
    passed None) is registered as rejected; the asset's log line and metadata then show the missing
    figure as n/a / null instead of failing on formatting it after the registration."""
    _seed(warehouse)
    assert _run(warehouse, ["train_samples"]).success
    real_build = training.build_ranker

    def without_baseline(samples: pl.DataFrame, params, **kwargs):
        kwargs.pop("compare", None)  # validation metrics of the model alone
        return real_build(samples, params, **kwargs)

    monkeypatch.setattr(training, "build_ranker", without_baseline)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(warehouse, ["ranker_model"], instance=instance)
    failures = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    assert all(f is None or "TypeError" not in f.cls_name for f in failures), failures
    [row] = _registry(warehouse)
    assert (row["promoted"], row["verdict"]) == (False, "rejected")
    assert row["verdict_reason"] == "validation gate: no baseline to compare with"
    meta = result.asset_materializations_for_node("ranker_model")[0].metadata
    assert meta["model_version"].value == row["version"]
    assert meta["promotion_verdict"].value == "rejected"
    assert isinstance(meta["valid_ndcg@20"].value, float)
    assert meta["baseline_valid_ndcg@20"].value is None
    [line] = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.user_message.startswith(f"model {row['version']}:")
    ]
    assert f"valid NDCG@20 {meta['valid_ndcg@20'].value:.4f} vs baseline n/a; rejected: " in line
    assert _check(result, "ranker_beats_baseline").passed is False


def _registry(warehouse) -> list[dict]:
    return warehouse.read("model_registry").sort("created_at").to_dicts()


def _check(result, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_retraining_refuses_a_worse_model_and_promotes_an_equal_one(
    env: Path, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weekly retraining, three times: the first model is promoted with a note; a model trained on
    shuffled labels (the gate passes: its baseline is made worst) loses on the latest folds and is
    refused, the first one keeps predicting; a model as good as the promoted one replaces it."""
    dates = _seed(warehouse)
    first = _run(warehouse, ["train_samples", "ranker_model"])
    assert first.success
    assert _check(first, "ranker_not_refused").passed is True
    [row] = _registry(warehouse)
    v1 = row["version"]
    assert (row["promoted"], row["verdict"], row["verdict_reason"]) == (
        True, "accepted", "first promotion: no promoted model to compare with",
    )  # fmt: skip
    assert (
        row["compared_version"] is None and row["backtest_ndcg_20"] is None and row["backtest_folds"] is None
    )

    real_build = training.build_ranker

    def on_shuffled_labels(samples: pl.DataFrame, params, **kwargs):
        noise = samples.with_columns(pl.col("relevance", "explodes").shuffle(seed=11))
        noise = noise.with_columns(explosive_score=-pl.col("relevance").cast(pl.Float64))
        return real_build(noise, params, **kwargs)

    monkeypatch.setattr(training, "build_ranker", on_shuffled_labels)
    worse = _run(warehouse, ["ranker_model"])
    assert worse.success
    assert _check(worse, "ranker_beats_baseline").passed is True  # the refusal is the folds', not the gate's
    refusal = _check(worse, "ranker_not_refused")
    assert refusal.passed is False and refusal.severity == dg.AssetCheckSeverity.WARN
    old, new = _registry(warehouse)
    v2 = new["version"]
    assert (old["version"], old["promoted"]) == (v1, True)
    assert (new["promoted"], new["verdict"], new["compared_version"]) == (False, "rejected", v1)
    cand, cur = new["backtest_ndcg_20"], new["compared_backtest_ndcg_20"]
    assert cand < cur - 0.02
    folds = pl.DataFrame(json.loads(new["backtest_folds"]))
    assert folds.columns[:3] == ["cutoff", "eval_start", "eval_end"]
    assert folds["ndcg@20 candidate"].mean() == pytest.approx(cand)
    assert folds["ndcg@20 current"].mean() == pytest.approx(cur)
    assert new["verdict_reason"] == (
        f"mean NDCG@20 over the latest {folds.height} fold(s): candidate {cand:.4f} < current "
        f"{cur:.4f} - tolerance 0.02 ({v1}); {v1} stays promoted"
    )
    assert refusal.description == f"{v2} refused: {new['verdict_reason']}"
    assert refusal.metadata["promoted_version"].value == v1
    meta = worse.asset_materializations_for_node("ranker_model")[0].metadata
    assert meta["promotion_verdict"].value == "rejected" and meta["compared_with"].value == v1
    assert meta["backtest_ndcg@20_new"].value == pytest.approx(cand)
    shown = [r.data for r in meta["promotion_folds"].records]
    assert [r["ndcg@20 current"] for r in shown] == pytest.approx(
        folds["ndcg@20 current"].to_list(), abs=1e-4
    )
    models = env / "artifacts" / "models"
    assert (models / LATEST).read_text().strip() == v1 and (models / LAST_TRAINED).read_text().strip() == v2

    day = dates.max()
    # TreeSHAP for the day's top 5 only: the other rows' reasons come from path attribution
    monkeypatch.setenv("ASIN_PLATFORM__SCALE__REASONS_PER_QUERY", "5")
    get_settings.cache_clear()
    predicted = _run(warehouse, ["predictions_rank_daily"], partition_key=f"{day}|US")
    assert predicted.success
    rows = warehouse.read("predictions_rank_daily", sites=["US"], start=day, end=day)
    assert set(rows["model_version"]) == {v1}  # the refused model never predicts

    monkeypatch.setattr(training, "build_ranker", real_build)
    equal = _run(warehouse, ["ranker_model"])
    assert equal.success and _check(equal, "ranker_not_refused").passed is True
    _, _, third = _registry(warehouse)
    assert (third["promoted"], third["verdict"], third["compared_version"]) == (True, "accepted", v1)
    assert third["backtest_ndcg_20"] == pytest.approx(third["compared_backtest_ndcg_20"])  # the same model
    assert (
        third["verdict_reason"].startswith("mean NDCG@20 over the latest")
        and " >= current " in third["verdict_reason"]
    )
    assert [r["version"] for r in _registry(warehouse) if r["promoted"]] == [third["version"]]


# --------------------------------------------------------- model_evaluation: the model's own windows


def _figures(warehouse) -> pl.DataFrame:
    """model_evaluation's figures, without when they were computed."""
    return warehouse.read("model_evaluation").drop("evaluated_at").sort("split", "ranker", "k")


def _set_card(warehouse, version: str, card: dict) -> None:
    """The registry row's card replaced (what load_registered reads), as an older code version wrote it."""
    with warehouse.transaction() as tx:
        tx.execute("UPDATE model_registry SET card = ? WHERE version = ?", [json.dumps(card), version])


def _failure(result) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.user_failure_data.description


def test_model_evaluation_scores_the_windows_on_the_card_whatever_the_samples_call_them(
    env: Path, warehouse
) -> None:
    """The card records the held-out windows (valid / test: dates, rows, fingerprint). Unchanged
    samples give exactly the figures of the valid / test splits; the same samples rebuilt, the same;
    rows of those windows relabelled (a rebuild with other split boundaries) are still evaluated as
    the windows they were, and the metadata says the splits have changed."""
    _seed(warehouse)
    first = _run(warehouse, ["train_samples", "ranker_model", "model_evaluation"])
    assert first.success, [e.message for e in first.all_events if e.is_failure]
    [row] = _registry(warehouse)
    version, card = row["version"], json.loads(row["card"])
    stored = warehouse.read("train_samples_rank")
    windows = {
        split: {
            "first_date": "2025-04-01" if split == "valid" else "2025-05-11",
            "last_date": "2025-04-09" if split == "valid" else "2025-05-19",
            "rows": stored.filter(pl.col("split") == split).height,
        }
        for split in ("valid", "test")
    }
    assert card["held_out"] == {
        "windows": {
            s: {**w, "fingerprint": fingerprint(stored.filter(pl.col("split") == s))}
            for s, w in windows.items()
        },
        "samples_window": ["2025-01-31", "2025-05-19"],
        "fingerprint_of": ["site", "date", "asin", "relevance", "explodes"],
    }
    assert card["data_window"]["train"] == ["2025-01-31", "2025-04-09"]  # refitted through valid

    # the figures of the valid / test splits, as model_evaluation computed them before it read the card
    settings = get_settings()
    model = load_registered(warehouse, "newest")
    current = stored.filter(pl.col("split").is_in(["valid", "test"]))
    oracle = evaluation.simulator_oracle(current, settings, settings.windows.horizon)
    expected = evaluation.evaluate_model(current, model, settings, oracle=oracle)
    before = _figures(warehouse)
    assert before.drop("model_version").equals(
        MODEL_EVALUATION.conform(expected.with_columns(model_version=pl.lit(version), evaluated_at=None))
        .drop("evaluated_at", "model_version")
        .sort("split", "ranker", "k")
    )
    meta = first.asset_materializations_for_node("model_evaluation")[0].metadata
    assert meta["held_out_windows"].value == windows
    assert meta["held_out_verified"].value is True
    assert meta["held_out_check"].value == (
        "the model card's held-out windows (valid 2025-04-01..2025-04-09, test 2025-05-11..2025-05-19), "
        "the same rows by fingerprint"
    )

    assert _run(warehouse, ["train_samples"]).success  # rebuilt as it was
    again = _run(warehouse, ["model_evaluation"])
    assert again.success
    assert _figures(warehouse).equals(before)

    with warehouse.transaction() as tx:  # valid rows now 'train', test rows 'valid'
        tx.execute(
            "UPDATE train_samples_rank SET split = CASE split WHEN 'valid' THEN 'train' "
            "WHEN 'test' THEN 'valid' ELSE split END"
        )
    moved = _run(warehouse, ["model_evaluation"])
    assert moved.success, _failure(moved)
    assert _figures(warehouse).equals(before)
    meta = moved.asset_materializations_for_node("model_evaluation")[0].metadata
    assert meta["held_out_windows"].value == windows
    assert meta["held_out_check"].value == (
        "the model card's held-out windows (valid 2025-04-01..2025-04-09, test 2025-05-11..2025-05-19), "
        "the same rows by fingerprint; train_samples_rank's splits have changed since "
        "(now valid 2025-05-11..2025-05-19)"
    )


def test_model_evaluation_refuses_samples_rebuilt_over_other_windows(env: Path, warehouse) -> None:
    """train_samples rebuilt after the model was trained, ending 19 days earlier (end_date
    2025-05-31): none of the model's held-out rows are left and the new valid split lies on dates the
    model trained on. model_evaluation fails in one line saying so; nothing is stored."""
    _seed(warehouse)
    assert _run(warehouse, ["train_samples", "ranker_model"]).success
    [row] = _registry(warehouse)
    card = json.loads(row["card"])
    assert _run(warehouse, ["train_samples"], samples={"end_date": "2025-05-31"}).success
    result = _run(warehouse, ["model_evaluation"])
    assert not result.success
    rows = {s: card["held_out"]["windows"][s]["rows"] for s in ("valid", "test")}
    assert _failure(result) == (
        f"train_samples_rank no longer holds the held-out rows of model {row['version']}, trained on "
        f"reference dates through 2025-04-09 (valid 2025-04-01..2025-04-09: 0 rows now, {rows['valid']:,} "
        f"on the card; test 2025-05-11..2025-05-19: 0 rows now, {rows['test']:,} on the card); its splits "
        "are now valid 2025-03-22..2025-03-26, test 2025-04-27..2025-05-01, so figures there would not be "
        "the model's validation and test quality: retrain ranker_model on these samples, or rebuild "
        "train_samples as the model had them (reference dates 2025-01-31..2025-05-19, the same label settings)"
    )
    assert warehouse.count("model_evaluation") == 0


def test_model_evaluation_without_a_held_out_positive_fails_in_one_line(env: Path, warehouse) -> None:
    """No positive in either held-out split (here: the labels zeroed, the card's fingerprints dropped so
    the rows still count as the model's): NDCG is undefined, so the asset fails saying so, not with a
    ValueError traceback, and stores nothing."""
    _seed(warehouse)
    assert _run(warehouse, ["train_samples", "ranker_model"]).success
    [row] = _registry(warehouse)
    version, card = row["version"], json.loads(row["card"])
    _set_card(
        warehouse, version, {k: v for k, v in card.items() if k not in ("held_out", "data_window", "rows")}
    )
    with warehouse.transaction() as tx:
        tx.execute("UPDATE train_samples_rank SET explodes = 0, relevance = 0 WHERE split <> 'train'")
    held = warehouse.read("train_samples_rank").filter(pl.col("split") != "train")
    result = _run(warehouse, ["model_evaluation"])
    assert not result.success
    rows = {s: held.filter(pl.col("split") == s).height for s in ("valid", "test")}
    assert _failure(result) == (
        f"model_evaluation of {version}: neither held-out split holds a positive (explodes) row "
        f"(valid {rows['valid']:,} rows, test {rows['test']:,} rows): nothing to score the rankers on; "
        "rebuild train_samples over more reference dates (config days) or check the label settings, "
        "then retrain ranker_model"
    )
    assert warehouse.count("model_evaluation") == 0


def test_model_evaluation_of_cards_written_before_the_held_out_record(env: Path, warehouse) -> None:
    """A card without ``held_out`` is matched by its data_window and row counts; one without any
    window is evaluated on today's splits, marked unverified, unless those lie on dates its
    data_window says it trained on."""
    _seed(warehouse)
    assert _run(warehouse, ["train_samples", "ranker_model", "model_evaluation"]).success
    figures = _figures(warehouse)
    [row] = _registry(warehouse)
    version, card = row["version"], json.loads(row["card"])

    older = {k: v for k, v in card.items() if k != "held_out"}
    _set_card(warehouse, version, older)
    result = _run(warehouse, ["model_evaluation"])
    assert result.success
    assert _figures(warehouse).equals(figures)
    meta = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert meta["held_out_verified"].value is True
    assert meta["held_out_check"].value.endswith("the same rows by row counts")

    bare = {k: v for k, v in older.items() if k not in ("data_window", "rows")}
    _set_card(warehouse, version, bare)
    result = _run(warehouse, ["model_evaluation"])
    assert result.success
    assert _figures(warehouse).equals(figures)
    meta = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert meta["held_out_verified"].value is False
    assert meta["held_out_check"].value == (
        f"UNVERIFIED: model {version}'s card records no held-out windows; evaluated on train_samples_rank's "
        "current valid 2025-04-01..2025-04-09, test 2025-05-11..2025-05-19, which may not be the rows it "
        "was validated and tested on (retrain ranker_model to record them)"
    )

    _set_card(warehouse, version, {**bare, "data_window": {"train": card["data_window"]["train"]}})
    assert _run(warehouse, ["train_samples"], samples={"end_date": "2025-05-31"}).success
    refused = _run(warehouse, ["model_evaluation"])
    assert not refused.success
    assert _failure(refused) == (
        f"model {version}'s card records no held-out windows and train_samples_rank's valid "
        "2025-03-22..2025-03-26, test 2025-04-27..2025-05-01 include reference dates it trained on (through "
        "2025-04-09): those rows would not measure it; retrain ranker_model on these samples"
    )
