"""Instructions per ``POST /v1/route``, ours against the floor, counted by valgrind: a ratio that
does not move with whatever else the machine is running.

    python -m bench.api_cost [--requests 3000] [--json bench/results/api-cost.json]

bench/api.py's rates under wrk swing by a third between rounds on a busy two-core machine (the
floor alone went from 7,000 to 11,300 requests/s in one run), and so does its CPU per request.
Here each server runs alone under ``valgrind --tool=cachegrind --cache-sim=no``, which counts the
instructions the process executes (user space: the kernel's share, the same socket calls on both
sides, is not counted). One client sends the requests one after another on one keep-alive
connection, as the same bytes to both; the count for ``warm-up`` requests is subtracted from the
count for ``warm-up + requests``, so start-up and imports cancel out. ``PYTHONHASHSEED`` is fixed;
two runs agree to about 0.5 %.

- ours: the API app (``api.app.build_api_app``) with the operator's ``BudgetBridge`` (no budget:
  the ``plain`` policy of bench/api.py), an in-memory keyring with one real responder key, and a
  directory with one policy: authentication, rate limit, body validation, routing, history and
  metrics, all but the Kubernetes watches;
- the floor: bench/api.py's ``floor_route`` on a bare aiohttp app.

The ratio floor/ours is what ours would reach of the floor's throughput with a core each. Needs
valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from tests.controlplane.localcluster import free_port
from tests.unit.api.keys import NS, client, keyring_with

from bench.api import ROUTE_BODY, floor_route
from incident_commander.api.app import build_api_app
from incident_commander.api.budget_bridge import BudgetBridge
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.metrics import ApiMetrics

POLICY = str(ROUTE_BODY["policy"])


def ours_app(key_file: Path) -> web.Application:
    """The API app over in-memory state; the client's API key is written to ``key_file``."""
    keyring, keys, _ = keyring_with(POLICY, [client("agent", "responder")])
    directory = Directory()
    spec = {
        "connectionRef": {"name": "conn"},
        "modelRouting": {"simpleModel": "small", "complexModel": "large"},
        "auth": {"rateLimit": {"requestsPerMinute": 100_000, "burst": 10_000}},
    }
    directory.observe("IncidentPolicy", None, {"metadata": {"namespace": NS, "name": POLICY}, "spec": spec})
    ctx = ApiContext(
        keyring=keyring,
        directory=directory,
        metrics=ApiMetrics(CollectorRegistry()),
        budgets=BudgetBridge(None),
    )
    key_file.write_text(keys["agent"])
    return build_api_app(ctx)


def serve(side: str, port: int, ready: Path, key_file: Path) -> None:
    """Serve one side until SIGTERM; ``ready`` appears once it listens."""
    app = ours_app(key_file) if side == "ours" else web.Application()
    if side == "floor":
        app.router.add_post("/v1/route", floor_route)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready.write_text("listening")
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


def send(port: int, key: str, count: int) -> None:
    """``count`` requests, one after another on one connection; each must answer 200."""
    body = json.dumps(ROUTE_BODY).encode()
    request = (
        f"POST /v1/route HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: ApiKey {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(request)
            while True:
                head, found, rest = buffer.partition(b"\r\n\r\n")
                if found:
                    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
                    length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
                    if len(rest) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise SystemExit(f"not a 200: {head.decode(errors='replace')}")
                        buffer = rest[length:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("the server closed the connection")
                buffer += chunk


def count(side: str, requests: int, workdir: Path) -> int:
    """Instructions the server executes from start to exit, having answered ``requests``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    run = Path(tempfile.mkdtemp(dir=workdir))
    port = free_port()
    out, ready, key_file = run / "cachegrind.out", run / "ready", run / "key"
    argv = [sys.executable, "-m", "bench.api_cost", "--serve", side, str(port), str(ready), str(key_file)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with (run / "server.log").open("w") as log:
        server = subprocess.Popen(
            [valgrind, "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 300
            while not ready.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {side} server did not start: see {run / 'server.log'}")
                time.sleep(0.2)
            send(port, key_file.read_text() if key_file.exists() else "none", requests)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
    return int(summary.split()[1])


def per_request(side: str, warm_up: int, requests: int, workdir: Path) -> float:
    with ThreadPoolExecutor(2) as pool:  # the two runs of a side at once: two cores
        short, long = pool.map(lambda n: count(side, n, workdir), (warm_up, warm_up + requests))
    return (long - short) / requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warm-up", type=int, default=300)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", nargs=4, metavar=("SIDE", "PORT", "READY", "KEY_FILE"))
    args = parser.parse_args()
    if args.serve:
        side, port, ready, key_file = args.serve
        serve(side, int(port), Path(ready), Path(key_file))
        return
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-cost-"))
    result: dict[str, Any] = {"requests": args.requests, "warm_up": args.warm_up}
    for side in ("ours", "floor"):
        result[f"{side}_instructions_per_request"] = per_request(side, args.warm_up, args.requests, workdir)
    result["ratio"] = result["floor_instructions_per_request"] / result["ours_instructions_per_request"]
    print(
        f"POST /v1/route  ours {result['ours_instructions_per_request']:,.0f} instructions/request"
        f" | floor {result['floor_instructions_per_request']:,.0f}"
        f" | floor/ours {result['ratio']:.1%} {'met' if result['ratio'] >= 0.6 else 'MISSED'} (>= 60 %)",
        flush=True,
    )
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
