"""``raw_payloads`` and its leases inside one process, on both warehouse backends: a partition leased
by a live run is refused before any request; one leased by a run that has ended is taken over."""

from __future__ import annotations

from datetime import date

import dagster as dg

from asin_platform.definitions import ASSETS
from asin_platform.resources.upstream import KeepaClient
from asin_platform.settings import get_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient, reset_simulators

DAY = date(2025, 3, 10)


def _materialize(warehouse, client: SimulatedUpstreamClient, instance: dg.DagsterInstance):  # noqa: ANN001, ANN202
    resources = {
        "upstream": client,
        "keepa": KeepaClient(),
        "warehouse": warehouse,
        "settings": get_settings(),
    }
    return dg.materialize(
        ASSETS,
        selection=["raw_payloads"],
        resources=resources,
        partition_key=f"{DAY}|US",
        raise_on_error=False,
        instance=instance,
    )


def test_a_partition_leased_by_a_live_run_is_refused_before_any_request(warehouse) -> None:  # noqa: ANN001
    reset_simulators()  # a fresh server: its request count is this test's
    client = SimulatedUpstreamClient(sim_sites=["US"], sim_asins_per_site=40, fault_seed=901)
    with warehouse.leases("raw_payloads", [("US", DAY)], holder="another-run", ttl_s=600) as got:
        assert got
        result = _materialize(warehouse, client, dg.DagsterInstance.ephemeral())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "not fetched, no request sent: 1 partition(s) are being fetched by another run" in message
    assert "(US 2025-03-10 by run another-run)" in message
    assert client.simulator_app().state.stats.snapshot()["requests"] == 0  # no quota spent
    assert warehouse.read("raw_payloads").is_empty()
    # released by its holder: the next ingest fetches, and leaves no lease behind
    assert _materialize(warehouse, client, dg.DagsterInstance.ephemeral()).success
    assert warehouse.read("raw_payloads").height > 0
    assert warehouse.query("SELECT count(*) AS n FROM ingest_leases")["n"][0] == 0


def test_the_lease_of_a_run_that_has_ended_is_taken_over(warehouse) -> None:  # noqa: ANN001
    client = SimulatedUpstreamClient(sim_sites=["US"], sim_asins_per_site=40, fault_seed=902)
    instance = dg.DagsterInstance.ephemeral()
    dead = _materialize(warehouse, client, instance)  # a run the instance knows has finished ...
    assert dead.success
    # ... whose lease survived it (as a run killed with kill -9 leaves it)
    warehouse.acquire_leases("raw_payloads", [("US", DAY)], holder=dead.run_id, ttl_s=600)
    again = _materialize(warehouse, client, instance)
    assert again.success
    logs = [e.message for e in instance.all_logs(again.run_id)]
    assert any(f"took over 1 lease(s) of run {dead.run_id}, which has ended" in (m or "") for m in logs)
    assert warehouse.query("SELECT count(*) AS n FROM ingest_leases")["n"][0] == 0
