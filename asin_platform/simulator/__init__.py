"""The bundled upstream simulator: a deterministic synthetic Amazon market and an HTTP server speaking
the unified product API (docs/upstream_api.md) and Keepa's product API (docs/keepa.md) over the same
market. See docs/simulator.md."""

from __future__ import annotations

from collections.abc import Sequence

from asin_platform.settings import SimulatorSettings
from asin_platform.simulator.faults import FaultConfig, SimulatorStats
from asin_platform.simulator.keepa import DEFAULT_KEEPA_KEYS, KeepaPlan, keepa_products
from asin_platform.simulator.market import Market, MarketConfig, UnknownSiteError
from asin_platform.simulator.server import (
    Quota,
    RunningSimulator,
    create_app,
    serve,
    start_in_thread,
)

__all__ = [
    "DEFAULT_KEEPA_KEYS",
    "FaultConfig",
    "KeepaPlan",
    "Market",
    "MarketConfig",
    "Quota",
    "RunningSimulator",
    "SimulatorStats",
    "UnknownSiteError",
    "create_app",
    "keepa_products",
    "market_from_settings",
    "serve",
    "start_in_thread",
]


def market_from_settings(settings: SimulatorSettings, sites: Sequence[str]) -> Market:
    """The market described by ``settings.simulator`` for the platform's ``sites``."""
    return Market(
        MarketConfig(
            seed=settings.seed,
            sites=tuple(sites),
            asins_per_site=settings.asins_per_site,
            epoch=settings.epoch,
        )
    )
