"""Time to fail of one `raw_payloads` partition when the upstream cannot be reached
(docs/operations.md, "Upstream unreachable").

Runs `asin-platform ingest-raw --start 2025-03-10 --end 2025-03-10 --sites US --raw-only` as a child
process with the settings at their defaults (only the upstream's address changed), against:

- ``dead``: a port nothing listens on (every connection refused);
- ``blackhole``: a listener that never accepts, its accept queue full (every connection hangs until
  the client's timeout, as behind a firewall that drops packets);
- ``gone``: the bundled simulator (the demo market: 300 ASINs a site), stopped as soon as it has
  answered the day's universe (the batch requests then find nothing listening).

It prints, per scenario, the wall time of the whole command (start-up included), its exit code and
its last ``asin-platform:`` lines. The code under test is the one Python imports: run it with
``PYTHONPATH=<checkout>`` to time another version (the CLI child inherits it).

    .venv/bin/python benchmarks/unreachable.py                 # all three
    .venv/bin/python benchmarks/unreachable.py --scenario dead
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN = "demo-token"
ARGV = ["ingest-raw", "--start", "2025-03-10", "--end", "2025-03-10", "--sites", "US", "--raw-only"]


@contextmanager
def dead() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}"


@contextmanager
def blackhole() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fill = []
    for _ in range(3):  # fill the accept queue: later SYNs are dropped, connecting hangs
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(sock)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fill, server]:
            sock.close()


@contextmanager
def gone() -> Iterator[str]:
    import uvicorn

    from asin_platform.simulator import Market, MarketConfig, Quota
    from asin_platform.simulator.server import create_app

    market = Market(MarketConfig(sites=("US", "UK", "DE", "JP"), asins_per_site=300))
    app = create_app(market, {TOKEN: Quota(600_000, 5000)})
    served = threading.Event()

    async def gate(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def watch(message: dict[str, Any]) -> None:
            await send(message)
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if scope["type"] == "http" and scope["path"].endswith("/asins") and last:
                served.set()

        await app(scope, receive, watch)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(gate, log_level="warning", lifespan="off", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    def stop_after_universe() -> None:
        served.wait()
        server.should_exit = True  # stops listening: every later connection is refused

    threading.Thread(target=stop_after_universe, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True


SCENARIOS = {"dead": dead, "blackhole": blackhole, "gone": gone}


def run(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"unreachable-{name}-") as work, SCENARIOS[name]() as url:
        home = Path(work) / ".dagster_home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASIN_PLATFORM")}
        env.update(
            DAGSTER_HOME=str(home),
            ASIN_PLATFORM_API_TOKEN=TOKEN,
            ASIN_PLATFORM__SITES="US",
            ASIN_PLATFORM__UPSTREAM__BASE_URL=url,
        )
        cli = Path(sys.executable).parent / "asin-platform"
        started = time.perf_counter()
        done = subprocess.run([str(cli), *ARGV], cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("asin-platform:")]
    print(f"{name}: exit {done.returncode} after {wall:.1f} s")
    for line in lines:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    for name in args.scenario or list(SCENARIOS):
        run(name)


if __name__ == "__main__":
    main()
