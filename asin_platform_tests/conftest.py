"""Shared pytest fixtures (kept minimal: add a fixture here only when several test modules need it).

``warehouse``
    A set-up, empty ``Warehouse``, once per backend (the test runs twice):

    * ``duckdb``: a fresh file under the test's ``tmp_path``; always runs.
    * ``postgres``: runs when ``ASIN_PLATFORM_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it). The test
      session creates one schema with a random name, sets it up once, empties its tables before each
      test and drops it at the end. Without the variable these tests are skipped with a message
      saying how to enable them.

``warehouse_factory``
    Makes further fresh Warehouses of the same backend that are *not* set up yet (a new file, a new
    schema dropped at the end of the session): for tests of ``setup()`` and migrations themselves.

``warehouse_reads``
    Starts recording every ``Warehouse.read`` (its table) and ``Warehouse.query`` ("query") call and
    returns the list it appends to: for tests that a mistake fails before anything is read.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported lazily below, so only tests that use a warehouse pay for (or depend on) it
    from asin_platform.resources.warehouse import Warehouse

# A step that fails re-runs after 60 s and 120 s by default (settings `asset_retry`): right for a
# scheduled partition, minutes of waiting for a test that makes a step fail on purpose. Tests of the
# retry policy itself pass their own Settings.
os.environ.setdefault("ASIN_PLATFORM__ASSET_RETRY__MAX_RETRIES", "0")
# The mart asset writes parquet copies under the artifacts dir when settings.scale.columnar_mart is
# on, and that dir's default is relative to the working directory: the repository. Off by default in
# tests (today's warehouse read); the tests of the copies turn it on with an artifacts dir of their own.
os.environ.setdefault("ASIN_PLATFORM__SCALE__COLUMNAR_MART", "false")

POSTGRES_URL_ENV = "ASIN_PLATFORM_TEST_POSTGRES_URL"
POSTGRES_SKIP_MESSAGE = f"set {POSTGRES_URL_ENV}=postgresql://user@host:5432/db to run the PostgreSQL backend tests (.ci/run does)"


class PgSchemas:
    """Throwaway PostgreSQL schemas of one test session, all dropped by ``drop_all``."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Random per session so concurrent sessions (or a crashed earlier one) never collide.
        self.prefix = f"asin_test_{uuid.uuid4().hex[:10]}"
        self.made: list[str] = []

    def new(self) -> str:
        name = f"{self.prefix}_{len(self.made)}"
        self.made.append(name)
        return name

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[PgSchemas]:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(POSTGRES_SKIP_MESSAGE)
    schemas = PgSchemas(url)
    yield schemas
    schemas.drop_all()


@pytest.fixture(scope="session")
def _pg_session_warehouse(pg_schemas: PgSchemas) -> Warehouse:
    from asin_platform.resources.warehouse import Warehouse

    warehouse = Warehouse(url=pg_schemas.url, pg_schema=pg_schemas.new())
    warehouse.setup()
    return warehouse


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The warehouse backend under test."""
    return request.param


@pytest.fixture
def warehouse(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    from asin_platform.resources.warehouse import Warehouse

    if backend == "duckdb":
        warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
        warehouse.setup()
        return warehouse
    warehouse = request.getfixturevalue("_pg_session_warehouse")
    # One schema serves the whole session (setting it up per test would cost more than the tests):
    # empty every table so each test starts from nothing, whatever the previous one left.
    tables = warehouse.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'"
    )["table_name"].to_list()
    # DELETE, not TRUNCATE: TRUNCATE's exclusive lock waits for autovacuum to give way (~1 s each).
    with warehouse.transaction() as tx:
        for table in tables:
            tx.execute(f'DELETE FROM "{table}"')
    return warehouse


@pytest.fixture
def warehouse_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Call it once the test's own setup has read what it needs; the returned list fills from then on."""
    from asin_platform.resources.warehouse import Warehouse

    def start() -> list[str]:
        calls: list[str] = []
        real_read, real_query = Warehouse.read, Warehouse.query

        def read(self, table: str, *args, **kwargs):  # noqa: ANN001, ANN202
            calls.append(table)
            return real_read(self, table, *args, **kwargs)

        def query(self, *args, **kwargs):  # noqa: ANN001, ANN202
            calls.append("query")
            return real_query(self, *args, **kwargs)

        monkeypatch.setattr(Warehouse, "read", read)
        monkeypatch.setattr(Warehouse, "query", query)
        return calls

    return start


@pytest.fixture
def warehouse_factory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Warehouse]:
    from asin_platform.resources.warehouse import Warehouse

    # Resolved now, not inside make(): without a PostgreSQL URL the test is skipped before it starts.
    schemas: PgSchemas | None = request.getfixturevalue("pg_schemas") if backend == "postgres" else None
    made: list[Warehouse] = []

    def make() -> Warehouse:
        if schemas is None:
            warehouse = Warehouse(url=str(tmp_path / f"fresh_{len(made)}" / "warehouse.duckdb"))
        else:
            warehouse = Warehouse(url=schemas.url, pg_schema=schemas.new())
        made.append(warehouse)
        return warehouse

    return make


# ------------------------------------------------------------------ parallel runs (pytest-xdist)
# pyproject's addopts run the suite on two workers (`-n 2 --dist loadfile`). A work unit is one test
# module, so a module-scoped fixture is built once, not once per worker; the modules sharing an
# expensive session fixture (a daemon + webserver stack, a materialised demo) form one unit, so each
# is built once per run. Units holding a slow end-to-end test are handed out first: a long unit
# started last would leave the other worker idle at the end.
SHARED_UNITS = {
    "dagster_stack": ("ops/test_daemon_backfill.py", "ops/test_ui_browser.py"),
    "secret_demo": ("ops/test_secrets_in_ui.py", "ops/test_readonly_webserver.py"),
}
_UNIT_OF_MODULE = {f"asin_platform_tests/{m}": unit for unit, mods in SHARED_UNITS.items() for m in mods}


def work_unit(nodeid: str) -> str:
    """The unit a test runs in: its module, or the shared unit of its module."""
    module = nodeid.split("::", 1)[0]
    return _UNIT_OF_MODULE.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadFileScheduling

    class WorkUnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: a serial run keeps file order
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        unit = work_unit(item.nodeid)
        for fixture in SHARED_UNITS:
            if fixture in getattr(item, "fixturenames", ()) and unit != fixture:
                raise pytest.UsageError(f"{item.nodeid} uses {fixture}: add its module to SHARED_UNITS")
        units.setdefault(unit, []).append(item)
    slow_first = sorted(units.values(), key=lambda unit: not any(i.get_closest_marker("slow") for i in unit))
    items[:] = [item for unit in slow_first for item in unit]
