"""Settings of the automation layer: cron times (UTC) and alerting knobs.

The models live in ``asin_platform/settings.py`` as ``Settings.automation`` and ``Settings.alerts``,
so ``config/settings.yaml`` and ``ASIN_PLATFORM__AUTOMATION__INGEST_CRON=...`` work like every other
key; this module re-exports them with the accessors the automation code uses.

Secrets are never settings: the webhook URL (a Slack incoming-webhook URL *is* a credential) is read
from ``ASIN_PLATFORM_ALERT_WEBHOOK_URL`` only, at send time.
"""

import os

from asin_platform.settings import AlertSettings, AutomationSettings, Settings

__all__ = ["AlertSettings", "AutomationSettings", "alert_settings", "automation_settings", "webhook_url"]

WEBHOOK_URL_ENV = "ASIN_PLATFORM_ALERT_WEBHOOK_URL"
# Every schedule and cron condition of the platform runs on UTC, like the seed's cron table.
TIMEZONE = "UTC"


def automation_settings(settings: Settings) -> AutomationSettings:
    return settings.automation


def alert_settings(settings: Settings) -> AlertSettings:
    return settings.alerts


def webhook_url() -> str | None:
    """The alert webhook from the environment (unset or blank = log only)."""
    return os.environ.get(WEBHOOK_URL_ENV, "").strip() or None
