"""The alert webhook against a real HTTP receiver on loopback: delivery, retries with backoff,
a receiver that is down, and no secret in any log line."""

import logging
import time

import pytest

from asin_platform.automation.config import WEBHOOK_URL_ENV, AlertSettings
from asin_platform.automation.messages import slack_message
from asin_platform.automation.webhook import Webhook, describe_target, redact, redact_message
from asin_platform_tests.ops.conftest import SECRET_PATH

SECRET = SECRET_PATH.rsplit("/", 1)[1]


def _message() -> dict:
    return slack_message(
        "Check failed: mart_timeseries_daily.mart_coverage 2025-03-10|US",
        severity="ERROR",
        fields={"Asset": "mart_timeseries_daily", "Partition": "2025-03-10|US", "Check": "mart_coverage"},
        details="coverage 0.41 < 0.95",
        links=[("Open run", "http://127.0.0.1:3000/runs/abc")],
    )


def _hook(url: str | None, **kwargs) -> Webhook:
    options = {"timeout": 2.0, "attempts": 3, "backoff": 0.05, "max_backoff": 0.5}
    options.update(kwargs)
    return Webhook(url, logger=logging.getLogger("test.alerts"), **options)


def _no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text
    assert SECRET_PATH not in text


def test_delivers_a_slack_compatible_body(receiver, caplog) -> None:
    rec = receiver()
    caplog.set_level(logging.INFO)
    delivery = _hook(rec.url).post(_message())
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    [got] = rec.received
    assert got.path == SECRET_PATH
    assert got.headers["content-type"].startswith("application/json")
    assert got.body["text"].startswith(":rotating_light: [ERROR] Check failed")
    assert "partition=2025-03-10|US" in got.body["text"]
    assert "http://127.0.0.1:3000/runs/abc" in got.body["text"]
    types = [b["type"] for b in got.body["blocks"]]
    assert types == ["header", "section", "section", "context"]
    fields = [f["text"] for f in got.body["blocks"][1]["fields"]]
    assert "*Partition*\n2025-03-10|US" in fields
    _no_secret_logged(caplog)


def test_retries_a_500_then_delivers(receiver, caplog) -> None:
    rec = receiver(500, 503)
    caplog.set_level(logging.INFO)
    sleeps: list[float] = []
    delivery = _hook(rec.url, sleep=sleeps.append).post(_message())
    assert delivery.delivered and delivery.attempts == 3
    assert len(rec.received) == 3
    assert rec.received[0].body == rec.received[2].body  # the same message, re-sent
    assert sleeps == [0.05, 0.1]  # exponential backoff
    assert any("HTTP 500" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records)
    _no_secret_logged(caplog)


def test_waits_what_retry_after_asks_up_to_the_cap(receiver) -> None:
    # The shared parser (asin_platform.retrying) reads seconds and HTTP dates alike.
    rec = receiver(429, 503)
    rec.retry_after = "0.3"
    sleeps: list[float] = []
    delivery = _hook(rec.url, sleep=sleeps.append).post(_message())
    assert delivery.delivered and delivery.attempts == 3
    assert sleeps == [0.3, 0.3]  # Retry-After beats the 0.05 / 0.1 backoff
    rec = receiver(429)
    rec.retry_after = "120"
    sleeps = []
    assert _hook(rec.url, sleep=sleeps.append).post(_message()).delivered
    assert sleeps == [0.5]  # capped by max_backoff: a tick never waits minutes for Slack


def test_respects_retry_after_on_429_capped(receiver) -> None:
    rec = receiver(429)
    sleeps: list[float] = []
    # The receiver sends no Retry-After: the backoff applies; the cap bounds it either way.
    delivery = _hook(rec.url, sleep=sleeps.append, backoff=5.0, max_backoff=0.2).post(_message())
    assert delivery.delivered and delivery.attempts == 2
    assert sleeps == [0.2]


def test_client_error_is_not_retried(receiver, caplog) -> None:
    rec = receiver(400)
    delivery = _hook(rec.url, sleep=lambda s: None).post(_message())
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status == 400
    assert len(rec.received) == 1
    assert any("not delivered" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_receiver_down_is_logged_never_raised(dead_url, caplog) -> None:
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    delivery = _hook(dead_url).post(_message())
    assert not delivery.delivered
    assert delivery.attempts == 3
    assert delivery.error and "refused" in delivery.error.lower()
    assert time.monotonic() - started < 5
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "after 3 attempt(s)" in errors[-1]
    assert "127.0.0.1" in errors[-1]  # which receiver failed is said ...
    _no_secret_logged(caplog)  # ... but never its secret path


def test_tick_budget_turns_later_alerts_into_log_lines(dead_url, caplog) -> None:
    hook = _hook(dead_url, budget_seconds=0.0)
    delivery = hook.post(_message())
    assert delivery.skipped and not delivery.delivered
    assert any("budget" in r.getMessage() for r in caplog.records)


def test_unset_webhook_logs_only(monkeypatch, caplog) -> None:
    monkeypatch.delenv(WEBHOOK_URL_ENV, raising=False)
    caplog.set_level(logging.INFO)
    hook = Webhook.from_settings(AlertSettings(), logging.getLogger("test.alerts"))
    delivery = hook.post(_message())
    assert delivery.skipped and delivery.attempts == 0
    assert any("no webhook configured" in r.getMessage() for r in caplog.records)


def test_from_settings_reads_the_url_from_the_environment(monkeypatch, receiver) -> None:
    rec = receiver()
    monkeypatch.setenv(WEBHOOK_URL_ENV, rec.url)
    hook = Webhook.from_settings(AlertSettings(webhook_attempts=1))
    assert SECRET not in repr(hook) and hook.target.endswith("/***")
    assert hook.post(_message()).delivered
    assert len(rec.received) == 1


def test_secrets_are_scrubbed_from_messages(monkeypatch, receiver) -> None:
    monkeypatch.setenv("ASIN_PLATFORM_API_TOKEN", "tok-0123456789abcdef")
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://dagster:pg-Pa55word@db:5432/dagster")
    rec = receiver()
    message = _message()
    message["blocks"][2]["text"]["text"] = (
        "httpx error for Bearer tok-0123456789abcdef at postgresql://dagster:pg-Pa55word@db:5432/dagster "
        "and postgresql://asin:other-secret@wh/asin"
    )
    assert _hook(rec.url).post(message).delivered
    sent = rec.received[0].body["blocks"][2]["text"]["text"]
    for secret in ("tok-0123456789abcdef", "pg-Pa55word", "other-secret"):
        assert secret not in sent
    assert "postgresql://asin:***@wh/asin" in sent


def test_redaction_helpers() -> None:
    assert redact("Authorization: Bearer abcdefgh12345678") == "Authorization: Bearer ***"
    assert redact("token=abcdefgh12345678&x=1") == "token=***&x=1"
    assert redact_message({"a": ["x", {"b": "key: 0123456789"}], "n": 3}) == {
        "a": ["x", {"b": "key: ***"}],
        "n": 3,
    }
    assert describe_target("https://hooks.slack.com/services/T/B/XYZ") == "https://hooks.slack.com/***"
