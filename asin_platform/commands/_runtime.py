"""What the pipeline subcommands share: the embedded environment (Dagster home, demo token), the
warehouse outside a run, ranged runs through Dagster, and the sweep of runs a dead CLI left STARTED.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from asin_platform.commands._stale import process_tag, sweep_stale_runs
from asin_platform.errors import UserError
from asin_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

    from asin_platform.resources.warehouse import Warehouse
    from asin_platform.runner import RunSummary

DEMO_TOKEN = "demo-token"
TOKEN_ENV = "ASIN_PLATFORM_API_TOKEN"
WAREHOUSE_URL_ENV = "ASIN_PLATFORM_WAREHOUSE_URL"
DAGSTER_HOME_DIR = ".dagster_home"
# The instance template (pools, run limits, retries, monitoring): the project's own dagster.yaml.
REPO_ROOT = Path(__file__).resolve().parents[2]
# How long the CLI waits for another process's lock on the DuckDB file before giving up.
LOCK_WAIT_SECONDS = 60.0


def instance_template(project_dir: Path) -> Path | None:
    """The dagster.yaml a fresh Dagster home gets: the project directory's, else the repository's."""
    for candidate in (project_dir / "dagster.yaml", REPO_ROOT / "dagster.yaml"):
        if candidate.is_file():
            return candidate
    return None


def prepare_environment(project_dir: Path | None = None) -> Path:
    """Defaults of the embedded setup: ``DAGSTER_HOME`` = ``<project>/.dagster_home`` holding the
    project's dagster.yaml, and the simulator's demo token when no real token is configured.
    Returns the Dagster home."""
    project_dir = (project_dir or Path.cwd()).resolve()
    if not os.environ.get("DAGSTER_HOME"):
        home = project_dir / DAGSTER_HOME_DIR
        home.mkdir(parents=True, exist_ok=True)
        template = instance_template(project_dir)
        if template is not None and not (home / "dagster.yaml").exists():
            (home / "dagster.yaml").write_text(template.read_text())
        os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault(TOKEN_ENV, DEMO_TOKEN)
    return Path(os.environ["DAGSTER_HOME"])


# ----------------------------------------------------------------------------------- warehouse


def effective_warehouse_url(settings: Settings) -> tuple[str, str]:
    """(URL, where it came from): ``ASIN_PLATFORM_WAREHOUSE_URL`` wins over the settings value."""
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        return url, WAREHOUSE_URL_ENV
    return settings.warehouse_url, "settings warehouse_url"


def cli_warehouse(settings: Settings, *, lock_timeout: float | None = None) -> Warehouse:
    """The warehouse for use outside a run, its URL resolved here (the Dagster resource holds an
    ``EnvVar`` that only a run may resolve)."""
    from asin_platform.resources.warehouse import Warehouse

    url, _ = effective_warehouse_url(settings)
    return Warehouse(url=url, lock_timeout=LOCK_WAIT_SECONDS if lock_timeout is None else lock_timeout)


_LOCK_HOLDER = re.compile(r"lock is held in (?P<program>\S+) \(PID (?P<pid>\d+)\)")


@contextmanager
def warehouse_errors() -> Iterator[None]:
    """A DuckDB file locked for good is the user's to resolve: one line naming the holder."""
    from asin_platform.resources.warehouse import WarehouseLockedError

    try:
        yield
    except WarehouseLockedError as exc:
        cause = str(exc.__cause__ or exc)
        found = _LOCK_HOLDER.search(cause)
        holder = f"process {found['pid']} ({found['program']})" if found else "another process"
        path = cause.split('"')[1] if cause.count('"') >= 2 else "the warehouse file"
        raise UserError(
            f"the DuckDB warehouse {path} is locked by {holder}: stop that process (or wait for it to "
            "finish) and run the command again, or use a postgresql:// warehouse for concurrent work"
        ) from exc


def check_warehouse_available(settings: Settings) -> None:
    """Open the warehouse once before any run starts, so a file locked for good is reported in one
    line and no run is recorded for it."""
    with warehouse_errors():
        cli_warehouse(settings).query("SELECT 1 AS ok")


# ------------------------------------------------------------------------------------ runs


def failure_cause(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The root cause of a failed run in one line: the innermost error of its first failed step
    (Dagster wraps it in a step-execution error whose message says nothing)."""
    from dagster._core.events import DagsterEventType

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error if entry.dagster_event else None
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            # "package.module.UpstreamError: text" -> "UpstreamError: text"
            message = " ".join(error.message.split())
            qualified, sep, rest = message.partition(": ")
            if sep and qualified.endswith(error.cls_name or "\0"):
                message = f"{error.cls_name}: {rest}"
            return f"{entry.dagster_event.step_key}: {message}"
    return None


def report_failures(summaries: Sequence[RunSummary], instance: dg.DagsterInstance) -> int:
    """Exit code of a batch of runs; each failed run's cause in one line on stderr."""
    failed = [s for s in summaries if not s.success]
    for s in failed:
        span = f"{s.start}..{s.end}" if s.start else "unpartitioned"
        cause = failure_cause(instance, s.run_id) or " ".join((s.error or "run failed").split())
        print(f"asin-platform: run {s.run_id} ({s.site} {span}) failed: {cause}", file=sys.stderr)
    return 1 if failed else 0


def run_assets_over_range(keys: Sequence[str], args: object, settings: Settings) -> int:
    """Run ``keys`` through Dagster over the validated range of ``_args.add_range_args`` (default:
    yesterday, every configured site); exit code 0 when every run succeeded."""
    import dagster as dg

    from asin_platform.commands._args import range_request
    from asin_platform.definitions import build_definitions
    from asin_platform.runner import materialize_range

    request = range_request(args, settings)  # type: ignore[arg-type]
    prepare_environment()
    check_warehouse_available(settings)
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        sweep_stale_runs(instance)
        summaries = materialize_range(
            defs,
            keys,
            sites=request.sites,
            start=request.start,
            end=request.end,
            instance=instance,
            tags=process_tag(),
        )
        return report_failures(summaries, instance)
