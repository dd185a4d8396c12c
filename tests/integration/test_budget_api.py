"""BudgetPolicy through the operator's HTTP API: usage reported over /v1/usage, enforcement seen
in /v1/route and in IncidentPolicy status, and a ledger that stays exact under concurrency, retries
and an operator SIGKILL.

Runs on a control plane and a single-threaded moto of its own (tests/support/endpoints.py says why
moto must be single-threaded for the ledger), with its own operator, which it kills.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from incident_commander.budget import calc, ledger
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.http import call
from tests.support.isolated import isolated_plane
from tests.support.kube import Kube, wait_for, wait_for_condition
from tests.support.policies import client_key, setup_connection

pytestmark = pytest.mark.integration

NS = "ledger"
API = "incidentcommander.io/v1alpha1"
# One dollar per thousand input tokens of "large", a tenth of that for "small"; output costs double.
PRICING = [
    {"model": "large", "inputPer1kTokens": "1.00", "outputPer1kTokens": "2.00"},
    {"model": "small", "inputPer1kTokens": "0.10", "outputPer1kTokens": "0.20"},
]


@dataclass
class World:
    kube: Kube
    moto: MotoServer
    log_dir: Path
    operator: OperatorProcess
    keys: dict[str, str] = field(default_factory=dict)

    def restart(self) -> None:
        """SIGKILL, then a new process (new ports) on the same cluster."""
        self.operator.process.stop(sig=9)
        self.operator = OperatorProcess.start(self.kube, self.log_dir)


def apply(kube: Kube, kind: str, name: str, spec: dict[str, Any]) -> None:
    kube.apply({"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}, NS)


def budget_and_policy(
    world: World,
    name: str,
    limit: str,
    thresholds: list[dict[str, Any]],
    rate_limit: dict[str, int] | None = None,
) -> str:
    apply(
        world.kube,
        "BudgetPolicy",
        name,
        {
            "connectionRef": {"name": "conn"},
            "period": "Monthly",
            "limit": {"amount": limit, "currency": "USD"},
            "thresholds": thresholds,
            "evaluationInterval": "1h",
            "filter": {"services": ["Amazon Bedrock"]},  # LLM spend only: no Cost Explorer request
            "pricing": PRICING,
        },
    )
    apply(
        world.kube,
        "IncidentPolicy",
        name,
        {
            "connectionRef": {"name": "conn"},
            "budgetRef": {"name": name},
            "modelRouting": {"simpleModel": "small", "complexModel": "large", "complexityThreshold": 0.5},
            "sampling": {"detectionRate": 1.0, "minDetectionRate": 0.2},
            "apiClients": [{"name": "agent", "role": "responder"}],
            "auth": {"rateLimit": rate_limit or {"requestsPerMinute": 100000, "burst": 10000}},
        },
    )
    wait_for_condition(world.kube, "budgetpolicy", NS, name, timeout=60, logs=world.operator.logs)
    wait_for_condition(world.kube, "incidentpolicy", NS, name, "CredentialsIssued", logs=world.operator.logs)
    key = client_key(world.kube, NS, name, "agent")["apiKey"]
    world.keys[name] = key
    return key


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    log_dir = tmp_path_factory.mktemp("budget-api")
    moto = MotoServer.start(log_dir, serial=True, name="moto-serial")
    try:
        with isolated_plane(NS) as kube:
            operator = OperatorProcess.start(kube, log_dir)
            world = World(kube=kube, moto=moto, log_dir=log_dir, operator=operator)
            try:
                setup_connection(kube, NS, moto, services=("sts", "dynamodb"), logs=operator.logs)
                yield world
            finally:
                world.operator.stop()
    finally:
        moto.stop()


def usage(world: World, policy: str, input_tokens: int, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"ApiKey {world.keys[policy]}", "Idempotency-Key": key or uuid.uuid4().hex}
    body = {"policy": policy, "model": "large", "inputTokens": input_tokens, "outputTokens": 0}
    deadline = time.monotonic() + 30
    while True:  # 503 while the budget is still loading its ledger after a (re)start
        answer = call(world.operator.api_url, "POST", "/v1/usage", headers=headers, json_body=body)
        if answer.status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status in (200, 201), answer.body
    return dict(answer.json())


def route(
    world: World, policy: str, severity: str | None = None, estimated_tokens: int = 0
) -> tuple[int, dict[str, Any]]:
    """Routing with no estimate by default: these tests poll /v1/route, and every answer holds its
    estimate for the reservation TTL (test_reservations.py tests the holds)."""
    body: dict[str, Any] = {
        "policy": policy,
        "taskType": "diagnose",
        "complexity": 0.9,
        "estimatedTokens": estimated_tokens,
    }
    if severity:
        body["severity"] = severity
    answer = call(
        world.operator.api_url,
        "POST",
        "/v1/route",
        headers={"Authorization": f"ApiKey {world.keys[policy]}"},
        json_body=body,
    )
    return answer.status, answer.json()


def wait_for_route(
    world: World, policy: str, predicate: Any, *, timeout: float = 10
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = route(world, policy)
        if predicate(status, body) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


def test_thresholds_reach_routing_and_policy_status_within_seconds(world: World) -> None:
    thresholds = [
        {"percent": 50, "action": "Notify"},
        {"percent": 80, "action": "Downgrade"},
        {"percent": 100, "action": "Halt"},
    ]
    budget_and_policy(world, "phases", "10.00", thresholds)
    status, body = route(world, "phases", estimated_tokens=500)
    reservation = body.pop("reservation")
    assert (status, body) == (
        200,
        {
            "model": "large",
            "reason": "complexity 0.90 >= threshold 0.50",
            "budgetPhase": "Ok",
            "samplingRate": 1.0,
        },
    )
    assert reservation["amount"] == "1.00" and reservation["capped"] is True  # 500 tokens at 2.00 per 1k

    recorded = usage(world, "phases", 5000)  # $5.00: 50 %, Notify
    assert Decimal(recorded["cost"]) == Decimal("5") and recorded["duplicate"] is False
    status, body = wait_for_route(world, "phases", lambda s, b: b.get("budgetPhase") == "Warning")
    assert (status, body["model"], body["budgetPhase"]) == (200, "large", "Warning")

    usage(world, "phases", 3000)  # $8.00: 80 %, Downgrade
    started = time.monotonic()
    status, body = wait_for_route(world, "phases", lambda s, b: b.get("model") == "small")
    assert (status, body["model"], body["budgetPhase"]) == (200, "small", "Critical")
    assert body["samplingRate"] == pytest.approx(0.6)
    policy = wait_for(
        world.kube,
        "incidentpolicy",
        NS,
        "phases",
        lambda o: (o.get("status") or {}).get("effectiveModelRouting", {}).get("mode") == "Downgraded",
        timeout=10,
        logs=world.operator.logs,
    )
    print(f"Downgrade reached /v1/route and IncidentPolicy status in {time.monotonic() - started:.2f}s")
    assert policy["status"]["effectiveModelRouting"]["complexModel"] == "small"
    assert policy["status"]["effectiveSamplingRate"] == pytest.approx(0.6)

    usage(world, "phases", 2000)  # $10.00: 100 %, Halt
    status, body = wait_for_route(world, "phases", lambda s, b: s == 402)
    assert status == 402 and body["error"] == "BudgetHalted" and body["budgetPhase"] == "Exceeded"
    status, body = route(world, "phases", severity="critical")
    assert (status, body["model"]) == (200, "small")
    status, _ = route(world, "phases", severity="high")
    assert status == 402
    budget = world.kube.get("budgetpolicy", NS, "phases")
    assert budget["status"]["phase"] == "Exceeded" and budget["status"]["activeAction"] == "Halt"
    assert Decimal(budget["status"]["spend"]["ledger"]) == Decimal("10")


def accepted_in_a_row(world: World, policy: str, attempts: int) -> int:
    """Route requests back to back; how many pass before and between 429s."""
    return sum(route(world, policy)[0] == 200 for _ in range(attempts))


def test_throttle_quarters_the_routing_rate(world: World) -> None:
    # 6 requests a minute, burst 10: the bucket refills one token per 10 s, so almost none come back
    # meanwhile. Usage reports take a token each too.
    budget_and_policy(
        world,
        "throttled",
        "10.00",
        [{"percent": 50, "action": "Throttle"}],
        rate_limit={"requestsPerMinute": 6, "burst": 10},
    )
    usage(world, "throttled", 1000)  # $1.00: 10 %, no action yet
    assert accepted_in_a_row(world, "throttled", 4) == 4  # 1 + 4 of 10 tokens spent, one each
    usage(world, "throttled", 5000)  # $6.00: 60 %, Throttle
    wait_for(
        world.kube,
        "incidentpolicy",
        NS,
        "throttled",
        lambda o: (o.get("status") or {}).get("effectiveModelRouting", {}).get("mode") == "Throttled",
        timeout=10,
        logs=world.operator.logs,
    )
    # The 4 tokens left (after this report's) pay for one routing request at 4 tokens each, where
    # they paid for 4 before.
    assert accepted_in_a_row(world, "throttled", 4) == 1
    status, body = route(world, "throttled")
    assert status == 429 and body["error"] == "TooManyRequests"


def test_concurrent_reports_with_retries_and_a_sigkill_count_exactly_once(world: World) -> None:
    budget_and_policy(world, "bulk", "1000000.00", [{"percent": 100, "action": "Notify"}])
    rng = random.Random(11)  # noqa: S311 - test data
    reports = [(uuid.uuid4().hex, rng.randint(1, 5000), rng.randint(0, 3000)) for _ in range(1000)]
    retried = set(rng.sample(range(1000), 100))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(1000):
        queue.put_nowait(index)
        if index in retried:
            queue.put_nowait(index)  # the same report again, same Idempotency-Key
    outcome = {"duplicates": 0, "attempts": 0, "restarted": False}

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            key, input_tokens, output_tokens = reports[index]
            body = {
                "policy": "bulk",
                "model": "large",
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
            }
            deadline = time.monotonic() + 90
            while True:  # a client that got no answer retries with the same key, as the API documents
                outcome["attempts"] += 1
                try:
                    async with session.post(
                        f"{world.operator.api_url}/v1/usage",
                        json=body,
                        headers={"Authorization": f"ApiKey {world.keys['bulk']}", "Idempotency-Key": key},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response:
                        if response.status in (200, 201):
                            outcome["duplicates"] += (await response.json())["duplicate"]
                            break
                        assert response.status == 503, await response.text()
                except (aiohttp.ClientError, TimeoutError):
                    pass
                assert time.monotonic() < deadline, "a report was never accepted"
                await asyncio.sleep(0.1)

    async def killer() -> None:
        while queue.qsize() > 500:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(world.restart)
        outcome["restarted"] = True

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(killer(), *(client(session) for _ in range(20)))

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    expected = sum(
        (Decimal(i) * Decimal("1.00") + Decimal(o) * Decimal("2.00")) / 1000 for _, i, o in reports
    )
    dynamodb = moto_client(world.moto.url, "dynamodb")
    start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
    stored = ledger.read(dynamodb, namespace=NS, budget="bulk", period_start=start)
    print(
        f"1,000 reports (+100 retries) from 20 clients in {elapsed:.1f}s, "
        f"{outcome['attempts']} attempts, operator SIGKILLed and restarted once"
    )
    assert outcome["restarted"]
    assert stored == expected, (stored, expected)
    assert outcome["duplicates"] >= 100
    wait_for(
        world.kube,
        "budgetpolicy",
        NS,
        "bulk",
        lambda o: Decimal((o.get("status") or {}).get("spend", {}).get("ledger", "0")) == expected,
        timeout=30,
        describe=f"spend.ledger == {expected}",
        logs=world.operator.logs,
    )
