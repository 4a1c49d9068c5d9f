"""``asin-platform simulator``: the bundled upstream API on loopback, and the child process the demo
and ``dev`` run it in."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

from asin_platform.commands._runtime import DEMO_TOKEN, TOKEN_ENV
from asin_platform.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SimulatorProcess:
    """The bundled simulator served by a child process on loopback (``asin-platform simulator``).

    A separate process rather than a thread: the simulator and the ingestion client are both
    CPU-bound Python, and in one process they would take turns on one core. The child reads the
    same settings (the environment) as this process, and the token from the environment too: a
    command line is visible to every user of the machine (``ps``)."""

    def __init__(self, port: int) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "asin_platform.cli", "simulator", "--port", str(self.port)]
        env = {**os.environ, TOKEN_ENV: os.environ.get(TOKEN_ENV) or DEMO_TOKEN}
        self._process = subprocess.Popen(
            self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def point_upstream_at(url: str) -> None:
    """Every source fetches from ``url``: the simulator serves the unified API and Keepa's /product
    on one port."""
    os.environ["ASIN_PLATFORM__UPSTREAM__BASE_URL"] = url
    os.environ["ASIN_PLATFORM__UPSTREAM__KEEPA_BASE_URL"] = url


def cmd_simulator(args: argparse.Namespace, settings: Settings) -> int:
    from asin_platform.simulator import FaultConfig, Quota, market_from_settings, serve

    market = market_from_settings(settings.simulator, settings.sites)
    faults = FaultConfig(
        seed=args.fault_seed,
        error_5xx_rate=args.error_rate,
        latency_ms=args.latency_ms,
        malformed_rate=args.malformed_rate,
        fail_for_good=tuple(args.fail_for_good),
        mutation_rate=args.mutation_rate,
    )
    token = os.environ.get(TOKEN_ENV) or DEMO_TOKEN
    tokens = {token: Quota(args.qpm or settings.simulator.qpm, args.burst or settings.simulator.burst)}
    print(
        f"simulator: http://{args.host}:{args.port} (OpenAPI at /openapi.json), sites {', '.join(settings.sites)}"
    )
    serve(args.host, args.port, market, tokens, faults)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulator",
        help="serve the bundled upstream API simulator (accepts the token in $ASIN_PLATFORM_API_TOKEN, "
        f"default {DEMO_TOKEN!r})",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--qpm", type=int, help="quota per minute for the token (default: settings)")
    p.add_argument("--burst", type=int, help="burst for the token (default: settings)")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 5xx")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="share of truncated bodies")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument(
        "--fail-for-good",
        action="append",
        default=[],
        metavar="ENDPOINT:SITE:DAY:ASIN[:STATUS]",
        help="answer every request matching the rule with STATUS (default 503), '*' = any; repeatable "
        "(e.g. products:US:2025-03-01:B0ABCDEFGH fails the products batch holding that ASIN)",
    )
    p.add_argument(
        "--mutation-rate",
        type=float,
        default=0.0,
        help="share of JSON values (BSR, price, rating, counts, search volume) sent negative / as a "
        "string / 1e12 / null",
    )
    p.set_defaults(func=cmd_simulator)
