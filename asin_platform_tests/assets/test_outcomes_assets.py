"""realised_outcomes and its WARN check through Dagster on a small simulated market: a model that
knows the future beats the baseline in hindsight; the same model negated is worse, the check WARNs
and the alert sensor posts it to the webhook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

import asin_platform.assets.evaluation as evaluation
from asin_platform.assets import outcomes
from asin_platform.automation.config import WEBHOOK_URL_ENV
from asin_platform.automation.sensors import build_check_failure_sensor
from asin_platform.checks import outcomes as outcome_checks
from asin_platform.core.labels import KEY, compute_targets
from asin_platform.core.outcomes import realised_outcomes, realised_through
from asin_platform.core.predict import PREDICTIONS_RANK_DAILY
from asin_platform.core.sales import default_calibration
from asin_platform.core.score import score_baseline
from asin_platform.partitions import build_date_site_partitions
from asin_platform.settings import AlertSettings, get_settings
from asin_platform.simulator.catalog import SALES_PRIOR
from asin_platform_tests.core.test_labels import sim_features, sim_market, sim_mart
from asin_platform_tests.ops.conftest import receiver  # noqa: F401 - the loopback webhook fixture

START, END = date(2025, 5, 1), date(2025, 5, 25)  # the mart ends 2025-06-19: realised through 05-20
RANGE = {
    "dagster/asset_partition_range_start": f"{START}|US",
    "dagster/asset_partition_range_end": f"{END}|US",
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ASIN_PLATFORM__EXPORTS_DIR", str(tmp_path / "exports"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _truth() -> pl.DataFrame:
    settings = get_settings()
    features = sim_features().filter(pl.col("site") == "US")
    config = outcomes.label_config(settings)
    calibration = default_calibration(["US"], SALES_PRIOR)
    return compute_targets(sim_mart(), features.select(*KEY), config, calibration).select(*KEY, "relevance")


def _seed(warehouse, sign: float) -> None:
    """Mart, baseline scores and predictions whose score is ``sign`` x the realised relevance."""
    mart, features = sim_mart().filter(pl.col("site") == "US"), sim_features().filter(pl.col("site") == "US")
    preds = features.select(*KEY, "category_id").join(_truth(), on=list(KEY))
    preds = preds.with_columns(
        model_score=sign * pl.col("relevance").cast(pl.Float64), model_version=pl.lit("v-test")
    )
    with warehouse.transaction() as tx:
        for table, frame in (
            ("mart_timeseries_daily", mart),
            ("score_baseline_daily", score_baseline(features, get_settings().score_weights)),
            ("predictions_rank_daily", PREDICTIONS_RANK_DAILY.conform(preds)),
        ):
            tx.replace_slices(table, frame, sites=["US"], start=frame["date"].min(), end=frame["date"].max())


def _run(warehouse, instance: dg.DagsterInstance) -> dg.ExecuteInJobResult:
    settings = get_settings()
    partitions = build_date_site_partitions(settings)
    return dg.materialize(
        [*outcomes.build_assets(settings, partitions), *outcome_checks.build_checks(settings, partitions)],
        selection=dg.AssetSelection.assets("realised_outcomes")
        | dg.AssetSelection.checks_for_assets("realised_outcomes"),
        resources={"warehouse": warehouse, "settings": settings},
        tags=RANGE,
        instance=instance,
        raise_on_error=False,
    )


def _run_backtest(warehouse, config: dict) -> dg.ExecuteInJobResult:
    """``walk_forward_backtest`` alone with ``config``, on an ephemeral instance."""
    settings = get_settings()
    return dg.materialize(
        outcomes.build_assets(settings, build_date_site_partitions(settings)),
        selection=["walk_forward_backtest"],
        resources={"warehouse": warehouse, "settings": settings},
        run_config={"ops": {"walk_forward_backtest": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_realised_outcomes_oracle_and_anti_oracle() -> None:
    """Core: only realised days get rows; a ranker ranking by the truth finds every positive it can."""
    truth = _truth()
    features = sim_features().filter(pl.col("site") == "US")
    baseline = score_baseline(features, get_settings().score_weights)
    config = outcomes.label_config(get_settings())
    preds = truth.with_columns(model_score=pl.col("relevance").cast(pl.Float64), model_version=pl.lit("v"))
    calibration = default_calibration(["US"], SALES_PRIOR)
    mart = sim_mart().filter(pl.col("site") == "US")
    rows = realised_outcomes(preds, baseline, mart, config, calibration=calibration)
    last_mart_day = sim_mart()["date"].max()
    assert rows["date"].max() == realised_through(last_mart_day, 30) == date(2025, 5, 20)
    assert rows["date"].n_unique() * 2 * 3 == rows.height  # 2 rankers x k in (10, 20, 50)
    model20 = rows.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))
    positives = (
        truth.join(model20.select("date"), on="date")
        .group_by("date")
        .agg(pos=(pl.col("relevance") >= 2).sum())
    )
    expected = model20.join(positives, on="date").select(
        pl.col("precision"), want=pl.min_horizontal(pl.col("pos"), 20) / 20
    )
    assert expected["precision"].to_list() == expected["want"].to_list()
    assert (model20.filter(pl.col("positives") > 0)["ndcg"] - 1.0).abs().max() < 1e-12
    anti = realised_outcomes(
        preds.with_columns(-pl.col("model_score")), baseline, mart, config, calibration=calibration
    )
    assert anti.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))["precision"].max() == 0.0


def test_a_good_model_passes_in_hindsight(env: Path, warehouse) -> None:
    _seed(warehouse, sign=1.0)
    with dg.instance_for_test() as instance:
        result = _run(warehouse, instance)
        assert result.success
        [evaluation] = result.get_asset_check_evaluations()
        # judged: the days whose 28-day window holds >= 7 realised days (05-07 .. 05-25)
        assert evaluation.passed and evaluation.metadata["judged_partitions"].value == 19
    stored = warehouse.read("realised_outcomes")
    assert stored["date"].min() == START and stored["date"].max() == date(2025, 5, 20)
    meta = {
        m.partition: m.metadata
        for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    }
    assert meta[f"{START}|US"]["status"].value == "realised"
    assert (
        meta[f"{START}|US"]["model_precision@20"].value >= meta[f"{START}|US"]["baseline_precision@20"].value
    )
    pending = meta[f"{END}|US"]
    assert pending["status"].value == "pending" and pending["realised_on"].value == "2025-06-24"
    assert pending["realised_quality"].value.startswith("![")  # the newest day shows the series


def test_a_model_worse_than_the_baseline_warns_and_alerts(
    env: Path,
    warehouse,
    monkeypatch: pytest.MonkeyPatch,
    receiver,  # noqa: F811
) -> None:
    _seed(warehouse, sign=-1.0)
    rec = receiver()
    monkeypatch.setenv(WEBHOOK_URL_ENV, rec.url)
    with dg.instance_for_test() as instance:
        result = _run(warehouse, instance)
        assert result.success  # a WARN never fails the run
        [evaluation] = result.get_asset_check_evaluations()
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["failing_partitions"].value == 19  # every judged day
        sensor = build_check_failure_sensor(dg.DefaultSensorStatus.RUNNING, AlertSettings())
        sensor(dg.build_sensor_context(instance=instance, cursor='{"failure": "", "success": ""}'))
    [body] = [r.body for r in rec.received]
    assert body["text"].startswith(
        ":warning: [WARN] Check failed: realised_outcomes.model_beats_baseline_realised"
    )
    # one message for the run's range-wide verdict; the failing days are in its details
    assert "check=model_beats_baseline_realised, severity=WARN" in body["text"]
    details = body["blocks"][2]["text"]["text"]
    assert "19 of 25 partitions: the model's realised precision@20 over 28 days is below" in details
    assert "failing_partitions: 19" in details


def _seed_backtest(env: Path, warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated mart and features of US and DE, with the short label windows they are made for."""
    for name, value in {"HORIZON": "14", "EMBARGO": "14", "OBSERVATION": "14"}.items():
        monkeypatch.setenv(f"ASIN_PLATFORM__WINDOWS__{name}", value)
    monkeypatch.setenv("ASIN_PLATFORM__SITES", "US,DE")
    monkeypatch.setenv("ASIN_PLATFORM__ARTIFACTS_DIR", str(env / "artifacts"))
    get_settings.cache_clear()
    monkeypatch.setattr(evaluation, "oracle_market", lambda settings, sites: sim_market())
    mart, features = sim_mart(), sim_features()
    with warehouse.transaction() as tx:
        for table, frame in (("mart_timeseries_daily", mart), ("features_daily", features)):
            tx.replace_slices(
                table, frame, sites=["US", "DE"], start=frame["date"].min(), end=frame["date"].max()
            )


def test_walk_forward_backtest_asset(env: Path, warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed_backtest(env, warehouse, monkeypatch)
    config = {"folds": 2, "every_days": 14, "rounds": 30, "params_json": '{"num_threads": 1}'}
    result = _run_backtest(warehouse, config)
    assert result.success
    meta = result.asset_materializations_for_node("walk_forward_backtest")[0].metadata
    rows = [r.data for r in meta["folds"].records]
    # cut-offs end where the newest labels are realised (2025-06-19 - 14 days), 14 days apart
    assert [r["cutoff"] for r in rows] == ["2025-05-08", "2025-05-22"]
    assert all(r["ndcg@20 model"] > r["ndcg@20 random"] for r in rows)
    assert {"mean_ndcg@20_model", "mean_ndcg@20_oracle"} <= set(meta)
    assert meta["plot"].value.startswith("![")
    stored = pl.read_csv(env / "artifacts" / "backtest" / "backtest.csv")
    assert set(stored["ranker"]) == {"model", "baseline", "random", "oracle"}


def test_walk_forward_backtest_params_lightgbm_refuses_is_a_one_line_failure(
    env: Path, warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """params_json LightGBM refuses fails the step in one line with LightGBM's message
    (core.ranker.lightgbm_refusal) and what to fix; nothing is written. Was: a LightGBMError
    traceback."""
    _seed_backtest(env, warehouse, monkeypatch)
    params = '{"num_threads": 1, "objective": "nope"}'
    result = _run_backtest(warehouse, {"folds": 2, "every_days": 14, "rounds": 30, "params_json": params})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        "walk-forward over 2025-05-08..2025-06-05: LightGBM refused to train a fold's ranker (LightGBMError: "
        "Unknown objective type name: nope); fix what LightGBM refused (params_json, rounds or scale.ranker "
        "in the settings) and materialise again"
    )
    assert not (env / "artifacts" / "backtest").exists()


@pytest.mark.parametrize(
    ("config", "description"),
    [
        ({"rounds": 0}, "rounds 0: input should be greater than or equal to 1"),
        ({"folds": 0}, "folds 0: input should be greater than or equal to 1"),
        ({"every_days": -7}, "every_days -7: input should be greater than or equal to 1"),
        ({"train_days": 0}, "train_days 0: input should be greater than or equal to 1"),
        ({"sample_every": 0}, "sample_every 0: input should be greater than or equal to 1"),
        ({"sample_every": 400}, "sample_every 400: input should be less than or equal to 365"),
        # upper bounds: 10**9 training dates overflowed the date arithmetic of backtest_frames
        ({"folds": 101}, "folds 101: input should be less than or equal to 100"),
        ({"every_days": 366}, "every_days 366: input should be less than or equal to 365"),
        ({"train_days": 10**9}, "train_days 1000000000: input should be less than or equal to 3650"),
        (
            {"params_json": "{bad"},
            "params_json '{bad': not JSON (Expecting property name enclosed in double quotes: line 1 "
            'column 2 (char 1)); give a JSON object, e.g. {"num_leaves": 31}',
        ),
        (
            {"params_json": '"num_leaves"'},
            'params_json \'"num_leaves"\': a JSON string, not an object; give a JSON object, e.g. {"num_leaves": 31}',
        ),
    ],
)
def test_walk_forward_backtest_config_out_of_range_fails_before_reading(
    env: Path, warehouse, warehouse_reads, config: dict, description: str
) -> None:
    """The config's rounds is checked against scale.ranker.rounds' bounds (RankerLevers.overlaid), its
    window against settings.BacktestWindow's and params_json read as a JSON object (levers.json_object),
    as the CLI's flags are: one line, before the mart or the features are read."""
    touched = warehouse_reads()
    result = _run_backtest(warehouse, config)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == (
        f"walk_forward_backtest config {description}"
    )
    assert touched == []
