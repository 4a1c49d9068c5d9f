"""Keepa's token accounting, as the Keepa client uses it (``docs/keepa.md``, "Token accounting").

Every Keepa response, a 429 included, reports the key's bucket (``tokensLeft``, ``refillIn``,
``refillRate``); ``parse_token_status`` reads it, ``project_status`` carries it forward by Keepa's
minute refills, ``wait_seconds`` says how long a request of n tokens must wait, and the status board
remembers the latest status per (server, key) in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenStatus:
    """Keepa's token bucket as reported by a response (every response, a 429 included, carries it)."""

    tokens_left: int  # may be negative: Keepa lets a request overdraw the bucket
    refill_in_ms: int  # until the next refill
    refill_rate_per_min: int  # tokens added per minute
    timestamp_ms: int | None = None  # server time of the response


def parse_token_status(body: Mapping[str, Any]) -> TokenStatus:
    """Read ``tokensLeft`` / ``refillIn`` / ``refillRate`` / ``timestamp`` from a Keepa response body."""
    values: dict[str, int] = {}
    for key in ("tokensLeft", "refillIn", "refillRate"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Keepa response has no integer {key!r} (got {value!r})")
        values[key] = value
    timestamp = body.get("timestamp")
    return TokenStatus(
        tokens_left=values["tokensLeft"],
        refill_in_ms=values["refillIn"],
        refill_rate_per_min=values["refillRate"],
        timestamp_ms=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


def wait_seconds(status: TokenStatus, needed: int) -> float:
    """Seconds to wait before a request costing ``needed`` tokens can be sent.

    0 when ``tokens_left >= needed``; otherwise ``refillIn`` plus the deficit
    (``needed - tokens_left``, larger when the bucket is overdrawn) at ``refillRate`` per minute. This
    never undershoots whether Keepa refills continuously or once a minute (it overshoots by at most one
    refill period in the latter case), and a 429 costs more than the slack.
    """
    if needed <= status.tokens_left:
        return 0.0
    if status.refill_rate_per_min <= 0:
        raise ValueError("Keepa reports a refill rate of 0: the bucket will never refill (plan expired?)")
    deficit = needed - status.tokens_left
    return status.refill_in_ms / 1000 + deficit / status.refill_rate_per_min * 60


def project_status(status: TokenStatus, elapsed_s: float) -> TokenStatus:
    """``status`` as it should stand ``elapsed_s`` seconds after it was reported.

    Keepa adds ``refillRate`` tokens once a minute, the first time ``refillIn`` ms after the report,
    and lets tokens above an hour's refill expire; another consumer of the key can only make the real
    balance lower, which the next response (or 429) corrects.
    """
    if elapsed_s <= 0:
        return status
    first = status.refill_in_ms / 1000
    if elapsed_s < first:
        return TokenStatus(
            status.tokens_left, int(status.refill_in_ms - elapsed_s * 1000), status.refill_rate_per_min
        )
    ticks = 1 + int((elapsed_s - first) // 60)
    cap = status.refill_rate_per_min * 60
    tokens = status.tokens_left
    if tokens < cap:
        tokens = min(cap, tokens + ticks * status.refill_rate_per_min)
    next_in = 60.0 - ((elapsed_s - first) % 60.0)
    return TokenStatus(tokens, int(next_in * 1000), status.refill_rate_per_min)


class _StatusBoard:
    """Last token status per (server, key) in this process, with the clock time it was seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[TokenStatus, float]] = {}

    def get(self, scope: str, now: float) -> TokenStatus | None:
        with self._lock:
            entry = self._entries.get(scope)
        if entry is None:
            return None
        status, seen = entry
        return project_status(status, now - seen)

    def put(self, scope: str, status: TokenStatus, now: float) -> None:
        with self._lock:
            self._entries[scope] = (status, now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


STATUS = _StatusBoard()


def reset_token_status() -> None:
    """Forget every remembered Keepa token status (tests)."""
    STATUS.clear()
