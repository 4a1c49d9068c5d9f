"""A demo instance with every secret set, and ``dagster-webserver`` (full or ``--read-only``) on it.

``SecretDemo.start()`` materialises two days x two sites (US through the unified API, UK through
Keepa) from raw payloads to the top-candidates export, in process through the runner the demo uses,
into the embedded default instance (SQLite under its own ``$DAGSTER_HOME``) and a PostgreSQL
warehouse reached with a password. Every secret is random per session and is the only one the
services accept: the simulator knows only this API token and this Keepa key, and the warehouse
database belongs to a role created with this password. So a successful run proves the secrets were
used, and the UI tests can then look for them in everything the webserver shows.

The GraphQL helpers are ``stack.DagsterStack``'s (``gql``, ``launch_*``), bound to a webserver that
runs without a daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

from asin_platform_tests.ops.stack import BIN, REPO, DagsterStack, GraphQLError, database_url, free_port

SITES = ("US", "UK")
KEEPA_SITE = "UK"
START, END = date(2025, 3, 10), date(2025, 3, 11)
INGEST_AND_SCORE = ["raw_payloads", "mart_timeseries_daily", "features_daily", "score_baseline_daily"]


@dataclass(frozen=True)
class Secrets:
    """Random per session: a match in the UI cannot be a coincidence."""

    api_token: str = field(default_factory=lambda: f"apitok-{uuid.uuid4().hex}")
    keepa_key: str = field(default_factory=lambda: f"keepakey-{uuid.uuid4().hex}")
    webhook_path: str = field(default_factory=lambda: f"hookpath{uuid.uuid4().hex}")
    webhook_query: str = field(default_factory=lambda: f"hooksig{uuid.uuid4().hex}")
    db_password: str = field(default_factory=lambda: f"dbpw{uuid.uuid4().hex}")

    def named(self) -> dict[str, str]:
        return {
            "API token": self.api_token,
            "Keepa key": self.keepa_key,
            "webhook URL path": self.webhook_path,
            "webhook URL query": self.webhook_query,
            "warehouse password": self.db_password,
        }


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` (and fresh settings) for the block, the old state after."""
    from asin_platform.settings import get_settings

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@dataclass
class SecretDemo:
    base_pg_url: str
    workdir: Path
    secrets: Secrets = field(default_factory=Secrets)
    name: str = field(default_factory=lambda: f"h_deploy_ui_{uuid.uuid4().hex[:10]}")
    env: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    simulator: Any = None

    @property
    def home(self) -> Path:
        return self.workdir / "dagster_home"

    @property
    def warehouse_url(self) -> str:
        host = urlsplit(self.base_pg_url).netloc.rpartition("@")[2]
        return f"postgresql://{self.name}:{self.secrets.db_password}@{host}/{self.name}"

    def start(self) -> SecretDemo:
        from asin_platform.simulator import Market, MarketConfig, Quota, start_in_thread
        from asin_platform.simulator.keepa import KeepaPlan

        with psycopg.connect(self.base_pg_url, autocommit=True) as conn:
            role = sql.Identifier(self.name)
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    role, sql.Literal(self.secrets.db_password)
                )
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())  # the embedded default
        market = Market(MarketConfig(sites=SITES, asins_per_site=20))
        self.simulator = start_in_thread(
            market,
            tokens={self.secrets.api_token: Quota(120_000, 1000)},
            keepa_keys={self.secrets.keepa_key: KeepaPlan(refill_rate=5000)},
        )
        hook = f"http://127.0.0.1:{free_port()}/services/T0/B0/{self.secrets.webhook_path}"
        self.env = {
            "DAGSTER_HOME": str(self.home),
            "ASIN_PLATFORM_API_TOKEN": self.secrets.api_token,
            "KEEPA_API_KEY": self.secrets.keepa_key,
            "ASIN_PLATFORM_ALERT_WEBHOOK_URL": f"{hook}?sig={self.secrets.webhook_query}",
            "ASIN_PLATFORM_WAREHOUSE_URL": self.warehouse_url,
            "ASIN_PLATFORM__SITES": ",".join(SITES),
            "ASIN_PLATFORM__UPSTREAM__BASE_URL": self.simulator.url,
            "ASIN_PLATFORM__UPSTREAM__KEEPA_BASE_URL": self.simulator.url,
            "ASIN_PLATFORM__UPSTREAM__SOURCE_BY_SITE": f"{{{KEEPA_SITE}: keepa}}",
            "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__QPM": "120000",
            "ASIN_PLATFORM__RATE_LIMITS__UNIFIED__BURST": "1000",
            "ASIN_PLATFORM__EXPORTS_DIR": str(self.workdir / "exports"),
            "ASIN_PLATFORM__ARTIFACTS_DIR": str(self.workdir / "artifacts"),
        }
        self._materialise()
        return self

    def _materialise(self) -> None:
        """What `asin-platform demo` does for its first phases, through the same runner."""
        import dagster as dg

        from asin_platform.definitions import build_definitions
        from asin_platform.runner import materialize_range

        with environment(self.env):
            defs = build_definitions()
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                summaries = materialize_range(
                    defs, INGEST_AND_SCORE, sites=SITES, start=START, end=END, instance=instance,
                    raise_on_error=True,
                )  # fmt: skip
                summaries += materialize_range(
                    defs, ["top_candidates"], sites=SITES, start=END, end=END, instance=instance,
                    raise_on_error=True,
                )  # fmt: skip
        failed = [s for s in summaries if not s.success]
        assert not failed, f"demo runs failed: {failed}"
        self.run_ids = [s.run_id for s in summaries]

    def mart_rows(self) -> int:
        with psycopg.connect(database_url(self.base_pg_url, self.name)) as conn:
            return conn.execute("SELECT count(*) FROM mart_timeseries_daily").fetchone()[0]

    def stop(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()
        with psycopg.connect(self.base_pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.name)))


@dataclass
class Webserver:
    """``dagster-webserver`` on its own (no daemon); GraphQL through DagsterStack's helpers."""

    port: int
    process: subprocess.Popen
    log: Path

    gql = DagsterStack.gql
    launch_backfill = DagsterStack.launch_backfill
    launch_partition_run = DagsterStack.launch_partition_run
    launch_run = DagsterStack.launch_run
    reexecute = DagsterStack.reexecute

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_loaded(self, timeout: float = 180.0) -> None:
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"webserver exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                entries = self.gql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {"
                    " __typename ... on PythonError { message } } } } } }"
                )["workspaceOrError"]["locationEntries"]
                states = [e["locationOrLoadError"] for e in entries]
                if states and all(s["__typename"] == "RepositoryLocation" for s in states):
                    return
                if any(s.get("message") for s in states):
                    raise RuntimeError(f"code location failed to load: {states}")
                last = str(states)
            except (httpx.HTTPError, GraphQLError, KeyError, TypeError) as exc:
                last = repr(exc)
            time.sleep(1.0)
        raise TimeoutError(
            f"webserver not ready after {timeout:.0f}s ({last})\n{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextmanager
def webserver(demo: SecretDemo, *, read_only: bool = False) -> Iterator[Webserver]:
    """The webserver as a deployment starts it, with the code location's environment."""
    port = free_port()
    command = [
        str(BIN / "dagster-webserver"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(REPO / "workspace.yaml"),
    ]
    if read_only:
        command.append("--read-only")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASIN_PLATFORM")}, **demo.env}
    log = demo.workdir / f"webserver{'_read_only' if read_only else ''}.log"
    with open(log, "w") as out:
        # Own process group: stop() ends the server and the code server it started, nothing else.
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Webserver(port, process, log)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.stop()
