"""A ranged run gives every partition its own metadata (issue 17): rows, coverage and top candidates of
that day and site, read back through the Dagster instance, on both warehouse backends."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from asin_platform.definitions import build_definitions
from asin_platform.resources.warehouse import Warehouse
from asin_platform.runner import materialize_range
from asin_platform.settings import AssetRetry, Settings
from asin_platform.simulator.clients import SimulatedUpstreamClient

SITES = ["US", "DE"]
START, END = date(2025, 3, 10), date(2025, 3, 12)
DAYS = [START + timedelta(days=k) for k in range((END - START).days + 1)]
CHAIN = ["raw_payloads", "mart_timeseries_daily", "features_daily", "score_baseline_daily", "top_candidates"]
# asset -> (table whose (site, date) slice it describes, metadata key holding its row count)
ROW_COUNTS = {
    "raw_payloads": ("raw_payloads", "payloads"),
    "mart_timeseries_daily": ("mart_timeseries_daily", "rows"),
    "fact_keywords": ("fact_keywords", "rows"),
    "fact_reviews": ("fact_reviews", "rows"),
    "quarantine": ("quarantine", "rows"),
    "features_daily": ("features_daily", "rows"),
    "score_baseline_daily": ("score_baseline_daily", "rows"),
}


def _metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, dg.MetadataValue]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=2
    ).records
    assert len(records) == 1, (asset, partition)
    materialization = records[0].asset_materialization
    assert materialization is not None and materialization.partition == partition
    return dict(materialization.metadata)


def test_each_partition_of_a_ranged_run_carries_its_own_figures(warehouse: Warehouse, tmp_path: Path) -> None:
    settings = Settings(
        exports_dir=tmp_path / "exports",
        artifacts_dir=tmp_path / "artifacts",
        asset_retry=AssetRetry(max_retries=0),
    )
    built = build_definitions(settings)
    client = SimulatedUpstreamClient(sim_asins_per_site=80, base_delay=0.001, max_delay=0.01)
    defs = dg.Definitions(
        assets=built.assets,
        asset_checks=built.asset_checks,
        resources={**built.resources, "upstream": client, "warehouse": warehouse},
    )
    instance = dg.DagsterInstance.ephemeral()
    summaries = materialize_range(
        defs, CHAIN, sites=SITES, start=START, end=END, instance=instance, log=lambda _: None
    )
    assert [s.success for s in summaries] == [True, True], [s.error for s in summaries]

    mart_rows = set()
    for site in SITES:
        for day in DAYS:
            partition = f"{day}|{site}"
            for asset, (table, key) in ROW_COUNTS.items():
                expected = warehouse.count(table, sites=[site], start=day, end=day)
                assert _metadata(instance, asset, partition)[key].value == expected, (asset, partition)
            mart = _metadata(instance, "mart_timeseries_daily", partition)
            assert 0.95 <= mart["coverage"].value <= 1.0
            assert mart["tracked_asins"].value == mart["rows"].value
            mart_rows.add(mart["rows"].value)

            # the top 10 of that day and site only, in the warehouse's order
            scores = warehouse.read("score_baseline_daily", sites=[site], start=day, end=day)
            best = scores.sort("rank_in_site").head(10)
            top = [r.data for r in _metadata(instance, "score_baseline_daily", partition)["top_10"].records]
            assert {(r["date"], r["site"]) for r in top} == {(day.isoformat(), site)}
            assert [r["asin"] for r in top] == best["asin"].to_list()

            export = _metadata(instance, "top_candidates", partition)
            exported = pl.read_csv(export["path"].value)
            assert export["path"].value.endswith(f"{site}/top_candidates_{day:%Y%m%d}.csv")
            assert [r.data["asin"] for r in export["top_10"].records] == exported["asin"].head(10).to_list()
            assert set(exported["asin"]) <= set(scores["asin"])
            # the plot is drawn for the newest day of each site only, and only there
            assert ("bsr_trajectories" in export) == (day == END), partition
    # the figures differ from day to day: none is a range-wide number copied onto every partition
    assert sum(mart_rows) > 0 and len(mart_rows) > 1
