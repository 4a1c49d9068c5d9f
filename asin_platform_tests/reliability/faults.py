"""The fault-injection harness of issue 11: an in-process proxy in front of the bundled simulator,
the pipeline run through Dagster over it, and the reconciliation of a faulty run against a clean one.

Faults come from two places, both seeded:
- the simulator's own knobs (``asin_platform.simulator.faults``): 5xx, answers slower than the
  client's timeout, truncated bodies, mutated JSON values;
- ``FaultyTransport``, an httpx transport wrapped around the simulated client's (the in-process
  proxy): 429 with ``Retry-After``, dropped connections (the request served, the answer lost) and
  HTML instead of JSON (a captive portal, a load balancer's error page with status 200).

Everything above the transport is the production path: the client's bucket, retries and time budget,
``raw_payloads``, the mart assets and their checks, run by ``runner.materialize_range``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import httpx
import polars as pl

from asin_platform.definitions import build_assets, build_checks
from asin_platform.partitions import build_date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import materialize_range
from asin_platform.settings import Settings, load_settings
from asin_platform.simulator.clients import SimulatedKeepaClient, SimulatedUpstreamClient, reset_simulators
from asin_platform.simulator.numerics import uniform

# Compared cell by cell; payload ids and fetch times name the fetch, not the data.
TABLES: dict[str, tuple[str, ...]] = {
    "mart_timeseries_daily": ("site", "date", "asin"),
    "fact_reviews": ("site", "asin", "review_id"),
    "fact_keywords": ("site", "date", "asin", "keyword"),
    "dim_asin": ("site", "asin"),
}
FETCH_COLUMNS = ("payload_id", "fetched_at")
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>upstream down</body></html>"

# Proxy faults seen, by kind, across every transport of the process (tests reset it).
PROXY_FAULTS: Counter[str] = Counter()
_LOCK = threading.Lock()
_SEQ = [0]


class FaultyTransport(httpx.AsyncBaseTransport):
    """The in-process proxy: forwards to ``inner`` and, for a seeded share of requests, answers 429
    with ``Retry-After``, drops the connection after the server answered, or sends an HTML page."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cfg: ProxyFaults) -> None:
        self.inner = inner
        self.cfg = cfg

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _LOCK:
            n = _SEQ[0]
            _SEQ[0] += 1
        cfg = self.cfg
        u = uniform(cfg.seed, n, 1)
        if u < cfg.rate_429:
            PROXY_FAULTS["429"] += 1
            headers = {"Retry-After": f"{cfg.retry_after_s:g}", "Content-Type": "application/json"}
            body = b'{"error": {"code": "rate_limited", "message": "slow down"}}'
            return httpx.Response(429, headers=headers, content=body, request=request)
        response = await self.inner.handle_async_request(request)
        if u < cfg.rate_429 + cfg.drop_rate:
            await response.aread()
            PROXY_FAULTS["dropped"] += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        if u < cfg.rate_429 + cfg.drop_rate + cfg.html_rate:
            await response.aread()
            PROXY_FAULTS["html"] += 1
            return httpx.Response(200, headers={"Content-Type": "text/html"}, content=HTML, request=request)
        return response


@dataclass(frozen=True)
class ProxyFaults:
    seed: int = 0
    rate_429: float = 0.0
    retry_after_s: float = 0.01
    drop_rate: float = 0.0
    html_rate: float = 0.0


class FaultyUpstreamClient(SimulatedUpstreamClient):
    """The simulated unified client behind ``FaultyTransport``."""

    proxy_seed: int = 0
    proxy_429_rate: float = 0.0
    proxy_retry_after_s: float = 0.01
    proxy_drop_rate: float = 0.0
    proxy_html_rate: float = 0.0

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        inner = super()._transport()
        assert inner is not None
        cfg = ProxyFaults(
            self.proxy_seed,
            self.proxy_429_rate,
            self.proxy_retry_after_s,
            self.proxy_drop_rate,
            self.proxy_html_rate,
        )
        return FaultyTransport(inner, cfg)


@dataclass(frozen=True)
class Scenario:
    """A fault mix: the simulator's knobs plus the proxy's. Rates are per HTTP call."""

    name: str
    error_5xx: float = 0.0
    slow: float = 0.0  # answers slower than the client's timeout
    truncated: float = 0.0
    mutated: float = 0.0  # share of mutable JSON values
    rate_429: float = 0.0
    dropped: float = 0.0
    html: float = 0.0
    retry_after_s: float = 0.01  # the proxy's 429s
    seed: int = 11

    def client_faults(self, timeout_s: float) -> dict[str, Any]:
        return dict(
            fault_seed=self.seed,
            error_5xx_rate=self.error_5xx,
            timeout_rate=self.slow,
            timeout_seconds=timeout_s * 2,
            malformed_rate=self.truncated,
            mutation_rate=self.mutated,
            proxy_seed=self.seed,
            proxy_429_rate=self.rate_429,
            proxy_retry_after_s=self.retry_after_s,
            proxy_drop_rate=self.dropped,
            proxy_html_rate=self.html,
        )


CLEAN = Scenario("clean")
# The first mix: 10% 429 + 10% 5xx + 2% drops + 1% slow + 3% truncated + 2% HTML.
MIXED = Scenario("mixed", error_5xx=0.10, slow=0.01, truncated=0.03, rate_429=0.10, dropped=0.02, html=0.02)
HARSH = Scenario("harsh", error_5xx=0.20, rate_429=0.30)
MUTATED = Scenario("mutated", mutated=0.05)


def fault_settings(sites: tuple[str, ...], asins_per_site: int, *, timeout_s: float = 0.5) -> Settings:
    """Settings of a fault run: short timeout and waits, a retry budget that rides out the harsh mix,
    no Dagster step retries (the client's own retries must heal everything)."""
    return load_settings(
        environ={
            "ASIN_PLATFORM__SITES": "[" + ", ".join(sites) + "]",
            "ASIN_PLATFORM__SIMULATOR__ASINS_PER_SITE": str(asins_per_site),
            "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__TIMEOUT": str(timeout_s),
            "ASIN_PLATFORM__RETRY__BUDGET_S": "30",
            "ASIN_PLATFORM__RETRY_POLICY__BASE_DELAY": "0.01",
            "ASIN_PLATFORM__RETRY_POLICY__MAX_DELAY": "0.2",
            "ASIN_PLATFORM__ASSET_RETRY__MAX_RETRIES": "0",
        }
    )


@dataclass
class RunOutcome:
    scenario: Scenario
    tables: dict[str, pl.DataFrame]
    quarantine: pl.DataFrame
    raw: pl.DataFrame
    success: bool
    wall_s: float
    server: dict[str, Any]  # the simulator's stats snapshot
    proxy: dict[str, int]
    mutations: list[Any] = field(default_factory=list)

    def faults_by_kind(self) -> dict[str, int]:
        sim = {k: v for k, v in self.server["faults"].items() if k not in ("latency",)}
        named = {"error_5xx": "5xx", "timeout": "slow", "malformed": "truncated", "mutated_value": "mutated"}
        return {**{named.get(k, k): v for k, v in sim.items()}, **self.proxy}


def run_pipeline(
    scenario: Scenario, settings: Settings, warehouse_path: Path, start: date, end: date
) -> RunOutcome:
    """``raw_payloads`` + the mart (and their checks) over (settings.sites x [start, end]) through
    Dagster, against the simulator with ``scenario``'s faults; the resulting tables."""
    # The same faults for the same scenario, whatever ran before in this process: a fresh simulator
    # (its fault draws follow its request counter) and a fresh proxy sequence.
    reset_simulators()
    with _LOCK:
        PROXY_FAULTS.clear()
        _SEQ[0] = 0
    timeout = settings.rate_limit("unified").timeout
    upstream = FaultyUpstreamClient.from_simulator_settings(settings, **scenario.client_faults(timeout))
    partitions_def = build_date_site_partitions(settings)
    warehouse = Warehouse(url=str(warehouse_path))
    defs = SimpleNamespace(
        assets=build_assets(settings, partitions_def),
        asset_checks=build_checks(settings, partitions_def),
        resources={
            "upstream": upstream,
            "keepa": SimulatedKeepaClient.from_simulator_settings(settings),
            "warehouse": warehouse,
            "settings": settings,
        },
    )
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        summaries = materialize_range(
            defs,  # type: ignore[arg-type]
            ["raw_payloads", "mart_timeseries_daily"],
            sites=settings.sites,
            start=start,
            end=end,
            instance=instance,
            log=lambda _: None,
            log_level="WARNING",
        )
    wall = time.perf_counter() - started
    stats = upstream.simulator_app().state.stats
    return RunOutcome(
        scenario=scenario,
        tables={name: warehouse.read(name) for name in TABLES},
        quarantine=warehouse.read("quarantine"),
        raw=warehouse.read(
            "raw_payloads", columns=["site", "date", "endpoint", "status", "attempts", "error"]
        ),
        success=all(s.success for s in summaries),
        wall_s=wall,
        server=stats.snapshot(),
        proxy=dict(PROXY_FAULTS),
        mutations=stats.mutations(),
    )


# ------------------------------------------------------------------------------------ reconciling


def _data(frame: pl.DataFrame, key: tuple[str, ...]) -> pl.DataFrame:
    return frame.drop([c for c in FETCH_COLUMNS if c in frame.columns]).sort(key)


def reconcile(clean: RunOutcome, faulty: RunOutcome) -> dict[str, dict[str, int]]:
    """Per table: rows lost (keys of the clean run missing), extra rows, duplicate keys and cells
    that differ on the keys both hold."""
    out = {}
    for name, key in TABLES.items():
        a, b = _data(clean.tables[name], key), _data(faulty.tables[name], key)
        both = a.join(b, on=list(key), how="inner", suffix="__faulty")
        value_cols = [c for c in a.columns if c not in key]
        differing = sum(
            both.select(pl.col(c).ne_missing(pl.col(f"{c}__faulty")).sum()).item() for c in value_cols
        )
        out[name] = {
            "clean_rows": a.height,
            "rows_lost": a.join(b, on=list(key), how="anti").height,
            "rows_extra": b.join(a, on=list(key), how="anti").height,
            "duplicates": b.height - b.unique(subset=list(key)).height,
            "cells_differing": int(differing),
        }
    return out


TABLE_OF = {"timeseries": "mart_timeseries_daily", "products": "dim_asin", "keywords": "fact_keywords"}


def mutations_caught(outcome: RunOutcome) -> tuple[int, list[Any]]:
    """(mutated values delivered, those that reached the mart unflagged and unquarantined).

    A mutated value is caught when it is not stored (null) and its record is quarantined with its
    payload id. Mart rows hold the listing counts too, so products mutations are checked there."""
    quarantined = set(outcome.quarantine.select("table_name", "site", "asin").iter_rows())
    mart = outcome.tables["mart_timeseries_daily"]
    keywords = outcome.tables["fact_keywords"]
    missed = []
    for m in outcome.mutations:
        day = date.fromisoformat(m.date)
        if m.endpoint == "keywords":
            rows = keywords.filter(site=m.site, date=day, asin=m.asin, keyword=m.keyword)
        else:
            rows = mart.filter(site=m.site, date=day, asin=m.asin)
        stored_clean = rows.height == 0 or rows[m.field].is_null().all()
        if not (stored_clean and (TABLE_OF[m.endpoint], m.site, m.asin) in quarantined):
            missed.append(m)
    return len(outcome.mutations), missed
