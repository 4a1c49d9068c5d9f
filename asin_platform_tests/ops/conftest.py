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
