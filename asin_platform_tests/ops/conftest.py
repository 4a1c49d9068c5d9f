"""Fixtures of the operations tests.

``receiver``
    A real HTTP server on loopback (``http.server`` on a thread) standing in for a Slack incoming
    webhook: it records every POST and answers with a scripted sequence of statuses (then 200).

``dead_url``
    A loopback URL nobody listens on (connection refused), for the "webhook is down" case.

The PostgreSQL-backed Dagster stack (webserver + daemon) lives in ``stack.py`` and is shared by the
daemon backfill test and the browser test through the session fixture ``dagster_stack``.
"""

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# A Slack webhook URL carries its credential in the path: the tests check it never reaches a log.
SECRET_PATH = "/services/T0000/B0000/s3cr3tWebhookToken"


def ingest_resources(upstream: Any, warehouse: Any) -> dict[str, Any]:
    """The production resources of definitions.py with the upstream client and the warehouse swapped
    for test ones (so a resource added to the graph later is still provided)."""
    from asin_platform.definitions import build_resources
    from asin_platform.settings import get_settings

    return {**build_resources(get_settings()), "upstream": upstream, "warehouse": warehouse}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1; ``statuses`` are answered in order, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    retry_after: str | None = None  # sent as Retry-After with every non-200 answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 60.0, poll: float = 0.2) -> list[Received]:
        """Block until ``count`` requests arrived (for receivers fed by a separate process)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(poll)
        return list(self.received)


def _start_receiver(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_raw": raw.decode(errors="replace")}
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            payload = b"ok" if status == 200 else b"error"
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            if status != 200 and receiver.retry_after is not None:
                self.send_header("retry-after", receiver.retry_after)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="webhook-receiver").start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    return server


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """``receiver(500, 200)`` starts a receiver answering 500 then 200 (then 200 forever)."""
    servers: list[ThreadingHTTPServer] = []

    def make(*statuses: int) -> Receiver:
        rec = Receiver(statuses=list(statuses))
        servers.append(_start_receiver(rec))
        return rec

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


# ------------------------------------------------------------------ the PostgreSQL-backed stack

POSTGRES_URL_ENV = "ASIN_PLATFORM_TEST_POSTGRES_URL"
STACK_SKIP = (
    f"set {POSTGRES_URL_ENV}=postgresql://user@host:5432/db to run the webserver + daemon tests "
    "against a PostgreSQL-backed Dagster instance (.ci/run does; the role needs CREATEDB)"
)
BACKFILL_DAYS = ("2025-03-10", "2025-03-11")
MART_KEYS = ["mart_timeseries_daily", "dim_asin", "fact_reviews", "fact_keywords", "quarantine"]
INGEST_KEYS = ["raw_payloads", *MART_KEYS]


@pytest.fixture(scope="session")
def alert_receiver() -> Iterator[Receiver]:
    """The webhook the stack's sensors post to, for the whole session."""
    rec = Receiver()
    server = _start_receiver(rec)
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def dagster_stack(tmp_path_factory: pytest.TempPathFactory, alert_receiver: Receiver):
    """dagster-webserver + dagster-daemon on a PostgreSQL instance, started once per session."""
    import os

    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        pytest.skip(STACK_SKIP)
    from asin_platform_tests.ops.stack import DagsterStack

    stack = DagsterStack(base_url, tmp_path_factory.mktemp("dagster_stack"), alert_url=alert_receiver.url)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def in_process_run_config() -> dict[str, Any] | None:
    """Run config choosing the in-process executor when the code location's default executor is the
    multi-or-in-process one: each step of a multiprocess run re-imports the code location (~10 s
    here), an in-process step costs milliseconds. None when definitions.py already sets an executor."""
    from asin_platform.definitions import defs

    executor = defs.executor
    if executor is None or executor.name == "multi_or_in_process_executor":
        return {"execution": {"config": {"in_process": {}}}}
    return None


@pytest.fixture(scope="session")
def backfilled(dagster_stack) -> dict[str, Any]:
    """A backfill of raw_payloads + the mart over BACKFILL_DAYS x all sites, launched through the
    GraphQL API as the UI does, and waited for."""
    from asin_platform_tests.ops.stack import SITES

    partitions = [f"{day}|{site}" for day in BACKFILL_DAYS for site in SITES]
    backfill_id = dagster_stack.launch_backfill(
        partitions, INGEST_KEYS, "ops test: 2 days x all sites", run_config=in_process_run_config()
    )
    backfill = dagster_stack.wait_for_backfill(backfill_id)
    return {"id": backfill_id, "partitions": partitions, "backfill": backfill}


@pytest.fixture(scope="session")
def secret_demo(tmp_path_factory: pytest.TempPathFactory):
    """A demo instance materialised with every secret set (ui_harness.py), shared by the UI-access
    tests (secrets in the UI, the read-only webserver)."""
    import os

    base_url = os.environ.get(POSTGRES_URL_ENV)
    if not base_url:
        pytest.skip(STACK_SKIP)
    from asin_platform_tests.ops.ui_harness import SecretDemo

    demo = SecretDemo(base_url, tmp_path_factory.mktemp("secret_demo"))
    try:
        yield demo.start()
    finally:
        demo.stop()
