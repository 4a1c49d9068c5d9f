"""Alert delivery: a Slack-compatible JSON POST with retries, backoff and no secrets in any log.

``Webhook.post`` never raises: an alerting path that crashes its sensor would silence every later
alert. Whatever cannot be delivered is logged (redacted) and reported in the returned ``Delivery``.

The POST goes through ``urllib`` rather than httpx on purpose: httpx logs every request URL at INFO,
and a Slack incoming-webhook URL *is* its credential.
"""

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asin_platform.automation.config import AlertSettings, webhook_url
from asin_platform.retrying import backoff_delay, parse_retry_after

log = logging.getLogger("asin_platform.alerts")

# Environment variables whose values must never appear in an alert or a log line.
SECRET_ENVS = (
    "ASIN_PLATFORM_API_TOKEN",
    "KEEPA_API_KEY",
    "PGPASSWORD",
    "DAGSTER_PG_URL",
    "ASIN_PLATFORM_WAREHOUSE_URL",
    "ASIN_PLATFORM_ALERT_WEBHOOK_URL",
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|token|apikey|api_key|key)([=: ]+)([A-Za-z0-9._~+/-]{8,})")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _secret_values(extra: Iterable[str] = ()) -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENVS] + list(extra)
    for value in list(values):
        match = _URL_PASSWORD.search(value)
        if match:
            values.append(match.group("pw"))
    # Longest first, so a URL is replaced whole before its password inside it; tiny values would
    # mangle ordinary words, and nothing that short is a real secret.
    return sorted({v for v in values if len(v) >= 6}, key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without known secrets: secret env values, URL passwords and bearer-style tokens."""
    for secret in _secret_values(extra):
        text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def describe_target(url: str) -> str:
    """A loggable name for a webhook: scheme and host only. Slack puts the credential in the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable webhook URL>"
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


def redact_message(message: Any, extra: Iterable[str] = ()) -> Any:
    """A JSON-like message with every string redacted (alerts quote error texts and metadata)."""
    if isinstance(message, str):
        return redact(message, extra)
    if isinstance(message, dict):
        return {k: redact_message(v, extra) for k, v in message.items()}
    if isinstance(message, list | tuple):
        return [redact_message(v, extra) for v in message]
    return message


@dataclass(frozen=True)
class Delivery:
    """What happened to one alert."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    skipped: bool = False  # no webhook configured, or the tick's budget was spent: logged only


class Webhook:
    """POSTs alert messages to one URL. ``url=None`` means log only."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        budget_seconds: float = 40.0,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = logger or log
        self._sleep = sleep
        # No proxies from the environment: the webhook is called directly or not at all.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._deadline = time.monotonic() + budget_seconds
        self.target = describe_target(url) if url else "<no webhook: log only>"

    @classmethod
    def from_settings(cls, alerts: AlertSettings, logger: logging.Logger | None = None) -> "Webhook":
        """The configured webhook (URL from the environment), with a fresh per-tick time budget."""
        return cls(
            webhook_url(),
            timeout=alerts.webhook_timeout,
            attempts=alerts.webhook_attempts,
            backoff=alerts.webhook_backoff,
            max_backoff=alerts.webhook_max_backoff,
            budget_seconds=alerts.tick_budget_seconds,
            logger=logger,
        )

    def __repr__(self) -> str:  # never the URL
        return f"Webhook({self.target})"

    def _secrets(self) -> list[str]:
        return [self._url] if self._url else []

    def post(self, message: dict[str, Any]) -> Delivery:
        """Deliver ``message`` (redacted first); retry transport errors, 408/425/429 and 5xx."""
        try:
            return self._post(redact_message(message, self._secrets()))
        except Exception as exc:  # the alert path must never raise
            error = redact(f"{type(exc).__name__}: {exc}", self._secrets())
            self.log.error(f"alert not delivered to {self.target}: unexpected {error}")
            return Delivery(False, 0, error=error)

    def _post(self, message: dict[str, Any]) -> Delivery:
        summary = str(message.get("text", ""))[:300]
        if not self._url:
            self.log.info(f"alert (no webhook configured): {summary}")
            return Delivery(False, 0, skipped=True)
        if time.monotonic() > self._deadline:
            self.log.warning(f"alert not sent (tick time budget spent), logged instead: {summary}")
            return Delivery(False, 0, skipped=True)
        status: int | None = None
        error: str | None = None
        attempt = 0
        body = json.dumps(message).encode()
        for attempt in range(1, self.attempts + 1):
            # No jitter: one sensor tick sends one alert at a time, there is no herd to spread.
            wait = backoff_delay(attempt, self.backoff, self.max_backoff, jitter=0.0, u=0.0)
            status, error, retry_after = self._send(body)
            if status is not None and 200 <= status < 300:
                self.log.info(f"alert delivered to {self.target} (attempt {attempt}): {summary}")
                return Delivery(True, attempt, status)
            if status is not None and status not in RETRY_STATUSES:
                break
            wait = max(wait, min(retry_after, self.max_backoff))
            if attempt < self.attempts:
                if time.monotonic() + wait > self._deadline:
                    break
                self.log.warning(
                    f"alert to {self.target} failed ({error}), attempt {attempt}/{self.attempts}; "
                    f"retrying in {wait:.1f}s"
                )
                self._sleep(wait)
        self.log.error(
            f"alert not delivered to {self.target} after {attempt} attempt(s) ({error}); "
            f"the alert was: {summary}"
        )
        return Delivery(False, attempt, status, error)

    def _send(self, body: bytes) -> tuple[int | None, str | None, float]:
        """One POST: (status or None, error text, Retry-After seconds)."""
        assert self._url is not None
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "asin-platform-alerts"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, None, 0.0
        except urllib.error.HTTPError as exc:
            asked = parse_retry_after(exc.headers.get("retry-after") if exc.headers else None)
            return exc.code, f"HTTP {exc.code}", asked or 0.0
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            # error texts can quote the URL, and so the credential in its path
            return None, redact(f"{type(exc).__name__}: {reason}", self._secrets()), 0.0
