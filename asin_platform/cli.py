"""``asin-platform``: the demo, the bundled simulator, and the seed's scripts as subcommands.

Pipeline subcommands run the same Dagster assets as the UI (in process, recorded in the instance
at $DAGSTER_HOME); model subcommands call the same core functions the assets call.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DEMO_TOKEN = "demo-token"
DEFAULT_DAGSTER_HOME = Path(".dagster_home")


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _prepare_environment(*, base_url: str | None = None) -> None:
    """Defaults for the embedded setup: a local Dagster home holding the repo's dagster.yaml, and
    the simulator's demo token when no real token is configured."""
    if not os.environ.get("DAGSTER_HOME"):
        home = DEFAULT_DAGSTER_HOME.resolve()
        home.mkdir(parents=True, exist_ok=True)
        source = Path("dagster.yaml")
        if source.exists() and not (home / "dagster.yaml").exists():
            (home / "dagster.yaml").write_text(source.read_text())
        os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("ASIN_PLATFORM_API_TOKEN", DEMO_TOKEN)
    if base_url:
        # The bundled simulator serves the unified API and Keepa's /product on one port.
        os.environ["ASIN_PLATFORM__UPSTREAM__BASE_URL"] = base_url
        os.environ["ASIN_PLATFORM__UPSTREAM__KEEPA_BASE_URL"] = base_url
    from asin_platform.settings import get_settings

    get_settings.cache_clear()


class _SimulatorProcess:
    """The bundled simulator served by a child process on loopback (``asin-platform simulator``).

    A separate process rather than a thread: the simulator and the ingestion client are both
    CPU-bound Python, and in one process they would take turns on one core."""

    def __init__(self, port: int) -> None:
        import socket
        import subprocess
        import time
        import urllib.request

        if port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        token = os.environ.get("ASIN_PLATFORM_API_TOKEN", DEMO_TOKEN)
        # The child reads the same settings (environment) as this process.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "asin_platform.cli", "simulator", "--port", str(port), "--token", token],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1):
                    return
            except OSError:
                if self._process.poll() is not None:
                    error = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"the simulator exited at start:\n{error[-2000:]}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the simulator did not answer on {self.url} within 60 s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except Exception:
            self._process.kill()

    def __enter__(self) -> _SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_simulator(port: int) -> _SimulatorProcess:
    return _SimulatorProcess(port)


def cmd_simulator(args: argparse.Namespace) -> int:
    from asin_platform.settings import get_settings
    from asin_platform.simulator import FaultConfig, Quota, market_from_settings, serve

    settings = get_settings()
    market = market_from_settings(settings.simulator, settings.sites)
    faults = FaultConfig(
        seed=args.fault_seed,
        error_5xx_rate=args.error_rate,
        latency_ms=args.latency_ms,
        malformed_rate=args.malformed_rate,
    )
    tokens = {args.token: Quota(args.qpm or settings.simulator.qpm, args.burst or settings.simulator.burst)}
    print(
        f"simulator: http://{args.host}:{args.port} (OpenAPI at /openapi.json), sites {', '.join(settings.sites)}"
    )
    serve(args.host, args.port, market, tokens, faults)
    return 0


def _run_pipeline(asset_keys: Sequence[str], sites: Sequence[str], start: date, end: date) -> list:
    import dagster as dg

    from asin_platform.definitions import build_definitions
    from asin_platform.runner import materialize_range

    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        return materialize_range(defs, asset_keys, sites=sites, start=start, end=end, instance=instance)


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
]


def _demo_environment(args: argparse.Namespace) -> None:
    """A small market served fast: the demo is about the whole graph, not about waiting on quota.
    Explicit settings (env or YAML) win over these defaults."""
    defaults = {
        "ASIN_PLATFORM__SIMULATOR__ASINS_PER_SITE": str(args.asins),
        "ASIN_PLATFORM__SIMULATOR__QPM": "120000",
        "ASIN_PLATFORM__SIMULATOR__BURST": "1000",
        "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__QPM": "120000",
        "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__BURST": "1000",
    }
    if args.keepa_sites:
        # Those sites are fetched in Keepa's format from the simulator's Keepa mode (/product).
        defaults["ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE"] = (
            "{" + ", ".join(f"{s}: keepa" for s in args.keepa_sites) + "}"
        )
        defaults["KEEPA_API_KEY"] = "demo-keepa-key"
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    import dagster as dg

    from asin_platform.runner import materialize_range, materialize_unpartitioned

    _demo_environment(args)
    _prepare_environment()
    from asin_platform.settings import get_settings

    end = args.end or _yesterday()
    start = end - timedelta(days=args.days - 1)
    summaries = []
    with _start_simulator(args.port) as sim:
        _prepare_environment(base_url=sim.url)
        settings = get_settings()
        from asin_platform.definitions import build_definitions

        defs = build_definitions()
        defined = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        print(
            f"asin-platform demo: simulator at {sim.url}, {settings.simulator.asins_per_site} ASINs x "
            f"sites {', '.join(settings.sites)}, {start}..{end} ({args.days} days)"
        )
        w = settings.windows
        # Training needs features (lookback), a label horizon and three splits apart by two embargoes.
        model_days = w.lookback + w.observation + w.horizon + 2 * w.embargo + 30
        with dg.DagsterInstance.get() as instance:
            for title, keys, partitioned, last_only in DEMO_PHASES:
                if not set(keys) <= defined:
                    continue
                if "ranker_model" in keys or "predictions_rank_daily" in keys:
                    if args.days < model_days:
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
                        start=end if last_only else start,
                        end=end,
                        instance=instance,
                    )
                else:
                    summaries.append(materialize_unpartitioned(defs, keys, instance=instance))
                print(f"   ({time.monotonic() - began:.1f}s)")
                if not all(s.success for s in summaries):
                    print("\nstopping: a run failed (see above, or the run in the UI)")
                    break
    _print_demo_summary(summaries)
    return 0 if all(s.success for s in summaries) else 1


def _print_demo_summary(summaries: list) -> None:
    import polars as pl

    from asin_platform.definitions import build_resources
    from asin_platform.settings import get_settings

    settings = get_settings()
    warehouse = build_resources(settings)["warehouse"]
    print("\nwhere the data is:")
    print(f"  warehouse: {warehouse.describe()}")
    tables = (
        "raw_payloads", "mart_timeseries_daily", "dim_asin", "fact_reviews", "fact_keywords", "quarantine",
        "features_daily", "score_baseline_daily", "train_samples_rank", "predictions_rank_daily",
    )  # fmt: skip
    for table in tables:
        try:
            print(f"    {table:<24} {warehouse.count(table):>10,} rows")
        except Exception:  # a layer the demo did not reach
            continue
    exports = sorted(Path(settings.exports_dir).glob("*/*.csv"))
    if exports:
        print(f"  exports: {len(exports)} files under {settings.exports_dir}/, e.g. {exports[-1]}")
    latest = Path(settings.artifacts_dir) / "models"
    if latest.exists():
        print(f"  models: {latest}/ (LightGBM text model + card.json per version)")
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
    ok = sum(s.success for s in summaries)
    print(f"  runs: {ok}/{len(summaries)} succeeded")
    print("\nopen the Dagster UI on the same instance and data:")
    print(
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev -w workspace.yaml   (or: asin-platform dev)"
    )


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the simulator and `dagster dev` (webserver + daemon) on the embedded default."""
    import subprocess

    _prepare_environment()
    with _start_simulator(args.sim_port) as sim:
        _prepare_environment(base_url=sim.url)
        print(f"simulator at {sim.url}; Dagster UI on http://127.0.0.1:{args.port}")
        command = ["dagster", "dev", "-w", "workspace.yaml", "-p", str(args.port)]
        try:
            return subprocess.call(command, env=os.environ.copy())
        except KeyboardInterrupt:
            return 0


def run_assets_over_range(keys: Sequence[str], args: argparse.Namespace) -> int:
    """Run ``keys`` through Dagster over the range of ``_add_range_args`` (default: yesterday, every
    configured site); exit code 0 when every run succeeded."""
    _prepare_environment()
    from asin_platform.settings import get_settings

    end = args.end or _yesterday()
    summaries = _run_pipeline(keys, args.sites or list(get_settings().sites), args.start or end, end)
    return 0 if all(s.success for s in summaries) else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    """Seed's pipelines/ingest_raw.py + etl_standardize.py: fetch and standardise a date range."""
    keys = ["raw_payloads"] if args.raw_only else ["raw_payloads", "mart_timeseries_daily"]
    return run_assets_over_range(keys, args)


def cmd_etl(args: argparse.Namespace) -> int:
    """Seed's pipelines/etl_standardize.py: rebuild the mart from stored raw payloads (no API calls)."""
    return run_assets_over_range(["mart_timeseries_daily"], args)


def cmd_export_table(args: argparse.Namespace) -> int:
    """Write a warehouse table (or a slice of it) to Parquet, e.g. the mart for `build-labels`."""
    from asin_platform.definitions import build_resources
    from asin_platform.settings import get_settings

    _prepare_environment()
    warehouse = build_resources(get_settings())["warehouse"]
    frame = warehouse.read(args.table, sites=args.sites, start=args.start, end=args.end)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.output)
    print(f"{frame.height:,} rows of {args.table} -> {args.output}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    import yaml

    from asin_platform.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return 0


def _add_range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=_parse_date, help="first day (default: --end)")
    parser.add_argument("--end", type=_parse_date, help="last day (default: yesterday, UTC)")
    parser.add_argument("--sites", nargs="+", help="sites (default: all configured)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asin-platform",
        description="Daily Amazon ASIN signals -> mart -> features -> Explosive Score -> LightGBM ranker.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--end", type=_parse_date, help="last day (default: yesterday, UTC)")
    p.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulator", help="serve the bundled upstream API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", default=DEMO_TOKEN, help="bearer token the simulator accepts")
    p.add_argument("--qpm", type=int, help="quota per minute for the token (default: settings)")
    p.add_argument("--burst", type=int, help="burst for the token (default: settings)")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 5xx")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="share of truncated bodies")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fault-seed", type=int, default=0)
    p.set_defaults(func=cmd_simulator)

    p = sub.add_parser("dev", help="start the simulator and the Dagster UI + daemon (dagster dev)")
    p.add_argument("--port", type=int, default=3000, help="Dagster webserver port")
    p.add_argument("--sim-port", type=int, default=8765)
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("ingest-raw", help="fetch raw payloads and build the mart for a date range")
    _add_range_args(p)
    p.add_argument("--raw-only", action="store_true", help="only raw_payloads, no mart")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("etl-standardize", help="rebuild the mart from stored raw payloads")
    _add_range_args(p)
    p.set_defaults(func=cmd_etl)

    p = sub.add_parser("export-table", help="write a warehouse table (slice) to Parquet")
    p.add_argument("--table", required=True, help="e.g. mart_timeseries_daily, features_daily")
    p.add_argument("--output", required=True, help="Parquet file to write")
    _add_range_args(p)
    p.set_defaults(func=cmd_export_table)

    p = sub.add_parser("settings", help="print the effective settings (no secrets)")
    p.set_defaults(func=cmd_settings)

    # Each later layer registers its own subcommands (one module per concern).
    for register in _layer_commands():
        register(sub)
    return parser


def _layer_commands() -> list:
    import importlib

    registers = []
    for name in (
        "asin_platform.commands.features",
        "asin_platform.commands.model",
        "asin_platform.commands.checks",
    ):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        registers.append(module.register)
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
