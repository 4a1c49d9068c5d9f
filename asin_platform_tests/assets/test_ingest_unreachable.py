"""``raw_payloads`` against an upstream nothing can reach: the run fails at once with one line saying
so, is not re-run by the asset's retry policy, and keeps what it stored before it stopped."""

from __future__ import annotations

import json
import socket
from datetime import date
from typing import Any, ClassVar

import dagster as dg
import httpx
import polars as pl

from asin_platform.definitions import build_assets, build_checks
from asin_platform.partitions import build_date_site_partitions
from asin_platform.resources.upstream import KeepaClient, UnifiedApiClient
from asin_platform.runner import range_tags, selection_with_checks
from asin_platform.settings import Settings, load_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

DAY = date(2025, 3, 10)
# The asset's retry policy on, with no pause: a retried step would show as a second attempt.
SETTINGS = load_settings(
    environ={
        "ASIN_PLATFORM__SITES": "[US]",
        "ASIN_PLATFORM__ASSET_RETRY__MAX_RETRIES": "2",
        "ASIN_PLATFORM__ASSET_RETRY__DELAY": "0",
        "ASIN_PLATFORM__ASSET_RETRY__JITTER": "none",
    }
)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _materialize(warehouse: Any, upstream: Any, settings: Settings = SETTINGS, **kw: Any) -> Any:
    partitions_def = build_date_site_partitions(settings)
    return dg.materialize(
        [*build_assets(settings, partitions_def), *build_checks(settings, partitions_def)],
        selection=selection_with_checks(["raw_payloads"]),
        resources={
            "upstream": upstream,
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": settings,
        },
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
        **kw,
    )


def _events(result: Any, kind: str) -> list[Any]:
    return [e for e in result.all_events if e.event_type_value == kind]


def _failure(result: Any) -> Any:
    (failed,) = _events(result, "STEP_FAILURE")
    return failed.step_failure_data.user_failure_data


def test_a_dead_port_fails_the_partition_at_once_and_is_not_retried(warehouse) -> None:
    port = _dead_port()
    # retry_budget_s as in production: without the breaker each request would retry for 180 s
    upstream = UnifiedApiClient(
        base_url=f"http://127.0.0.1:{port}",
        token="tok-3c1f9e2a7b",
        max_attempts=2,
        base_delay=0.001,
        retry_budget_s=180.0,
    )
    result = _materialize(warehouse, upstream, partition_key=f"{DAY}|US")
    assert not result.success
    # one attempt of the step: the asset's retry policy (2 re-runs) is not spent on a dead upstream
    assert len(_events(result, "STEP_START")) == 1 and _events(result, "STEP_UP_FOR_RETRY") == []
    failure = _failure(result)
    prefix = (
        f"upstream http://127.0.0.1:{port} unreachable: a request failed after retries without reaching "
        "it (last: /v1/sites/US/asins: ConnectError: All connection attempts failed (Connection "
        "refused) after 2 attempts in "
    )
    suffix = (
        "); no further request was sent and nothing was written for US 2025-03-10; check that the "
        f"upstream at http://127.0.0.1:{port} is up and reachable from this host (settings "
        "upstream.base_url / upstream.keepa_base_url), then re-run"
    )
    assert failure.description.startswith(prefix) and failure.description.endswith(suffix)
    meta = {k: v.value for k, v in failure.metadata.items()}
    assert meta["upstream"] == f"http://127.0.0.1:{port}" and meta["consecutive_unreached_requests"] == 1
    assert (meta["partitions_not_written"], meta["partitions_stored_incomplete"]) == (1, 0)
    assert warehouse.count("raw_payloads") == 0  # nothing written, nothing replaced
    assert warehouse.query("SELECT count(*) AS n FROM ingest_leases")["n"][0] == 0  # leases released


class _DiesOn(SimulatedUpstreamClient):
    """The simulator, refusing every connection for days on or after ``dead_from`` (with
    ``after_universe``: every request but the universe pages); one partition at a time (no range
    requests: each day is fetched, then stored, before the next)."""

    dead_from: str = "9999-12-31"
    after_universe: bool = False
    fetch_range: ClassVar[None] = None  # the router then fetches day by day (fetch_days)
    overlap: int = 1

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        inner = super()._transport()
        assert inner is not None
        return _Refusing(inner, date.fromisoformat(self.dead_from), self.after_universe)


class _Refusing(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, dead_from: date, after_universe: bool) -> None:
        self.inner = inner
        self.dead_from = dead_from
        self.after_universe = after_universe

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        day = params.get("date") or params.get("start") or params.get("since")
        spared = self.after_universe and request.url.path.endswith("/asins")
        if day is not None and date.fromisoformat(day) >= self.dead_from and not spared:
            raise httpx.ConnectError("All connection attempts failed", request=request)
        return await self.inner.handle_async_request(request)


def _client(**knobs: Any) -> _DiesOn:
    return _DiesOn(sim_asins_per_site=250, sim_sites=["US"], base_delay=0.001, max_attempts=2, **knobs)


def test_partitions_stored_before_the_upstream_died_keep_their_slices(warehouse) -> None:
    result = _materialize(
        warehouse, _client(dead_from="2025-03-12"), tags=range_tags("US", DAY, date(2025, 3, 12))
    )
    assert not result.success and _events(result, "STEP_UP_FOR_RETRY") == []
    assert (
        "; no further request was sent and nothing was written for US 2025-03-12; stored complete "
        "before it stopped: US 2025-03-10..2025-03-11; check that the upstream at http://simulator.local "
    ) in _failure(result).description
    raw = warehouse.read("raw_payloads")
    # the two days fetched before are stored whole, as a failed fetch leaves them today
    assert sorted(str(d) for d in raw["date"].unique()) == ["2025-03-10", "2025-03-11"]
    assert raw["error"].null_count() == raw.height


def test_a_partition_cut_short_is_stored_with_its_stopped_requests_failed(warehouse) -> None:
    """The upstream goes after the universe: the partition is stored like one whose requests ran out of
    retries (each stopped request failed for good, with why), the next day is never fetched."""
    upstream = _client(dead_from="2025-03-10", after_universe=True)
    result = _materialize(warehouse, upstream, tags=range_tags("US", DAY, date(2025, 3, 11)))
    assert not result.success and _events(result, "STEP_UP_FOR_RETRY") == []
    description = _failure(result).description
    assert description.startswith(
        "upstream http://simulator.local unreachable: 3 consecutive requests failed after retries without "
        "reaching it (last: /v1/sites/US/"
    )
    assert (
        "; no further request was sent and nothing was written for US 2025-03-11; stored incomplete, the "
        "requests it stopped marked failed: US 2025-03-10; check that the upstream at "
    ) in description
    raw = warehouse.read("raw_payloads")
    assert [str(d) for d in raw["date"].unique()] == ["2025-03-10"]
    failed = raw.filter(pl.col("error").is_not_null())
    universe = raw.filter(pl.col("endpoint") == "/v1/sites/{site}/asins")
    tracked = len(json.loads(universe["body"][0])["asins"])
    # every batch of every kind recorded failed, none lost: 4 kinds x ceil(tracked / 100) batches
    assert failed.height == raw.height - 1 == 4 * -(-tracked // 100)
    assert set(failed["endpoint"].str.split("/").list.last()) == {
        "products",
        "timeseries",
        "reviews",
        "keywords",
    }
    stopped = failed["error"].str.ends_with(
        "(upstream http://simulator.local unreachable, the fetch stopped)"
    )
    # the requests that ran out of their 2 attempts first say so; the one that opened it and the rest, why
    assert stopped.sum() >= 1 and (stopped | (failed["error"] == "connection error after 2 attempts")).all()


def test_an_upstream_that_answers_errors_is_not_unreachable(warehouse) -> None:
    """Every products and keywords batch answers 503 for good: raw_payloads completes as before, each
    request recorded as failed for good and counted by its check; the breaker stays out of it."""
    upstream = SimulatedUpstreamClient(
        sim_asins_per_site=30,
        sim_sites=["US"],
        base_delay=0.001,
        max_attempts=2,
        fail_for_good=["products:US:2025-03-10:*:503", "keywords:US:2025-03-10:*:503"],
    )
    result = _materialize(warehouse, upstream, partition_key=f"{DAY}|US")
    failed = warehouse.read("raw_payloads").filter(pl.col("error").is_not_null())
    assert failed.height == 2 and set(failed["status"].to_list()) == {503}
    assert _events(result, "STEP_FAILURE") == []  # raw_payloads itself succeeded: data, not a dead host
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_payloads_complete"]
    assert not check.passed
