"""What the demo records for ``dev`` and what ``dev`` makes of it (fast; the end-to-end path is in
test_demo_to_ui.py)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path

import pytest

from asin_platform.commands import demo
from asin_platform.settings import load_settings


def test_dev_takes_on_the_demos_market_home_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "demo-dir"
    project.mkdir()
    for name in list(os.environ):
        if name.startswith("ASIN_PLATFORM") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # restored afterwards: prepare_dev moves into the project
    # what the demo wrote, run with --asins 55 --keepa-sites JP and a warehouse URL holding a password
    monkeypatch.setenv("ASIN_PLATFORM__SIMULATOR__SEED", "11")
    monkeypatch.setenv("ASIN_PLATFORM__WAREHOUSE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("DAGSTER_HOME", str(project / "home"))
    for name, value in demo.demo_defaults(55, ["JP"]).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project)
    args = argparse.Namespace(asins=55, keepa_sites=["JP"])
    demo._save_demo_state(args, load_settings(), date(2025, 3, 1), date(2025, 3, 5))
    state = json.loads((project / demo.DEMO_STATE_FILE).read_text())
    assert "ASIN_PLATFORM__WAREHOUSE_URL" not in state["env"]  # a password never lands in the file
    assert state["asins_per_site"] == 55 and state["seed"] == 11 and state["end"] == "2025-03-05"

    # a fresh shell in another directory: dev pointed at the project
    for name in list(os.environ):
        if name.startswith(("ASIN_PLATFORM", "KEEPA")) or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    dev_args = argparse.Namespace(project_dir=str(project), sim_port=0)
    demo.prepare_dev(dev_args)
    settings = load_settings()
    assert Path.cwd() == project.resolve()
    assert os.environ["DAGSTER_HOME"] == str(project / "home")
    assert settings.simulator.asins_per_site == 55 and settings.simulator.seed == 11
    assert settings.upstream.source_for("JP") == "keepa" and os.environ["KEEPA_API_KEY"] == "demo-keepa-key"
    assert settings.upstream.base_url == f"http://127.0.0.1:{dev_args.sim_port}" and dev_args.sim_port > 0
    assert dev_args.demo_state["start"] == "2025-03-01"


def test_dev_rejects_a_missing_project_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asin_platform.cli import main

    assert main(["dev", "--project-dir", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"asin-platform: error: --project-dir {tmp_path / 'nope'} is not a directory: give the directory the demo ran in"
    ]
