"""Cost of a reservation in ``POST /v1/route``, next to the floor of what it must do anyway.

    python -m bench.reservations [--seconds 5] [--rounds 3] [--workers 8]

A reservation is one conditional DynamoDB ``UpdateItem`` on the budget's counter item. Both sides
run against the same moto server (started here, on loopback), with the same number of client
threads, for the same time, alternating rounds in one run:

- **ours**: ``POST /v1/route`` with an API key over loopback HTTP (one persistent connection per
  thread) to the operator's real API application (auth, rate limit, body parsing, routing, the
  BudgetPolicy controller's reservation through the real DynamoDB backend, history, metrics),
  served by its own process;
- **floor**: the same conditional ``UpdateItem`` (``SET hold ADD committed`` on
  ``committed <= :room``) from a bare boto3 client per thread.

After each measured call the thread releases the hold (not measured, the same on both sides), as a
settlement would within seconds: the counter item keeps the size it has in use. Reported:
measured calls per second and per-call latency (p50, p99, milliseconds) of each, medians of the
rounds, and the ratios ours / floor.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, moto_client
from tests.support.fake_kube import FakeKube

from incident_commander.api.app import build_api_app
from incident_commander.api.budget_bridge import BudgetBridge
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.connection import ConnectionNotReady, ReadyConnection
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec
from incident_commander.budget import calc, ledger
from incident_commander.credentials import api_keys
from incident_commander.credentials.api_keys import KeyEntry, KeyIndex
from incident_commander.kinds.budgetpolicy.controller import BudgetController
from incident_commander.metrics import OperatorMetrics

NAMESPACE, POLICY, BUDGET = "bench", "policy", "budget"
TABLE = ledger.TABLE
AMOUNT = Decimal("0.00015")
"""What ours reserves: 10 tokens of "large" at its output price."""
BODY = json.dumps({"policy": POLICY, "taskType": "triage", "complexity": 0.8, "estimatedTokens": 10}).encode()


class Connections:
    """The one AwsConnection of the benchmark, Ready, pointed at moto."""

    def __init__(self, endpoint: str) -> None:
        spec = parse_connection_spec({"region": "us-east-1", "endpointUrl": endpoint})
        clients = ConnectionClients.build(spec, StaticKeys("testing", "testing"), ClientCache())
        self.connection = ReadyConnection(
            namespace=NAMESPACE, name="conn", account_id="123456789012", clients=clients
        )

    def get(self, namespace: str, name: str) -> ReadyConnection:
        if (namespace, name) != (NAMESPACE, "conn"):
            raise ConnectionNotReady(namespace, name, "ConnectionNotFound", "not in this benchmark")
        return self.connection

    def warming_up(self, namespace: str, name: str) -> bool:
        return False

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        return False


def serve(port: int, endpoint: str, key_file: str) -> None:
    """The API with a real BudgetController (the DynamoDB backend against moto), until killed."""
    now = datetime.now(UTC)
    key = api_keys.generate_key()
    entry = KeyEntry(
        key_id=key.key_id,
        client="agent",
        role="responder",
        hash=key.hash,
        issued_at=now,
        expires_at=now + timedelta(days=30),
        state="Active",
    )
    keyring = Keyring()
    keyring.set_index((NAMESPACE, POLICY), KeyIndex(entries=(entry,)))
    directory = Directory()
    directory.observe(
        "IncidentPolicy",
        None,
        {
            "metadata": {"namespace": NAMESPACE, "name": POLICY},
            "spec": {
                "connectionRef": {"name": "conn"},
                "budgetRef": {"name": BUDGET},
                "modelRouting": {"simpleModel": "small", "complexModel": "large"},
                "auth": {"rateLimit": {"requestsPerMinute": 10**9, "burst": 10**6}},
            },
        },
    )
    metrics = OperatorMetrics()
    budgets = BudgetController(
        kube=FakeKube(),  # type: ignore[arg-type]
        connections=Connections(endpoint),
        metrics=metrics,
        start_workers=False,
    )
    budgets.observe(
        {
            "metadata": {"namespace": NAMESPACE, "name": BUDGET, "uid": "b", "generation": 1},
            "spec": {
                "connectionRef": {"name": "conn"},
                "limit": {"amount": "1000000000"},  # never refuses: every request takes its hold
                "thresholds": [{"percent": 100, "action": "Halt"}],
                "filter": {"services": ["Amazon Bedrock"]},
                "pricing": [
                    {"model": "large", "inputPer1kTokens": "0.003", "outputPer1kTokens": "0.015"},
                    {"model": "small", "inputPer1kTokens": "0.001", "outputPer1kTokens": "0.005"},
                ],
            },
        }
    )
    entry_ = budgets.entry(NAMESPACE, BUDGET)
    assert entry_ is not None

    async def run() -> None:
        await budgets.run_pass(entry_)  # evaluated: the API may reserve
        app = build_api_app(
            ApiContext(
                keyring=keyring,
                directory=directory,
                metrics=ApiMetrics(metrics.registry),
                budgets=BudgetBridge(budgets),
            )
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        Path(key_file).write_text(key.plaintext)
        await asyncio.Event().wait()

    asyncio.run(run())


def ours(port: int, key: str, endpoint: str, seconds: float, workers: int) -> tuple[int, list[float]]:
    period = calc.period_bounds("Monthly", datetime.now(UTC))[0]

    def work(out: list[float], ready: Any) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client = moto_client(endpoint, "dynamodb")
        headers = {"Authorization": f"ApiKey {key}", "Content-Type": "application/json"}
        stop = ready()
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("POST", "/v1/route", body=BODY, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200 or b'"capped": true' not in payload:
                raise SystemExit(f"/v1/route answered {response.status}: {payload[:300]!r}")
            out.append((time.perf_counter() - started) * 1000)
            hold = json.loads(payload)["reservation"]
            cleanup(client, BUDGET, period, hold["id"], Decimal(hold["amount"]))
        conn.close()

    return _threads(work, seconds, workers)


def cleanup(client: Any, budget: str, period: datetime, hold_id: str, amount: Decimal) -> None:
    """Not measured, the same on both sides: release the hold, as a settlement would within
    seconds, so the counter item stays the size it has in use (holds of the calls in flight)."""
    ledger.release(
        client,
        namespace=NAMESPACE,
        budget=budget,
        period_start=period,
        reservation_id=hold_id,
        amount=amount,
        table=TABLE,
    )


def floor(endpoint: str, seconds: float, workers: int) -> tuple[int, list[float]]:
    period = calc.period_bounds("Monthly", datetime.now(UTC))[0]
    key = {"pk": {"S": ledger.counter_key(NAMESPACE, "floor", period)}}

    def work(out: list[float], ready: Any) -> None:
        client = moto_client(endpoint, "dynamodb")
        stop = ready()
        while time.monotonic() < stop:
            hold_id = f"r{int(period.timestamp())}-{secrets.token_hex(16)}"
            started = time.perf_counter()
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET #h = :hold ADD #committed :amount, #cost :zero",
                ConditionExpression="attribute_not_exists(#cost) OR #committed <= :room",
                ExpressionAttributeNames={
                    "#h": f"hold:{hold_id}",
                    "#committed": "committed",
                    "#cost": "cost",
                },
                ExpressionAttributeValues={
                    ":hold": {
                        "M": {
                            "amount": {"N": ledger.number(AMOUNT)},
                            "expiresAt": {"N": str(int(time.time()) + 600)},
                            "model": {"S": "large"},
                            "client": {"S": f"{POLICY}/agent"},
                            "taskType": {"S": "triage"},
                        }
                    },
                    ":amount": {"N": ledger.number(AMOUNT)},
                    ":zero": {"N": "0"},
                    ":room": {"N": ledger.number(Decimal("1000000000") - AMOUNT)},
                },
            )
            out.append((time.perf_counter() - started) * 1000)
            cleanup(client, "floor", period, hold_id, AMOUNT)

    return _threads(work, seconds, workers)


def _threads(work: Any, seconds: float, workers: int) -> tuple[int, list[float]]:
    """Run ``work(out, ready)`` on ``workers`` threads: each sets itself up (clients, connections),
    calls ``ready()`` (which returns when to stop, the same time for all, set once every thread is
    set up) and measures until then."""
    results: list[list[float]] = [[] for _ in range(workers)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)
    stop: list[float] = []

    def ready() -> float:
        barrier.wait()
        barrier.wait()  # the main thread sets the time in between
        return stop[0]

    def guarded(out: list[float]) -> None:
        try:
            work(out, ready)
        except BaseException as exc:  # a failed benchmark must not report numbers
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(results[i],)) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
        stop.append(time.monotonic() + seconds)
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(
            f"{len(failures)} of {workers} threads failed: {sorted({repr(f)[:300] for f in failures})}"
        )
    latencies = [x for r in results for x in r]
    return len(latencies), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.endpoint, args.key_file)
        return
    with tempfile.TemporaryDirectory() as work:
        moto = MotoServer.start(Path(work))
        port = free_port()
        key_file = Path(work) / "key"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.reservations",
                "--serve",
                f"--port={port}",
                f"--endpoint={moto.url}",
                f"--key-file={key_file}",
            ]
        )
        try:
            deadline = time.monotonic() + 60
            while not key_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the API server did not start")
                time.sleep(0.1)
            key = key_file.read_text()
            ours(port, key, moto.url, 1.0, args.workers)  # warm both up: table, clients, connections
            floor(moto.url, 1.0, args.workers)
            rounds: dict[str, list[tuple[float, float, float]]] = {"ours": [], "floor": []}
            for _ in range(args.rounds):
                for name, run in (
                    ("ours", lambda: ours(port, key, moto.url, args.seconds, args.workers)),
                    ("floor", lambda: floor(moto.url, args.seconds, args.workers)),
                ):
                    count, latencies = run()
                    rounds[name].append(
                        (count / args.seconds, percentile(latencies, 0.5), percentile(latencies, 0.99))
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)
            moto.stop()
    summary = {
        name: {
            "requests_per_second": statistics.median(r[0] for r in values),
            "p50_ms": statistics.median(r[1] for r in values),
            "p99_ms": statistics.median(r[2] for r in values),
        }
        for name, values in rounds.items()
    }
    summary["ratio"] = {
        "throughput": summary["ours"]["requests_per_second"] / summary["floor"]["requests_per_second"],
        "p50": summary["ours"]["p50_ms"] / summary["floor"]["p50_ms"],
        "p99": summary["ours"]["p99_ms"] / summary["floor"]["p99_ms"],
    }
    print(
        json.dumps(
            {"workers": args.workers, "seconds": args.seconds, "rounds": args.rounds, **summary}, indent=2
        )
    )


if __name__ == "__main__":
    main()
