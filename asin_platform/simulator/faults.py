"""Fault knobs (``FaultConfig``) and request counters (``SimulatorStats``) shared by the unified routes
(``server.py``) and the Keepa routes (``keepa.py``).

Every fault is drawn from a seeded hash (``numerics.uniform``), never from a global RNG. Request-level
faults (5xx, latency, timeout, truncation, row faults) hash the request counter, so the same seed and
the same request sequence give the same faults. Two knobs hash what the request *is* instead, so a
retry meets the same fault, as it would against a broken upstream:

- ``fail_for_good``: ``FailRule`` s; every request a rule matches (endpoint, site, day, a batch holding
  an ASIN) is answered 5xx or 429 on every attempt, so the client must give the batch up.
- ``mutation_rate``: the share of mutable JSON values (``MUTABLE_FIELDS``) replaced by a negative, a
  non-numeric string, 10**12 or (required fields only) null, drawn per (endpoint, site, date, asin, field[, keyword]) cell.
  ``SimulatorStats.mutations()`` lists every mutated value the server delivered intact, so a test can
  reconcile "every mutated value is quarantined or flagged" cell by cell.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from asin_platform.simulator.numerics import uniform

FAULT_KINDS: tuple[str, ...] = (
    "error_5xx",
    "latency",
    "timeout",
    "malformed",
    "duplicate_rows",
    "missing_rows",
    "out_of_range",
    "extra_fields",
    "fail_for_good",
    "mutated_value",
)
# Endpoint (record kind) -> the JSON fields ``mutation_rate`` may replace.
MUTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "timeseries": ("bsr_root", "bsr_sub", "price", "rating", "review_count", "new_offer_count"),
    "products": ("bullet_count", "image_count", "title_length"),
    "keywords": ("search_volume",),
}
# Only values the platform requires are sent null: elsewhere null is a legitimate value (unranked, no
# offer, no reviews yet, a Keepa history without review counts) that no check could tell from a fault.
NULL_MUTABLE_FIELDS = frozenset({"bullet_count", "image_count", "title_length", "search_volume"})
MUTATION_KINDS: tuple[str, ...] = ("negative", "string", "huge", "null")
HUGE_VALUE = 10**12
FAIL_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class FailRule:
    """Requests that fail on every attempt. ``None`` matches anything.

    ``endpoint`` is the record kind (``asins``, ``products``, ``timeseries``, ``reviews``,
    ``keywords``; single-ASIN routes count as their batch kind) or ``keepa`` for ``/product``. ``day``
    matches the request's ``date``, or lies in its ``start..end`` / ``since..until`` range (Keepa: the
    day of the response instant). ``asin`` picks the batch that holds it. Spec text for the CLI and
    the simulated clients: ``endpoint:site:day:asin[:status]``, ``*`` for any, e.g.
    ``products:US:2025-03-01:B0ABCDEFGH:503``.
    """

    endpoint: str = "products"
    site: str | None = None
    day: date | None = None
    asin: str | None = None
    status: int = 503

    def __post_init__(self) -> None:
        if self.status not in FAIL_STATUSES:
            raise ValueError(f"fail-for-good status must be one of {FAIL_STATUSES}, got {self.status}")

    @classmethod
    def parse(cls, spec: str) -> FailRule:
        parts = spec.strip().split(":")
        if not 4 <= len(parts) <= 5:
            raise ValueError(f"bad fail-for-good rule {spec!r}: expected endpoint:site:day:asin[:status]")

        def part(k: str) -> str | None:
            return None if k in ("", "*") else k

        day = part(parts[2])
        try:
            return cls(
                endpoint=parts[0],
                site=part(parts[1]),
                day=date.fromisoformat(day) if day else None,
                asin=part(parts[3]),
                status=int(parts[4]) if len(parts) == 5 else 503,
            )
        except ValueError as exc:
            raise ValueError(f"bad fail-for-good rule {spec!r}: {exc}") from None

    def matches(self, endpoint: str, site: str, days: tuple[date, date] | None, asins: Iterable[str]) -> bool:
        if self.endpoint != endpoint or (self.site is not None and self.site != site):
            return False
        if self.day is not None and (days is None or not days[0] <= self.day <= days[1]):
            return False
        return self.asin is None or self.asin in set(asins)


@dataclass(frozen=True)
class Mutation:
    """One JSON value the server replaced (``mutation_rate``) and delivered intact."""

    endpoint: str  # timeseries | products | keywords
    site: str
    date: str  # the point's date (timeseries) or the request's date
    asin: str
    field: str  # the contract field name (``bullet_count``, not ``listing.bullet_count``)
    value: Any  # what was sent: a negative number, a string, 10**12 or None
    original: Any  # what the market holds
    keyword: str | None = None  # keywords: which keyword's search_volume

    @property
    def cell(self) -> tuple[str, str, str, str, str, str | None]:
        return (self.endpoint, self.site, self.date, self.asin, self.field, self.keyword)


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
    fail_for_good: tuple[FailRule | str, ...] = ()  # requests failing on every attempt (rules or specs)
    mutation_rate: float = 0.0  # share of MUTABLE_FIELDS values replaced (see the module docstring)

    def __post_init__(self) -> None:
        rules = tuple(r if isinstance(r, FailRule) else FailRule.parse(r) for r in self.fail_for_good)
        object.__setattr__(self, "fail_for_good", rules)
        if not 0.0 <= self.mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must be in [0, 1], got {self.mutation_rate}")

    def failing_status(
        self, endpoint: str, site: str, days: tuple[date, date] | None, asins: Iterable[str]
    ) -> int | None:
        """The status of the first rule failing this request for good, or None."""
        asins = list(asins)
        for rule in self.fail_for_good:
            if isinstance(rule, FailRule) and rule.matches(endpoint, site, days, asins):
                return rule.status
        return None

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
                self.fail_for_good,
                self.mutation_rate,
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
        self._mutations: dict[tuple[Any, ...], Mutation] = {}

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

    def record_mutations(self, mutations: Iterable[Mutation]) -> None:
        """Mutated values of a response that was delivered intact; a retry's repeat is kept once."""
        with self._lock:
            for m in mutations:
                self._mutations[m.cell] = m

    def mutations(self) -> list[Mutation]:
        """Every mutated value delivered so far, ordered by cell."""
        with self._lock:
            found = list(self._mutations.values())
        return sorted(found, key=lambda m: tuple("" if v is None else v for v in m.cell))

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: counts plus accepted-request timestamps per token."""
        with self._lock:
            return {
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "faults": dict(self.faults),
                "accepted": {k: list(v) for k, v in self.accepted.items()},
                "mutated_values": len(self._mutations),
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


@dataclass
class RequestFaults:
    """The request-level fault draws of one family of routes, keyed by the family's own request counter.

    ``offset`` keeps families apart (the Keepa routes count their own requests and draw with +999), so
    adding a family never shifts another's faults."""

    config: FaultConfig
    stats: SimulatorStats
    offset: int = 0
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_request(self) -> int:
        with self.lock:
            n = self.counter
            self.counter += 1
            return n

    def draw(self, n: int, kind: str) -> float:
        return uniform(self.config.seed, n, self.offset + FAULT_KINDS.index(kind) + 1)

    def salted(self, n: int, salt: int) -> float:
        """A further draw of request ``n`` (which status, which row, where to cut)."""
        return uniform(self.config.seed, n, salt if self.offset == 0 else salt + self.offset + 1)

    async def delay(self, n: int) -> None:
        """Latency (every request, jittered) and timeouts (a share of requests) before answering."""
        cfg = self.config
        if cfg.latency_ms > 0:
            self.stats.record_fault("latency")
            await asyncio.sleep(cfg.latency_ms / 1000.0 * (0.5 + self.draw(n, "latency")))
        if self.draw(n, "timeout") < cfg.timeout_rate:
            self.stats.record_fault("timeout")
            await asyncio.sleep(cfg.timeout_seconds)

    def fails_5xx(self, n: int) -> bool:
        if self.draw(n, "error_5xx") >= self.config.error_5xx_rate:
            return False
        self.stats.record_fault("error_5xx")
        return True

    def truncate(self, n: int, payload: bytes) -> bytes:
        """The payload cut at 20-80% for a share ``malformed_rate`` of requests, else unchanged."""
        if self.draw(n, "malformed") >= self.config.malformed_rate:
            return payload
        self.stats.record_fault("malformed")
        return payload[: max(1, int(len(payload) * (0.2 + 0.6 * self.salted(n, 105))))]
