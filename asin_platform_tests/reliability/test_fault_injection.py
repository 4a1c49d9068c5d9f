"""Issue 11's fault-injection suite, small: 2 sites x 3 days x 60 ASINs through Dagster against the
bundled simulator behind an in-process faulty proxy (``faults.py``), reconciled cell by cell against
a clean run. ``benchmarks/reliability.py`` runs the issue's size and records the figures."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from asin_platform_tests.reliability.faults import (
    CLEAN,
    HARSH,
    MIXED,
    MUTATED,
    RunOutcome,
    fault_settings,
    mutations_caught,
    reconcile,
    run_pipeline,
)

START, END = date(2025, 3, 1), date(2025, 3, 3)
SETTINGS = fault_settings(("US", "DE"), 60)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    return run_pipeline(CLEAN, SETTINGS, tmp_path_factory.mktemp("clean") / "w.duckdb", START, END)


def _run(scenario, tmp_path: Path) -> RunOutcome:  # noqa: ANN001
    return run_pipeline(scenario, SETTINGS, tmp_path / "w.duckdb", START, END)


def test_the_clean_run_is_complete(clean: RunOutcome) -> None:
    assert clean.success and clean.raw["error"].null_count() == clean.raw.height
    assert clean.quarantine.is_empty() and sum(clean.faults_by_kind().values()) == 0
    assert all(frame.height > 0 for frame in clean.tables.values())


def test_mixed_faults_lose_nothing_and_duplicate_nothing(clean: RunOutcome, tmp_path: Path) -> None:
    # The mix, with the rare kinds raised (drops 2%, slow 1%, truncated 3%, HTML 2% -> 12%) so
    # that a ranged run of ~25 HTTP calls meets each of them; the benchmark runs the rates at its size.
    faulty = _run(replace(MIXED, dropped=0.12, slow=0.12, truncated=0.12, html=0.12, seed=12), tmp_path)
    faults = faulty.faults_by_kind()
    # every kind of fault happened ...
    assert {"429", "5xx", "dropped", "slow", "truncated", "html"} <= {k for k, v in faults.items() if v > 0}
    # ... was ridden out: no request failed for good, nothing unreadable stored as data
    assert faulty.success and faulty.raw["error"].null_count() == faulty.raw.height
    assert faulty.raw["attempts"].sum() > faulty.raw.height  # retries happened
    for table, figures in reconcile(clean, faulty).items():
        assert figures["clean_rows"] > 0, table
        assert (figures["rows_lost"], figures["rows_extra"], figures["duplicates"]) == (0, 0, 0), table
        assert figures["cells_differing"] == 0, table
    assert faulty.quarantine.is_empty()


def test_harsh_upstream_completes_with_nothing_lost(clean: RunOutcome, tmp_path: Path) -> None:
    faulty = _run(HARSH, tmp_path)
    assert faulty.proxy["429"] >= 5 and faulty.server["faults"]["error_5xx"] >= 3
    assert faulty.success and faulty.raw["error"].null_count() == faulty.raw.height
    for table, figures in reconcile(clean, faulty).items():
        assert figures["rows_lost"] == figures["duplicates"] == figures["cells_differing"] == 0, table


def test_every_mutated_value_is_quarantined_or_flagged(clean: RunOutcome, tmp_path: Path) -> None:
    faulty = _run(MUTATED, tmp_path)
    delivered, missed = mutations_caught(faulty)
    assert delivered > 50 and {m.endpoint for m in faulty.mutations} == {"timeseries", "products", "keywords"}
    assert missed == []  # 100% caught: none in the mart unflagged
    for table, figures in reconcile(clean, faulty).items():
        assert figures["rows_lost"] == figures["duplicates"] == 0, table
