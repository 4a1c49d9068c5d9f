"""The retry arithmetic every outbound caller shares: exponential backoff and ``Retry-After``.

Pure functions with no I/O and no Dagster, so the upstream HTTP core
(``resources/upstream/http.py``) and the alert webhook (``automation/webhook.py``) wait the same
way without one layer importing the other.
"""

import email.utils
from datetime import UTC, datetime


def backoff_delay(attempt: int, base_delay: float, max_delay: float, jitter: float, u: float) -> float:
    """Delay before retry number ``attempt`` (1-based): min(max_delay, base_delay * 2**(attempt-1))
    * (1 + jitter * u), ``u`` uniform in [0, 1). The jitter spreads retries of concurrent batches
    that failed together so they do not return together."""
    return min(max_delay, base_delay * 2 ** (attempt - 1)) * (1.0 + jitter * u)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: a (possibly fractional) number, or an HTTP date
    (seconds from ``now``, default the current time). ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
