"""Every user mistake: exit code 2, exactly one line on stderr (what is wrong, how to fix), no
traceback, and nothing touched (the warehouse file byte for byte, no run recorded)."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from asin_platform.cli import main
from asin_platform.commands import _runtime
from asin_platform.settings import get_settings

# Long enough that scrubbing it from stored bodies cannot touch the data (a 1-letter token would).
TOKEN = "cli-test-token-5f1c2a"

PREFIX = "asin-platform: error: "


@dataclass
class Project:
    root: Path
    warehouse: Path
    home: Path

    def fingerprint(self) -> tuple[str, int]:
        """The warehouse file's bytes and the number of runs in the instance."""
        import dagster as dg

        digest = hashlib.sha256(self.warehouse.read_bytes()).hexdigest()
        if not (self.home / "dagster.yaml").exists():
            return digest, 0
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            return digest, instance.get_runs_count()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project directory with a set-up DuckDB warehouse and its own Dagster home."""
    from asin_platform.resources.warehouse import Warehouse

    monkeypatch.chdir(tmp_path)
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    Warehouse(url=str(warehouse)).setup()
    monkeypatch.delenv("ASIN_PLATFORM_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("ASIN_PLATFORM_DEBUG", raising=False)
    monkeypatch.setenv("ASIN_PLATFORM__WAREHOUSE_URL", str(warehouse))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    yield Project(tmp_path, warehouse, tmp_path / "home")
    get_settings.cache_clear()  # settings read under this test's environment must not leak


def training_outputs(project: Project) -> tuple[Path, Path]:
    """Where train-rank and tune-rank write when no flag says otherwise, as the commands derive it
    from the settings (commands.model._models_dir and _study_storage, not a copy of their paths): the
    models directory and the default Optuna study's directory (on this DuckDB warehouse, SQLite
    beside the models: <artifacts_dir>/tuning)."""
    from asin_platform.commands import model

    unset = argparse.Namespace(models_dir=None, storage=None, study_path=None)
    settings = get_settings()
    models = project.root / model._models_dir(unset, settings)
    study = project.root / model._study_storage(unset, settings)
    return models, study.parent


def mistake(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI, assert the one-line contract, return the message."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    return lines[0][len(PREFIX) :]


def test_unknown_site_lists_the_valid_ones(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    before = project.fingerprint()
    message = mistake(
        capsys, "ingest-raw", "--sites", "US", "XX", "--start", "2025-03-01", "--end", "2025-03-02"
    )
    assert message.startswith("unknown site(s) XX:") and "US, UK, DE, JP" in message
    assert project.fingerprint() == before


def test_dates_outside_the_partitions_name_the_range(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    before = project.fingerprint()
    message = mistake(capsys, "etl-standardize", "--start", "2024-12-30", "--end", "2025-01-02")
    assert "outside the partitions 2025-01-01.." in message
    assert project.fingerprint() == before


def test_start_after_end_is_rejected_before_anything_runs(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    before = project.fingerprint()
    for argv in (
        ["ingest-raw"],
        ["features-build"],
        ["features-build", "--mart", "mart.parquet", "--output", "x.parquet"],  # file mode
        ["export-table", "--table", "mart_timeseries_daily", "--output", "x.parquet"],
    ):
        message = mistake(capsys, *argv, "--start", "2025-03-10", "--end", "2025-03-01")
        assert message.startswith("--start 2025-03-10 is after --end 2025-03-01")
    assert project.fingerprint() == before
    assert not (project.root / "x.parquet").exists()


def test_a_training_lever_out_of_range_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    before = project.fingerprint()
    samples = project.root / "samples.parquet"  # absent: the lever is checked first
    for command in (["train-rank"], ["tune-rank", "--trials", "2"]):
        base = [*command, "--data", str(samples), "--output", "out"]
        message = mistake(capsys, *base, "--refit-factor", "-1")
        assert message == "--refit-factor -1.0: input should be greater than or equal to 0"
        message = mistake(capsys, *base, "--negative-fraction", "1.5")
        assert message == "--negative-fraction 1.5: input should be less than or equal to 1"
        message = mistake(capsys, *base, "--rounds", "0")
        assert message == "--rounds 0: input should be greater than or equal to 1"
    assert project.fingerprint() == before
    assert not (project.root / "out").exists()
    assert not any(path.exists() for path in training_outputs(project))  # no model, no study


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        # --rounds against scale.ranker.rounds' bounds, as train-rank's flag is
        ("--rounds", "0", "--rounds 0: input should be greater than or equal to 1"),
        # the window against settings.BacktestWindow's (the asset's config has the same)
        ("--train-days", "0", "--train-days 0: input should be greater than or equal to 1"),
        ("--sample-every", "-2", "--sample-every -2: input should be greater than or equal to 1"),
        # the stride's bounds are the training samples' (levers.SampleEvery)
        ("--sample-every", "400", "--sample-every 400: input should be less than or equal to 365"),
        ("--every", "0d", "--every 0: input should be greater than or equal to 1"),
        # upper bounds: 10**9 training dates overflowed the date arithmetic of backtest_frames
        ("--train-days", "1000000000", "--train-days 1000000000: input should be less than or equal to 3650"),
        ("--every", "53w", "--every 371: input should be less than or equal to 365"),
    ],
)
def test_backtest_flag_out_of_range_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    """One line naming the flag, before the warehouse (or a --features / --mart file) is read."""
    before = project.fingerprint()
    base = ["backtest", "--start", "2025-04-01", "--end", "2025-05-01", "--output", "bt"]
    for argv in (base, [*base, "--features", "absent.parquet", "--mart", "absent.parquet"]):
        assert mistake(capsys, *argv, flag, value) == expected
    assert project.fingerprint() == before
    assert not (project.root / "bt").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # backtest read both files with pl.read_parquet: a missing one was a FileNotFoundError traceback
        (
            ["backtest", "--start", "2025-04-01", "--end", "2025-05-01", "--output", "bt"],
            "--features absent.parquet does not exist",
        ),
        (["build-labels", "--output-dir", "bt"], "--features absent.parquet does not exist"),
        (["build-labels", "--output-dir", "bt", "--features", "."], "--features . is a directory"),
        (["eval-metrics", "--predictions", "absent.csv"], "--predictions absent.csv does not exist"),
    ],
)
def test_a_missing_input_file_is_one_line_naming_its_flag(
    project: Project, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    before = project.fingerprint()
    files = [] if "eval-metrics" in argv else ["--features", "absent.parquet", "--mart", "absent.parquet"]
    # a later --features wins over the default pair's, as argparse keeps the last value
    message = mistake(capsys, *argv[:1], *files, *argv[1:])
    assert message == f"{expected}: give the path of an existing CSV or Parquet file"
    assert project.fingerprint() == before
    assert not (project.root / "bt").exists()


def test_backtest_with_more_cut_offs_than_the_folds_bound_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """--start, --end and --every make the cut-offs, each a model to train: more than the asset's
    folds may be (levers.BacktestWindow, 100) is one line naming the three flags, before any read."""
    before = project.fingerprint()
    base = ["backtest", "--start", "2025-01-01", "--every", "1d", "--output", "bt"]
    for files in ([], ["--features", "absent.parquet", "--mart", "absent.parquet"]):
        message = mistake(capsys, *base, "--end", "2025-04-12", *files)  # 101 days: 101 cut-offs
        assert message == (
            "--start 2025-01-01 --end 2025-04-12 --every 1 make 101 cut-offs, each a model to train "
            "(folds: input should be less than or equal to 100): give a longer --every or a shorter range"
        )
    # 100 cut-offs pass the check: the warehouse is read next (empty here, so nothing to test on)
    message = mistake(capsys, *base, "--end", "2025-04-11")
    assert message.startswith("no features or mart rows around 2025-01-01..2025-04-11:")
    assert project.fingerprint() == before
    assert not (project.root / "bt").exists()


DATES = "1970-01-01..2999-12-31: give a date in that range"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # the lookback (train_days + H + 2 W) before --start, H after --end: OverflowError tracebacks
        (["backtest", "--start", "0001-01-05", "--end", "2025-05-01"], f"--start 0001-01-05 is outside {DATES}"),
        (["backtest", "--start", "9999-11-01", "--end", "9999-12-31"], f"--start 9999-11-01 is outside {DATES}"),
        (["backtest", "--start", "2999-12-01", "--end", "3000-01-01"], f"--end 3000-01-01 is outside {DATES}"),
        (["checks", "--start", "0001-01-01", "--end", "2025-05-01"], f"--start 0001-01-01 is outside {DATES}"),
        (["export-table", "--table", "mart_timeseries_daily", "--output", "bt/x.parquet", "--start", "0001-01-01"],
         f"--start 0001-01-01 is outside {DATES}"),
        (["features-build", "--mart", "absent.parquet", "--output", "bt/x.parquet", "--end", "9999-12-31"],
         f"--end 9999-12-31 is outside {DATES}"),
        # a given --end is named, not the --start it defaults
        (["ingest-raw", "--end", "0001-01-01"], f"--end 0001-01-01 is outside {DATES}"),
        # the demo reaches back --days from --end: OverflowError tracebacks
        (["demo", "--end", "0001-01-05", "--days", "3"], f"--end 0001-01-05 is outside {DATES}"),
        (["demo", "--end", "2025-03-01", "--days", "1000000000"],
         "--days 1000000000: goes back before 1970-01-01 from 2025-03-01; give at most 20,149"),
    ],
)  # fmt: skip
def test_a_date_outside_the_date_range_is_one_line_naming_its_flag(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], expected: str,
) -> None:  # fmt: skip
    """Every date flag is within levers.FIRST_DAY..LAST_DAY (checked in commands._args, before the
    windows reach back and forward from it), so no date arithmetic overflows."""
    from asin_platform.commands import demo

    monkeypatch.setattr(demo, "prepare_demo", lambda args: None)  # it sets the demo's market variables
    before = project.fingerprint()
    assert mistake(capsys, *argv) == expected
    if argv[0] == "backtest":  # file mode too, checked before the files are
        assert mistake(capsys, *argv, "--features", "absent.parquet", "--mart", "absent.parquet") == expected
    assert project.fingerprint() == before
    assert not (project.root / "bt").exists() and not (project.root / "artifacts").exists()


def test_backtest_takes_the_first_and_last_day_of_the_date_range(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bounds themselves pass, and the windows around them stay inside Python's dates: the
    warehouse is read next (empty here)."""
    for start, end in (("1970-01-01", "1970-02-01"), ("2999-11-30", "2999-12-31")):
        message = mistake(capsys, "backtest", "--start", start, "--end", end, "--output", "bt")
        assert message.startswith(f"no features or mart rows around {start}..{end}:")


def tiny_model_and_features(root: Path) -> tuple[Path, Path]:
    """A 3-tree LightGBM model of one feature ``x`` and a features file of three rows on
    2025-01-01 holding it: enough for batch-predict to score (a second of CPU at most)."""
    from datetime import date

    import lightgbm as lgb
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    params = {"objective": "binary", "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, (x[:, 0] > 0).astype(int), feature_name=["x"]), 3)
    model = root / "model.txt"
    booster.save_model(str(model))
    features = root / "features.parquet"
    pl.DataFrame(
        {"date": [date(2025, 1, 1)] * 3, "site": ["US"] * 3, "asin": ["A", "B", "C"],
         "category_id": ["c"] * 3, "x": [0.1, 0.2, -1.0]}
    ).write_parquet(features)  # fmt: skip
    return model, features


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        # polars read it as a date later: 0001-01-01 scored nothing and wrote an empty file, exit 0
        ("0001-01-01", f"--date 0001-01-01 is outside {DATES}"),
        ("3000-01-01", f"--date 3000-01-01 is outside {DATES}"),
    ],
)
def test_batch_predict_date_outside_the_date_range_is_one_line_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str], date: str, expected: str
) -> None:
    """batch-predict --date is a date flag like the others (commands._args.parse_date and
    check_day), checked before the model or the features are read."""
    model, features = tiny_model_and_features(project.root)
    argv = ["batch-predict", "--model", str(model), "--features", str(features), "--output", "bt/p.parquet"]
    assert mistake(capsys, *argv, "--date", date) == expected
    # before the model and the features: absent ones are not what is reported
    assert (
        mistake(capsys, *argv[:1], "--model", "absent.txt", "--features", "absent.parquet", "--date", date)
        == expected
    )
    assert not (project.root / "bt").exists()
    # the bounds themselves are taken as dates (the file holds no row of them: that is what is said)
    for day in ("1970-01-01", "2999-12-31"):
        assert mistake(capsys, *argv, "--date", day).startswith(f"--date {day}: --features ")
    assert main([*argv, "--date", "2025-01-01"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("3 predictions (model model) -> bt/p.parquet")


def test_batch_predict_with_no_feature_row_to_score_is_one_line_and_writes_nothing(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --date the features hold no row of is no prediction: one line naming the day and the first
    and last dates the file holds, exit 2, no file written (nor the CSV beside it). A features file
    without rows is the same, with or without --date. Was: an empty predictions file and
    "0 predictions", exit 0."""
    import polars as pl

    model, features = tiny_model_and_features(project.root)
    rows = pl.read_parquet(features)
    second = rows.with_columns(date=pl.col("date") + pl.duration(days=2))
    pl.concat([rows, second]).write_parquet(features)  # 2025-01-01 and 2025-01-03
    argv = ["batch-predict", "--model", str(model), "--features", str(features), "--output", "bt/p.parquet",
            "--csv"]  # fmt: skip
    assert mistake(capsys, *argv, "--date", "2025-01-02") == (
        f"--date 2025-01-02: --features {features} holds no rows of that day (its rows run from "
        "2025-01-01 to 2025-01-03); give a --date it holds"
    )
    assert not (project.root / "bt").exists()
    rows.head(0).write_parquet(project.root / "empty.parquet")
    for date in ([], ["--date", "2025-01-01"]):
        message = mistake(capsys, *argv[:3], "--features", "empty.parquet", *argv[5:], *date)
        assert message == (
            "--features empty.parquet holds no rows: nothing to predict; give a features file with rows "
            "(features-build writes one)"
        )
    assert not (project.root / "bt").exists()
    assert main([*argv, "--date", "2025-01-03"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("3 predictions (model model) -> bt/p.parquet")
    assert (project.root / "bt" / "p.csv").exists()


MODEL_ADVICE = (
    "give a model train-rank or ranker_model saved (its model file, version directory or models "
    "directory), a store URL, or promoted / newest"
)


def _not_a_model(model: Path, kind: str) -> bytes:
    """``model``'s bytes made into what batch-predict may be handed by mistake."""
    text = model.read_bytes()
    tree_1 = text.index(b"Tree=1")
    return {
        "text": b"hello, not a model\n",
        "empty": b"",
        "parquet": (model.parent / "features.parquet").read_bytes(),
        "no classes": b"tree\nversion=v4\nend of trees\n",  # LightGBM's own refusal
        "cut in a tree": text[: tree_1 + 40],
        "cut in the parameters": text[: text.index(b"[objective") + 4],
        "a line gone": text[:tree_1] + text[text.index(b"\n", tree_1 + 8) + 1 :],  # tree_sizes off
    }[kind]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("text", "not a LightGBM model (its first line is not LightGBM's `tree`)"),
        ("empty", "an empty file"),
        ("parquet", "not a LightGBM model (its first line is not LightGBM's `tree`)"),
        (
            "no classes",
            "LightGBM cannot load it (LightGBMError: Model file doesn't specify the number of classes)",
        ),
        # LightGBM read past the end of these: the process aborted or segfaulted (exit -6 / -11)
        ("cut in a tree", "a LightGBM model cut short (no `end of trees` line: an incomplete copy)"),
        (
            "cut in the parameters",
            "a LightGBM model cut short (no `end of parameters` line: an incomplete copy)",
        ),
        ("a line gone", "a damaged LightGBM model (a tree is not where its `tree_sizes` line puts it)"),
    ],
)
def test_batch_predict_model_that_is_not_a_model_is_one_line_naming_it(
    project: Project, kind: str, expected: str
) -> None:
    """A --model file LightGBM cannot load is one line naming --model and what is wrong with it, exit
    2, no predictions written; checked before LightGBM reads it (core.model_files.model_text_problem),
    as LightGBM reads past the end of a truncated one. Run as the console script: a crash would fail
    this test, not the test session, and stderr is all of the process's. Was: a LightGBMError
    traceback (text, empty, parquet) or a crash (a truncated model)."""
    model, _ = tiny_model_and_features(project.root)
    (project.root / "bad.txt").write_bytes(_not_a_model(model, kind))
    result = console(project, "batch-predict", "--model", "bad.txt", "--features", "features.parquet",
                     "--output", "bt/p.parquet")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"{PREFIX}--model bad.txt: {expected}; {MODEL_ADVICE}"]
    assert not (project.root / "bt").exists()


def test_batch_predict_model_whose_card_is_not_json_is_one_line_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """The card beside the model is read with it: not JSON is the same kind of line. Was: a
    JSONDecodeError traceback."""
    model, features = tiny_model_and_features(project.root)
    (project.root / "card.json").write_text("{bad")  # a version directory's model.txt has card.json
    message = mistake(capsys, "batch-predict", "--model", str(model), "--features", str(features),
                      "--output", "bt/p.parquet")  # fmt: skip
    assert message == (
        f"--model {model}: its card {project.root / 'card.json'} is not JSON (Expecting property name "
        f"enclosed in double quotes: line 1 column 2 (char 1)); {MODEL_ADVICE}"
    )
    assert not (project.root / "bt").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["batch-predict", "--model", "model.txt", "--features", "features.parquet", "--date"],
        ["backtest", "--end", "2025-05-01", "--start"],
        ["export-table", "--table", "mart_timeseries_daily", "--output", "bt/x.parquet", "--end"],
    ],
)
def test_a_date_flag_that_is_not_a_date_is_argparse_s_line_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A date flag's form is argparse's to check (``type=parse_date``): the usage, then one error line
    naming the flag and the text, exit 2, before anything is read. batch-predict's --date was read
    by polars after the model and the features: `garbage` was a polars traceback."""
    tiny_model_and_features(project.root)
    with pytest.raises(SystemExit) as excinfo:
        main([*argv, "garbage"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    flag = argv[-1]
    assert err.splitlines()[-1] == (
        f"asin-platform {argv[0]}: error: argument {flag}: not a date (YYYY-MM-DD): 'garbage'"
    )
    assert not (project.root / "bt").exists()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--trials", "0", "--trials 0: input should be greater than or equal to 1"),
        ("--trials", "-5", "--trials -5: input should be greater than or equal to 1"),
        ("--trials", "1000000", "--trials 1000000: input should be less than or equal to 10000"),
        ("--timeout", "0", "--timeout 0.0: input should be greater than 0"),
        ("--timeout", "-30", "--timeout -30.0: input should be greater than 0"),
        ("--timeout", "inf", "--timeout inf: input should be a finite number"),
        ("--timeout", "nan", "--timeout nan: input should be a finite number"),
        ("--timeout", "1e9", "--timeout 1000000000.0: input should be less than or equal to 604800"),
    ],
)
def test_tune_rank_trials_or_timeout_out_of_range_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    """--trials and --timeout are checked against levers.TuningRun's bounds before the samples are
    read or the study is created."""
    before = project.fingerprint()
    samples = project.root / "samples.parquet"  # absent: the flags are checked first
    trials = [] if flag == "--trials" else ["--trials", "2"]
    assert mistake(capsys, "tune-rank", "--data", str(samples), *trials, flag, value) == expected
    assert project.fingerprint() == before
    assert not any(path.exists() for path in training_outputs(project))  # no model, no study


# a quick tune-rank of one trial; with REFUSED as --params every trial fails (an objective LightGBM refuses)
TUNE_FAST = ["tune-rank", "--data", "samples.parquet", "--trials", "1", "--rounds", "15",
             "--early-stopping", "5"]  # fmt: skip
REFUSED = '{"objective": "nope", "num_threads": 1}'


def test_tune_rank_whose_every_trial_fails_is_one_line_with_the_first_reason(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """LightGBM refuses the params in every trial: the study ends with no completed trial
    (core.tuning.NoCompletedTrialError) and tune-rank says so in one line, exit 2, with the failed
    trials (2 x the missing one are attempted), the first one's reason and what to fix. Was: a
    RuntimeError traceback after Optuna's warning and traceback of each trial."""
    from asin_platform_tests.core.test_ranker import rank_samples

    rank_samples().write_parquet(project.root / "samples.parquet")
    assert mistake(capsys, *TUNE_FAST, "--params", REFUSED, "--output", "bt/model.txt") == (
        "study 'lgb_rank' has no completed trial: all 2 trials failed (the first: LightGBMError: Unknown "
        "objective type name: nope); fix what LightGBM refused (--params, the training flags or the "
        "samples in --data) and run tune-rank again"
    )
    models, study = training_outputs(project)
    assert not models.exists() and not (project.root / "bt").exists()  # nothing trained
    assert (study / "lgb_rank.db").exists() and not (study / "lgb_rank.best_params.json").exists()


def test_tune_rank_prints_a_failed_trial_s_reason(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each trial's line gives a failed trial's reason; the failed trials stay in the study,
    uncounted, and a later run with params LightGBM takes completes it."""
    from asin_platform_tests.core.test_ranker import rank_samples

    rank_samples().write_parquet(project.root / "samples.parquet")
    assert main([*TUNE_FAST, "--params", REFUSED]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(", {")[0] for line in lines] == [
        "  trial 0: fail (LightGBMError: Unknown objective type name: nope)",
        "  trial 1: fail (LightGBMError: Unknown objective type name: nope)",
    ]
    assert main([*TUNE_FAST, "--params", '{"num_threads": 1}']) == 0
    out = capsys.readouterr().out
    assert out.startswith("  trial 2: complete, valid NDCG@20 ")
    assert "1 completed trials (1 in this run)" in out


# train-rank's refusal: LightGBM's first line, then what to fix in the CLI's terms
TRAIN_FIX = "fix what LightGBM refused (--params, the training flags or the samples in --data) and run"


@pytest.mark.parametrize(
    ("params", "refusal"),
    [
        ('{"objective": "nope"}', "Unknown objective type name: nope"),
        # a failed check: its first line, without where in LightGBM's C++ source it failed
        ('{"num_leaves": -1}', "Check failed: (num_leaves) > (1)"),
        ('{"max_bin": "x"}', 'Parameter max_bin should be of type int, got "x"'),
        # LightGBM's Python layer refuses it (a ValueError of its early stopping): the same one line
        (
            '{"metric": "nope"}',
            "For early stopping, at least one dataset and eval metric is required for evaluation",
        ),
    ],
)
def test_train_rank_params_lightgbm_refuses_are_one_line(
    project: Project, capsys: pytest.CaptureFixture[str], params: str, refusal: str
) -> None:
    """Params LightGBM refuses (it says so only when training starts) are one line naming --params
    and the flags, with LightGBM's message (core.ranker.lightgbm_refusal, as tune-rank's failed
    trials give it), exit 2; nothing is trained, registered or copied. Was: a LightGBMError
    traceback, exit 1."""
    from asin_platform_tests.core.test_ranker import rank_samples

    rank_samples().write_parquet(project.root / "samples.parquet")
    before = project.fingerprint()
    argv = ["train-rank", "--data", "samples.parquet", "--rounds", "15", "--early-stopping", "5",
            "--output", "bt/model.txt"]  # fmt: skip
    params = params[:-1] + ', "num_threads": 1}'
    assert mistake(capsys, *argv, "--params", params) == (
        f"LightGBM refused to train the ranker (LightGBMError: {refusal}); {TRAIN_FIX} train-rank again"
    )
    assert project.fingerprint() == before  # nothing registered
    assert not (project.root / "bt").exists()
    assert not any(path.exists() for path in training_outputs(project))  # no model, no study


def test_params_the_ranker_refuses_are_one_line_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncation level below the largest k the ranker reports (core.ranker.merged_params) is
    refused before the samples are read, by train-rank and tune-rank alike. Was: a ValueError
    traceback once training started (tune-rank: from its first trial)."""
    before = project.fingerprint()
    samples = project.root / "samples.parquet"  # absent: --params is checked first
    for command in (["train-rank"], ["tune-rank", "--trials", "2"]):
        argv = [*command, "--data", str(samples), "--output", "out"]
        message = mistake(capsys, *argv, "--params", '{"lambdarank_truncation_level": 10}')
        assert message == "--params: lambdarank_truncation_level must be >= 50 (the largest k)"
    assert project.fingerprint() == before
    assert not (project.root / "out").exists()
    assert not any(path.exists() for path in training_outputs(project))


def test_backtest_params_lightgbm_refuses_are_one_line(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """backtest trains a ranker per fold with --params: LightGBM refusing them is the same one line,
    exit 2, and nothing is written. Was: a LightGBMError traceback."""
    from asin_platform_tests.core.test_labels import sim_features, sim_mart

    for name, value in {"HORIZON": "14", "EMBARGO": "14", "OBSERVATION": "14"}.items():
        monkeypatch.setenv(f"ASIN_PLATFORM__WINDOWS__{name}", value)
    monkeypatch.setenv("ASIN_PLATFORM__SITES", "US,DE")
    sim_mart().write_parquet(project.root / "mart.parquet")
    sim_features().write_parquet(project.root / "features.parquet")
    argv = ["backtest", "--start", "2025-04-29", "--end", "2025-05-27", "--every", "2w", "--no-oracle",
            "--features", "features.parquet", "--mart", "mart.parquet", "--rounds", "30", "--output", "bt",
            "--params", '{"num_threads": 1, "objective": "nope"}']  # fmt: skip
    assert mistake(capsys, *argv) == (
        "backtest 2025-04-29..2025-05-27: LightGBM refused to train a fold's ranker (LightGBMError: "
        "Unknown objective type name: nope); fix what LightGBM refused (--params, --rounds or "
        "scale.ranker in the settings) and run backtest again"
    )
    assert not (project.root / "bt").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "--sample-every 0: input should be greater than or equal to 1"),
        ("-3", "--sample-every -3: input should be greater than or equal to 1"),
        ("100000", "--sample-every 100000: input should be less than or equal to 365"),
    ],
)
def test_build_labels_sample_every_out_of_range_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    """--sample-every is checked against levers.SamplesWindow's bounds (the train_samples config's)
    before the mart or the features file is read (both absent here) and nothing is written."""
    argv = ["build-labels", "--mart", "absent.parquet", "--features", "absent.parquet", "--output-dir", "s"]
    assert mistake(capsys, *argv, "--sample-every", value) == expected
    assert not (project.root / "s").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # the windows against settings.Windows' bounds (an unset flag keeps the setting)
        (["--observation", "0"], "--observation 0: input should be greater than or equal to 1"),
        (["--observation", "400"], "--observation 400: input should be less than or equal to 365"),
        (["--horizon", "-1"], "--horizon -1: input should be greater than or equal to 1"),
        # 10**9 days overflowed the date arithmetic of build_samples (OverflowError)
        (["--horizon", "1000000000"], "--horizon 1000000000: input should be less than or equal to 365"),
        (["--embargo", "-1"], "--embargo -1: input should be greater than or equal to 0"),
        (
            ["--embargo", "10"],
            "--embargo 10: input should be at least the horizon (30 days), so no training label reaches a "
            "later split",
        ),
        (
            ["--horizon", "40"],
            "--embargo 30 (windows.embargo; no --embargo given): input should be at least the horizon "
            "(40 days), so no training label reaches a later split",
        ),
        # the thresholds against settings.Thresholds' label_sales_ratio / label_bsr_pctl_gain
        (["--sales-ratio", "1"], "--sales-ratio 1.0: input should be greater than 1"),
        (["--sales-ratio", "inf"], "--sales-ratio inf: input should be a finite number"),
        # r**2 of 1e300 overflowed (OverflowError) in compute_targets
        (["--sales-ratio", "1e300"], "--sales-ratio 1e+300: input should be less than or equal to 100"),
        (["--pctl-gain", "-0.1"], "--pctl-gain -0.1: input should be greater than or equal to 0"),
        (["--pctl-gain", "nan"], "--pctl-gain nan: input should be a finite number"),
        # the shares against levers.SamplesWindow's split_fractions
        (
            ["--split-fractions", "0.6", "0", "0.2"],
            "--split-fractions 0.6 0.0 0.2: input should be greater than 0 (item 2)",
        ),
        (
            ["--split-fractions", "0.6", "0.2", "nan"],
            "--split-fractions 0.6 0.2 nan: input should be a finite number (item 3)",
        ),
        (
            ["--split-fractions", "3", "1", "1"],
            "--split-fractions 3.0 1.0 1.0: input should be less than or equal to 1 (item 1)",
        ),
    ],
)
def test_build_labels_label_flag_out_of_range_is_rejected_before_anything_is_read(
    project: Project, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    """The windows, thresholds and shares are checked against the bounds of what they override
    (settings.Windows, settings.Thresholds, levers.SamplesWindow: the bounds core.labels.LabelConfig
    is checked against too) before the mart or the features file is read (both absent here); nothing
    is written. 0 is a mistake, not "unset": --observation 0 used to fall back to the setting."""
    argv = ["build-labels", "--mart", "absent.parquet", "--features", "absent.parquet", "--output-dir", "s"]
    assert mistake(capsys, *argv, *flags) == expected
    assert not (project.root / "s").exists()


def test_bad_params_are_one_line_in_every_command_that_takes_them(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """backtest, train-rank and tune-rank parse --params the same way (commands._args.parse_params,
    the JSON read by levers.json_object as the assets' params_json is): bad JSON, a JSON array, a
    file holding no object or an unreadable file is one line, before any data or study is touched.
    A long inline object is JSON, never looked up as a file (its name would be too long for stat)."""
    before = project.fingerprint()
    samples = project.root / "samples.parquet"  # absent: --params is checked first
    backtest = ["backtest", "--start", "2025-04-01", "--end", "2025-05-01", "--output", "bt"]
    commands = (
        backtest,
        [*backtest, "--features", "absent.parquet", "--mart", "absent.parquet"],  # file mode
        ["train-rank", "--data", str(samples), "--output", "out"],
        ["tune-rank", "--trials", "2", "--data", str(samples), "--output", "out"],
    )
    (project.root / "params_dir").mkdir()
    (project.root / "params.json").write_text("[1, 2]\n")
    long_bad = '{"objective": "' + "x" * 300 + '", '
    advice = 'give a JSON object, e.g. {"num_leaves": 31}'
    for argv in commands:
        message = mistake(capsys, *argv, "--params", "{bad")
        assert message == (
            "--params '{bad': not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
            f"(char 1)); {advice}, or the path of a JSON file"
        )
        message = mistake(capsys, *argv, "--params", long_bad)
        assert message == (
            '--params \'{"objective": "' + "x" * 22 + "...': not JSON (Expecting property name enclosed in "
            f"double quotes: line 1 column 319 (char 318)); {advice}, or the path of a JSON file"
        )
        message = mistake(capsys, *argv, "--params", "[1, 2]")
        assert (
            message == f"--params '[1, 2]': a JSON array, not an object; {advice}, or the path of a JSON file"
        )
        message = mistake(capsys, *argv, "--params", "absent.json")  # neither a file nor JSON
        assert message == (
            "--params 'absent.json': not JSON (Expecting value: line 1 column 1 (char 0)); "
            f"{advice}, or the path of a JSON file"
        )
        message = mistake(capsys, *argv, "--params", "params.json")
        assert message == f"--params file params.json: a JSON array, not an object; {advice}"
        message = mistake(capsys, *argv, "--params", "params_dir")
        assert message == "--params params_dir: cannot read the file: Is a directory"
    assert project.fingerprint() == before
    assert not (project.root / "bt").exists() and not (project.root / "out").exists()
    assert not any(path.exists() for path in training_outputs(project))  # no model, no study


def test_unknown_table_lists_tables_and_views(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    before = project.fingerprint()
    message = mistake(capsys, "export-table", "--table", "mart", "--output", "x.parquet")
    assert message.startswith("unknown table 'mart':")
    for name in ("mart_timeseries_daily", "features_daily", "vw_features_latest", "vw_top_candidates_daily"):
        assert name in message
    assert project.fingerprint() == before


def test_locked_duckdb_names_the_lock_holder(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = project.fingerprint()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
         "time.sleep(120)", str(project.warehouse)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        monkeypatch.setattr(_runtime, "LOCK_WAIT_SECONDS", 0.3)
        for argv in (
            ["etl-standardize", "--sites", "US", "--start", "2025-03-01", "--end", "2025-03-01"],
            ["export-table", "--table", "mart_timeseries_daily", "--output", "x.parquet"],
        ):
            message = mistake(capsys, *argv)
            assert f"is locked by process {holder.pid} (" in message, message
            assert "stop that process" in message
    finally:
        holder.kill()
        holder.wait()
    assert project.fingerprint() == before


def test_settings_error_is_the_line_settings_prints(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = project.fingerprint()
    monkeypatch.setenv("ASIN_PLATFORM__WINDOWS__LOOKBACK", "3")
    from_ingest = mistake(capsys, "ingest-raw", "--sites", "US")
    assert mistake(capsys, "settings") == from_ingest
    assert from_ingest.startswith("invalid settings (") and "windows.lookback" in from_ingest
    assert project.fingerprint() == before


def test_debug_shows_the_traceback(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest-raw", "--sites", "XX", "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UserError" in err
    assert err.splitlines()[-1].startswith(PREFIX + "unknown site(s) XX")


def test_console_script_exits_2_with_one_line(project: Project) -> None:
    script = Path(sys.executable).parent / "asin-platform"
    result = subprocess.run(
        [str(script), "ingest-raw", "--start", "2025-03-02", "--end", "2025-03-01"],
        capture_output=True, text=True, cwd=project.root, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{PREFIX}--start 2025-03-02 is after --end 2025-03-01: give a --start on or before --end"
    ]


def console(project: Project, *argv: str) -> subprocess.CompletedProcess[str]:
    """The installed console script run in the project: what a user's terminal shows, including what
    libraries write to the process's stderr themselves (not captured by capsys)."""
    script = Path(sys.executable).parent / "asin-platform"
    return subprocess.run(
        [str(script), *argv], capture_output=True, text=True, cwd=project.root, timeout=300
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["train-rank", "--output", "bt/model.txt"],
            "LightGBM refused to train the ranker (LightGBMError: Unknown objective type name: nope); "
            f"{TRAIN_FIX} train-rank again",
        ),
        (
            ["tune-rank", "--trials", "1"],
            "study 'lgb_rank' has no completed trial: all 2 trials failed (the first: LightGBMError: "
            f"Unknown objective type name: nope); {TRAIN_FIX} tune-rank again",
        ),
    ],
)
def test_a_lightgbm_refusal_is_the_only_line_on_the_process_s_stderr(
    project: Project, argv: list[str], expected: str
) -> None:
    """LightGBM's C library writes its own `[LightGBM] [Fatal] <message>` on the process's stderr
    before it raises: the console script holds it back (commands._lightgbm), so the CLI's line is the
    only one. Was: the [Fatal] line first (once per failed trial in tune-rank), then the CLI's."""
    from asin_platform_tests.core.test_ranker import rank_samples

    rank_samples().write_parquet(project.root / "samples.parquet")
    fast = ["--data", "samples.parquet", "--rounds", "15", "--early-stopping", "5", "--params", REFUSED]
    result = console(project, *argv, *fast)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [PREFIX + expected]


def test_held_back_stderr_drops_lightgbm_s_fatal_lines_only(capfd: pytest.CaptureFixture[str]) -> None:
    """Inside commands._lightgbm.fatal_lines_held_back, LightGBM's [Fatal] lines (and the empty line
    a message ending in a newline leaves) are dropped and every other line of the process's stderr
    passes, in order; stderr is the same descriptor after."""
    import os

    from asin_platform.commands._lightgbm import fatal_lines_held_back

    print("before", file=sys.stderr)
    with fatal_lines_held_back():
        os.write(2, b"[LightGBM] [Fatal] Check failed: (num_leaves) > (1) at x.cpp, line 1 .\n\n")
        os.write(2, b"[LightGBM] [Warning] kept\n")
        os.write(2, b"\nkept after an empty line\n")
    print("after", file=sys.stderr)
    assert capfd.readouterr().err.splitlines() == [
        "before", "[LightGBM] [Warning] kept", "", "kept after an empty line", "after"
    ]  # fmt: skip


@pytest.mark.slow
def test_upstream_gone_mid_run_one_line_cause_nonzero_exit(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator stops answering after its first requests: the run fails, the CLI exits 1 and
    its last line on stderr names the failed endpoint and why."""
    from asin_platform.simulator import Market, MarketConfig, Quota, start_in_thread

    sim = start_in_thread(
        Market(MarketConfig(sites=("US",), asins_per_site=200)), tokens={TOKEN: Quota(600_000, 5000)}
    )
    monkeypatch.setenv("ASIN_PLATFORM_API_TOKEN", TOKEN)
    monkeypatch.setenv("ASIN_PLATFORM__SITES", "US")
    monkeypatch.setenv("ASIN_PLATFORM__UPSTREAM__BASE_URL", sim.url)
    monkeypatch.setenv("ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS", "2")
    monkeypatch.setenv("ASIN_PLATFORM__RETRY_POLICY__BASE_DELAY", "0.05")
    # the breaker gives a lost upstream up after max_attempts refused attempts, and the step is not
    # re-run, whatever the budget and asset_retry (their defaults: 180 s, 2 re-runs)

    def stop_after_first_requests() -> None:
        deadline = time.monotonic() + 60
        # stop at the first request: a ranged run asks every day's universe at once, and a universe
        # that cannot be fetched (unlike a batch, which only loses itself) fails the run
        while sim.stats.snapshot()["requests"] < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        sim.stop()

    watcher = threading.Thread(target=stop_after_first_requests, daemon=True)
    watcher.start()
    code = main(["ingest-raw", "--start", "2025-03-01", "--end", "2025-03-10"])
    watcher.join(5)
    err_lines = capsys.readouterr().err.splitlines()
    assert code == 1
    # the run's cause; partitions stored with requests failed for good follow it, with the re-fetch
    cause = next(line for line in err_lines if line.startswith("asin-platform: run "))
    assert "(US 2025-03-01..2025-03-10) failed: raw_payloads: " in cause
    assert f"Failure: upstream {sim.url} unreachable: " in cause, cause
    assert "(last: /v1/sites/US/asins: ConnectError: " in cause, cause  # the universe it could not get
    assert "nothing was written for US 2025-03-01..2025-03-10; check that the upstream at " in cause, cause
