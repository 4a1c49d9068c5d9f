"""Simulated upstream clients: the production clients served by the in-process simulator.

Test doubles, kept out of the production modules: each subclasses a real client and replaces only
the transport (``httpx.ASGITransport`` on a cached simulator app, no sockets) and, for Keepa, the
clock, so everything above the transport (bucket, retries, time budget, paging, batching, token
waits) is the production code path. Apps and markets are cached per configuration for the process,
like a real server whose quota state persists across fetches.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg
import httpx

from asin_platform.resources.upstream.keepa import KeepaClient
from asin_platform.resources.upstream.keepa_tokens import reset_token_status
from asin_platform.resources.upstream.unified import UnifiedApiClient

if TYPE_CHECKING:
    from asin_platform.settings import Settings

SIMULATED_KEEPA_KEY = "simulated-keepa-key"
_T = TypeVar("_T")

# Simulated servers and markets of this process, by configuration (markets are costly to build and
# shared by apps that differ only in faults or quota).
_APPS: dict[tuple[Any, ...], Any] = {}
_MARKETS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def _cached_app(key: tuple[Any, ...], market_key: tuple[Any, ...], build: Callable[[Any], _T]) -> _T:
    """The app of ``key``, built once from the (cached) market of ``market_key``."""
    from asin_platform.simulator import Market, MarketConfig

    with _LOCK:
        app = _APPS.get(key)
        if app is None:
            market = _MARKETS.get(market_key)
            if market is None:
                seed, sites, asins_per_site, epoch = market_key
                market = _MARKETS[market_key] = Market(
                    MarketConfig(
                        seed=seed,
                        sites=tuple(sites),
                        asins_per_site=asins_per_site,
                        epoch=date.fromisoformat(epoch),
                    )
                )
            app = _APPS[key] = build(market)
    return app


class _FaultKnobs(dg.ConfigurableResource):
    """Fault knobs both simulated sources take (``asin_platform.simulator.FaultConfig``)."""

    fault_seed: int = 0
    error_5xx_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    malformed_rate: float = 0.0
    # Requests failing on every attempt (``FailRule`` specs ``endpoint:site:day:asin[:status]``) and
    # the share of JSON values replaced by absurd ones: see ``asin_platform.simulator.faults``.
    fail_for_good: list[str] = []
    mutation_rate: float = 0.0

    def _common_faults(self) -> dict[str, Any]:
        return dict(
            seed=self.fault_seed,
            error_5xx_rate=self.error_5xx_rate,
            latency_ms=self.latency_ms,
            timeout_rate=self.timeout_rate,
            timeout_seconds=self.timeout_seconds,
            malformed_rate=self.malformed_rate,
            # a tuple: FaultConfig is frozen and the kwargs key the app cache (hashable)
            fail_for_good=tuple(self.fail_for_good),
            mutation_rate=self.mutation_rate,
        )


def reset_simulators() -> None:
    """Forget the cached simulated unified apps and every market (tests that need a fresh server)."""
    with _LOCK:
        for key in [k for k in _APPS if k[0] == "unified"]:
            del _APPS[key]
        _MARKETS.clear()


def reset_simulated_keepa(*, keep_markets: bool = False) -> None:
    """Forget the cached simulated Keepa apps (so their token buckets), the remembered token statuses
    and, unless ``keep_markets``, the generated markets (tests that need a fresh key)."""
    with _LOCK:
        for key in [k for k in _APPS if k[0] == "keepa"]:
            del _APPS[key]
        if not keep_markets:
            _MARKETS.clear()
    reset_token_status()


class SimulatedUpstreamClient(UnifiedApiClient, _FaultKnobs):
    """The same client, served by the in-process simulator over ``httpx.ASGITransport`` (no sockets).

    Everything above the transport is the production code path (bucket, retries, paging, batching),
    so tests and the embedded demo exercise what runs against a real vendor. The simulator app is
    built once per distinct configuration and kept for the process: like a real server, its quota
    state and ``stats`` persist across ``fetch_day`` calls (``simulator_app().state.stats``).
    Fault knobs mirror ``asin_platform.simulator.FaultConfig``; the client defaults to the server's
    quota (``qpm`` / ``burst`` = ``server_qpm`` / ``server_burst``) like a well-configured client.
    """

    base_url: str = "http://simulator.local"  # only names the host in URLs; nothing is resolved
    token: str = "simulated-token"
    # the market
    sim_seed: int = 7
    sim_asins_per_site: int = 2000
    sim_epoch: str = "2025-01-01"
    sim_sites: list[str] = ["US", "UK", "DE", "JP"]
    # the server's quota for ``token``
    server_qpm: int = 6000
    server_burst: int = 50
    # faults (FaultConfig) beyond the shared ones of _FaultKnobs
    duplicate_rows_rate: float = 0.0
    missing_rows_rate: float = 0.0
    out_of_range_rate: float = 0.0
    extra_fields: bool = False

    @classmethod
    def from_simulator_settings(cls, settings: Settings, **overrides: Any) -> SimulatedUpstreamClient:
        """The simulator of ``settings.simulator`` for ``settings.sites``, with the client's retry,
        batching and paging from settings and its quota equal to the simulator's."""
        sim = settings.simulator
        up = settings.upstream
        config: dict[str, Any] = dict(
            sim_seed=sim.seed,
            sim_asins_per_site=sim.asins_per_site,
            sim_epoch=sim.epoch.isoformat(),
            sim_sites=list(settings.sites),
            server_qpm=sim.qpm,
            server_burst=sim.burst,
            qpm=sim.qpm,
            burst=sim.burst,
            timeout=settings.rate_limit("unified").timeout,
            **cls.retry_config(settings),
            batch_size=up.batch_size,
            page_size=up.page_size,
            concurrency=up.concurrency,
        )
        config.update(overrides)
        return cls(**config)

    def _app_key(self) -> tuple[Any, ...]:
        return (
            self._market_key(),
            # hashed: the cache key must not hold the token in clear
            hashlib.sha256(self._token_value().encode()).hexdigest(),
            self.server_qpm,
            self.server_burst,
            tuple(sorted(self._fault_kwargs().items())),
        )

    def _market_key(self) -> tuple[Any, ...]:
        return (self.sim_seed, tuple(self.sim_sites), self.sim_asins_per_site, self.sim_epoch)

    def _fault_kwargs(self) -> dict[str, Any]:
        return dict(
            **self._common_faults(),
            duplicate_rows_rate=self.duplicate_rows_rate,
            missing_rows_rate=self.missing_rows_rate,
            out_of_range_rate=self.out_of_range_rate,
            extra_fields=self.extra_fields,
        )

    def simulator_app(self) -> Any:
        """The (cached) Starlette app serving this configuration; ``.state.stats`` for counters."""
        # Imported here: building an app pulls in the server (Starlette) only when simulating.
        from asin_platform.simulator import FaultConfig, Quota, create_app

        def build(market: Any) -> Any:
            return create_app(
                market,
                tokens={self._token_value(): Quota(self.server_qpm, self.server_burst)},
                faults=FaultConfig(**self._fault_kwargs()),
            )

        return _cached_app(("unified", *self._app_key()), self._market_key(), build)

    def _quota_scope(self) -> str:
        # One simulated server per configuration, so one client bucket per configuration too: two
        # simulators with different quotas must not share a bucket because they share a base URL.
        return f"{self.base_url}#{hash(self._app_key()) & 0xFFFFFFFF:08x}"

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        # raise_app_exceptions=False: a simulator bug answers 500 like a real server would, and is
        # retried / recorded instead of crashing the run.
        return httpx.ASGITransport(app=self.simulator_app(), raise_app_exceptions=False)


class VirtualClock:
    """Simulated time for the token bucket: a sleep advances it instantly (tests wait minutes in ms)."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()
        self.slept = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


class SimulatedKeepaClient(KeepaClient, _FaultKnobs):
    """The same client against the in-process simulator's Keepa mode over ``httpx.ASGITransport``.

    One app per configuration, kept for the process (so token balances persist across fetches, like a
    real key's): ``simulator_app().state.keepa`` holds the buckets, ``.state.stats`` the counters. The
    universe comes from the same app's unified route. With ``virtual_time`` the token bucket runs on a
    ``VirtualClock`` that the client's waits advance, so a test can wait "ten minutes" for tokens
    instantly and assert how long it waited (``virtual_clock().slept``). With ``sim_as_of="day_end"``
    each request asks for the market as of the last minute of the partition day (header
    ``X-Simulated-Now``), so a payload describes that day exactly as the unified API does; ``"clock"``
    uses the real clock like the real service. The key defaults to ``SIMULATED_KEEPA_KEY``.
    """

    base_url: str = "http://keepa.simulator.local"  # only names the host in URLs; nothing is resolved
    api_key: str = SIMULATED_KEEPA_KEY
    universe_base_url: str = "http://simulator.local"
    qpm: int = 60_000
    burst: int = 1_000
    sim_seed: int = 7
    sim_asins_per_site: int = 2000
    sim_epoch: str = "2025-01-01"
    sim_sites: list[str] = ["US", "UK", "DE", "JP"]
    sim_refill_rate: int = 6000  # the key's plan: tokens per minute (an hour's worth at most)
    sim_initial_tokens: int | None = None  # None: a full bucket
    sim_unified_token: str = "simulated-token"
    sim_as_of: str = "day_end"  # or "clock"
    virtual_time: bool = True

    @classmethod
    def from_simulator_settings(cls, settings: Settings, **overrides: Any) -> SimulatedKeepaClient:
        """The simulator of ``settings.simulator`` for ``settings.sites``, retry and budget from settings."""
        sim = settings.simulator
        config: dict[str, Any] = dict(
            sim_seed=sim.seed,
            sim_asins_per_site=sim.asins_per_site,
            sim_epoch=sim.epoch.isoformat(),
            sim_sites=list(settings.sites),
            token_budget=settings.upstream.keepa_token_budget,
            **cls.retry_config(settings),
        )
        config.update(overrides)
        return cls(**config)

    def _universe_token(self) -> str:
        return self.sim_unified_token

    def _app_key(self) -> tuple[Any, ...]:
        return (
            (self.sim_seed, tuple(self.sim_sites), self.sim_asins_per_site, self.sim_epoch),
            hashlib.sha256(self.key_value().encode()).hexdigest(),  # never the key in clear
            self.sim_unified_token,
            self.sim_refill_rate,
            self.sim_initial_tokens,
            self.virtual_time,
            tuple(sorted(self._common_faults().items())),
        )

    def _simulation(self) -> tuple[Any, VirtualClock]:
        from asin_platform.simulator import FaultConfig, KeepaPlan, Quota, create_app

        def build(market: Any) -> tuple[Any, VirtualClock]:
            vclock = VirtualClock()
            app = create_app(
                market,
                tokens={self.sim_unified_token: Quota(60_000, 1_000)},
                faults=FaultConfig(**self._common_faults()),
                clock=vclock.now if self.virtual_time else time.monotonic,
                keepa_keys={self.key_value(): KeepaPlan(self.sim_refill_rate, self.sim_initial_tokens)},
            )
            return app, vclock

        key = self._app_key()
        return _cached_app(("keepa", *key), key[0], build)

    def simulator_app(self) -> Any:
        """The (cached) Starlette app of this configuration: ``.state.keepa``, ``.state.stats``."""
        return self._simulation()[0]

    def virtual_clock(self) -> VirtualClock:
        return self._simulation()[1]

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        # raise_app_exceptions=False: a simulator bug answers 500 like a real server, and is retried.
        return httpx.ASGITransport(app=self.simulator_app(), raise_app_exceptions=False)

    def _universe_transport(self) -> httpx.AsyncBaseTransport | None:
        return self._transport()

    def _scope(self) -> str:
        # One simulated server per configuration, so one remembered token status per configuration.
        return f"{self.base_url.rstrip('/')}#{hash(self._app_key()) & 0xFFFFFFFF:08x}"

    def _clock(self) -> float:
        return self.virtual_clock().now() if self.virtual_time else time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        if self.virtual_time:
            await self.virtual_clock().sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def _headers(self, day: date) -> dict[str, str]:
        headers = super()._headers(day)
        if self.sim_as_of == "day_end":
            from asin_platform.simulator.keepa import SIMULATED_NOW_HEADER, day_end

            headers[SIMULATED_NOW_HEADER] = day_end(day).isoformat()
        return headers

    def _as_of(self, day: date) -> datetime:
        if self.sim_as_of == "day_end":
            from asin_platform.simulator.keepa import day_end

            return day_end(day)
        return super()._as_of(day)
