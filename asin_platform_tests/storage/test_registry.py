"""The model registry (storage/registry.py) on both warehouse backends, and the artifact store's
file:// default: register, promote (one transaction, exactly one promoted row), load from the URL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asin_platform.core.model_files import load_model
from asin_platform.core.ranker import LAST_TRAINED, LATEST, train_ranker
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings, StorageSettings
from asin_platform.storage import (
    ArtifactStore,
    NoModelError,
    artifacts_store,
    exports_store,
    find_model,
    load_registered,
    promote_model,
    read_frame,
    register_model,
    registry,
)
from asin_platform_tests.core.test_ranker import FAST, rank_samples, trained


def _promoted(warehouse: Warehouse) -> list[str]:
    return registry(warehouse).filter(pl.col("promoted"))["version"].to_list()


def test_register_promote_and_load(warehouse: Warehouse, tmp_path: Path) -> None:
    store = ArtifactStore.at(tmp_path / "artifacts")
    with pytest.raises(NoModelError, match="materialise ranker_model"):
        load_registered(warehouse)
    model = trained()
    first = register_model(warehouse, store, model, extra={"run_id": "r1"})
    assert first.promoted and first.card["gate"]["passed"] is True
    other = train_ranker(
        rank_samples(), params=FAST, num_boost_round=20, compare={"baseline": "explosive_score"}
    )
    second = register_model(warehouse, store, other, promote=False)
    assert not second.promoted and _promoted(warehouse) == [first.version]
    assert find_model(warehouse, "newest").version == second.version

    row = registry(warehouse).filter(pl.col("version") == first.version).row(0, named=True)
    assert row["artifact_url"] == f"{store.root}/models/{first.version}"
    assert [str(row["train_start"]), str(row["train_end"])] == first.card["data_window"]["train"]
    assert row["valid_ndcg_20"] == first.card["gate"]["model"] and row["gate_passed"] is True
    assert json.loads(row["card"])["run_id"] == "r1" and "model" in json.loads(row["metrics"])["valid"]
    assert row["promoted_at"] is not None and row["created_at"] is not None

    loaded = load_registered(warehouse)  # the promoted one, read back from its URL
    assert loaded.version == first.version and loaded.path == first.model_url
    matrix = np.random.default_rng(0).random((5, len(model.features)), dtype=np.float32)
    assert np.array_equal(
        loaded.booster.predict(matrix), model.booster.predict(matrix, num_iteration=model.best_iteration)
    )

    promote_model(warehouse, second.version, store)
    assert _promoted(warehouse) == [second.version]
    with pytest.raises(NoModelError, match="no model 'nope'"):
        promote_model(warehouse, "nope", store)
    assert _promoted(warehouse) == [second.version]  # a refused promotion changes nothing
    # the folder mirror for readers of a models directory (batch-predict, core.model_files.load_model)
    models = tmp_path / "artifacts" / "models"
    assert (models / LATEST).read_text().strip() == second.version
    assert (models / LAST_TRAINED).read_text().strip() == second.version
    assert load_model(models).version == second.version


def test_registering_the_same_model_again_keeps_its_promotion(warehouse: Warehouse, tmp_path: Path) -> None:
    store = ArtifactStore.at(tmp_path / "artifacts")
    first = register_model(warehouse, store, trained(), promote=True)
    again = register_model(warehouse, store, trained(), promote=False)  # same text, maybe the same second
    if again.version == first.version:
        assert registry(warehouse).height == 1
    assert first.version in _promoted(warehouse) and len(_promoted(warehouse)) == 1


def test_a_model_without_a_passing_gate_is_registered_rejected_and_never_promoted(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """No baseline to compare with (a fit without a validation split) or a lost gate: registered as
    `rejected` with the gate's reason, even over an accepted verdict; promote=True is refused before
    anything is written; only a person's `model promote` overrides it."""
    from dataclasses import replace

    from asin_platform.core.backtest import PromotionVerdict
    from asin_platform_tests.core.test_ranker import unvalidated_model

    store = ArtifactStore.at(tmp_path / "artifacts")
    first = register_model(warehouse, store, trained())
    assert first.promoted
    unvalidated = unvalidated_model()
    assert unvalidated.gate()["passed"] is None
    accepted = PromotionVerdict(True, "first promotion: no promoted model to compare with")
    for verdict in (None, accepted):
        saved = register_model(warehouse, store, unvalidated, verdict=verdict)
        assert not saved.promoted and saved.card["verdict"]["status"] == "rejected"
        row = registry(warehouse).filter(pl.col("version") == saved.version).row(0, named=True)
        assert (row["promoted"], row["verdict"], row["verdict_reason"], row["gate_passed"]) == (
            False, "rejected", "validation gate: no baseline to compare with", None,
        )  # fmt: skip
    assert _promoted(warehouse) == [first.version]

    samples = rank_samples().with_columns(cheat=pl.col("relevance").cast(pl.Float64))  # a perfect "baseline"
    loser = train_ranker(samples, params=FAST, num_boost_round=20, compare={"baseline": "cheat"})
    figures = replace(accepted, reason="folds say yes", candidate_ndcg=0.9, current_ndcg=0.1, current="v0")
    lost = register_model(warehouse, store, loser, verdict=figures)
    assert not lost.promoted
    assert lost.card["verdict"]["reason"].startswith("validation gate: ndcg@20 ")
    assert lost.card["verdict"]["candidate_ndcg_20"] == 0.9  # the folds' figures stay beside the refusal

    rows, files = registry(warehouse).height, sorted((tmp_path / "artifacts" / "models").iterdir())
    for model, reason in ((unvalidated, "no baseline to compare with"), (loser, "ndcg@20 ")):
        with pytest.raises(ValueError, match=f"may not be promoted: validation gate: {reason}"):
            register_model(warehouse, store, model, promote=True)
    assert (
        registry(warehouse).height == rows and sorted((tmp_path / "artifacts" / "models").iterdir()) == files
    )
    assert _promoted(warehouse) == [first.version]

    promote_model(warehouse, lost.version, store, reason="checked by hand")  # a person may
    assert _promoted(warehouse) == [lost.version]


def test_postgres_refuses_a_second_promoted_row(warehouse: Warehouse, backend: str, tmp_path: Path) -> None:
    if backend != "postgres":
        pytest.skip("DuckDB has one writer process at a time: the partial unique index is PostgreSQL's")
    store = ArtifactStore.at(tmp_path / "artifacts")
    a = register_model(warehouse, store, trained(), promote=True)
    other = train_ranker(
        rank_samples(), params=FAST, num_boost_round=20, compare={"baseline": "explosive_score"}
    )
    b = register_model(warehouse, store, other, promote=False)
    with pytest.raises(Exception, match="model_registry_one_promoted"), warehouse.transaction() as tx:
        tx.execute("UPDATE model_registry SET promoted = TRUE WHERE version = ?", [b.version])
    assert _promoted(warehouse) == [a.version]


def test_stores_default_to_the_local_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert artifacts_store(settings).root == (tmp_path / "artifacts").as_uri()
    assert exports_store(settings).root == (tmp_path / "exports").as_uri()
    remote = Settings(storage=StorageSettings(artifacts_url="s3://bucket/a/", exports_url="gs://b/e"))
    assert artifacts_store(remote).root == "s3://bucket/a" and exports_store(remote).root == "gs://b/e"
    store = exports_store(settings)
    frame = pl.DataFrame({"asin": ["B1", "B2"], "rank": [1, 2]})
    url = store.write_frame("US/x.csv", frame)
    assert read_frame(url).equals(frame) and str(store) == str(tmp_path / "exports")
    assert store.glob("*/*.csv") == [url] and list((tmp_path / "exports" / "US").iterdir()) == [
        tmp_path / "exports" / "US" / "x.csv"
    ]  # written beside and renamed: no partial file left


def test_batch_predict_takes_a_store_url_or_the_promoted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asin_platform.cli import main
    from asin_platform.storage.registry import load_url
    from asin_platform_tests.core.test_labels import sim_features

    monkeypatch.chdir(tmp_path)
    warehouse = Warehouse(url=str(tmp_path / "w.duckdb"))
    saved = register_model(warehouse, ArtifactStore.at(tmp_path / "store"), trained(), promote=True)
    assert load_url(saved.artifact_url).version == saved.version == load_url(saved.model_url).version
    sim_features().write_parquet(tmp_path / "f.parquet")
    monkeypatch.setenv("ASIN_PLATFORM_WAREHOUSE_URL", str(tmp_path / "w.duckdb"))
    outputs = []
    for spec in ("promoted", saved.artifact_url):
        out = tmp_path / f"p{len(outputs)}.parquet"
        assert main(["batch-predict", "--model", spec, "--features", "f.parquet", "--output", str(out)]) == 0
        assert f"(model {saved.version})" in capsys.readouterr().out
        outputs.append(pl.read_parquet(out))
    same = [o.drop("scored_at") for o in outputs]  # scored_at: when each ran
    assert same[0].equals(same[1]) and same[0].height == sim_features().height
    assert main(["batch-predict", "--model", "s3-less/nowhere", "--features", "f.parquet"]) == 2
    assert "no model at s3-less/nowhere" in capsys.readouterr().err
    # a store object cut short is checked before LightGBM reads it (it would read past the end)
    from asin_platform.core.model_files import ModelFileError
    from asin_platform.storage.store import read_bytes, write_bytes

    text = read_bytes(saved.model_url)
    write_bytes(saved.model_url, text[: text.index(b"Tree=1") + 40])
    with pytest.raises(ModelFileError, match=r"^a LightGBM model cut short \(no `end of trees` line"):
        load_url(saved.artifact_url)
    assert (
        main(["batch-predict", "--model", "promoted", "--features", "f.parquet", "--output", "x.parquet"])
        == 2
    )
    assert capsys.readouterr().err.startswith(
        "asin-platform: error: --model promoted: a LightGBM model cut short (no `end of trees` line"
    )
    assert not (tmp_path / "x.parquet").exists()
