"""The Dagster UI as a user sees it: headless Chromium (the Debian package, driven by Playwright)
against the webserver of the PostgreSQL-backed stack after the backfill of test_daemon_backfill.py.

Screenshots go to test-artifacts/ui/ (git-ignored); with ASIN_PLATFORM_UPDATE_SCREENSHOTS=1 they are
also copied, downscaled, to docs/screenshots/ (what the docs show)."""

import os
import re
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from asin_platform_tests.ops.stack import REPO, SITES

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("ASIN_PLATFORM_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    "headless Chromium is missing: sudo apt-get install -y chromium chromium-driver "
    "(Debian/Ubuntu; .ci/run installs it when CI=true) and pip install -e '.[test]' for playwright"
)
ARTIFACTS = REPO / "test-artifacts" / "ui"
DOCS_SHOTS = REPO / "docs" / "screenshots"
# Flags for a browser that talks to nothing but the webserver under test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Chromium context with a fresh profile (Playwright's own browser downloads are never used)."""
    if not CHROMIUM.exists():
        pytest.skip(INSTALL_HINT)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(INSTALL_HINT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, dagster_stack, backfilled) -> Iterator[Any]:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    yield page
    page.close()


def _open(page: Any, url: str) -> None:
    page.goto(url, wait_until="networkidle", timeout=60_000)
    # First visit of an instance without `nux: enabled: false` shows a community dialog.
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.click()


def _shot(page: Any, name: str, docs_width: int = 1400, palette: bool = True) -> Path:
    """``palette=False`` keeps full colour: a 128-colour palette turns small status dots grey."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    if os.environ.get("ASIN_PLATFORM_UPDATE_SCREENSHOTS") == "1":
        from PIL import Image

        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            height = round(image.height * docs_width / image.width)
            small = image.convert("RGB").resize((docs_width, height), Image.LANCZOS)
            (small.quantize(colors=128) if palette else small).save(DOCS_SHOTS / f"{name}.png", optimize=True)
    return path


def _asset_names() -> list[str]:
    from asin_platform.definitions import defs

    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


def test_asset_graph_lists_every_asset(page, dagster_stack) -> None:
    page.set_viewport_size({"width": 2400, "height": 3000})  # room for full nodes, not name stubs
    _open(page, f"{dagster_stack.url}/asset-groups")
    page.locator("[aria-label=zoom_in]").first.wait_for()  # the graph canvas is drawn
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(4):  # the graph's "Expand all groups" shortcut, once its key handler is live
        page.get_by_text("Global asset lineage").click()  # focus the page, not the search box
        page.keyboard.press("Alt+e")
        try:
            page.get_by_text("raw_payloads", exact=True).first.wait_for(timeout=4000)
            break
        except PlaywrightTimeout:
            if attempt == 3:
                raise
    page.wait_for_timeout(1500)  # let the layout settle before the screenshot
    _shot(page, "asset_graph")
    names = _asset_names()
    missing_in_graph = [n for n in names if page.get_by_text(n, exact=True).count() == 0]
    # the sidebar tree of the same page, groups expanded, names every asset in full
    for caret in page.locator("button:has([aria-label=arrow_drop_down])").all():
        caret.click()
    missing_in_tree = [n for n in names if page.locator(f'[title="{n}"]').count() == 0]
    assert not missing_in_graph, f"not drawn in the graph: {missing_in_graph}"
    assert not missing_in_tree, f"not listed in the sidebar: {missing_in_tree}"


def test_partitioned_asset_shows_date_by_site_partitions_with_status(page, dagster_stack) -> None:
    _open(page, f"{dagster_stack.url}/assets/raw_payloads?view=partitions&partition=2025-03-10%7CUS")
    page.get_by_text("2025-03-10|US", exact=True).first.wait_for()
    page.get_by_placeholder("Filter by date").fill("2025-03-1")
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    # the two dimensions: dates in one column, sites in the other
    for day in ("2025-03-10", "2025-03-11"):
        assert page.get_by_text(day, exact=True).count(), day
    for site in SITES:
        assert page.get_by_text(site, exact=True).count(), site
    # status counts over date x site, and the selected partition's own status and metadata
    materialized = int(re.search(r"Materialized \((\d+)\)", body).group(1))
    assert materialized >= 2 * len(SITES)
    assert re.search(r"Failed \(0\)", body)
    assert page.get_by_text("Materialized", exact=True).count()
    assert "missing_asins" in body and "tracked_asins" in body
    _shot(page, "partitions_date_by_site")


def test_asset_checks_show_their_results(page, dagster_stack) -> None:
    _open(page, f"{dagster_stack.url}/assets/mart_timeseries_daily?view=checks")
    page.get_by_text("mart_coverage", exact=True).first.wait_for()
    for check in (
        "mart_coverage",
        "mart_no_duplicate_keys",
        "mart_schema_conformance",
        "mart_quarantine_rate",
    ):
        assert page.get_by_text(check, exact=True).count(), check
    # the selected check's latest evaluation: its result and the metadata that explains it
    page.get_by_text("Latest execution").wait_for()
    body = page.inner_text("body")
    assert "Passed" in body
    assert "core_coverage" in body and "timeseries_coverage" in body
    _shot(page, "asset_checks")
    _open(page, f"{dagster_stack.url}/assets/raw_payloads?view=checks")
    page.get_by_text("raw_payloads_complete", exact=True).first.wait_for()
    page.get_by_text("Latest execution").wait_for()
    assert "Passed" in page.inner_text("body")


# ------------------------------------------------ per-partition metadata of a ranged (single) run

RANGED_SITE = "US"
RANGED_ASSETS = ["features_daily", "score_baseline_daily"]


@pytest.fixture(scope="module")
def ranged_run(dagster_stack, backfilled) -> dict[str, Any]:
    """One run of the score layer over the backfilled days of one site, launched through GraphQL
    with the partition-range tags the CLI's runner sets (runner.range_tags): a ranged run, whose
    partitions Dagster would otherwise all label with the run's figures."""
    from asin_platform.runner import range_tags
    from asin_platform_tests.ops.conftest import BACKFILL_DAYS, in_process_run_config

    start, end = (date.fromisoformat(d) for d in (BACKFILL_DAYS[0], BACKFILL_DAYS[-1]))
    tags = range_tags(RANGED_SITE, start, end)
    run_id = dagster_stack.launch_run("__ASSET_JOB", tags, in_process_run_config(), RANGED_ASSETS)
    run = dagster_stack.wait_for_run(run_id)
    assert run["status"] == "SUCCESS", run
    return run


def _warehouse_rows(dagster_stack, table: str, partition: str) -> int:
    import psycopg

    day, site = partition.split("|")
    with psycopg.connect(dagster_stack.warehouse_url) as conn:
        query = f"SELECT count(*) FROM {table} WHERE site = %s AND date = %s"  # table: a constant
        return conn.execute(query, (site, day)).fetchone()[0]


def _shown_rows(page: Any, dagster_stack, asset: str, partition: str) -> tuple[int, str]:
    """The ``rows`` entry of the partition's latest materialisation as the partitions view shows it."""
    quoted = partition.replace("|", "%7C")
    _open(page, f"{dagster_stack.url}/assets/{asset}?view=partitions&partition={quoted}")
    page.get_by_text("site_level_fallback", exact=True).first.wait_for()
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    (ARTIFACTS / f"{asset}_{partition.replace('|', '_')}.txt").write_text(body)  # for a failure's reader
    match = re.search(r"(?m)^rows\s+([\d,]+)\s*$", body)
    assert match, f"no rows entry in the metadata of {asset} {partition}:\n{body[-3000:]}"
    return int(match.group(1).replace(",", "")), body


def test_partition_metadata_after_a_ranged_run(page, dagster_stack, ranged_run) -> None:
    """Each partition of a ranged run shows its own figures: the shown ``rows`` of both days of
    the run equal their own warehouse counts, not the run's total."""
    from asin_platform_tests.ops.conftest import BACKFILL_DAYS

    table = "score_baseline_daily"
    first, last = (f"{day}|{RANGED_SITE}" for day in (BACKFILL_DAYS[0], BACKFILL_DAYS[-1]))
    run_total = sum(_warehouse_rows(dagster_stack, table, f"{day}|{RANGED_SITE}") for day in BACKFILL_DAYS)
    shown_last, _ = _shown_rows(page, dagster_stack, table, last)
    assert shown_last == _warehouse_rows(dagster_stack, table, last)
    shown, body = _shown_rows(page, dagster_stack, table, first)
    assert shown == _warehouse_rows(dagster_stack, table, first) > 0
    assert shown < run_total  # a copied run-wide figure would be the total of both days
    assert "score_median" in body and "top_10" in body
    _shot(page, "partition_metadata", palette=False)


# ---------------------------------------------- per-partition checks (run last: they fail a partition)

FAILED_PARTITION = "2025-03-11|JP"


@pytest.fixture(scope="module")
def failed_partition(dagster_stack, backfilled) -> str:
    """One partition of the backfill made to fail its blocking coverage check as a user would meet
    it: one products request of its stored payloads failed for good, and the mart of that partition
    is rebuilt from them by a UI backfill."""
    from asin_platform_tests.ops.conftest import MART_KEYS, in_process_run_config

    day, site = FAILED_PARTITION.split("|")
    dagster_stack.warehouse_sql(
        "UPDATE raw_payloads SET error = 'HTTP 503 after 2 attempts', status = 503 WHERE payload_id = "
        f"(SELECT payload_id FROM raw_payloads WHERE site = '{site}' AND date = '{day}' "
        "AND endpoint = '/v1/sites/{site}/products' ORDER BY payload_id LIMIT 1)"
    )
    backfill_id = dagster_stack.launch_backfill(
        [FAILED_PARTITION], MART_KEYS, "ops test: one failed partition", run_config=in_process_run_config()
    )
    backfill = dagster_stack.wait_for_backfill(backfill_id)
    assert [r["status"] for r in backfill["runs"]] == ["FAILURE"], backfill
    return FAILED_PARTITION


def test_check_partitions_view_after_backfill(page, dagster_stack, failed_partition) -> None:
    """The check's Partitions view: one status per (date, site) of the backfill, none Skipped, the
    failed partition red; its latest execution names the failed endpoint and the ASIN count."""
    _open(page, f"{dagster_stack.url}/assets/mart_timeseries_daily?view=checks&checkDetail=mart_coverage")
    page.get_by_text("Execution history", exact=True).first.wait_for()
    page.get_by_text(
        re.compile(r"1 request\(s\) for \d+ ASINs failed for good on /v1/sites/\{site\}/products")
    ).wait_for()
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    assert failed_partition in body and "failed_endpoints" in body and "failed_asins" in body
    _shot(page, "check_failed_partition", palette=False)
    page.get_by_text("Partitions", exact=True).last.click()
    page.get_by_placeholder("Filter by date").fill("2025-03-1")
    page.get_by_text("2025-03-11", exact=True).first.click()
    page.wait_for_timeout(1500)
    body = page.inner_text("body")
    # 2 days x 4 sites backfilled (other tests of the session add more): the one made to fail
    # failed, the other 7 (and more) passed, nothing Skipped
    for status in ("Failed (1)", "Skipped (0)", "Execution Failed (0)"):
        assert status in body, status
    assert int(re.search(r"Passed \((\d+)\)", body).group(1)) >= 7
    _shot(page, "check_partitions", palette=False)


def test_asset_health_shows_the_failed_partition(page, dagster_stack, failed_partition) -> None:
    """The asset's overview counts its checks' latest results: the failed partition shows there."""
    _open(page, f"{dagster_stack.url}/assets/mart_timeseries_daily")
    page.get_by_text("Latest check results", exact=True).wait_for()
    page.wait_for_timeout(1000)
    assert failed_partition in page.inner_text("body")
    _shot(page, "asset_health_failed_partition", palette=False)
