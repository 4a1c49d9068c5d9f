"""The simulated clients pass the simulator's two per-request-identity fault knobs through:
``fail_for_good`` (requests that fail on every attempt) and ``mutation_rate`` (absurd JSON values)."""

from __future__ import annotations

from datetime import date

from asin_platform.resources.upstream import unified as up
from asin_platform.simulator.clients import SimulatedKeepaClient, SimulatedUpstreamClient

DAY = date(2025, 3, 1)


def test_fail_for_good_gives_the_matching_batches_up_and_nothing_else() -> None:
    client = SimulatedUpstreamClient(
        sim_sites=["US"], sim_asins_per_site=60, fail_for_good=["keywords:US:*:*:504"], max_attempts=2
    )
    got = client.fetch_day("US", DAY)
    failed = [r for r in got.responses if r.error is not None]
    assert failed and {r.endpoint for r in failed} == {up.KEYWORDS} and {r.status for r in failed} == {504}
    assert got.report.failed_requests == len(failed)
    assert (
        got.report.received_asins["keywords"] == 0
        and got.report.received_asins["products"] == got.report.tracked_asins > 0
    )
    assert client.simulator_app().state.stats.snapshot()["faults"]["fail_for_good"] == 2 * len(failed)


def test_mutation_rate_reaches_the_server_and_is_recorded_per_cell() -> None:
    client = SimulatedUpstreamClient(
        sim_sites=["US"], sim_asins_per_site=60, mutation_rate=0.05, fault_seed=3
    )
    client.fetch_day("US", DAY)
    mutations = client.simulator_app().state.stats.mutations()
    assert len(mutations) > 10
    assert {m.endpoint for m in mutations} <= {"timeseries", "products", "keywords"}
    clean = SimulatedUpstreamClient(sim_sites=["US"], sim_asins_per_site=60, fault_seed=3)
    clean.fetch_day("US", DAY)
    assert clean.simulator_app().state.stats.mutations() == []


def test_keepa_client_takes_the_knobs_too() -> None:
    client = SimulatedKeepaClient(sim_sites=["US"], sim_asins_per_site=30, fail_for_good=["keepa:US:*:*"])
    assert (
        client.simulator_app()
        is not SimulatedKeepaClient(sim_sites=["US"], sim_asins_per_site=30).simulator_app()
    )
    assert client._common_faults()["fail_for_good"] == ("keepa:US:*:*",)
