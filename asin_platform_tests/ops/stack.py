"""A real Dagster deployment for tests: ``dagster-webserver`` and ``dagster-daemon run`` as
subprocesses on a PostgreSQL-backed instance (deploy/dagster.postgres.yaml), the warehouse in its own
PostgreSQL database, the bundled simulator on loopback, and an alert receiver.

Each stack creates two throwaway databases (``asin_ops_<random>_dagster`` / ``_wh``) on the server of
``ASIN_PLATFORM_TEST_POSTGRES_URL`` and drops them at the end, so concurrent sessions never collide.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "deploy" / "dagster.postgres.yaml"
SITES = ("US", "UK", "DE", "JP")
ASINS_PER_SITE = 60
TOKEN = "ops-test-token"
REPOSITORY = {"repositoryLocationName": "asin_platform", "repositoryName": "__repository__"}
BIN = Path(sys.executable).parent
# `dagster-daemon` (its console-script entry point, dagster._daemon.cli:main) with one change: the
# backfill daemon's 30 s loop interval, a module constant with no setting, is cut to 3 s. A backfill
# of raw -> mart needs three iterations (submit raw, submit mart, mark done), and 90 s of sleeping
# would be most of the test. Every other daemon and all of the backfill logic are unchanged.
DAEMON_MAIN = (
    "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 3; "
    "from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(base_url: str, dbname: str) -> str:
    """``base_url`` pointing at another database of the same server."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def instance_yaml(max_concurrent_runs: int = 4) -> str:
    """The production profile, verbatim except for two timings: the run limit (sized for a 2-core
    test machine) and the queue's dequeue interval (1 s instead of 5 s; each test waits on five
    dequeues)."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    profile["run_queue"] = {"dequeue_interval_seconds": 1}
    return yaml.safe_dump(profile, sort_keys=False)


class GraphQLError(RuntimeError):
    pass


@dataclass
class DagsterStack:
    """Everything started by ``start()``; ``stop()`` undoes it (processes, simulator, databases)."""

    base_pg_url: str
    workdir: Path
    alert_url: str = ""
    prefix: str = field(default_factory=lambda: f"asin_ops_{uuid.uuid4().hex[:10]}")
    port: int = 0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    simulator: Any = None
    env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dagster_db(self) -> str:
        return f"{self.prefix}_dagster"

    @property
    def warehouse_db(self) -> str:
        return f"{self.prefix}_wh"

    @property
    def dagster_pg_url(self) -> str:
        # psycopg2, as deploy/dagster.postgres.yaml requires (see the comment there)
        return database_url(self.base_pg_url, self.dagster_db).replace(
            "postgresql://", "postgresql+psycopg2://", 1
        )

    @property
    def warehouse_url(self) -> str:
        return database_url(self.base_pg_url, self.warehouse_db)

    @property
    def home(self) -> Path:
        return self.workdir / "dagster_home"

    # ---------------------------------------------------------------------------------- control

    def start(self, timeout: float = 120.0) -> "DagsterStack":
        from asin_platform.simulator import Market, MarketConfig, Quota, start_in_thread

        with psycopg.connect(self.base_pg_url, autocommit=True) as conn:
            for db in (self.dagster_db, self.warehouse_db):
                conn.execute(f'CREATE DATABASE "{db}"')
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text(instance_yaml())
        market = Market(MarketConfig(sites=SITES, asins_per_site=ASINS_PER_SITE))
        self.simulator = start_in_thread(market, tokens={TOKEN: Quota(60_000, 500)})
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ASIN_PLATFORM")},
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_URL": self.dagster_pg_url,
            "ASIN_PLATFORM_API_TOKEN": TOKEN,
            "ASIN_PLATFORM_WAREHOUSE_URL": self.warehouse_url,
            "ASIN_PLATFORM__SITES": ",".join(SITES),
            "ASIN_PLATFORM__UPSTREAM__BASE_URL": self.simulator.url,
            # a dead simulator must fail a run in seconds, not after the production retry budget
            "ASIN_PLATFORM__RETRY_POLICY__MAX_ATTEMPTS": "2",
            "ASIN_PLATFORM__RETRY_POLICY__BASE_DELAY": "0.1",
            "ASIN_PLATFORM__EXPORTS_DIR": str(self.workdir / "exports"),
            "ASIN_PLATFORM__ARTIFACTS_DIR": str(self.workdir / "artifacts"),
            "ASIN_PLATFORM_ALERT_WEBHOOK_URL": self.alert_url,
            "PYTHONUNBUFFERED": "1",
        }
        workspace = str(REPO / "workspace.yaml")
        # Create the instance tables once, as a deployment does before starting its services
        # (`dagster instance migrate`; in process here, which saves a 5 s interpreter start): the
        # webserver and the daemon racing to create them in an empty database fail.
        self.instance().dispose()
        self._spawn(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", workspace],
        )
        # Schedules fire on the wall clock (the ingest schedule at every :00 fetches yesterday's
        # partitions from the simulator): a test that crosses the hour would see runs and requests it
        # did not cause. They are stopped, as a user would in the UI, before the daemon first ticks;
        # the sensors keep running. Schedules are tested by evaluating them (test_schedules.py).
        self.wait_until_ready(timeout, daemons=False)
        for name, state in self.schedule_states().items():
            self.stop_schedule(name, state["id"])
        self._spawn("daemon", [sys.executable, "-c", DAEMON_MAIN, "run", "-w", workspace])
        self.wait_until_ready(timeout)
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        # Own process group: stop() ends the server and the code servers it started, nothing else.
        self.processes[name] = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def logs(self, name: str, tail: int = 60) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-tail:]) if path.exists() else ""

    def wait_until_ready(self, timeout: float, daemons: bool = True) -> None:
        """The code location is loaded in the webserver and (``daemons``) every required daemon
        heartbeats."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.logs(name)}")
            try:
                data = self.gql(
                    """{ workspaceOrError { ... on Workspace { locationEntries {
                           name locationOrLoadError { __typename ... on PythonError { message } } } } }
                         instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""
                )
                entries = data["workspaceOrError"]["locationEntries"]
                loaded = [
                    e for e in entries if e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                ]
                errors = [e["locationOrLoadError"] for e in entries if e not in loaded]
                if errors and errors[0].get("message"):
                    raise RuntimeError(f"code location failed to load: {errors[0]['message']}")
                statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
                if loaded and (not daemons or all(d["healthy"] for d in statuses if d["required"])):
                    return
                last_error = f"loaded={bool(loaded)} daemons={statuses}"
            except (httpx.HTTPError, GraphQLError, KeyError, TypeError) as exc:
                last_error = repr(exc)
            time.sleep(1.0)
        raise TimeoutError(
            f"Dagster stack not ready after {timeout:.0f}s ({last_error})\n--- webserver\n"
            f"{self.logs('webserver')}\n--- daemon\n{self.logs('daemon')}"
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self.simulator is not None:
            self.simulator.stop()
        with psycopg.connect(self.base_pg_url, autocommit=True) as conn:
            for db in (self.dagster_db, self.warehouse_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def instance(self) -> Any:
        """A DagsterInstance on the stack's storage, for assertions from the test process."""
        import dagster as dg

        saved = os.environ.get("DAGSTER_PG_URL")
        os.environ["DAGSTER_PG_URL"] = self.dagster_pg_url  # resolved when the yaml is loaded
        try:
            return dg.DagsterInstance.from_config(str(self.home))
        finally:
            if saved is None:
                os.environ.pop("DAGSTER_PG_URL", None)
            else:
                os.environ["DAGSTER_PG_URL"] = saved

    def warehouse_sql(self, sql: str) -> None:
        with psycopg.connect(self.warehouse_url, autocommit=True) as conn:
            conn.execute(sql)

    # -------------------------------------------------------------------------------- GraphQL

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"])[:2000])
        return body["data"]

    def launch_backfill(
        self,
        partitions: list[str],
        asset_keys: list[str],
        title: str,
        run_config: dict[str, Any] | None = None,
    ) -> str:
        """What the UI's "Materialize -> backfill" does: an asset backfill over partitions x assets."""
        data = self.gql(
            """mutation($params: LaunchBackfillParams!) {
                 launchPartitionBackfill(backfillParams: $params) {
                   __typename
                   ... on LaunchBackfillSuccess { backfillId }
                   ... on PythonError { message }
                   ... on PartitionKeysNotFoundError { message }
                   ... on UnauthorizedError { message }
                 } }""",
            {
                "params": {
                    "partitionNames": partitions,
                    "assetSelection": [{"path": [k]} for k in asset_keys],
                    "title": title,
                    **({"runConfigData": run_config} if run_config else {}),
                }
            },
        )["launchPartitionBackfill"]
        if data["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill not launched: {data}")
        return data["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        return self.gql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename
                 ... on PartitionBackfill { id status numPartitions
                       runs(limit: 100) { runId status tags { key value } } }
                 ... on PythonError { message } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 150.0) -> dict[str, Any]:
        terminal = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

        def done() -> dict[str, Any] | None:
            backfill = self.backfill(backfill_id)
            return backfill if backfill.get("status") in terminal else None

        return wait(
            done,
            timeout,
            lambda: (
                f"backfill {backfill_id}: {self.backfill(backfill_id)}\n--- daemon\n{self.logs('daemon')}"
            ),
        )

    def schedule_states(self) -> dict[str, dict[str, str]]:
        """Every schedule of the code location: name -> its state's ``id`` and ``status``."""
        data = self.gql(
            """query($repo: RepositorySelector!) { schedulesOrError(repositorySelector: $repo) {
                 __typename ... on Schedules { results { name scheduleState { id status } } }
                 ... on PythonError { message } } }""",
            {"repo": REPOSITORY},
        )["schedulesOrError"]
        if data["__typename"] != "Schedules":
            raise GraphQLError(f"schedules: {data}")
        return {s["name"]: s["scheduleState"] for s in data["results"]}

    def stop_schedule(self, name: str, state_id: str) -> None:
        """The UI's schedule toggle, switched off."""
        result = self.gql(
            """mutation($id: String!) { stopRunningSchedule(id: $id) {
                 __typename ... on ScheduleStateResult { scheduleState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"id": state_id},
        )["stopRunningSchedule"]
        if result.get("scheduleState", {}).get("status") != "STOPPED":
            raise GraphQLError(f"stopping schedule {name}: {result}")

    def launch_partition_run(self, job: str, partition: str, run_config: dict[str, Any] | None = None) -> str:
        """What the UI's "Materialize" of one partition of a job does: one run, partition tags."""
        day, site = partition.split("|")
        tags = {"dagster/partition": partition, "dagster/partition/date": day, "dagster/partition/site": site}
        return self.launch_run(job, tags, run_config)

    def launch_run(
        self,
        job: str,
        tags: dict[str, str],
        run_config: dict[str, Any] | None = None,
        asset_keys: list[str] | None = None,
    ) -> str:
        """One run of ``job`` (``__ASSET_JOB`` with ``asset_keys`` for an asset selection) with ``tags``."""
        selector: dict[str, Any] = {**REPOSITORY, "jobName": job}
        if asset_keys is not None:
            selector["assetSelection"] = [{"path": [k]} for k in asset_keys]
        data = self.gql(
            """mutation($params: ExecutionParams!) {
                 launchRun(executionParams: $params) {
                   __typename
                   ... on LaunchRunSuccess { run { runId } }
                   ... on PythonError { message }
                   ... on RunConfigValidationInvalid { errors { message } }
                   ... on InvalidSubsetError { message }
                   ... on UnauthorizedError { message }
                 } }""",
            {
                "params": {
                    "selector": selector,
                    "runConfigData": run_config or {},
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                }
            },
        )["launchRun"]
        if data["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"run not launched: {data}")
        return data["run"]["runId"]

    def reexecute(self, run_id: str, strategy: str = "FROM_FAILURE") -> str:
        """The run page's "Re-execute -> From failure"."""
        data = self.gql(
            """mutation($params: ReexecutionParams!) {
                 launchRunReexecution(reexecutionParams: $params) {
                   __typename
                   ... on LaunchRunSuccess { run { runId } }
                   ... on PythonError { message }
                   ... on InvalidStepError { invalidStepKey }
                   ... on UnauthorizedError { message }
                 } }""",
            {"params": {"parentRunId": run_id, "strategy": strategy}},
        )["launchRunReexecution"]
        if data["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"re-execution not launched: {data}")
        return data["run"]["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        return self.gql(
            """query($id: ID!) { runOrError(runId: $id) { __typename
                 ... on Run { runId status parentRunId rootRunId
                              stepStats { stepKey status } tags { key value } } } }""",
            {"id": run_id},
        )["runOrError"]

    def wait_for_run(self, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
        terminal = {"SUCCESS", "FAILURE", "CANCELED"}

        def done() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run.get("status") in terminal else None

        return wait(
            done,
            timeout,
            lambda: f"run {run_id}: {self.run(run_id)}\n--- daemon\n{self.logs('daemon')}",
        )


def wait(probe: Callable[[], Any], timeout: float, describe: Callable[[], str], poll: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail with ``describe()`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s: {describe()}")
