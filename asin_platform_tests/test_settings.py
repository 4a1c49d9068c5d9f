from datetime import date
from pathlib import Path

import pytest

from asin_platform.levers import (
    BacktestWindow,
    LeverError,
    RankerLevers,
    SamplesWindow,
    TuningRun,
    json_object,
)
from asin_platform.settings import Settings, SettingsError, load_settings


def test_defaults_load_without_any_configuration(tmp_path: Path) -> None:
    settings = load_settings(path=None, environ={})
    assert settings == Settings()
    assert settings.sites == ("US", "UK", "DE", "JP")
    assert settings.rate_limit("unified").qpm == 6000
    assert settings.retry_policy.max_attempts == 5
    assert settings.windows.horizon == 30


def test_yaml_file_in_seed_shape_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "sites: [US, DE]\n"
        "rate_limits:\n  unified: {qpm: 120, burst: 5, timeout: 3}\n"
        "retry_policy: {max_attempts: 3, base_delay: 0.1, jitter: 0.5, max_delay: 2}\n"
        "windows: {lookback: 14, horizon: 21, embargo: 21}\n"
    )
    settings = load_settings(path, environ={})
    assert settings.sites == ("US", "DE")
    assert settings.rate_limit("unified").qpm == 120
    assert settings.rate_limit("unified").timeout == 3.0
    assert settings.retry_policy.max_attempts == 3
    assert settings.windows.lookback == 14
    # untouched keys keep their defaults
    assert settings.thresholds.coverage_min == 0.95


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("sites: [US, DE]\nretry_policy: {max_attempts: 3}\n")
    env = {
        "ASIN_PLATFORM__SITES": "JP,FR",
        "ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS": "7",
        "ASIN_PLATFORM__PARTITIONS_START": "2025-06-01",
    }
    settings = load_settings(path, environ=env)
    assert settings.sites == ("JP", "FR")
    assert settings.retry_policy.max_attempts == 7
    assert settings.partitions_start == date(2025, 6, 1)


def test_settings_file_from_env_variable(tmp_path: Path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text("sites: [CA]\n")
    assert load_settings(environ={"ASIN_PLATFORM_SETTINGS": str(path)}).sites == ("CA",)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS": "0"}, "retry_policy.max_attempts"),
        ({"ASIN_PLATFORM__SITES": "US,XX"}, "sites"),
        ({"ASIN_PLATFORM__THRESHOLDS__COVERAGE_MIN": "1.5"}, "thresholds.coverage_min"),
        ({"ASIN_PLATFORM__RATE_LIMITS__UNIFIED__QPM": "-1"}, "rate_limits.unified.qpm"),
        ({"ASIN_PLATFORM__WINDOWS__EMBARGO": "5"}, "windows.embargo"),
        ({"ASIN_PLATFORM__WINDOWS__HORIZON": "1000"}, "windows.horizon"),
        ({"ASIN_PLATFORM__THRESHOLDS__LABEL_SALES_RATIO": ".inf"}, "thresholds.label_sales_ratio"),
        ({"ASIN_PLATFORM__NOT_A_KEY": "1"}, "not_a_key"),
        ({"ASIN_PLATFORM__AUTOMATION__INGEST_CRON": "every hour"}, "automation.ingest_cron"),
        ({"ASIN_PLATFORM__ALERTS__TOP_N": "0"}, "alerts.top_n"),
    ],
)
def test_bad_value_fails_at_load_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(path=None, environ=env)
    assert f"  {key}" in str(excinfo.value)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        # 10**6 folds reached back past year 1 in core.backtest.latest_folds (an OverflowError)
        ("folds", 101, "Input should be less than or equal to 100"),
        ("every_days", 366, "Input should be less than or equal to 365"),
        ("folds", 0, "Input should be greater than or equal to 1"),
    ],
)
def test_promotion_folds_are_bounded_as_the_backtests_are(
    tmp_path: Path, key: str, value: int, reason: str
) -> None:
    """settings.promotion.folds / every_days take the bounds of levers.BacktestWindow's (1..100,
    1..365): a settings file beyond them is refused at load, naming the key, the bound and the value."""
    path = tmp_path / "settings.yaml"
    path.write_text(f"promotion: {{{key}: {value}}}\n")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(path, environ={})
    assert str(excinfo.value) == f"invalid settings ({path}):\n  promotion.{key}: {reason} (got {value})"
    # the bounds themselves load
    path.write_text("promotion: {folds: 100, every_days: 365}\n")
    promotion = load_settings(path, environ={}).promotion
    assert (promotion.folds, promotion.every_days) == (100, 365)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # a train_samples end_date near year 1 then passed its ">= partitions_start" check and
        # overflowed the window arithmetic (end - horizon - days) with an OverflowError traceback
        ("0001-01-01", "Input should be greater than or equal to 1970-01-01"),
        ("1969-12-31", "Input should be greater than or equal to 1970-01-01"),
        ("3000-01-01", "Input should be less than or equal to 2999-12-31"),
    ],
)
@pytest.mark.parametrize("source", ["file", "env"])
def test_partitions_start_is_bounded_as_the_date_flags_are(
    tmp_path: Path, source: str, value: str, reason: str
) -> None:
    """settings.partitions_start is within levers.FIRST_DAY..LAST_DAY, the date flags' range: a
    settings file or an ASIN_PLATFORM__PARTITIONS_START beyond it is refused at load in one message
    naming the key, the bound and the day given."""
    path = tmp_path / "settings.yaml"
    path.write_text(f"partitions_start: {value}\n" if source == "file" else "sites: [US]\n")
    env = {"ASIN_PLATFORM__PARTITIONS_START": value} if source == "env" else {}
    origin = f"{path} + env ASIN_PLATFORM__*" if env else str(path)
    with pytest.raises(SettingsError) as excinfo:
        load_settings(path, environ=env)
    assert str(excinfo.value) == f"invalid settings ({origin}):\n  partitions_start: {reason} (got {value})"


def test_partitions_start_takes_the_first_and_last_day_of_the_date_range(tmp_path: Path) -> None:
    for day in (date(1970, 1, 1), date(2999, 12, 31)):
        assert (
            load_settings(None, environ={"ASIN_PLATFORM__PARTITIONS_START": str(day)}).partitions_start == day
        )


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sites: [US\n")
    with pytest.raises(SettingsError, match="broken.yaml is not valid YAML"):
        load_settings(path, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_source_by_site_must_name_configured_sites() -> None:
    with pytest.raises(SettingsError, match="upstream"):
        load_settings(environ={"ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE": "{FR: keepa}"})
    settings = load_settings(environ={"ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE": "{DE: keepa}"})
    assert settings.upstream.source_for("DE") == "keepa"
    assert settings.upstream.source_for("US") == "unified"


def test_automation_and_alert_settings_from_env() -> None:
    settings = load_settings(
        environ={
            "ASIN_PLATFORM__AUTOMATION__RETRAIN_CRON": "0 4 * * 0",
            "ASIN_PLATFORM__ALERTS__UI_BASE_URL": "https://dagster.example/",
        }
    )
    assert settings.automation.retrain_cron == "0 4 * * 0"
    assert settings.alerts.ui_base_url == "https://dagster.example"


def test_overlaid_levers_apply_the_given_values_and_ignore_none() -> None:
    base = RankerLevers(rounds=200, refit_factor=0.0)
    levers = RankerLevers.overlaid(
        base, {"rounds": 50, "negative_fraction": 1.0, "refit_factor": None, "early_stopping": None}
    )
    assert (levers.rounds, levers.negative_fraction) == (50, 1.0)
    assert (levers.refit_factor, levers.early_stopping) == (0.0, base.early_stopping)  # None keeps base
    assert RankerLevers.overlaid(base, {}) == base
    assert base.rounds == 200  # the base is not changed


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("learning_rate", 0.0, "learning_rate 0.0: input should be greater than 0"),
        ("learning_rate", 1.5, "learning_rate 1.5: input should be less than or equal to 1"),
        ("num_leaves", 1, "num_leaves 1: input should be greater than or equal to 2"),
        ("min_data_in_leaf", 0, "min_data_in_leaf 0: input should be greater than or equal to 1"),
        ("max_bin", 3, "max_bin 3: input should be greater than or equal to 4"),
        ("feature_fraction", 0.0, "feature_fraction 0.0: input should be greater than 0"),
        ("bagging_fraction", 1.2, "bagging_fraction 1.2: input should be less than or equal to 1"),
        ("negative_fraction", 1.5, "negative_fraction 1.5: input should be less than or equal to 1"),
        (
            "hard_negative_fraction",
            -0.1,
            "hard_negative_fraction -0.1: input should be greater than or equal to 0",
        ),
        ("min_query_rows", -1, "min_query_rows -1: input should be greater than or equal to 0"),
        ("rounds", 0, "rounds 0: input should be greater than or equal to 1"),
        ("early_stopping", 0, "early_stopping 0: input should be greater than or equal to 1"),
        ("refit_factor", -1.0, "refit_factor -1.0: input should be greater than or equal to 0"),
        ("refit_factor", 10.5, "refit_factor 10.5: input should be less than or equal to 10"),
    ],
)
def test_overlaid_levers_reject_a_value_out_of_its_setting_s_range(
    name: str, value: float, message: str
) -> None:
    with pytest.raises(LeverError) as excinfo:
        # an unset value beside it changes nothing (the later key wins when ``name`` is that one)
        RankerLevers.overlaid(RankerLevers(), {"early_stopping": None, name: value})
    assert str(excinfo.value) == message
    assert (excinfo.value.name, excinfo.value.value) == (name, value)
    assert isinstance(excinfo.value, ValueError)


def test_overlaid_levers_reject_a_name_that_is_not_a_lever() -> None:
    with pytest.raises(LeverError, match=r"^num_trees 5: not a ranker lever \(levers: learning_rate, "):
        RankerLevers.overlaid(RankerLevers(), {"num_trees": 5})


@pytest.mark.parametrize("name", ["folds", "every_days", "train_days", "sample_every"])
def test_a_backtest_window_value_below_one_is_a_lever_error(name: str) -> None:
    """The run's own parameters are checked as the levers are (one ``overlaid``), at least 1 each."""
    assert getattr(BacktestWindow.overlaid(BacktestWindow(), {name: 1}), name) == 1
    for value in (0, -3):
        with pytest.raises(LeverError) as excinfo:
            BacktestWindow.overlaid(BacktestWindow(), {name: value})
        assert str(excinfo.value) == f"{name} {value}: input should be greater than or equal to 1"
    with pytest.raises(LeverError, match=r"^rounds 5: not a backtest setting \(settings: folds, "):
        BacktestWindow.overlaid(BacktestWindow(), {"rounds": 5})


def test_a_backtest_window_at_its_upper_bounds_is_overlaid() -> None:
    given = {"folds": 100, "every_days": 365, "train_days": 3650, "sample_every": 365}
    assert BacktestWindow.overlaid(BacktestWindow(), given).model_dump() == given


@pytest.mark.parametrize(
    ("model", "name", "value", "message"),
    [
        (SamplesWindow, "sample_every", 0, "sample_every 0: input should be greater than or equal to 1"),
        (SamplesWindow, "sample_every", -2, "sample_every -2: input should be greater than or equal to 1"),
        (SamplesWindow, "sample_every", 366, "sample_every 366: input should be less than or equal to 365"),
        (SamplesWindow, "days", 0, "days 0: input should be greater than or equal to 1"),
        (SamplesWindow, "days", 10**9, "days 1000000000: input should be less than or equal to 3650"),
        # the backtest's stride is the samples' (levers.SampleEvery): the same bounds
        (BacktestWindow, "sample_every", 366, "sample_every 366: input should be less than or equal to 365"),
        # and its training dates are the samples' days (levers.ReferenceDays)
        (BacktestWindow, "train_days", 3651, "train_days 3651: input should be less than or equal to 3650"),
        (BacktestWindow, "folds", 101, "folds 101: input should be less than or equal to 100"),
        (BacktestWindow, "every_days", 366, "every_days 366: input should be less than or equal to 365"),
        # end_date as date.fromisoformat reads it: text is quoted, so a blank one shows
        (SamplesWindow, "end_date", "2025-2-3", "end_date '2025-2-3': input should be a date as YYYY-MM-DD"),
        (SamplesWindow, "end_date", "", "end_date '': input should be a date as YYYY-MM-DD"),
        # not pydantic's lax reading (seconds since 1970)
        (SamplesWindow, "end_date", 1735689600, "end_date 1735689600: input should be a valid date"),
    ],
)
def test_a_samples_window_out_of_range_is_a_lever_error(
    model: type[SamplesWindow | BacktestWindow], name: str, value: object, message: str
) -> None:
    with pytest.raises(LeverError) as excinfo:
        model.overlaid(model(), {name: value})
    assert str(excinfo.value) == message


def test_a_samples_window_in_range_is_overlaid() -> None:
    assert SamplesWindow() == SamplesWindow(days=240, sample_every=1)  # the config's and the flag's defaults
    window = SamplesWindow.overlaid(SamplesWindow(), {"days": 3650, "sample_every": 365})
    assert (window.days, window.sample_every) == (3650, 365)
    assert SamplesWindow.overlaid(SamplesWindow(), {"days": None, "sample_every": 3}).days == 240
    assert SamplesWindow().end_date is None  # the newest mart day
    for text in ("2025-05-31", "20250531"):  # ISO 8601, as date.fromisoformat reads it
        assert SamplesWindow.overlaid(SamplesWindow(), {"end_date": text}).end_date == date(2025, 5, 31)


ADVICE = 'give a JSON object, e.g. {"num_leaves": 31}'


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        (
            "{bad",
            "'{bad'",
            f"not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); {ADVICE}",
        ),
        ("[1, 2]", "'[1, 2]'", f"a JSON array, not an object; {ADVICE}"),
        ("null", "'null'", f"a JSON null, not an object; {ADVICE}"),
        ("31", "'31'", f"a JSON number, not an object; {ADVICE}"),
        # newlines stay inside the literal, a long text is cut: the message is one line
        ('{\n"a":\n', "'{\\n\"a\":\\n'", f"not JSON (Expecting value: line 3 column 1 (char 7)); {ADVICE}"),
        (
            '{"objective": "' + "x" * 300,
            '\'{"objective": "' + "x" * 22 + "...'",
            f"not JSON (Unterminated string starting at: line 1 column 15 (char 14)); {ADVICE}",
        ),
    ],
)
def test_json_object_says_in_one_line_why_a_text_is_not_a_json_object(
    text: str, value: str, reason: str
) -> None:
    """The one reading of LightGBM params given as text (--params, a config's params_json)."""
    with pytest.raises(LeverError) as excinfo:
        json_object("params_json", text)
    assert (excinfo.value.name, excinfo.value.value, excinfo.value.reason) == ("params_json", value, reason)
    assert str(excinfo.value) == f"params_json {value}: {reason}"
    assert "\n" not in str(excinfo.value)


def test_json_object_reads_an_object_and_empty_text_as_no_params() -> None:
    assert json_object("params_json", '{"num_leaves": 15, "lambda_l2": 0.5}') == {
        "num_leaves": 15,
        "lambda_l2": 0.5,
    }
    assert json_object("params_json", "") == {} and json_object("params_json", None) == {}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("trials", 0, "trials 0: input should be greater than or equal to 1"),
        ("trials", 10_001, "trials 10001: input should be less than or equal to 10000"),
        ("timeout", 0.0, "timeout 0.0: input should be greater than 0"),
        ("timeout", -60.0, "timeout -60.0: input should be greater than 0"),
        ("timeout", float("inf"), "timeout inf: input should be a finite number"),
        ("timeout", float("nan"), "timeout nan: input should be a finite number"),
        ("timeout", 604_801.0, "timeout 604801.0: input should be less than or equal to 604800"),
    ],
)
def test_a_tuning_run_out_of_range_is_a_lever_error(name: str, value: float, message: str) -> None:
    with pytest.raises(LeverError) as excinfo:
        TuningRun.overlaid(TuningRun(), {name: value})
    assert str(excinfo.value) == message


def test_a_tuning_run_in_range_is_overlaid() -> None:
    run = TuningRun.overlaid(TuningRun(), {"trials": 3, "timeout": None})
    assert (run.trials, run.timeout) == (3, None)  # no timeout: until the study holds its trials
    run = TuningRun.overlaid(TuningRun(), {"trials": 10_000, "timeout": 604_800})
    assert (run.trials, run.timeout) == (10_000, 604_800.0)
