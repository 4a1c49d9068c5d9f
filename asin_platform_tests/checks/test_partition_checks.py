"""Per-partition check evaluations through Dagster: a ranged run reports one evaluation per
(date, site) partition of every partitioned check, a products batch that fails for good fails the
partition's blocking coverage check (and the run), freshness judges the newest day, and the check
summary (``asin-platform checks``) counts what the instance holds."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

from asin_platform.checks import ingest as ingest_checks
from asin_platform.cli import main
from asin_platform.commands.checks import (
    partitioned_check_keys,
    range_partition_keys,
    summarise_checks,
    summary_line,
)
from asin_platform.definitions import ASSETS, CHECKS
from asin_platform.partitions import build_date_site_partitions
from asin_platform.resources.upstream import KeepaClient
from asin_platform.runner import materialize_range, range_tags, selection_with_checks
from asin_platform.settings import get_settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

SITES = ["US", "DE"]
ALL_SITES = ["US", "UK", "DE", "JP"]
START, END = date(2025, 3, 10), date(2025, 3, 11)
N_ASINS = 40
PRODUCTS = "/v1/sites/{site}/products"
INGEST = dg.AssetSelection.assets("raw_payloads", "mart_timeseries_daily").required_multi_asset_neighbors()


def _client(cls: type = SimulatedUpstreamClient, **knobs: Any) -> SimulatedUpstreamClient:
    return cls(sim_asins_per_site=N_ASINS, sim_sites=ALL_SITES, base_delay=0.001, max_delay=0.01, **knobs)


def _defs(client: SimulatedUpstreamClient, warehouse) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        resources={
            "upstream": client,
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
    )


def _ingest_check_keys(defs: dg.Definitions) -> list[dg.AssetCheckKey]:
    return [
        k
        for k in partitioned_check_keys(defs)
        if k.asset_key.path[0] in ("raw_payloads", "mart_timeseries_daily")
    ]


def test_ranged_run_reports_one_evaluation_per_partition(warehouse, capsys, monkeypatch) -> None:
    defs = _defs(_client(), warehouse)
    raw_reads: list[list] = []
    read_slices = ingest_checks.read_slices

    def counting_read_slices(warehouse, table, parts, **kwargs):
        if table == "raw_payloads":
            raw_reads.append(parts)
        return read_slices(warehouse, table, parts, **kwargs)

    # mart_coverage and raw_payloads_complete both judge the raw payloads: one read per run
    monkeypatch.setattr(ingest_checks, "read_slices", counting_read_slices)
    with dg.instance_for_test() as instance:
        summaries = materialize_range(
            defs,
            ["raw_payloads", "mart_timeseries_daily"],
            sites=SITES,
            start=START,
            end=END,
            instance=instance,
            log=lambda _: None,
        )
        assert [s.success for s in summaries] == [True, True]
        assert len(raw_reads) == len(summaries)
        keys = _ingest_check_keys(defs)
        assert len(keys) == 5
        partitions = range_partition_keys(SITES, START, END)
        for key in keys:
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
            by_partition = sorted((r.partition, r.status) for r in history)
            # exactly one completed execution per partition, none left planned (= Skipped in the UI)
            assert by_partition == sorted((p, Status.SUCCEEDED) for p in partitions), key
        [summary] = [s for s in summarise_checks(instance, keys, partitions) if s.check == "mart_coverage"]
        assert summary.counts == {"passed": 4, "warned": 0, "failed": 0, "not evaluated": 0}
        # a day outside the runs counts as not evaluated, never as passed
        wider = range_partition_keys(SITES, START, END + timedelta(days=1))
        [wide] = [s for s in summarise_checks(instance, keys, wider) if s.check == "mart_coverage"]
        assert wide.counts == {"passed": 4, "warned": 0, "failed": 0, "not evaluated": 2}
        line = summary_line(instance, dg.Definitions(asset_checks=CHECKS), SITES, START, END)
        assert line.startswith(
            "checks: 11 partitioned checks x 4 partitions: 20 passed, 0 warned, 0 failed, 24 not evaluated "
        )
        # the CLI reads the instance of $DAGSTER_HOME (instance_for_test sets it)
        assert (
            main(["checks", "--start", str(START), "--end", str(END + timedelta(days=1)), "--sites", *SITES])
            == 0
        )
        out = capsys.readouterr().out
        assert f"asset checks over {START}..{END + timedelta(days=1)} x US, DE:" in out
        row = next(line for line in out.splitlines() if " mart_coverage " in line)
        assert row.split()[-4:] == ["4", "0", "0", "2"]
        assert "worst partitions" not in out  # nothing failed or warned; unchecked days are counted only


class _FailOneProductsBatch(httpx.AsyncBaseTransport):
    """Answers 503 to every attempt of the first products batch it sees; the rest go to the simulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.failed_batch: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/products"):
            batch = request.url.params.get("asins", "")
            self.failed_batch = self.failed_batch or batch
            if batch == self.failed_batch:
                return httpx.Response(503, json={"error": "unavailable"})
        return await self.inner.handle_async_request(request)


class _ProductsOutage(SimulatedUpstreamClient):
    """The simulated client with one products batch failing for good (stand-in until the
    simulator's fault knob for it exists)."""

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        transport = _FailOneProductsBatch(super()._transport())
        _TRANSPORTS.append(transport)
        return transport


_TRANSPORTS: list[_FailOneProductsBatch] = []


def test_failed_products_batch_fails_the_blocking_coverage_check(warehouse) -> None:
    _TRANSPORTS.clear()
    partition = f"{START}|US"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=selection_with_checks(["raw_payloads", "mart_timeseries_daily"]),
            resources={
                "upstream": _client(_ProductsOutage, batch_size=10),
                "keepa": KeepaClient(),
                "warehouse": warehouse,
                "settings": get_settings(),
            },
            partition_key=partition,
            instance=instance,
            raise_on_error=False,
        )
        coverage_key = dg.AssetCheckKey(dg.AssetKey("mart_timeseries_daily"), "mart_coverage")
        [summary] = summarise_checks(instance, [coverage_key], [partition])
    assert summary.counts == {"passed": 0, "warned": 0, "failed": 1, "not evaluated": 0}
    [(worst_partition, state, text)] = summary.worst
    assert (worst_partition, state) == (partition, "failed") and "failed for good" in text
    assert not result.success  # the blocking check fails the run
    failed_batch = next(t.failed_batch for t in _TRANSPORTS if t.failed_batch)
    assert len(failed_batch.split(",")) == 10
    [coverage] = [e for e in result.get_asset_check_evaluations() if e.check_name == "mart_coverage"]
    assert coverage.partition == partition and not coverage.passed and coverage.blocking
    assert coverage.metadata["failed_requests"].value == 1
    assert coverage.metadata["failed_asins"].value == 10
    assert coverage.metadata["failed_endpoints"].value == PRODUCTS
    assert coverage.description.startswith(f"1 request(s) for 10 ASINs failed for good on {PRODUCTS}")
    # the timeseries is complete: only the failed request fails the partition
    assert coverage.metadata["timeseries_coverage"].value == 1.0
    assert coverage.metadata["core_coverage"].value < 1.0


def _freshness(warehouse, instance) -> dg.AssetCheckEvaluation:
    """mart_freshness built from settings that track the US only (one site keeps the test short)."""
    settings = get_settings().model_copy(update={"sites": ("US",)})
    freshness = [
        c
        for c in ingest_checks.build_checks(settings, build_date_site_partitions(settings))
        if c.node_def.name.endswith("mart_freshness")
    ]
    result = dg.materialize(
        [*ASSETS, *freshness],
        selection=dg.AssetSelection.checks(*[k for c in freshness for k in c.check_keys]),
        resources={
            "upstream": _client(),
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        instance=instance,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def _ingest(warehouse, instance, **run: Any) -> None:
    result = dg.materialize(
        ASSETS,
        selection=INGEST,
        resources={
            "upstream": _client(),
            "keepa": KeepaClient(),
            "warehouse": warehouse,
            "settings": get_settings(),
        },
        instance=instance,
        **run,
    )
    assert result.success


def test_freshness_ignores_an_old_backfill_and_fails_on_a_stale_newest_day(warehouse) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    year_ago = yesterday - timedelta(days=365)
    with dg.instance_for_test() as instance:
        # only a year-old range: the newest day is stale, whatever ran last
        _ingest(warehouse, instance, tags=range_tags("US", year_ago, year_ago + timedelta(days=1)))
        stale = _freshness(warehouse, instance)
        assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
        assert stale.metadata["latest_date_by_site"].value == {"US": str(year_ago + timedelta(days=1))}
        assert stale.description.startswith(f"stale: US (newest {year_ago + timedelta(days=1)}")

        _ingest(warehouse, instance, partition_key=f"{yesterday}|US")
        assert _freshness(warehouse, instance).passed
        # backfilling an old range afterwards does not make it fail
        _ingest(
            warehouse,
            instance,
            tags=range_tags("US", year_ago - timedelta(days=3), year_ago - timedelta(days=2)),
        )
        fresh = _freshness(warehouse, instance)
        assert fresh.passed, fresh.description
        assert fresh.metadata["latest_date_by_site"].value == {"US": str(yesterday)}
