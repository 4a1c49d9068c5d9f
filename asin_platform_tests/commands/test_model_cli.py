"""The seed's model scripts as `asin-platform` subcommands, end to end on small Parquet files:
build-labels -> train-rank -> eval-metrics -> batch-predict, and a resumable tune-rank."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from asin_platform.cli import main
from asin_platform.core.held_out import held_out_record
from asin_platform_tests.core.test_labels import sim_features, sim_mart

FAST = json.dumps({"num_threads": 1, "learning_rate": 0.1})


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # relative defaults (artifacts/, exports/) land in the tmp dir
    sim_mart().write_parquet(tmp_path / "mart.parquet")
    sim_features().write_parquet(tmp_path / "features.parquet")
    return tmp_path


def test_labels_train_eval_predict(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["build-labels", "--mart", "mart.parquet", "--features", "features.parquet",
              "--output-dir", "artifacts/samples", "--sample-every", "2"])
        == 0
    )  # fmt: skip
    samples = files / "artifacts" / "samples"
    assert {p.name for p in samples.iterdir()} >= {
        "train_samples_bin.parquet",
        "train_samples_rank.parquet",
        "train_samples_reg.parquet",
        "train_samples_summary.json",
    }
    out = capsys.readouterr().out
    assert "train" in out and "positives" in out

    assert (
        main(["train-rank", "--data", "artifacts/samples/train_samples_rank.parquet", "--output",
              "artifacts/lgb_rank.txt", "--rounds", "40", "--params", FAST, "--predictions", "artifacts/pred.csv"])
        == 0
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "| model |" in out and "| baseline |" in out and "gate ndcg@20" in out
    assert (files / "artifacts" / "lgb_rank.txt").exists()
    card = json.loads((files / "artifacts" / "lgb_rank.card.json").read_text())
    assert card["samples"].endswith("train_samples_rank.parquet")
    # its validation and test rows, which model_evaluation finds again (core.held_out)
    assert card["held_out"] == held_out_record(pl.read_parquet(samples / "train_samples_rank.parquet"))
    assert set(card["held_out"]["windows"]) == {"valid", "test"}
    # the settings' levers with the flags given over them, as the ranker_model asset trains
    assert card["levers"]["rounds"] == 40 and card["levers"]["hard_negative_fraction"] == 0.2
    assert card["levers"]["lightgbm"] == json.loads(FAST)
    versions = [p for p in (files / "artifacts" / "models").iterdir() if p.is_dir()]
    assert (
        len(versions) == 1 and (versions[0] / "model.txt").exists() and (versions[0] / "card.json").exists()
    )

    assert (
        main(["eval-metrics", "--predictions", "artifacts/pred.csv", "--k", "10", "20", "--split", "test"])
        == 0
    )
    out = capsys.readouterr().out
    assert "| ranker | NDCG@10 | P@10 | R@10 | NDCG@20 | P@20 | R@20 |" in out
    assert "| model |" in out and "| baseline |" in out and "queries (site x date)" in out

    day = sim_features()["date"].max()
    assert (
        main(["batch-predict", "--model", "artifacts/lgb_rank.txt", "--features", "features.parquet",
              "--date", str(day), "--output", "exports/pred_rank_daily.parquet", "--csv"])
        == 0
    )  # fmt: skip
    predictions = pl.read_parquet(files / "exports" / "pred_rank_daily.parquet")
    assert predictions.height == sim_features().filter(pl.col("date") == day).height
    assert {"model_score", "rank_in_site", "rank_in_category", "model_version"} <= set(predictions.columns)
    assert set(predictions["model_version"]) == {card["version"]}
    assert (files / "exports" / "pred_rank_daily.csv").exists()
    # the models directory works too (it follows `latest`)
    assert main(["batch-predict", "--model", "artifacts/models", "--features", "features.parquet",
                 "--output", "exports/all.parquet"]) == 0  # fmt: skip


def test_build_labels_flags_reach_the_samples(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each label flag given replaces its setting (checked against the setting's bounds first); an
    unset one keeps it: the summary records what the samples were built with."""
    argv = ["build-labels", "--mart", "mart.parquet", "--features", "features.parquet", "--sample-every", "3"]
    given = ["--observation", "14", "--horizon", "14", "--embargo", "21", "--sales-ratio", "2",
             "--split-fractions", "0.5", "0.25", "0.25"]  # fmt: skip
    assert main([*argv, *given, "--output-dir", "given"]) == 0
    summary = json.loads((files / "given" / "train_samples_summary.json").read_text())
    assert summary["config"] == {
        "observation": 14, "horizon": 14, "embargo": 21, "sales_ratio": 2.0,
        "pctl_gain": 0.2,  # --pctl-gain unset: thresholds.label_bsr_pctl_gain
        "split_fractions": [0.5, 0.25, 0.25], "sample_every": 3,
    }  # fmt: skip
    assert main([*argv, "--output-dir", "defaults"]) == 0  # the settings' windows and thresholds
    summary = json.loads((files / "defaults" / "train_samples_summary.json").read_text())
    assert summary["config"] == {
        "observation": 28, "horizon": 30, "embargo": 30, "sales_ratio": 1.6, "pctl_gain": 0.2,
        "split_fractions": [0.6, 0.2, 0.2], "sample_every": 3,
    }  # fmt: skip


def test_eval_metrics_on_a_hand_written_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text(
        "site,date,asin,label,model_score,explosive_score\n"
        "US,2025-01-01,a,1,0.9,0.1\n"
        "US,2025-01-01,b,0,0.5,0.9\n"
        "US,2025-01-02,a,0,0.9,0.1\n"  # no positive: excluded
    )
    assert (
        main(["eval-metrics", "--predictions", str(path), "--k", "1", "--output", str(tmp_path / "t.md")])
        == 0
    )
    out = capsys.readouterr().out
    assert "| model | 1.000 | 1.000 | 1.000 |" in out
    assert "| baseline | 0.000 | 0.000 | 0.000 |" in out
    assert "1 of 2 queries" in out
    assert (tmp_path / "t.md").read_text().startswith("| ranker |")
    assert main(["eval-metrics", "--predictions", str(path), "--label", "nope"]) == 2


def test_tune_rank_resumes_its_study(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["build-labels", "--mart", "mart.parquet", "--features", "features.parquet", "--sample-every", "3"])
    args = ["tune-rank", "--data", "artifacts/samples/train_samples_rank.parquet", "--rounds", "15",
            "--early-stopping", "5", "--params", FAST, "--study-path", "artifacts/tuning/s.db"]  # fmt: skip
    assert main([*args, "--trials", "2"]) == 0
    assert "2 completed trials (2 in this run)" in capsys.readouterr().out
    assert main([*args, "--trials", "3", "--output", "artifacts/tuned.txt"]) == 0
    out = capsys.readouterr().out
    assert "3 completed trials (1 in this run)" in out and "best params" in out
    card = json.loads((files / "artifacts" / "tuned.card.json").read_text())
    assert card["tuning"]["trials"] == 3
    assert (files / "artifacts" / "tuning" / "s.best_params.json").exists()


def test_train_rank_registers_its_model_and_model_commands_show_verdicts(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asin_platform.resources.warehouse import Warehouse

    main(["build-labels", "--mart", "mart.parquet", "--features", "features.parquet", "--sample-every", "3"])
    train = ["train-rank", "--data", "artifacts/samples/train_samples_rank.parquet", "--rounds", "20",
             "--params", FAST]  # fmt: skip
    assert main(train) == 0
    assert (
        "accepted: first promotion: no promoted model to compare with; promoted: True"
        in capsys.readouterr().out
    )
    warehouse = Warehouse(url=str(files / "data" / "warehouse.duckdb"))
    [first] = warehouse.read("model_registry").to_dicts()
    v1 = first["version"]
    assert (first["promoted"], first["verdict"]) == (True, "accepted")
    assert first["artifact_url"] == (files / "artifacts" / "models" / v1).as_uri()
    assert (files / "artifacts" / "models" / "latest").read_text().strip() == v1

    # a second model, with no mart in this warehouse to judge it on: refused, the first stays promoted
    # (another learning rate: another model text, so another version even within the same second)
    slower = json.dumps({"num_threads": 1, "learning_rate": 0.05})
    assert main([*train, "--params", slower, "--output", "artifacts/second.txt"]) == 0
    reason = "not compared: mart_timeseries_daily is empty"
    assert f"rejected: {reason}; promoted: False" in capsys.readouterr().out
    second = warehouse.read("model_registry").filter(pl.col("version") != v1).row(0, named=True)
    v2 = second["version"]
    assert (second["promoted"], second["verdict"], second["verdict_reason"]) == (False, "rejected", reason)
    assert second["compared_version"] == v1

    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == [v2, v1]  # newest first
    assert out.splitlines()[-1] == f"promoted (what predictions use): {v1}"
    assert main(["model", "list", "--rejected"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:-1]
    assert [line.split()[0] for line in listed] == [v2] and f"rejected  {reason}" in listed[0]
    assert main(["model", "show", v2]) == 0
    out = capsys.readouterr().out
    assert "promoted: False; verdict: rejected" in out and f"reason: {reason}" in out

    assert main(["model", "promote", v2, "--reason", "checked by hand"]) == 0
    rows = {r["version"]: r for r in warehouse.read("model_registry").to_dicts()}
    assert (rows[v1]["promoted"], rows[v2]["promoted"], rows[v2]["verdict"]) == (False, True, "accepted")
    assert rows[v2]["verdict_reason"] == "promoted by hand (asin-platform model promote): checked by hand"
    assert (files / "artifacts" / "models" / "latest").read_text().strip() == v2
    assert main(["model", "show", "nope"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err


def test_train_rank_reports_a_model_with_no_baseline_as_na(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit whose validation has no baseline to compare with (gate: baseline None, passed None) is
    registered as rejected; train-rank's printout and `model show` then say n/a for the missing figure
    instead of failing on formatting it after the registration."""
    import asin_platform.core.ranker_levers as ranker_levers

    real_build = ranker_levers.build_ranker

    def without_baseline(samples: pl.DataFrame, params, **kwargs):  # noqa: ANN001, ANN202
        kwargs.pop("compare", None)  # validation metrics of the model alone
        return real_build(samples, params, **kwargs)

    monkeypatch.setattr(ranker_levers, "build_ranker", without_baseline)
    main(["build-labels", "--mart", "mart.parquet", "--features", "features.parquet", "--sample-every", "3"])
    capsys.readouterr()
    train = ["train-rank", "--data", "artifacts/samples/train_samples_rank.parquet", "--rounds", "20",
             "--params", FAST]  # fmt: skip
    assert main(train) == 0
    out = capsys.readouterr().out
    card = json.loads((files / "artifacts" / "lgb_rank.card.json").read_text())
    model = card["gate"]["model"]
    assert card["gate"]["baseline"] is None and isinstance(model, float)
    assert f"gate ndcg@20 model {model:.4f} vs baseline n/a: no baseline to compare with" in out
    assert "rejected: validation gate: no baseline to compare with; promoted: False" in out
    assert main(["model", "show", card["version"]]) == 0
    assert f"validation NDCG@20: model {model:.4f} vs baseline n/a" in capsys.readouterr().out
