"""LightGBM lambdarank (core/ranker.py) and batch scoring (core/predict.py): query layout, training
with early stopping, the model card, versioned saving, the promotion gate, ranks."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asin_platform.core import ranker as ranker_module
from asin_platform.core.labels import build_samples
from asin_platform.core.metrics import add_baseline_scores
from asin_platform.core.model_files import export_model, load_model, promotion_refusal, save_model
from asin_platform.core.predict import PREDICTIONS_RANK_DAILY, add_model_scores, predict_with, score_features
from asin_platform.core.ranker import (
    LATEST,
    REFIT_VALID_NOTE,
    feature_importance,
    feature_matrix,
    group_sizes,
    prepare_rank_data,
    query_sorted,
    sampled_negatives,
    train_ranker,
)
from asin_platform.core.ranker_levers import RankerParams, build_ranker
from asin_platform.levers import RankerLevers
from asin_platform.settings import ScoreWeights
from asin_platform_tests.core.test_labels import sim_features, sim_mart

FAST = {"num_threads": 1, "learning_rate": 0.1}


@lru_cache(maxsize=1)
def rank_samples() -> pl.DataFrame:
    samples = build_samples(sim_features(), sim_mart(), sample_every=2)
    return add_baseline_scores(samples.rank, ScoreWeights())


@lru_cache(maxsize=1)
def trained():
    return train_ranker(
        rank_samples(), params=FAST, num_boost_round=60, compare={"baseline": "explosive_score"}
    )


def test_query_rows_are_contiguous_and_group_sizes_match() -> None:
    shuffled = rank_samples().sample(fraction=1.0, shuffle=True, seed=1)
    ordered = query_sorted(shuffled)
    sizes = group_sizes(ordered)
    assert sizes.sum() == ordered.height
    # contiguous: each (site, date) appears in exactly one run of rows
    runs = ordered.select(
        (pl.struct("site", "date") != pl.struct("site", "date").shift(1)).fill_null(True).sum()
    )
    assert runs.item() == len(sizes) == ordered.select(pl.struct("site", "date").n_unique()).item()


def test_training_params_and_metrics() -> None:
    model = trained()
    assert model.params["objective"] == "lambdarank"
    assert model.params["lambdarank_truncation_level"] >= 50
    assert 1 <= model.best_iteration <= 60
    table = model.valid_metrics
    assert set(table["ranker"]) == {"model", "baseline"} and set(table["k"]) == {10, 20, 50}
    assert (table["queries_kept"] <= table["queries_total"]).all()
    assert model.queries["valid_with_positive"] == table["queries_kept"][0]
    # the synthetic market is learnable: the model beats a random order by far
    ndcg20 = table.filter((pl.col("ranker") == "model") & (pl.col("k") == 20))["ndcg"][0]
    assert ndcg20 > 0.2


def test_card_contents_versioned_directory_and_latest(tmp_path) -> None:
    model = trained()
    saved = save_model(model, tmp_path / "models", extra={"samples": "x.parquet"})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", saved.version)
    assert saved.model_path == tmp_path / "models" / saved.version / "model.txt"
    card = json.loads(saved.card_path.read_text())
    for key in (
        "version", "features", "params", "data_window", "metrics", "training_seconds", "git_commit",
        "lightgbm_version", "best_iteration", "feature_importance", "gate", "drift_profile", "rows", "queries",
    ):  # fmt: skip
        assert key in card, key
    assert card["features"] == list(model.features)
    assert card["params"]["lambdarank_truncation_level"] >= 50
    assert set(card["data_window"]) == {"train", "valid", "test"}
    assert card["data_window"]["train"][1] < card["data_window"]["valid"][0]
    assert {"model", "baseline"} <= set(card["metrics"]["valid"])
    assert "ndcg@20" in card["metrics"]["valid"]["model"]
    assert card["training_seconds"] > 0
    assert card["git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", card["git_commit"])
    assert card["samples"] == "x.parquet"
    assert (tmp_path / "models" / LATEST).read_text().strip() == saved.version
    # loading through the models directory follows `latest` and predicts what the booster predicts
    loaded = load_model(tmp_path / "models")
    assert loaded.version == saved.version and loaded.features == list(model.features)
    sample = rank_samples().head(200)
    a = add_model_scores(sample, model.booster, model.features, num_iteration=model.best_iteration)
    b = add_model_scores(sample, loaded.booster, loaded.features)
    assert np.allclose(a["model_score"].to_numpy(), b["model_score"].to_numpy())
    # the seed's single-file copy carries its card beside it
    out, card_out = export_model(saved, tmp_path / "lgb_rank.txt")
    assert card_out.name == "lgb_rank.card.json" and load_model(out).version == saved.version
    importance = feature_importance(model.booster)
    assert importance["gain"].sum() == pytest.approx(1.0) and importance.height == len(model.features)


def assert_promotion_refused(model, models_dir: Path, reason: str) -> None:
    """``save_model(promote=True)`` raises "may not be promoted: <reason>" before writing anything."""
    before = sorted(models_dir.iterdir())
    with pytest.raises(ValueError, match="may not be promoted: " + reason):
        save_model(model, models_dir, promote=True)
    assert sorted(models_dir.iterdir()) == before


def test_a_model_that_loses_to_the_baseline_is_not_promoted(tmp_path) -> None:
    samples = rank_samples().with_columns(cheat=pl.col("relevance").cast(pl.Float64))  # a perfect "baseline"
    model = train_ranker(samples, params=FAST, num_boost_round=20, compare={"baseline": "cheat"})
    assert model.gate()["passed"] is False
    first = save_model(trained(), tmp_path)
    second = save_model(model, tmp_path)
    assert second.promoted is False and second.card["promoted"] is False
    assert (tmp_path / LATEST).read_text().strip() == first.version
    # asked to promote it anyway: refused with the gate's reason
    assert_promotion_refused(model, tmp_path, r"validation gate: ndcg@20 0\.\d{4} <= baseline 1\.0000$")
    assert (tmp_path / LATEST).read_text().strip() == first.version


def unvalidated_model():
    """A fit without a validation split: its gate has no baseline to compare with (passed None)."""
    return train_ranker(
        rank_samples(), params=FAST, num_boost_round=7, train_split=("train", "valid"), valid_split=None
    )


def test_a_model_with_no_baseline_to_compare_with_is_never_promoted(tmp_path) -> None:
    first = save_model(trained(), tmp_path)
    unvalidated = unvalidated_model()
    assert unvalidated.gate()["passed"] is None
    saved = save_model(unvalidated, tmp_path)
    assert saved.promoted is False and saved.card["promoted"] is False
    assert (tmp_path / LATEST).read_text().strip() == first.version
    assert_promotion_refused(unvalidated, tmp_path, r"validation gate: no baseline to compare with$")
    # a passing model may still be saved without promotion
    assert save_model(trained(), tmp_path / "other", promote=False).promoted is False


def test_promotion_refusal_names_the_reason_unless_the_gate_passed() -> None:
    assert promotion_refusal(trained().gate()) is None
    assert promotion_refusal({"metric": "ndcg@20", "model": 0.7, "baseline": 0.6, "passed": True}) is None
    assert (
        promotion_refusal({"metric": "ndcg@20", "model": 0.5, "baseline": 0.6, "passed": False})
        == "validation gate: ndcg@20 0.5000 <= baseline 0.6000"
    )
    assert (
        promotion_refusal({"metric": "ndcg@20", "model": None, "baseline": None, "passed": None})
        == "validation gate: no baseline to compare with"
    )
    for missing in (None, {}, {"metric": "ndcg@20"}):
        assert promotion_refusal(missing) == (
            "validation gate: not recorded (the model was not compared with the baseline)"
        )
    # only True passes: a truthy stand-in is not a passing gate
    assert (
        promotion_refusal({"metric": "ndcg@20", "model": 0.7, "baseline": 0.6, "passed": 1})
        == "validation gate: passed is 1, not true"
    )


def test_invalid_setups_are_refused() -> None:
    with pytest.raises(ValueError, match="truncation"):
        train_ranker(rank_samples(), params={"lambdarank_truncation_level": 20})
    with pytest.raises(ValueError, match="integer relevance"):
        train_ranker(rank_samples().with_columns(pl.col("relevance").cast(pl.Float64) / 3))
    with pytest.raises(FileNotFoundError):
        load_model("/nonexistent/models")


def test_score_features_ranks_per_site_and_category() -> None:
    model = trained()
    features = sim_features().filter(pl.col("date") == sim_features()["date"].max())
    out = score_features(model.booster, features, model_version="v1", feature_names=list(model.features))
    assert out.columns == PREDICTIONS_RANK_DAILY.columns and out.height == features.height
    for site in out["site"].unique():
        part = out.filter(pl.col("site") == site).sort("rank_in_site")
        assert part["rank_in_site"].to_list() == list(range(1, part.height + 1))
        assert (part["model_score"].diff().drop_nulls() <= 0).all()
    by_cat = out.group_by("site", "category_id").agg(
        ok=(pl.col("rank_in_category").sort() == pl.int_range(1, pl.len() + 1)).all()
    )
    assert by_cat["ok"].all()
    assert set(out["model_version"]) == {"v1"}
    # ties go by asin
    tied = features.head(3).with_columns(pl.lit(None).alias(c) for c in model.features)
    tie = score_features(model.booster, tied, model_version="v", feature_names=list(model.features))
    assert tie.sort("rank_in_site")["asin"].to_list() == sorted(tied["asin"].to_list())


def test_predict_with_a_loaded_model(tmp_path) -> None:
    saved = save_model(trained(), tmp_path)
    out = predict_with(load_model(saved.directory), sim_features().head(50))
    assert set(out["model_version"]) == {saved.version}


def test_negative_subsampling_keeps_every_relevant_row_and_is_reproducible() -> None:
    samples = rank_samples()
    full = prepare_rank_data(samples)
    half = prepare_rank_data(samples, negative_fraction=0.5)
    again = prepare_rank_data(samples, negative_fraction=0.5)
    relevant = full.train.filter(pl.col("relevance") > 0).height
    assert half.train.filter(pl.col("relevance") > 0).height == relevant
    negatives = full.train.height - relevant
    kept = half.train.height - relevant
    assert 0.4 * negatives < kept < 0.6 * negatives
    assert half.train.equals(again.train)
    assert half.valid_all.equals(full.valid_all)  # validation is never subsampled


def test_hard_negatives_are_each_querys_top_scored_grade_0_rows() -> None:
    # two queries: US has 4 negatives and a positive, UK 2 negatives (one without a score)
    train = pl.DataFrame(
        {
            "site": ["US"] * 5 + ["UK"] * 2,
            "date": [date(2026, 1, 1)] * 7,
            "asin": ["a", "b", "c", "d", "e", "a", "b"],
            "relevance": [0, 0, 2, 0, 0, 0, 0],
            "explosive_score": [0.1, 0.9, 0.0, 0.5, 0.2, None, -1.0],
        }
    )
    hard = sampled_negatives(train, negative_fraction=0.0, hard_negative_fraction=0.5)
    # US keeps its positive and its 2 top-scored negatives of 4; UK its 1 of 2 (null scores count lowest)
    assert hard["asin"].to_list() == ["b", "c", "d", "b"]
    # a share rounds up: every query keeps at least its hardest negative
    tenth = sampled_negatives(train, negative_fraction=0.0, hard_negative_fraction=0.1)
    assert tenth["asin"].to_list() == ["b", "c", "b"]
    assert sampled_negatives(train).equals(train)
    assert sampled_negatives(train, negative_fraction=0.5, hard_negative_fraction=1.0).equals(train)
    with pytest.raises(ValueError, match="hard negatives need"):
        sampled_negatives(train.drop("explosive_score"), negative_fraction=0.5, hard_negative_fraction=0.2)
    with pytest.raises(ValueError, match="within 0..1"):
        sampled_negatives(train, negative_fraction=1.5)


def test_hard_and_random_negatives_add_up_in_training() -> None:
    samples = rank_samples()
    full = prepare_rank_data(samples)
    random = prepare_rank_data(samples, negative_fraction=0.3)
    mixed = prepare_rank_data(samples, negative_fraction=0.3, hard_negative_fraction=0.2)
    negatives = full.train.filter(pl.col("relevance") == 0)
    kept = mixed.train.filter(pl.col("relevance") == 0)
    # the random share is the same draw, the hard share comes on top of it
    assert (
        random.train.filter(pl.col("relevance") == 0)
        .join(kept, on=["site", "date", "asin"], how="anti")
        .is_empty()
    )
    assert 0.3 * negatives.height < kept.height < (0.2 + 0.8 * 0.3 + 0.05) * negatives.height
    assert (
        mixed.train.filter(pl.col("relevance") > 0).height
        == full.train.filter(pl.col("relevance") > 0).height
    )
    # the hardest negative of every query is kept
    top = negatives.sort("explosive_score", descending=True, nulls_last=True).group_by("site", "date").first()
    assert top.join(kept, on=["site", "date", "asin"], how="anti").is_empty()
    assert mixed.valid_all.equals(full.valid_all)


def test_ranker_params_defaults_are_the_settings_defaults() -> None:
    # two declarations of the same levers (core never imports settings): they must not drift apart
    assert RankerParams() == RankerParams.of(RankerLevers().model_dump())


def test_ranker_params_map_onto_lightgbm() -> None:
    params = RankerParams.of({"max_bin": 31, "col_wise": False}, early_stopping=None, rounds=7)
    assert params.rounds == 7 and params.early_stopping == RankerParams().early_stopping  # None keeps
    lgb_params = params.lightgbm_params()
    assert lgb_params["max_bin"] == 31
    assert (lgb_params["force_col_wise"], lgb_params["force_row_wise"]) == (False, True)
    assert lgb_params["bagging_freq"] == 1 and lgb_params["objective"] == "lambdarank"
    assert RankerParams(bagging_fraction=1.0).lightgbm_params()["bagging_freq"] == 0
    tuned = RankerParams(lightgbm={"num_leaves": 15, "lambdarank_truncation_level": 60})
    assert tuned.lightgbm_params()["num_leaves"] == 15  # extra LightGBM params win over the levers
    with pytest.raises(ValueError, match="unknown ranker lever"):
        RankerParams.of({"max_bins": 63})
    with pytest.raises(ValueError, match="truncation_level"):
        RankerParams(lightgbm={"lambdarank_truncation_level": 10}).lightgbm_params()


def test_build_ranker_trains_with_the_levers() -> None:
    params = RankerParams(
        rounds=15,
        early_stopping=5,
        negative_fraction=0.5,
        min_query_rows=0,
        refit_factor=0.0,  # the early-stopped fit itself (the refit: the tests below)
        lightgbm={"num_threads": 1},
    )
    model = build_ranker(rank_samples(), params, compare={"baseline": "explosive_score"})
    assert model.params["max_bin"] == 63 and model.params["force_col_wise"] is True
    assert model.params["num_boost_round"] == 15 and model.params["early_stopping_rounds"] == 5
    assert model.params["negative_fraction"] == 0.5
    assert model.rows["train"] < model.rows["train_split"]  # negatives were sampled
    assert 1 <= model.best_iteration <= 15
    assert model.booster.num_trees() <= 15

    # the card records the levers it was built with
    assert model.levers == {**asdict(params), "lightgbm": {"num_threads": 1}}
    assert model.params["min_query_rows"] == 0


REFIT_LEVERS = {"rounds": 15, "early_stopping": 5, "min_query_rows": 0, "lightgbm": {"num_threads": 1}}


@lru_cache(maxsize=1)
def refit_pair():
    """The early-stopped fit and the same levers with refit_factor 1.5, with every lgb.train call's
    validation sets recorded."""
    calls: list[list] = []
    real = ranker_module.lgb.train

    def spy(params, train_set, *args, **kwargs):
        calls.append(list(kwargs.get("valid_sets") or []))
        return real(params, train_set, *args, **kwargs)

    ranker_module.lgb.train = spy
    try:
        first = build_ranker(
            rank_samples(),
            RankerParams(**REFIT_LEVERS, refit_factor=0.0),
            compare={"baseline": "explosive_score"},
        )
        model = build_ranker(
            rank_samples(),
            RankerParams(**REFIT_LEVERS, refit_factor=1.5),
            compare={"baseline": "explosive_score"},
        )
    finally:
        ranker_module.lgb.train = real
    return first, model, calls


def test_refit_factor_refits_on_train_and_valid_with_the_scaled_trees() -> None:
    first, model, calls = refit_pair()
    rounds = round(first.best_iteration * 1.5)
    assert first.best_iteration < REFIT_LEVERS["rounds"]  # early stopping did stop the first fit
    # exactly the scaled trees: nothing truncates them (the dummy validation split of before cut
    # this market's refit from 9 trees to its best iteration on rows it had trained on, 7)
    assert model.best_iteration == model.booster.num_trees() == model.booster.current_iteration() == rounds
    assert model.params["refit_rounds"] == model.params["num_boost_round"] == rounds
    assert (
        model.params["early_stopping_rounds"] is None
        and model.params["early_stopped_trees"] == first.best_iteration
    )
    # the first fit of each build early-stops on the validation split; the refit sees no validation set
    assert [len(c) for c in calls] == [1, 1, 0]
    assert model.booster.best_score == {} and first.booster.best_score["valid"]
    # the validation rows were trained on: the gate and the card keep the early-stopped fit's metrics
    assert model.valid_metrics.equals(first.valid_metrics) and model.history == first.history
    assert model.gate() == {**first.gate(), "of": REFIT_VALID_NOTE}
    assert model.rows["train"] > first.rows["train"] == model.rows["early_stopped_train"]
    samples = rank_samples()
    assert model.rows["train_split"] == samples.filter(pl.col("split").is_in(["train", "valid"])).height
    assert model.rows["valid"] == first.rows["valid"]
    assert model.queries["train"] == first.queries["train"] + first.queries["valid_with_positive"]
    assert model.data_window["valid"] == first.data_window["valid"]
    assert model.data_window["train"][1] == first.data_window["valid"][1]  # type: ignore[index]
    assert 0 < model.refit["early_stopped_seconds"] < model.training_seconds  # both fits are counted
    assert {k: v for k, v in model.refit.items() if k != "early_stopped_seconds"} == {
        "factor": 1.5,
        "rounds": rounds,
        "trees": rounds,
        "trained_on": ["train", "valid"],
        "early_stopped_trees": first.best_iteration,
        "early_stopped_train_rows": first.rows["train"],
        "valid_metrics_of": REFIT_VALID_NOTE,
    }
    assert model.levers["refit_factor"] == 1.5 and first.refit == {}
    # on by default (docs/model_quality.md, *The refit lever*); 0 turns it off
    assert RankerParams().refit_factor == RankerLevers().refit_factor == 1.35


def test_a_refitted_model_predicts_deterministically_and_its_card_says_it_was_refitted(tmp_path) -> None:
    _, model, _ = refit_pair()
    again = build_ranker(rank_samples(), RankerParams(**REFIT_LEVERS, refit_factor=1.5))
    rows = rank_samples().filter(pl.col("split") == "test")
    matrix = feature_matrix(rows, model.features)
    scores = model.booster.predict(matrix)
    assert np.array_equal(scores, again.booster.predict(matrix))
    assert np.array_equal(scores, model.booster.predict(matrix, num_iteration=model.best_iteration))
    assert model.booster.model_to_string() == again.booster.model_to_string()

    saved = save_model(model, tmp_path)
    card = json.loads(saved.card_path.read_text())
    assert card["num_trees"] == card["best_iteration"] == card["refit"]["trees"] == model.refit["rounds"]
    assert (
        card["refit"]["valid_metrics_of"]
        == card["metrics"]["valid_of"]
        == card["gate"]["of"]
        == REFIT_VALID_NOTE
    )
    assert card["metrics"]["valid"]["model"]["ndcg@20"] == pytest.approx(card["gate"]["model"])
    assert card["params"]["refit_factor"] == 1.5 and card["levers"]["refit_factor"] == 1.5
    assert np.array_equal(load_model(tmp_path).booster.predict(matrix), scores)
    plain = json.loads(save_model(refit_pair()[0], tmp_path / "plain").card_path.read_text())
    assert plain["refit"] is None and "valid_of" not in plain["metrics"] and "of" not in plain["gate"]


def test_a_fixed_number_of_rounds_without_a_validation_split() -> None:
    samples = rank_samples()
    model = train_ranker(
        samples, params=FAST, num_boost_round=7, train_split=("train", "valid"), valid_split=None
    )
    assert model.booster.num_trees() == model.best_iteration == 7
    assert model.valid_metrics.is_empty() and model.history == {} and model.gate()["passed"] is None
    assert model.rows["valid"] == 0 and model.data_window["valid"] is None
    with pytest.raises(ValueError, match="both trained on and validated on"):
        prepare_rank_data(samples, train_split=("train", "valid"), valid_split="valid")
    data = prepare_rank_data(samples, train_split=("train", "valid"), valid_split=None)
    assert data.valid_set is None and data.valid.is_empty()


def test_small_queries_keep_every_row_large_ones_are_sampled() -> None:
    """min_query_rows: negative sampling applies only to queries of more rows than it."""

    def query(day: int, rows: int, relevant: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "site": ["US"] * rows,
                "date": [date(2025, 1, day)] * rows,
                "asin": [f"A{i:05d}" for i in range(rows)],
                "relevance": [2] * relevant + [0] * (rows - relevant),
                "explosive_score": [float(i) for i in range(rows)],
            }
        )

    train = query_sorted(pl.concat([query(1, 40, 3), query(2, 50, 5), query(3, 51, 5), query(4, 400, 10)]))
    # no random negatives: each large query keeps its relevant rows and its hardest quarter of the rest
    kept = sampled_negatives(train, negative_fraction=0.0, hard_negative_fraction=0.25, min_query_rows=50)
    per_day = dict(kept.group_by("date").len().sort("date").iter_rows())
    assert per_day == {
        date(2025, 1, 1): 40,  # 40 <= 50: whole
        date(2025, 1, 2): 50,  # exactly min_query_rows: whole
        date(2025, 1, 3): 5 + 12,  # 51 rows: 5 relevant + ceil(46 * 0.25) hardest negatives
        date(2025, 1, 4): 10 + 98,  # 10 relevant + ceil(390 * 0.25)
    }
    big = kept.filter(pl.col("date") == date(2025, 1, 4))
    assert big.filter(pl.col("relevance") == 0)["explosive_score"].min() == 400 - 98  # the hardest ones
    # 0 samples every query, as before the lever
    every = sampled_negatives(train, negative_fraction=0.0, hard_negative_fraction=0.25, min_query_rows=0)
    assert dict(every.group_by("date").len().sort("date").iter_rows())[date(2025, 1, 1)] == 3 + 10
    # the same rule with the random share: a small query is never touched, the large one is sampled
    mixed = sampled_negatives(train, negative_fraction=0.3, hard_negative_fraction=0.1, min_query_rows=50)
    counts = dict(mixed.group_by("date").len().iter_rows())
    assert counts[date(2025, 1, 1)] == 40 and counts[date(2025, 1, 2)] == 50
    assert 10 + 39 <= counts[date(2025, 1, 4)] < 400
    with pytest.raises(ValueError, match="min_query_rows"):
        sampled_negatives(train, negative_fraction=0.5, min_query_rows=-1)


def test_demo_sized_queries_are_fitted_whole_with_the_default_levers() -> None:
    samples = rank_samples()
    largest = int(samples.filter(pl.col("split") == "train").group_by("site", "date").len()["len"].max())
    assert largest <= RankerParams().min_query_rows  # the test market is demo-sized
    model = build_ranker(samples, RankerParams(rounds=5, early_stopping=5, lightgbm={"num_threads": 1}))
    # every row of a query with a relevant row stays, though the default levers sample negatives:
    # in the early-stopped fit (train) and in the default refit (train + valid)
    relevant = pl.col("relevance").max().over("site", "date") > 0
    with_relevant = samples.filter((pl.col("split") == "train") & relevant)
    assert model.rows["early_stopped_train"] == with_relevant.height
    assert model.rows["train"] == samples.filter(pl.col("split").is_in(["train", "valid"]) & relevant).height
    assert model.levers["min_query_rows"] == RankerLevers().min_query_rows == 1000


def test_the_backtest_folds_train_with_the_settings_levers() -> None:
    from asin_platform.core.backtest import BacktestOptions
    from asin_platform.core.labels import LabelConfig

    options = BacktestOptions(
        config=LabelConfig(),
        levers=RankerParams.of(RankerLevers(max_bin=31, min_query_rows=7).model_dump()),
        params={"num_threads": 1},
        rounds=40,
    )
    levers = options.fold_levers()
    assert levers.max_bin == 31 and levers.min_query_rows == 7 and levers.rounds == 40
    assert levers.hard_negative_fraction == RankerLevers().hard_negative_fraction
    assert levers.lightgbm == {"verbosity": -1, "num_threads": 1}
