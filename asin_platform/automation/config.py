"""Settings of the automation layer: cron times (UTC) and alerting knobs.

The two models below are meant to live in ``asin_platform/settings.py`` as ``Settings.automation`` and
``Settings.alerts`` (so ``config/settings.yaml`` and ``ASIN_PLATFORM__AUTOMATION__INGEST_CRON=...``
work like every other key). Until they are added there, :func:`automation_settings` and
:func:`alert_settings` fall back to these defaults: ``Settings`` forbids unknown keys, so this module
must not invent its own ``ASIN_PLATFORM__`` variables.

Secrets are never settings: the webhook URL (a Slack incoming-webhook URL *is* a credential) is read
from ``ASIN_PLATFORM_ALERT_WEBHOOK_URL`` only, at send time.
"""

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asin_platform.settings import Settings, get_settings

WEBHOOK_URL_ENV = "ASIN_PLATFORM_ALERT_WEBHOOK_URL"
# Every schedule and cron condition of the platform runs on UTC, like the seed's cron table.
TIMEZONE = "UTC"


def _check_cron(value: str) -> str:
    # Imported lazily: dagster's cron parser is the one the daemon will use, so it is the judge.
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ValueError(f"not a valid cron expression: {value!r}")
    return value


class AutomationSettings(BaseModel):
    """When things run (all UTC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_status: Literal["running", "stopped"] = Field(
        "running",
        description="initial state of the schedules and sensors on a fresh instance (the UI toggle wins "
        "afterwards); 'stopped' for instances that must not call the API on their own",
    )
    ingest_cron: str = Field(
        "0 * * * *",
        description="ingestion schedule; the seed ran hourly at :00. Each tick launches yesterday's "
        "(date, site) partitions that have neither succeeded nor are in flight, so a day is fetched once "
        "and a missed or failed tick is caught up an hour later",
    )
    ingest_max_attempts: int = Field(
        3, ge=1, description="scheduled launches per (date, site) before the schedule stops retrying it"
    )
    follow_lookback_days: int = Field(
        2,
        ge=1,
        description="how many of the newest days the downstream automation keeps following, so a day "
        "whose ingestion finished late (after midnight) still flows downstream",
    )
    automation_interval_seconds: int = Field(
        30, ge=10, description="how often the automation-condition sensor evaluates the graph"
    )
    retrain_cron: str = Field(
        "0 3 * * 1", description="weekly ranker retraining (Mondays 03:00, after the 02:20 score)"
    )
    freshness_cron: str = Field("0 3 * * *", description="the unpartitioned mart freshness check")

    _crons = field_validator("ingest_cron", "retrain_cron", "freshness_cron")(_check_cron)


class AlertSettings(BaseModel):
    """Where alerts go and what they say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ui_base_url: str = Field(
        "http://127.0.0.1:3000", description="Dagster UI base URL used for the links in alerts"
    )
    top_n: int = Field(20, ge=1, description="tracking alert: a candidate is rank_in_site <= top_n ...")
    # ... and explosive_score >= thresholds.alert_score_min (an existing settings key).
    max_age_days: int = Field(
        3,
        ge=0,
        description="tracking alert only for days at most this old: a backfill of last year does "
        "not page anyone",
    )
    webhook_timeout: float = Field(5.0, gt=0, description="seconds per POST")
    webhook_attempts: int = Field(3, ge=1, le=10, description="POST attempts per message")
    webhook_backoff: float = Field(0.5, ge=0, description="seconds before the 2nd attempt; doubles")
    webhook_max_backoff: float = Field(8.0, ge=0, description="cap on one wait, Retry-After included")
    tick_budget_seconds: float = Field(
        40.0,
        gt=0,
        description="after this long in one sensor tick, remaining alerts are only logged "
        "(a sensor tick must finish well inside Dagster's 60 s evaluation timeout)",
    )
    max_messages_per_tick: int = Field(
        20, ge=1, description="more alerts than this in one tick are summarised in one message"
    )

    @field_validator("ui_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


def automation_settings(settings: Settings | None = None) -> AutomationSettings:
    """``settings.automation`` when settings.py has it, else the defaults."""
    found = getattr(settings or get_settings(), "automation", None)
    return (
        AutomationSettings.model_validate(found.model_dump()) if found is not None else AutomationSettings()
    )


def alert_settings(settings: Settings | None = None) -> AlertSettings:
    """``settings.alerts`` when settings.py has it, else the defaults."""
    found = getattr(settings or get_settings(), "alerts", None)
    return AlertSettings.model_validate(found.model_dump()) if found is not None else AlertSettings()


def webhook_url() -> str | None:
    """The alert webhook from the environment (unset or blank = log only)."""
    return os.environ.get(WEBHOOK_URL_ENV, "").strip() or None
