"""The operator's API under wrk, each route next to a floor doing the same work, in the same run.

    python -m bench.api [--seconds 10] [--connections 16] [--rounds 2] [--only "POST /v1/route"]

Starts a control plane, moto (single-threaded, as bench/incidents.py: moto's threaded server does
not apply concurrent transactions atomically, real DynamoDB does) and the operator, with one
AwsConnection, one BudgetPolicy (priced models, a limit never reached, no Cost Explorer) and two
IncidentPolicies: ``plain`` (no budget) and ``metered`` (``budgetRef``), each with one responder
API key. Then wrk (Debian package ``wrk``, ``bash bench/install-wrk.sh``) loads, for
``--seconds`` each, alternating ours and the floor ``--rounds`` times:

- ``POST /v1/route`` on ``plain`` (authentication, rate limit, body validation, the routing
  decision, history, metrics; no AWS call). Floor: bare aiohttp that parses the JSON body and
  answers JSON.
- ``POST /v1/usage`` on ``metered`` with a fresh ``Idempotency-Key`` per request (priced, then one
  ``TransactWriteItems`` on the ledger: the idempotency item and the counter). Floor: bare aiohttp
  that parses the body and makes the same write with the operator's own ``budget/usage.write`` on
  a bare boto3 client.
- ``POST /v1/incidents`` on ``metered`` with a fresh ``dedupKey`` per request (the dedup item, the
  incident, its audit entry and outbox in one ``TransactWriteItems``, then ``PutRecord`` and the
  outbox's ``UpdateItem``). Floor: bare aiohttp that parses the body and makes the same three
  writes with bare clients (bench/incidents.py's ``Floor``).

Both sides use one connection per wrk connection (keep-alive) and the same API key scheme
(``Authorization: ApiKey``, rotating over 8 clients: the CRD's largest rate limit is 1,667
requests/s per client) is sent to both (the floor ignores it). Reported: requests per second
and p50/p99 latency (wrk ``--latency``) per side, medians of the rounds, and ours/floor.
The JWT first-use cost per signing algorithm is in bench/auth.py (``--algorithms``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.isolated import isolated_plane
from tests.support.kube import wait_for_condition
from tests.support.policies import STORAGE_SERVICES, client_key, policy, setup_connection, wait_until_served

from bench.incidents import Floor as IncidentFloor
from bench.reconcile_scale import cpu_seconds
from incident_commander.budget import calc, ledger, usage
from incident_commander.incidents.store import IncidentStore

NS = "bench"
GENEROUS = {"rateLimit": {"requestsPerMinute": 100_000, "burst": 10_000}}
"""The CRD's largest rate limit: 1,667 requests/s per client, so wrk rotates over CLIENTS keys."""
CLIENTS = 8
BUDGET = {
    "apiVersion": "incidentcommander.io/v1alpha1",
    "kind": "BudgetPolicy",
    "metadata": {"name": "budget"},
    "spec": {
        "connectionRef": {"name": "conn"},
        "period": "Monthly",
        "limit": {"amount": "1000000000", "currency": "USD"},
        "filter": {"services": ["Amazon Bedrock"]},  # LLM spend only: no Cost Explorer
        "thresholds": [{"percent": 100, "action": "Halt"}],
        "pricing": [
            {"model": "large", "inputPer1kTokens": "0.003", "outputPer1kTokens": "0.015"},
            {"model": "small", "inputPer1kTokens": "0.001", "outputPer1kTokens": "0.005"},
        ],
    },
}
ROUTE_BODY = {"policy": "plain", "taskType": "triage", "complexity": 0.8, "estimatedTokens": 1200}
USAGE_BODY = {"policy": "metered", "model": "small", "inputTokens": 1200, "outputTokens": 300}

# One request per call of request(): a fresh Idempotency-Key or dedupKey each time.
WRK_SCRIPT = """
local counter = 0
local prefix = "%(prefix)s"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local keys = {%(keys)s}
request = function()
  counter = counter + 1
  wrk.headers["Authorization"] = "ApiKey " .. keys[counter %% #keys + 1]
  local unique = prefix .. "-" .. counter
  local body = [[%(body)s]]
  if %(idempotency)s then
    wrk.headers["Idempotency-Key"] = unique
  end
  body = string.gsub(body, "UNIQUE", unique)
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


def scenarios(keys: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    return {
        "POST /v1/route": {
            "path": "/v1/route",
            "body": ROUTE_BODY,
            "keys": keys["plain"],
            "idempotency": False,
        },
        "POST /v1/usage": {
            "path": "/v1/usage",
            "body": USAGE_BODY,
            "keys": keys["metered"],
            "idempotency": True,
        },
        "POST /v1/incidents": {
            "path": "/v1/incidents",
            "body": {"title": "bench UNIQUE", "severity": "high", "dedupKey": "UNIQUE"},
            "keys": keys["metered"],
            "idempotency": False,
        },
    }


# -- the floor: bare aiohttp, the same parsing and the same writes --------------------------------


async def floor_route(request: web.Request) -> web.Response:
    """``/v1/route``'s floor: parse the JSON body, answer JSON (bench/api_cost.py counts it too)."""
    body = await request.json()
    return web.json_response(
        {"model": "large", "reason": body["taskType"], "budgetPhase": None, "samplingRate": 1.0}
    )


def floor_app(endpoint: str, table: str, stream: str) -> web.Application:
    dynamodb = moto_client(endpoint, "dynamodb")
    incidents = IncidentFloor(
        IncidentStore(dynamodb=dynamodb, kinesis=moto_client(endpoint, "kinesis"), table=table, stream=stream)
    )
    prices = {"small": (Decimal("0.001"), Decimal("0.005")), "large": (Decimal("0.003"), Decimal("0.015"))}

    async def record(request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        price_in, price_out = prices[body["model"]]
        cost = (body["inputTokens"] * price_in + body["outputTokens"] * price_out) / 1000
        now = datetime.now(UTC)
        priced = usage.PricedReport(
            cost=cost,
            period_start=calc.period_bounds("Monthly", now)[0],
            attribution=ledger.Attribution(
                model=body["model"], client="metered/agent", task_type="unspecified"
            ),
        )
        recorded = await asyncio.to_thread(
            usage.write,
            dynamodb,
            namespace=NS,
            budget="floor",
            priced=priced,
            key=request.headers["Idempotency-Key"],
            table=ledger.TABLE,
            fingerprint=hashlib.sha256(raw).hexdigest(),
        )
        return web.json_response({"budget": "floor", "cost": str(recorded.cost)}, status=201)

    async def open_incident(request: web.Request) -> web.Response:
        body = await request.json()
        _, change = await asyncio.to_thread(incidents.open, hash(body["dedupKey"]))
        return web.json_response({"incident": {"id": change.incident_id}}, status=201)

    app = web.Application()
    app.router.add_post("/v1/route", floor_route)
    app.router.add_post("/v1/usage", record)
    app.router.add_post("/v1/incidents", open_incident)
    return app


def serve_floor(port: int, endpoint: str, table: str, stream: str) -> None:
    web.run_app(floor_app(endpoint, table, stream), host="127.0.0.1", port=port, access_log=None, print=None)


# -- wrk ---------------------------------------------------------------------------------------------


def wrk(
    url: str, scenario: dict[str, Any], seconds: int, connections: int, workdir: Path, pid: int
) -> dict[str, float]:
    """One wrk run: requests per second, p50 and p99, and the server's CPU per request (its
    own time, so it holds steadier than the rate when other work shares the machine)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk not found: bash bench/install-wrk.sh")
    script = workdir / "request.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "keys": ", ".join(f'"{k}"' for k in scenario["keys"]),
            "prefix": secrets.token_hex(6),  # unique across runs: no key is ever a duplicate
            "body": json.dumps(scenario["body"]),
            "path": scenario["path"],
            "idempotency": "true" if scenario["idempotency"] else "false",
        }
    )
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            binary,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"{url}{scenario['path']}: errors under load:\n{out}")
    lines = out.splitlines()
    rate = float(next(line.split()[1] for line in lines if line.startswith("Requests/sec")))
    latency = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            latency[parts[0]] = _ms(parts[1])
    done = int(next(line.split()[0] for line in lines if "requests in" in line))
    return {
        "rps": rate,
        "p50_ms": latency["50%"],
        "p99_ms": latency["99%"],
        "cpu_us_per_request": cpu / max(done, 1) * 1e6,
    }


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def measure(
    name: str,
    scenario: dict[str, Any],
    ours: tuple[str, int],
    floor: tuple[str, int],
    args: argparse.Namespace,
    logs: Path,
) -> dict[str, Any]:
    """Warm both up (not counted), then alternate rounds: drift in load hits both alike. Each
    side is its URL and its server's pid."""
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "floor": []}
    wrk(ours[0], scenario, 2, args.connections, logs, ours[1])
    wrk(floor[0], scenario, 2, args.connections, logs, floor[1])
    for _ in range(args.rounds):
        rows["ours"].append(wrk(ours[0], scenario, args.seconds, args.connections, logs, ours[1]))
        rows["floor"].append(wrk(floor[0], scenario, args.seconds, args.connections, logs, floor[1]))
    quantities = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
    row: dict[str, Any] = {
        side: {q: statistics.median(r[q] for r in values) for q in quantities}
        for side, values in rows.items()
    }
    row["rounds"] = rows
    if row["floor"]["rps"] == 0:
        raise SystemExit(f"{name}: the floor completed no request in {args.seconds} s")
    row["throughput_ratio"] = row["ours"]["rps"] / row["floor"]["rps"]
    row["p99_ratio"] = row["ours"]["p99_ms"] / row["floor"]["p99_ms"]
    # The floor's CPU per request over ours: the throughput either would reach with a core each.
    row["cpu_ratio"] = row["floor"]["cpu_us_per_request"] / row["ours"]["cpu_us_per_request"]
    print(
        f"{name:20s} ours {row['ours']['rps']:7.0f} req/s p99 {row['ours']['p99_ms']:7.2f} ms"
        f" {row['ours']['cpu_us_per_request']:5.0f} CPU-us/req"
        f" | floor {row['floor']['rps']:7.0f} req/s p99 {row['floor']['p99_ms']:7.2f} ms"
        f" {row['floor']['cpu_us_per_request']:5.0f} CPU-us/req"
        f" | ours/floor {row['throughput_ratio']:6.1%} by rate, {row['cpu_ratio']:6.1%} by CPU"
        f" {'met' if row['throughput_ratio'] >= 0.6 else 'MISSED'} (>= 60 %)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help='measure only this route (repeatable), e.g. "POST /v1/route"',
    )
    parser.add_argument("--serve-floor", nargs=4, metavar=("PORT", "ENDPOINT", "TABLE", "STREAM"))
    args = parser.parse_args()
    if args.serve_floor:
        port, endpoint, table, stream = args.serve_floor
        serve_floor(int(port), endpoint, table, stream)
        return
    logs = Path(tempfile.mkdtemp(prefix="bench-api-"))
    load_before = os.getloadavg()
    moto = MotoServer.start(logs, serial=True)
    results: dict[str, Any] = {"load_before": load_before, "seconds": args.seconds, "rounds": args.rounds}
    try:
        with isolated_plane(NS) as kube:
            operator = OperatorProcess.start(kube, logs)
            try:
                setup_connection(kube, NS, moto, services=STORAGE_SERVICES, logs=operator.logs)
                kube.apply(BUDGET, NS)
                client = [{"name": f"agent{i}", "role": "responder"} for i in range(CLIENTS)]
                kube.apply(policy("plain", NS, client, auth=GENEROUS), NS)
                kube.apply(policy("metered", NS, client, auth=GENEROUS, budgetRef={"name": "budget"}), NS)
                for kind, name in (
                    ("budgetpolicy", "budget"),
                    ("incidentpolicy", "plain"),
                    ("incidentpolicy", "metered"),
                ):
                    wait_for_condition(kube, kind, NS, name, timeout=180, logs=operator.logs)
                keys = {
                    name: [client_key(kube, NS, name, f"agent{i}")["apiKey"] for i in range(CLIENTS)]
                    for name in ("plain", "metered")
                }
                for key in keys["plain"] + keys["metered"]:
                    wait_until_served(operator.api_url, key, timeout=60)
                # The floor writes into a table and stream of its own, made like the policy's.
                floor_names = policy("floorstore", NS, [])["spec"]["storage"]
                kube.apply(policy("floorstore", NS, [], auth=GENEROUS), NS)
                wait_for_condition(kube, "incidentpolicy", NS, "floorstore", timeout=180, logs=operator.logs)
                port = free_port()
                floor = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.api",
                        "--serve-floor",
                        str(port),
                        moto.url,
                        floor_names["incidentTable"],
                        floor_names["eventStream"],
                    ]
                )
                try:
                    deadline = time.monotonic() + 30
                    while not _listening(port):
                        if time.monotonic() > deadline or floor.poll() is not None:
                            raise SystemExit("the floor server did not start")
                        time.sleep(0.1)
                    floor_url = f"http://127.0.0.1:{port}"
                    for name, scenario in scenarios(keys).items():
                        if args.only and name not in args.only:
                            continue
                        results[name] = measure(
                            name,
                            scenario,
                            (operator.api_url, operator.process.process.pid),
                            (floor_url, floor.pid),
                            args,
                            logs,
                        )
                finally:
                    floor.terminate()
                    floor.wait(timeout=10)
            finally:
                operator.stop()
    finally:
        moto.stop()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
