"""The suite's work units for parallel runs (conftest.py): the modules sharing an expensive session
fixture must run in one unit, or each worker would start its own stack."""

from pathlib import Path

from asin_platform_tests.conftest import SHARED_UNITS, work_unit

TESTS = Path(__file__).resolve().parent


def test_every_shared_unit_names_existing_modules_that_use_its_fixture() -> None:
    for fixture, modules in SHARED_UNITS.items():
        for module in modules:
            text = (TESTS / module).read_text()
            assert fixture in text, (fixture, module)


def test_a_module_is_its_own_unit_unless_it_shares_a_stack() -> None:
    assert work_unit("asin_platform_tests/ops/test_ui_browser.py::test_x[a]") == "dagster_stack"
    assert work_unit("asin_platform_tests/ops/test_daemon_backfill.py::test_y") == "dagster_stack"
    assert work_unit("asin_platform_tests/ops/test_readonly_webserver.py::test_z") == "secret_demo"
    assert (
        work_unit("asin_platform_tests/core/test_metrics.py::test_a")
        == "asin_platform_tests/core/test_metrics.py"
    )
