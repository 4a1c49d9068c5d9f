"""Client-side token bucket (the request rate limiter of every upstream source), shared per
(base URL, API token) within the process.

The upstream quota belongs to the token, not to a client object: Dagster builds a fresh resource
instance per run (and assets may hold several), so the bucket lives in a module-level registry keyed
by a hash of (base_url, token). Every ``asyncio.run`` creates a new event loop, so the bucket holds
no loop-bound primitive (no ``asyncio.Lock`` / ``Condition``): its state is plain numbers on
``time.monotonic``, guarded by a ``threading.Lock``, and waiting is an ``asyncio.sleep`` outside
the lock. That makes it safe across loops and across threads running their own loops.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketSnapshot:
    """A consistent view of a bucket, for tests and progress lines."""

    tokens: float
    capacity: float
    rate_per_s: float  # the configured rate, or lower if the server advertised less
    configured_rate_per_s: float
    factor: float  # share of rate_per_s spent now: < 1 for a while after 429s
    blocked_for_s: float


# After a 429 the bucket spends a smaller share of its rate (multiplicative decrease, at most one
# cut per second), then recovers linearly: the AIMD rule of TCP. Alone at its quota a client never
# sees a 429, so this costs nothing; when other processes spend the same token, it is what makes
# them converge on sharing it instead of trading 429s until someone's retry budget runs out.
AIMD_CUT = 0.7
AIMD_RECOVERY_PER_S = 0.05
AIMD_FLOOR = 0.05
AIMD_COOLDOWN_S = 1.0
_EPSILON = 1e-9


class TokenBucket:
    """Token bucket: ``capacity`` requests back to back, refilled at ``rate_per_s``.

    ``acquire`` waits until a whole token is available and takes it. ``penalize`` (after a 429)
    empties the bucket and blocks everyone until the server's ``Retry-After`` has passed, so the
    concurrent requests of the same token back off together instead of each earning its own 429,
    and lowers the share of the rate spent for a while (AIMD, see above).
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError(f"need rate_per_s > 0 and capacity >= 1, got {rate_per_s}, {capacity}")
        self._lock = threading.Lock()
        self._clock = clock  # injectable (with sleep, its pair) so tests need not sleep
        self._sleep = sleep
        self._configured = float(rate_per_s)
        self._server_cap: float | None = None  # rate the server advertises (X-RateLimit-Limit)
        self._rate = float(rate_per_s)
        self._capacity = float(capacity)
        self._tokens = float(capacity)
        self._updated = clock()
        self._blocked_until = 0.0
        self._factor = 1.0
        self._last_cut = float("-inf")

    def _refill(self, now: float) -> None:
        # Caller holds the lock. Refill is computed lazily from elapsed time: no background task.
        # After a penalty _updated may lie in the future: then nothing accrues yet.
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate * self._factor)
            self._factor = min(1.0, self._factor + elapsed * AIMD_RECOVERY_PER_S)
            self._updated = now

    def configure(self, rate_per_s: float, capacity: float) -> None:
        """Change the quota in place (the latest client configuration of a token wins)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._configured = float(rate_per_s)
            self._rate = min(self._configured, self._server_cap or self._configured)
            self._capacity = float(capacity)
            self._tokens = min(self._tokens, self._capacity)

    def observe_limit(self, rate_per_s: float) -> bool:
        """The server advertised its quota: never spend faster than it, whatever we were told.

        A client configured above its real quota would otherwise earn a 429 per token interval and
        burn its retry budget on them. Returns True when this lowers the rate in force.
        """
        if rate_per_s <= 0:
            return False
        with self._lock:
            self._refill(self._clock())
            before = self._rate
            self._server_cap = float(rate_per_s)
            self._rate = min(self._configured, self._server_cap)
            return self._rate < before

    def try_acquire(self) -> float:
        """Take a token if one is available and return 0.0; else return the seconds to wait."""
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                return self._blocked_until - now
            self._refill(now)
            # A tolerance: a wait shorter than the clock's resolution would never end.
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / (self._rate * self._factor)

    async def acquire(self) -> float:
        """Wait (without holding any lock, so other loops/threads proceed) until a token is ours;
        returns the seconds waited."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait <= 0.0:
                return waited
            # Polling instead of reserving: a waiter re-checks after a 429 penalty landed while it
            # slept, so it honours a Retry-After it did not see itself.
            await self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        """The server said 429: drain the bucket and block every caller for ``seconds``."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens = min(self._tokens, 0.0)
            self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))
            if now - self._last_cut >= AIMD_COOLDOWN_S:
                # One cut per burst of 429s: the concurrent requests refused together are one signal.
                self._factor = max(AIMD_FLOOR, self._factor * AIMD_CUT)
                self._last_cut = now
            # No refill while blocked (else everyone fires together when the block ends, and the
            # server, which also said "one more in `seconds`", answers 429 again): start refilling
            # so that exactly one token is there when the block lifts. _refill skips a future
            # _updated, so the level stays put until then.
            self._updated = max(self._updated, self._blocked_until - 1.0 / (self._rate * self._factor))

    def sync_remaining(self, remaining: float) -> None:
        """Lower the level to the server's ``X-RateLimit-Remaining``.

        Another process spending the same token makes the server's bucket emptier than ours; taking
        the minimum re-synchronises without ever raising our level above what we computed.
        """
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, float(remaining))

    def snapshot(self) -> BucketSnapshot:
        with self._lock:
            now = self._clock()
            self._refill(now)
            return BucketSnapshot(
                tokens=self._tokens,
                capacity=self._capacity,
                rate_per_s=self._rate,
                configured_rate_per_s=self._configured,
                factor=self._factor,
                blocked_for_s=max(0.0, self._blocked_until - now),
            )


def bucket_params(qpm: int, burst: int, headroom: float, burst_reserve: float) -> tuple[float, float]:
    """(rate per second, capacity) the client spends for a server quota of ``qpm`` / ``burst``.

    Requests reach the server later than they leave the client, by a latency that varies (a GC
    pause, a busy core, the GIL). Arrivals that bunch up after a stall can exceed a server bucket
    that is exactly as full as ours: while it sat full waiting, its refill was wasted. Holding back
    ``burst_reserve`` of the burst keeps the server's bucket that many tokens ahead of ours, which
    absorbs ``burst * burst_reserve / rate`` seconds of latency variation (250 ms at 1200 qpm,
    burst 10). It costs only part of the one-off initial burst, not sustained throughput.
    Spending ``headroom`` less than ``qpm`` lets the server's bucket regain what a 429-free run
    still loses to jitter over time.
    """
    if not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    if not 0.0 <= burst_reserve < 1.0:
        raise ValueError(f"burst_reserve must be in [0, 1), got {burst_reserve}")
    rate = qpm * (1.0 - headroom) / 60.0
    capacity = burst - math.floor(burst * burst_reserve)
    return rate, float(max(1, capacity))


_REGISTRY: dict[str, TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


def _key(base_url: str, token: str) -> str:
    # Hashed so the registry (and anything that prints it) never holds the token in clear.
    return hashlib.sha256(f"{base_url.rstrip('/')}\0{token}".encode()).hexdigest()


def shared_bucket(base_url: str, token: str, rate_per_s: float, capacity: float) -> TokenBucket:
    """The process-wide bucket of (base_url, token), created on first use, re-configured if the
    quota changed."""
    key = _key(base_url, token)
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            bucket = _REGISTRY[key] = TokenBucket(rate_per_s, capacity)
            return bucket
    snap = bucket.snapshot()
    if not (math.isclose(snap.configured_rate_per_s, rate_per_s) and math.isclose(snap.capacity, capacity)):
        bucket.configure(rate_per_s, capacity)
    return bucket


def reset_buckets() -> None:
    """Forget every shared bucket (tests, and benchmarks that restart the server)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
