"""The per-partition check factory (checks/partitioned.py ``partition_check``): the spec it builds,
the evaluations a run of it reports, and the read its checks share within a run (``shared_read``)."""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from asin_platform.checks.partitioned import Verdict, partition_check, shared_read
from asin_platform.partitions import DateSite, build_date_site_partitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.settings import Settings

PARTITIONS = build_date_site_partitions(Settings(sites=("US", "DE"), partitions_start=date(2025, 3, 1)))
KEY = "2025-03-02|US"


@dg.asset(name="things", partitions_def=PARTITIONS)
def things() -> None:
    return None


def _run(check: dg.AssetChecksDefinition, warehouse) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [things, check],
            partition_key=KEY,
            resources={"warehouse": warehouse},
            instance=instance,
            raise_on_error=False,
        )


def test_the_spec_carries_name_asset_blocking_and_description() -> None:
    check = partition_check(
        lambda warehouse, parts: {},
        name="things_ok",
        asset="things",
        partitions_def=PARTITIONS,
        description="all things fine",
        blocking=True,
    )
    [spec] = check.check_specs
    assert (spec.name, spec.asset_key, spec.blocking, spec.description) == (
        "things_ok",
        dg.AssetKey("things"),
        True,
        "all things fine",
    )
    assert check.partitions_def == PARTITIONS


@pytest.mark.parametrize("backend", ["duckdb"], indirect=True)
def test_a_run_reports_each_partition_verdict_at_the_severity(warehouse) -> None:
    seen: list[tuple[str, list[DateSite]]] = []

    def verdicts(wh: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
        seen.append((wh.url, parts))
        return {KEY: Verdict(False, "two things off", {"off": 2})}

    check = partition_check(
        verdicts,
        name="things_ok",
        asset="things",
        partitions_def=PARTITIONS,
        description="d",
        severity=dg.AssetCheckSeverity.WARN,
    )
    result = _run(check, warehouse)
    assert result.success  # a WARN never fails the run
    assert seen == [(warehouse.url, [DateSite(date(2025, 3, 2), "US")])]
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.partition, evaluation.passed, evaluation.severity, evaluation.description) == (
        KEY,
        False,
        dg.AssetCheckSeverity.WARN,
        "two things off",
    )
    assert evaluation.metadata["off"].value == 2


@pytest.mark.parametrize("backend", ["duckdb"], indirect=True)
def test_a_partition_without_a_verdict_fails_a_blocking_check_and_the_run(warehouse) -> None:
    check = partition_check(
        lambda wh, parts: {},
        name="things_ok",
        asset="things",
        partitions_def=PARTITIONS,
        description="d",
        blocking=True,
    )
    result = _run(check, warehouse)
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.partition, evaluation.passed, evaluation.severity) == (
        KEY,
        False,
        dg.AssetCheckSeverity.ERROR,
    )
    assert evaluation.description == "not evaluated: no data for this partition"


@pytest.mark.parametrize("backend", ["duckdb"], indirect=True)
def test_checks_of_one_run_share_a_read_and_the_next_run_reads_again(warehouse) -> None:
    reads: list[int] = []

    def read() -> pl.DataFrame:
        reads.append(1)
        return pl.DataFrame({"n": [len(reads)]})

    def verdicts(wh: Warehouse, parts: list[DateSite]) -> dict[str, Verdict]:
        frame = shared_read(("rows", tuple(parts)), read)
        return {KEY: Verdict(True, f"read {frame['n'][0]}")}

    checks = [
        partition_check(verdicts, name=name, asset="things", partitions_def=PARTITIONS, description="d")
        for name in ("first", "second")
    ]
    with dg.instance_for_test() as instance:
        for _ in range(2):
            result = dg.materialize(
                [things, *checks],
                partition_key=KEY,
                resources={"warehouse": warehouse},
                instance=instance,
            )
            assert (
                sorted(e.description for e in result.get_asset_check_evaluations())
                == [f"read {len(reads)}"] * 2
            )
    assert len(reads) == 2  # one read per run, shared by both checks
    # outside a check run nothing is held: every call reads
    shared_read(("rows",), read)
    shared_read(("rows",), read)
    assert len(reads) == 4
