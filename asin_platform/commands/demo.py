"""``asin-platform demo`` (the whole graph end to end on the embedded default) and ``asin-platform
dev`` / ``ui`` (the Dagster UI + daemon on the demo's instance, warehouse and simulator).

The demo records how it ran (its simulator settings, Dagster home, dates) in
``.asin_platform_demo.json`` in its directory, so ``dev`` started there (or with ``--project-dir``)
serves exactly the same market: a UI backfill then continues the demo's data instead of mixing in
another market.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from asin_platform.commands._args import check_dates, check_day, parse_date, yesterday
from asin_platform.commands._runtime import (
    DAGSTER_HOME_DIR,
    check_warehouse_available,
    cli_warehouse,
    prepare_environment,
    process_tag,
    report_failures,
    sweep_stale_runs,
)
from asin_platform.commands.checks import summary_line
from asin_platform.commands.simulator import SimulatorProcess, free_port, point_upstream_at
from asin_platform.errors import UserError
from asin_platform.levers import FIRST_DAY
from asin_platform.settings import ENV_PREFIX, SETTINGS_FILE_ENV, Settings

DEMO_STATE_FILE = ".asin_platform_demo.json"
WORKSPACE_FILE = "workspace.yaml"
# Settings variables that name this run's simulator port: chosen afresh by each command.
_PER_RUN_ENV = ("ASIN_PLATFORM__UPSTREAM__BASE_URL", "ASIN_PLATFORM__UPSTREAM__KEEPA_BASE_URL")

# The demo's phases: (title, asset keys, partitioned?, last day only?). Phases whose assets are not
# defined are skipped, so the demo always runs the whole graph that exists.
DEMO_PHASES: list[tuple[str, list[str], bool, bool]] = [
    ("ingest: raw_payloads -> mart_timeseries_daily", ["raw_payloads", "mart_timeseries_daily"], True, False),
    (
        "features: features_daily -> score_baseline_daily",
        ["features_daily", "score_baseline_daily"],
        True,
        False,
    ),
    ("export: top_candidates", ["top_candidates"], True, True),
    (
        "model: train_samples -> ranker_model -> model_evaluation",
        ["train_samples", "ranker_model", "model_evaluation"],
        False,
        False,
    ),
    ("predictions: predictions_rank_daily", ["predictions_rank_daily"], True, True),
    # issue 14: the lists of the last H + OUTCOME_DAYS days, the oldest of them realised
    (
        "realised outcomes: predictions_rank_daily -> realised_outcomes",
        ["predictions_rank_daily", "realised_outcomes"],
        True,
        False,
    ),
]
OUTCOME_DAYS = 14  # realised prediction dates in the demo: enough for the rolling check to judge


def demo_defaults(asins: int, keepa_sites: list[str]) -> dict[str, str]:
    """A small market served fast: the demo is about the whole graph, not about waiting on quota.
    Explicit settings (env or YAML) win over these defaults."""
    defaults = {
        "ASIN_PLATFORM__SIMULATOR__ASINS_PER_SITE": str(asins),
        "ASIN_PLATFORM__SIMULATOR__QPM": "120000",
        "ASIN_PLATFORM__SIMULATOR__BURST": "1000",
        "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__QPM": "120000",
        "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__BURST": "1000",
    }
    if keepa_sites:
        # Those sites are fetched in Keepa's format from the simulator's Keepa mode (/product).
        defaults["ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE"] = (
            "{" + ", ".join(f"{s}: keepa" for s in keepa_sites) + "}"
        )
        defaults["KEEPA_API_KEY"] = "demo-keepa-key"
    return defaults


def _apply_defaults(values: dict[str, str]) -> None:
    for name, value in values.items():
        os.environ.setdefault(name, value)


def _cli_command() -> str:
    """How to call this very installation's ``asin-platform``, venv activated or not."""
    script = Path(sys.executable).parent / "asin-platform"
    return str(script) if script.exists() else f"{sys.executable} -m asin_platform.cli"


# ---------------------------------------------------------------------------------------- demo


def prepare_demo(args: argparse.Namespace) -> None:
    """Environment of the demo, set before the settings are read: the demo market, the simulator's
    URL (its port is chosen now), the Dagster home."""
    _apply_defaults(demo_defaults(args.asins, args.keepa_sites))
    args.port = args.port or free_port()
    point_upstream_at(f"http://127.0.0.1:{args.port}")
    prepare_environment()


def _has_password(value: str) -> bool:
    try:
        return "://" in value and urlsplit(value).password is not None
    except ValueError:
        return True  # unparseable: not worth the risk


def _save_demo_state(args: argparse.Namespace, settings: Settings, start: object, end: object) -> Path:
    state = {
        "dagster_home": os.environ["DAGSTER_HOME"],
        "settings_file": str(Path(os.environ[SETTINGS_FILE_ENV]).resolve())
        if os.environ.get(SETTINGS_FILE_ENV)
        else None,
        # every settings override the demo ran with, except a URL carrying a password
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(ENV_PREFIX) and k not in _PER_RUN_ENV and not _has_password(v)
        },
        "asins_per_site": settings.simulator.asins_per_site,
        "keepa_sites": list(args.keepa_sites),
        "seed": settings.simulator.seed,
        "sites": list(settings.sites),
        "start": str(start),
        "end": str(end),
    }
    path = Path.cwd() / DEMO_STATE_FILE
    path.write_text(json.dumps(state, indent=2) + "\n")
    return path


def _sqlite_commits_without_fsync() -> None:
    """The demo's SQLite instance stores ~10,000 events (one materialisation per partition and
    asset, check evaluations, logs), each in its own transaction on a new connection. Its databases
    are in WAL mode (Dagster sets it), where ``synchronous=NORMAL`` is SQLite's recommended setting:
    a commit no longer waits for fsync, and a crash can lose only the last commits, never corrupt
    the database. Measured: ~25% of the instance's time per event. Only sqlite3 connections of this
    process are touched (the warehouse is DuckDB or PostgreSQL)."""
    import sqlalchemy

    if not sqlalchemy.event.contains(sqlalchemy.engine.Engine, "connect", _sqlite_normal_sync):
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _sqlite_normal_sync)


def _sqlite_normal_sync(dbapi_connection: object, _record: object) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # type: ignore[attr-defined]


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from asin_platform.definitions import build_definitions
    from asin_platform.runner import materialize_range, materialize_unpartitioned
    from asin_platform.sqlite_events import speed_up_event_writes

    if args.days < 1:
        raise UserError(f"--days {args.days}: give at least 1 day")
    check_day("--end", args.end)
    end = args.end or yesterday()
    # --days reaches back from --end: no further than the first day a date flag may name (a
    # --days of 10**9 overflowed the subtraction below)
    most = (end - FIRST_DAY).days + 1
    if args.days > most:
        raise UserError(f"--days {args.days}: goes back before {FIRST_DAY} from {end}; give at most {most:,}")
    start, end = check_dates(end - timedelta(days=args.days - 1), end, settings)
    check_warehouse_available(settings)
    _save_demo_state(args, settings, start, end)
    _sqlite_commits_without_fsync()
    summaries = []
    demo_began = time.monotonic()
    with dg.DagsterInstance.get() as instance, SimulatorProcess(args.port) as sim:
        sweep_stale_runs(instance)
        speed_up_event_writes(instance)  # the embedded SQLite instance: ~25k events
        defs = build_definitions(settings)
        defined = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        print(
            f"asin-platform demo: simulator at {sim.url}, {settings.simulator.asins_per_site} ASINs x "
            f"sites {', '.join(settings.sites)}, {start}..{end} ({args.days} days)"
        )
        w = settings.windows
        # Training needs features (lookback), a label horizon and three splits apart by two embargoes.
        model_days = w.lookback + w.observation + w.horizon + 2 * w.embargo + 30
        for title, keys, partitioned, last_only in DEMO_PHASES:
            if not set(keys) <= defined:
                continue
            if ("ranker_model" in keys or "predictions_rank_daily" in keys) and args.days < model_days:
                print(
                    f"\n== skipping {title}: {args.days} days of history, training needs {model_days} (--days)"
                )
                continue
            began = time.monotonic()
            print(f"\n== {title}")
            if partitioned:
                summaries += materialize_range(
                    defs,
                    keys,
                    sites=settings.sites,
                    start=end
                    if last_only
                    else max(start, end - timedelta(days=w.horizon + OUTCOME_DAYS))
                    if "realised_outcomes" in keys
                    else start,
                    end=end,
                    instance=instance,
                    tags=process_tag(),
                )
            else:
                summaries.append(materialize_unpartitioned(defs, keys, instance=instance, tags=process_tag()))
            print(f"   ({time.monotonic() - began:.1f}s)")
            if not all(s.success for s in summaries):
                print("\nstopping: a run failed (see above, or the run in the UI)")
                break
        print("\n" + summary_line(instance, defs, settings.sites, start, end))
        # before the summary: its last line is the command that opens the UI
        print(f"demo took {time.monotonic() - demo_began:.0f}s, load average {os.getloadavg()[0]:.1f}")
        _print_demo_summary(summaries, settings)
        return report_failures(summaries, instance)


def _print_demo_summary(summaries: list, settings: Settings) -> None:
    import polars as pl

    warehouse = cli_warehouse(settings)
    print("\nwhere the data is:")
    print(f"  warehouse: {warehouse.describe()}")
    tables = (
        "raw_payloads", "mart_timeseries_daily", "dim_asin", "fact_reviews", "fact_keywords", "quarantine",
        "features_daily", "score_baseline_daily", "train_samples_rank", "predictions_rank_daily",
        "realised_outcomes",
    )  # fmt: skip
    for table in tables:
        try:
            print(f"    {table:<24} {warehouse.count(table):>10,} rows")
        except Exception:  # a layer the demo did not reach
            continue
    from asin_platform.storage import artifacts_store, exports_store, shown

    store = exports_store(settings)  # the exports store: a local folder by default, s3:// / gs:// too
    exports = store.glob("*/*.csv")
    if exports:
        print(f"  exports: {len(exports)} files under {store}/, e.g. {shown(exports[-1])}")
    models = artifacts_store(settings)
    if models.glob("models/*/model.txt"):
        print(f"  models: {models}/models/ (LightGBM text model + card.json per version; model_registry)")
    try:
        evaluation = warehouse.read("model_evaluation")
    except Exception:
        evaluation = None
    if evaluation is not None and evaluation.height:
        from asin_platform.core.metrics import markdown_table

        newest = evaluation.filter(
            (pl.col("evaluated_at") == pl.col("evaluated_at").max()) & (pl.col("split") == "test")
        )
        if newest.height:
            print(f"\nmodel evaluation (test window {newest['first_date'][0]}..{newest['last_date'][0]}):\n")
            print(markdown_table(newest))
    print(f"\n  Dagster instance: $DAGSTER_HOME = {os.environ['DAGSTER_HOME']}")
    print(f"  runs: {sum(s.success for s in summaries)}/{len(summaries)} succeeded")
    print("\nopen the Dagster UI on this demo's instance, warehouse and simulator (from any directory):")
    print(f"  {_cli_command()} dev --project-dir {Path.cwd()}")


# ----------------------------------------------------------------------------------------- dev


def prepare_dev(args: argparse.Namespace) -> None:
    """Move into the project directory and take on the demo's settings (when a demo ran there)
    before the settings are read: same market, same instance, same warehouse."""
    project = Path(args.project_dir or Path.cwd()).resolve()
    if not project.is_dir():
        raise UserError(f"--project-dir {project} is not a directory: give the directory the demo ran in")
    os.chdir(project)
    state_path = project / DEMO_STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        _apply_defaults(demo_defaults(state["asins_per_site"], state.get("keepa_sites") or []))
        _apply_defaults(state["env"])
        if state.get("settings_file"):
            os.environ.setdefault(SETTINGS_FILE_ENV, state["settings_file"])
        os.environ.setdefault("DAGSTER_HOME", state["dagster_home"])
        args.demo_state = state
    else:
        args.demo_state = None
    args.sim_port = args.sim_port or free_port()
    point_upstream_at(f"http://127.0.0.1:{args.sim_port}")
    prepare_environment(project)


def write_workspace(home: Path, project: Path) -> Path:
    """A workspace file that loads the code location by module from the project directory, so the
    repository need not be the working directory."""
    path = home / WORKSPACE_FILE
    path.write_text(
        "# Written by `asin-platform dev`: the code location, loaded from the installed package.\n"
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: asin_platform.definitions\n"
        "      location_name: asin_platform\n"
        f"      working_directory: {json.dumps(str(project))}\n"
    )
    return path


def dagster_command() -> list[str]:
    """``dagster`` of this interpreter's environment (next to it when the venv is not activated);
    ``dagster dev`` starts the webserver and the daemon with the same interpreter."""
    script = Path(sys.executable).parent / "dagster"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dagster"]


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Start the simulator and `dagster dev` (webserver + daemon) on the project's instance."""
    import dagster as dg

    home = Path(os.environ["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        sweep_stale_runs(instance)
    workspace = write_workspace(home, Path.cwd())
    with SimulatorProcess(args.sim_port) as sim:
        state = args.demo_state
        origin = f"the demo's ({state['start']}..{state['end']})" if state else "settings"
        print(
            f"simulator at {sim.url}: {settings.simulator.asins_per_site} ASINs x {', '.join(settings.sites)}, "
            f"seed {settings.simulator.seed} ({origin}); Dagster home {home}; "
            f"Dagster UI on http://{args.host}:{args.port}",
            flush=True,
        )
        command = [*dagster_command(), "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
        # `dagster dev` is what this command wraps on purpose; its deprecation notice is noise here.
        env = {**os.environ, "PYTHONWARNINGS": "ignore:Function `dev_command` is superseded"}
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job end to end on the embedded default")
    p.add_argument(
        "--days",
        type=int,
        default=240,
        help="days of history to build, ending yesterday (default 240: enough to train)",
    )
    p.add_argument("--asins", type=int, default=300, help="simulated ASINs per site (default 300)")
    p.add_argument(
        "--keepa-sites",
        nargs="+",
        default=[],
        metavar="SITE",
        help="fetch these sites through the Keepa path (the simulator's Keepa mode); Keepa tokens "
        "make long backfills slow, so pair it with a short --days",
    )
    p.add_argument("--end", type=parse_date, help="last day (default: yesterday, UTC)")
    p.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    p.set_defaults(func=cmd_demo, prepare=prepare_demo)

    p = sub.add_parser(
        "dev",
        aliases=["ui"],
        help="the Dagster UI + daemon (dagster dev) and the simulator, on the instance, warehouse and "
        "market of the demo that ran in --project-dir (default: here)",
    )
    p.add_argument(
        "--project-dir", help=f"directory the demo ran in (holds {DEMO_STATE_FILE}, {DAGSTER_HOME_DIR}/)"
    )
    p.add_argument("--host", default="127.0.0.1", help="Dagster webserver host")
    p.add_argument("--port", type=int, default=3000, help="Dagster webserver port")
    p.add_argument("--sim-port", type=int, default=0, help="simulator port (default: a free one)")
    p.set_defaults(func=cmd_dev, prepare=prepare_dev)
