"""What the reliability tests share: an ASGI app served on a loopback thread, a gate in front of the
simulator that holds requests until opened, and the CLI run as a child process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

Scope = dict[str, Any]


class Gate:
    """ASGI middleware holding every request while closed; counts what arrived (held or not)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()
        self.arrived = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].endswith("/health"):
            self.arrived += 1
            while not self.open.is_set():
                await asyncio.sleep(0.02)
        await self.app(scope, receive, send)


class Served:
    """``app`` on 127.0.0.1 (a free port), on a daemon thread until ``stop``."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{self.url}/v1/health", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not serve on {self.url}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def cli_env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a CLI child: this one without any ASIN_PLATFORM setting, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASIN_PLATFORM")}
    return {**base, "DAGSTER_HOME": str(home), **extra}


def start_cli(argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    script = Path(sys.executable).parent / "asin-platform"
    return subprocess.Popen(
        [str(script), *argv],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
