"""The shared retry arithmetic (``asin_platform.retrying``) used by the upstream core and the webhook."""

from datetime import UTC, datetime

from asin_platform.resources.upstream import http
from asin_platform.retrying import backoff_delay, parse_retry_after


def test_backoff_doubles_up_to_the_cap_and_jitter_only_lengthens() -> None:
    assert [backoff_delay(n, 0.5, 3.0, 0.0, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(2, 0.5, 3.0, 0.25, 0.5) == 1.0 * 1.125


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2.5", now) == 2.5
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None


def test_the_upstream_core_uses_the_same_helpers() -> None:
    # http.py re-exports them: its callers and tests import from there unchanged.
    assert http.backoff_delay is backoff_delay
    assert http.retry_after(None) is None
    assert http.retry_after(http.httpx.Headers({"Retry-After": "4"})) == 4.0
