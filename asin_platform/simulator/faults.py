"""Fault knobs (``FaultConfig``) and request counters (``SimulatorStats``) shared by the unified routes
(``server.py``) and the Keepa routes (``keepa.py``).

Every fault is drawn from a seeded hash (``numerics.uniform``), never from a global RNG, so the same
seed and the same request sequence give the same faults.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

FAULT_KINDS: tuple[str, ...] = (
    "error_5xx",
    "latency",
    "timeout",
    "malformed",
    "duplicate_rows",
    "missing_rows",
    "out_of_range",
    "extra_fields",
)


@dataclass(frozen=True)
class FaultConfig:
    """Deterministic fault injection. Rates are per fault-eligible request (authorised, not 429)."""

    seed: int = 0
    error_5xx_rate: float = 0.0  # answer 500 / 502 / 503 instead
    latency_ms: float = 0.0  # added to every request, jittered 0.5x..1.5x
    timeout_rate: float = 0.0  # sleep ``timeout_seconds`` before answering
    timeout_seconds: float = 30.0
    malformed_rate: float = 0.0  # status 200, JSON body cut mid-way
    duplicate_rows_rate: float = 0.0  # a row (point, review, item, ASIN) repeated
    missing_rows_rate: float = 0.0  # a batch item / row silently omitted (not in not_found)
    out_of_range_rate: float = 0.0  # bsr <= 0, rating 7.5 / -1, negative price / review_count, ...
    extra_fields: bool = False  # unknown fields added to every object

    @property
    def active(self) -> bool:
        return any(
            (
                self.error_5xx_rate,
                self.latency_ms,
                self.timeout_rate,
                self.malformed_rate,
                self.duplicate_rows_rate,
                self.missing_rows_rate,
                self.out_of_range_rate,
                self.extra_fields,
            )
        )


class SimulatorStats:
    """Thread-safe request counters, read by tests and benchmarks while the server runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.accepted: dict[str, list[float]] = {}

    def record_status(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.by_status[status] += 1
            if status == 429:
                self.rate_limited += 1

    def record_accept(self, token: str, at: float) -> None:
        with self._lock:
            self.accepted.setdefault(token, []).append(at)

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: counts plus accepted-request timestamps per token."""
        with self._lock:
            return {
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "faults": dict(self.faults),
                "accepted": {k: list(v) for k, v in self.accepted.items()},
            }

    def achieved_qpm(self, token: str) -> float:
        """Accepted requests per minute between the token's first and last accepted request."""
        with self._lock:
            times = list(self.accepted.get(token, []))
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0]) * 60.0

    def max_in_window(self, token: str, seconds: float) -> int:
        """Most accepted requests within any window of ``seconds`` (quota check: <= burst + rate*s)."""
        with self._lock:
            times = sorted(self.accepted.get(token, []))
        best, lo = 0, 0
        for hi, at in enumerate(times):
            while at - times[lo] > seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best
