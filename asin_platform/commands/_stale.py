"""Runs left in progress by a dead process, marked failed with the reason.

A run executed in process (the CLI, the demo) has no run worker that Dagster's run monitoring could
watch: killed with kill -9, it stays STARTED forever. So every run the CLI starts carries a tag
naming its process, and the CLI sweeps at start: a run whose process is gone is reported failed
through the instance, with a message saying why. On the embedded default (a SQLite instance, one
machine by construction) runs launched by ``dagster dev`` are swept the same way, by the pid their
in-process executor logged: ``dev`` restarted after a crash finds its orphans failed, not running.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

# "<host>:<pid>:<process start, epoch seconds>" of the process that executes the run.
PROCESS_TAG = "asin_platform/cli_process"
_EXECUTOR_PID = re.compile(r"Executing steps in process \(pid: (\d+)\)")


def _process_started_at(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds, Linux /proc), so a reused pid is not taken for the
    original process; None where that cannot be told."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def process_tag() -> dict[str, str]:
    """The tag the CLI puts on every run it executes."""
    pid = os.getpid()
    started = _process_started_at(pid)
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{'' if started is None else f'{started:.2f}'}"}


def _gone(pid: int, started_by: float | None) -> bool:
    """No process ``pid`` runs, or the one that does started after ``started_by`` (a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    started = _process_started_at(pid)
    return started is not None and started_by is not None and started > started_by + 1.0


def _executor_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    from dagster._core.events import DagsterEventType

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = _EXECUTOR_PID.search(entry.message or "")
        if found:
            return int(found.group(1))
    return None


def _owner(instance: dg.DagsterInstance, record: object, local: bool) -> tuple[int, float | None] | None:
    """(pid, started by) of the process that executes a run, when this machine can judge it."""
    run = record.dagster_run  # type: ignore[attr-defined]
    host, _, rest = run.tags.get(PROCESS_TAG, "").partition(":")
    if host:
        pid, _, started = rest.partition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return None
        return int(pid), float(started) if started else None
    if not local:
        return None  # a run worker on another machine: Dagster's run monitoring watches it
    pid = _executor_pid(instance, run.run_id)
    return (pid, record.start_time) if pid is not None else None  # type: ignore[attr-defined]


def sweep_stale_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark FAILURE every in-progress run whose process on this machine is gone; return their ids."""
    import dagster as dg
    from dagster._core.storage.runs import SqliteRunStorage

    local = isinstance(instance.run_storage, SqliteRunStorage)
    swept = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        owner = _owner(instance, record, local)
        if owner is None or not _gone(*owner):
            continue
        run = record.dagster_run
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        instance.report_run_failed(
            run,
            f"The process that executed this run (pid {owner[0]} on {socket.gethostname()}) is gone: it "
            f"was killed or crashed while the run was STARTED. Marked failed by asin-platform at {when}; "
            "run the command (or re-execute the run) again to redo its partitions.",
        )
        swept.append(run.run_id)
    if swept:
        log(f"marked {len(swept)} run(s) left STARTED by a dead process as failed: {', '.join(swept)}")
    return swept
