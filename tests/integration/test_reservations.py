"""Budgets that hold under concurrency: reservations taken by /v1/route on two replicas, settled by
/v1/usage, expired after a SIGKILL; metered Bedrock calls through /v1/converse against the Bedrock
test double; idempotency conflicts; money as fixed-point strings.

Runs on a control plane of its own (it SIGKILLs an operator), with two replicas electing a leader,
a single-threaded moto (exact totals under concurrency: tests/support/endpoints.py says why) and
the Bedrock double in front of it for the policies that call models.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from incident_commander.budget import calc, ledger
from tests.support.bedrock import BedrockDouble
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.http import Answer, call
from tests.support.isolated import isolated_plane
from tests.support.kube import Kube, wait_for, wait_for_condition
from tests.support.policies import apply_connection, client_key, setup_connection

pytestmark = pytest.mark.integration

NS = "reservations"
STATE = "ic-system"
API = "incidentcommander.io/v1alpha1"
HALT = [{"percent": 80, "action": "Notify"}, {"percent": 100, "action": "Halt"}]
# One dollar per thousand input tokens of "large", two per thousand output tokens.
PRICING = [
    {"model": "large", "inputPer1kTokens": "1.00", "outputPer1kTokens": "2.00"},
    {"model": "small", "inputPer1kTokens": "0.10", "outputPer1kTokens": "0.20"},
]
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
SONNET = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"


@dataclass
class Replica:
    name: str
    log_dir: Path
    process: OperatorProcess | None = None

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.api_url


@dataclass
class World:
    kube: Kube
    moto: MotoServer
    bedrock: BedrockDouble
    replicas: list[Replica]
    keys: dict[str, str] = field(default_factory=dict)

    def start(self, replica: Replica) -> None:
        replica.process = OperatorProcess.start(
            self.kube,
            replica.log_dir,
            extra_args=(
                "--all-namespaces",
                "--leader-election-id=ic",
                "--leader-elect-timing=6s,4s,1s",
                f"--state-namespace={STATE}",
            ),
            env={"K8S_POD_NAME": replica.name},
        )

    def logs(self) -> str:
        return "\n".join(r.process.logs() for r in self.replicas if r.process is not None)

    def counter(self, budget: str) -> ledger.Counter:
        start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
        return ledger.read_counter(
            moto_client(self.moto.url, "dynamodb"), namespace=NS, budget=budget, period_start=start
        )

    def metric(self, replica: Replica, name: str, labels: dict[str, str]) -> float:
        assert replica.process is not None
        with urllib.request.urlopen(replica.process.metrics_url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("reservations")
    moto = MotoServer.start(work, serial=True, name="moto-serial")
    bedrock = BedrockDouble(upstream=moto.url).start()
    replicas = [Replica(f"replica-{i}", work / f"replica-{i}") for i in range(2)]
    for replica in replicas:
        replica.log_dir.mkdir()
    try:
        with isolated_plane(NS, STATE) as kube:
            world = World(kube=kube, moto=moto, bedrock=bedrock, replicas=replicas)
            try:
                for replica in replicas:
                    world.start(replica)
                setup_connection(kube, NS, moto, services=("sts", "dynamodb"), logs=world.logs)
                apply_connection(kube, NS, bedrock.url, name="bedrock", services=("sts", "dynamodb"))
                wait_for_condition(kube, "awsconnection", NS, "bedrock", timeout=30, logs=world.logs)
                yield world
            finally:
                for replica in replicas:
                    if replica.process is not None:
                        replica.process.stop()
    finally:
        bedrock.stop()
        moto.stop()


def budget_and_policy(
    world: World,
    name: str,
    limit: str,
    *,
    ttl: str = "10m",
    pricing: list[dict[str, str]] | None = None,
    connection: str = "conn",
    models: tuple[str, str] = ("small", "large"),
) -> str:
    spec: dict[str, Any] = {
        "connectionRef": {"name": "conn"},
        "period": "Monthly",
        "limit": {"amount": limit, "currency": "USD"},
        "thresholds": HALT,
        "evaluationInterval": "1h",
        "filter": {"services": ["Amazon Bedrock"]},  # LLM spend only: no Cost Explorer request
        "reservationTTL": ttl,
        "pricing": PRICING if pricing is None else pricing,
    }
    world.kube.apply(
        {"apiVersion": API, "kind": "BudgetPolicy", "metadata": {"name": name}, "spec": spec}, NS
    )
    world.kube.apply(
        {
            "apiVersion": API,
            "kind": "IncidentPolicy",
            "metadata": {"name": name},
            "spec": {
                "connectionRef": {"name": connection},
                "budgetRef": {"name": name},
                "modelRouting": {
                    "simpleModel": models[0],
                    "complexModel": models[1],
                    "complexityThreshold": 0.5,
                },
                "storage": {"deletionPolicy": "Retain"},
                "apiClients": [{"name": "agent", "role": "responder"}],
                "auth": {"rateLimit": {"requestsPerMinute": 100000, "burst": 10000}},
            },
        },
        NS,
    )
    wait_for_condition(world.kube, "budgetpolicy", NS, name, timeout=60, logs=world.logs)
    wait_for_condition(world.kube, "incidentpolicy", NS, name, "CredentialsIssued", logs=world.logs)
    key = client_key(world.kube, NS, name, "agent")["apiKey"]
    world.keys[name] = key
    for replica in world.replicas:  # every replica knows the key and the budget's state
        wait_until_served(world, replica, name)
    return key


def wait_until_served(world: World, replica: Replica, policy: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        answer = call(
            replica.url, "GET", "/v1/summary", headers={"Authorization": f"ApiKey {world.keys[policy]}"}
        )
        if answer.status == 200 and (answer.json()["budget"] or {}).get("phase") is not None:
            return
        assert time.monotonic() < deadline, f"{replica.name} does not serve {policy}: {answer.body!r}"
        time.sleep(0.2)


def route(world: World, replica: Replica, policy: str, *, estimated_tokens: int, **extra: Any) -> Answer:
    body = {"policy": policy, "taskType": "diagnose", "complexity": 0.9, "estimatedTokens": estimated_tokens}
    return call(
        replica.url,
        "POST",
        "/v1/route",
        headers={"Authorization": f"ApiKey {world.keys[policy]}"},
        json_body={**body, **extra},
    )


def usage(world: World, replica: Replica, policy: str, *, key: str | None = None, **body: Any) -> Answer:
    headers = {"Authorization": f"ApiKey {world.keys[policy]}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    report = {"policy": policy, "model": "large", "inputTokens": 0, "outputTokens": 0, **body}
    return call(replica.url, "POST", "/v1/usage", headers=headers, json_body=report)


def overspend_round(
    world: World, policy: str, *, estimated: int, used: int
) -> list[tuple[int, dict[str, Any]]]:
    """20 clients at once, alternating between the two replicas: each routes with ``estimated``
    tokens and, when allowed, reports ``used`` output tokens against its reservation."""
    go = asyncio.Event()

    async def client(index: int, session: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
        replica = world.replicas[index % 2]
        headers = {"Authorization": f"ApiKey {world.keys[policy]}"}
        body = {"policy": policy, "taskType": "diagnose", "complexity": 0.9, "estimatedTokens": estimated}
        await go.wait()
        async with session.post(f"{replica.url}/v1/route", json=body, headers=headers) as response:
            answer = await response.json()
            if response.status != 200:
                return response.status, answer
        report = {
            "policy": policy,
            "model": answer["model"],
            "inputTokens": 0,
            "outputTokens": used,
            "reservationId": answer["reservation"]["id"],
        }
        async with session.post(f"{replica.url}/v1/usage", json=report, headers=headers) as response:
            assert response.status == 201, await response.text()
            return 200, {**answer, "usage": await response.json()}

    async def run() -> list[tuple[int, dict[str, Any]]]:
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.ensure_future(client(i, session)) for i in range(20)]
            await asyncio.sleep(0.2)
            go.set()
            return list(await asyncio.gather(*clients))

    return asyncio.run(run())


def test_twenty_concurrent_clients_on_two_replicas_cannot_overspend(world: World) -> None:
    # Accurate estimates: 1,000 output tokens reserved (2.00) and used. Five fit in 10.00.
    budget_and_policy(world, "exact", "10.00")
    outcomes = overspend_round(world, "exact", estimated=1000, used=1000)
    allowed = [body for status, body in outcomes if status == 200]
    refused = [body for status, body in outcomes if status != 200]
    assert len(allowed) == 5, outcomes
    assert {s for s, _ in outcomes} == {200, 402}
    shortfalls = [b for b in refused if b["error"] == "InsufficientBudget"]
    assert shortfalls, refused
    for body in shortfalls:
        assert body["budget"] == "exact" and body["estimate"] == "2.00" and body["currency"] == "USD"
        assert Decimal(body["remaining"]) < Decimal("2.00") and "budgetPhase" in body
        assert re.fullmatch(r"\d+\.\d{2,}", body["remaining"]), body
    assert all(b["usage"]["reservation"]["outcome"] == "settled" for b in allowed)
    exact = world.counter("exact")
    assert exact.cost == Decimal("10.00") and exact.holds == () and exact.committed == Decimal("10.00")

    # Under-estimates: 2.00 reserved, 6.00 used. Five fit; each overruns its estimate by 4.00.
    budget_and_policy(world, "loose", "10.00")
    outcomes = overspend_round(world, "loose", estimated=1000, used=3000)
    allowed_loose = sum(1 for status, _ in outcomes if status == 200)
    loose = world.counter("loose")
    error = allowed_loose * (Decimal("6.00") - Decimal("2.00"))
    print(
        f"20 clients x 6.00 on a 10.00 limit (without reservations the ledger ended at 120.00): "
        f"accurate estimates -> ledger {exact.cost} (5 allowed); estimates of 2.00 -> ledger "
        f"{loose.cost} ({allowed_loose} allowed, bound {Decimal('10.00') + error})"
    )
    assert allowed_loose == 5
    assert loose.cost <= Decimal("10.00") + error and loose.cost == Decimal("30.00")
    # Both replicas took and refused reservations on the same counters; ten holds in all.
    counts = {
        replica.name: {
            outcome: world.metric(
                replica, "incident_commander_budget_reservations_total", {"outcome": outcome}
            )
            for outcome in ("reserved", "refused")
        }
        for replica in world.replicas
    }
    print(f"reservations by replica: {counts}")
    assert sum(c["reserved"] for c in counts.values()) == 10
    assert all(c["reserved"] + c["refused"] >= 1 for c in counts.values()), counts


def test_a_sigkill_between_reserve_and_settle_loses_nothing_and_counts_nothing_twice(world: World) -> None:
    budget_and_policy(world, "crash", "10.00", ttl="10s")
    victim, survivor = world.replicas
    first = route(world, victim, "crash", estimated_tokens=3000)  # 6.00
    second = route(world, victim, "crash", estimated_tokens=1500)  # 3.00
    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    held_first, held_second = first.json()["reservation"], second.json()["reservation"]
    assert victim.process is not None
    victim.process.process.stop(sig=9)
    victim.process = None

    refused = route(world, survivor, "crash", estimated_tokens=1000)  # 2.00 does not fit in 1.00
    assert refused.status == 402 and refused.json()["remaining"] == "1.00", refused.body
    # The first client got its answer and reports to the other replica; its retry counts once.
    report = {"outputTokens": 1500, "reservationId": held_first["id"], "taskType": "diagnose"}
    settled = usage(world, survivor, "crash", key="first-call", **report)
    assert settled.status == 201, settled.body
    assert settled.json()["reservation"] == {"id": held_first["id"], "outcome": "settled", "released": "3.00"}
    retried = usage(world, survivor, "crash", key="first-call", **report)
    assert retried.status == 200 and retried.json()["duplicate"] is True
    # The second client died with the operator: its hold expires after 10 s, released by the leader.
    deadline = time.monotonic() + 45
    while world.counter("crash").holds:
        assert time.monotonic() < deadline, world.counter("crash")
        time.sleep(0.5)
    after = world.counter("crash")
    assert (after.cost, after.committed, after.reports) == (Decimal("3.00"), Decimal("3.00"), 1)
    released = Decimal(held_second["amount"])
    assert released == Decimal("3.00")
    # It comes back late after all, and reports: counted once, as an ordinary report.
    late = usage(
        world, survivor, "crash", key="second-call", outputTokens=1000, reservationId=held_second["id"]
    )
    assert late.status == 201 and late.json()["reservation"]["outcome"] == "expired", late.body
    assert usage(
        world, survivor, "crash", key="second-call", outputTokens=1000, reservationId=held_second["id"]
    ).json()["duplicate"]
    final = world.counter("crash")
    assert (final.cost, final.committed, final.holds) == (Decimal("5.00"), Decimal("5.00"), ())
    world.start(victim)
    wait_until_served(world, victim, "crash")
    assert route(world, victim, "crash", estimated_tokens=2500).status == 200, "5.00 fits in what is left"
    wait_for(
        world.kube,
        "budgetpolicy",
        NS,
        "crash",
        lambda o: (
            (o.get("status") or {}).get("spend", {}).get("reserved") == "5.00"
            and o["status"]["spend"]["ledger"] == "5.00"
        ),
        timeout=20,
        describe="status: 5.00 settled, 5.00 reserved",
        logs=world.logs,
    )


def test_an_idempotency_key_reused_for_another_report_is_a_409(world: World) -> None:
    budget_and_policy(world, "idem", "1000.00")
    replica = world.replicas[0]
    assert usage(world, replica, "idem", key="k", inputTokens=1000).status == 201
    assert usage(world, replica, "idem", key="k", inputTokens=1000).json()["duplicate"] is True
    conflict = usage(world, replica, "idem", key="k", inputTokens=7000)
    assert conflict.status == 409 and conflict.json()["error"] == "IdempotencyKeyReused", conflict.body
    assert "already used for a different report" in conflict.json()["message"]
    other_model = usage(world, world.replicas[1], "idem", key="k", inputTokens=1000, model="small")
    assert other_model.status == 409
    assert world.counter("idem").cost == Decimal("1.00"), "the first report only"
    unknown = usage(world, replica, "idem", key="u", inputTokens=1, model="mystery")
    assert unknown.status == 422 and "no price" in unknown.json()["message"]
    forged = usage(world, replica, "idem", inputTokens=1, reservationId="not-ours")
    assert forged.status == 400 and forged.json()["error"] == "InvalidBody"


def test_summary_shows_money_fixed_point_and_the_spend_breakdown(world: World) -> None:
    budget_and_policy(world, "summary", "2500.00")
    replica = world.replicas[1]
    headers = {"Authorization": f"ApiKey {world.keys['summary']}"}
    fresh = call(replica.url, "GET", "/v1/summary", headers=headers).json()["budget"]
    assert (fresh["utilization"], fresh["total"], fresh["reserved"]) == ("0.00", "0.00", "0.00"), fresh
    held = route(world, replica, "summary", estimated_tokens=100).json()["reservation"]
    settled = usage(world, replica, "summary", outputTokens=50, reservationId=held["id"])
    assert settled.status == 201
    usage(world, replica, "summary", model="small", inputTokens=1000)
    deadline = time.monotonic() + 10
    while True:
        budget = call(replica.url, "GET", "/v1/summary", headers=headers).json()["budget"]
        if budget["total"] == "0.20":
            break
        assert time.monotonic() < deadline, budget
        time.sleep(0.2)
    assert budget["byModel"] == {"large": "0.10", "small": "0.10"}
    assert budget["byClient"] == {"summary/agent": "0.20"}
    assert budget["byTaskType"] == {"diagnose": "0.10", "unspecified": "0.10"}, "the route's task type"
    assert budget["utilization"] == "0.00" and not re.search(r"\d[eE][+-]?\d", json.dumps(budget))
    status = wait_for(
        world.kube,
        "budgetpolicy",
        NS,
        "summary",
        lambda o: (
            (o.get("status") or {}).get("spend", {}).get("byModel") == {"large": "0.10", "small": "0.10"}
        ),
        timeout=20,
        logs=world.logs,
    )["status"]
    assert status["spend"]["byClient"] == {"summary/agent": "0.20"}
    assert status["utilization"] == "0.00"


# -- metered Bedrock calls ----------------------------------------------------------------------------


def converse(world: World, policy: str, *, stream: bool = False, **extra: Any) -> Answer:
    body = {
        "policy": policy,
        "taskType": "summarize",
        "complexity": 0.9,
        "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": "how many tokens is this"}]}],
        "inferenceConfig": {"maxTokens": 100},
        **extra,
    }
    path = "/v1/converse/stream" if stream else "/v1/converse"
    return call(
        world.replicas[0].url,
        "POST",
        path,
        headers={"Authorization": f"ApiKey {world.keys[policy]}"},
        json_body=body,
        timeout=60,
    )


def events(answer: Answer) -> list[tuple[str, dict[str, Any]]]:
    found = re.findall(r"event: (\w+)\ndata: (.*)\n\n", answer.body.decode())
    return [(name, json.loads(data)) for name, data in found]


@pytest.fixture
def talk(world: World) -> Iterator[str]:
    if "talk" not in world.keys:
        budget_and_policy(world, "talk", "100.00", pricing=[], connection="bedrock", models=(HAIKU, SONNET))
    world.bedrock.reset()
    world.bedrock.reply = "one two three four five"
    yield "talk"
    world.bedrock.reset()


def test_converse_calls_bedrock_with_the_routed_model_and_settles_what_it_used(
    world: World, talk: str
) -> None:
    before = world.counter(talk).cost
    answer = converse(world, talk)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["model"] == SONNET and body["stopReason"] == "end_turn"
    assert body["output"]["message"]["content"] == [{"text": "one two three four five"}]
    # The double counts words: 2 of system prompt + 5 of message in, 5 out. Sonnet 4.5 (global):
    # 3 and 15 dollars per million tokens.
    assert body["usage"] == {"inputTokens": 7, "outputTokens": 5, "totalTokens": 12}
    assert body["cost"] == "0.000096" and body["currency"] == "USD" and body["recorded"] is True
    reservation = body["reservation"]
    assert reservation["outcome"] == "settled"
    assert Decimal(reservation["released"]) == Decimal(reservation["amount"]) - Decimal("0.000096")
    [call_made] = world.bedrock.calls_of("Converse")
    assert call_made.model_id == SONNET and call_made.region == "us-east-1"
    assert call_made.body["inferenceConfig"] == {"maxTokens": 100}
    after = world.counter(talk)
    assert after.cost - before == Decimal("0.000096") and after.holds == ()
    assert after.by_model[SONNET] >= Decimal("0.000096") and after.by_task_type["summarize"] > 0
    simple = converse(world, talk, complexity=0.1)
    assert simple.status == 200 and simple.json()["model"] == HAIKU


def test_bedrock_throttling_is_a_429_and_releases_the_reservation(world: World, talk: str) -> None:
    replica = world.replicas[0]
    released_before = world.metric(
        replica, "incident_commander_budget_reservations_total", {"outcome": "released"}
    )
    before = world.counter(talk)
    world.bedrock.throttle(10)
    answer = converse(world, talk)
    assert answer.status == 429, answer.body
    assert answer.json()["error"] == "ModelThrottled" and "ThrottlingException" in answer.json()["message"]
    assert answer.headers["retry-after"] == "2"
    assert len(world.bedrock.calls_of("Converse")) == 3, "botocore's retries (the connection's maxAttempts)"
    after = world.counter(talk)
    assert (after.cost, after.committed, after.holds) == (before.cost, before.committed, ())
    assert world.metric(replica, "incident_commander_budget_reservations_total", {"outcome": "released"}) == (
        released_before + 1
    )
    throttled = world.metric(
        replica, "incident_commander_bedrock_calls_total", {"operation": "Converse", "outcome": "throttled"}
    )
    assert throttled >= 1
    world.bedrock.reset()
    world.bedrock.fail(
        1, status=400, code="ValidationException", message="The provided model identifier is invalid."
    )
    rejected = converse(world, talk)
    assert rejected.status == 422 and rejected.json()["error"] == "ModelRequestRejected", rejected.body
    assert world.counter(talk).holds == ()


def test_converse_stream_relays_the_answer_and_settles_from_the_metadata_event(
    world: World, talk: str
) -> None:
    before = world.counter(talk).cost
    answer = converse(world, talk, stream=True)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    received = events(answer)
    names = [name for name, _ in received]
    assert names == ["route", "delta", "delta", "delta", "delta", "delta", "stop", "usage"], received
    assert received[0][1]["model"] == SONNET and received[0][1]["reservation"]["capped"] is True
    assert "".join(data["text"] for name, data in received if name == "delta") == "one two three four five"
    final = received[-1][1]
    assert final["usage"] == {"inputTokens": 7, "outputTokens": 5, "totalTokens": 12}
    assert final["cost"] == "0.000096" and final["reservation"]["outcome"] == "settled"
    assert world.counter(talk).cost - before == Decimal("0.000096")

    world.bedrock.fail_stream(1, after_deltas=2)
    broken = converse(world, talk, stream=True)
    received = events(broken)
    assert [name for name, _ in received] == ["route", "delta", "delta", "error"], received
    assert received[-1][1]["error"] == "ModelThrottled"
    after = world.counter(talk)
    assert after.holds == () and after.cost - before == Decimal("0.000096"), "released, not charged"


def test_converse_refuses_what_it_cannot_meter(world: World, talk: str) -> None:
    key = world.keys[talk]
    too_big = converse(world, talk, inferenceConfig={"maxTokens": 128000}, estimatedInputTokens=90_000_000)
    assert too_big.status == 402 and too_big.json()["error"] == "InsufficientBudget", too_big.body
    assert world.bedrock.calls_of("Converse") == [], "no call without a reservation"
    bad = call(
        world.replicas[0].url,
        "POST",
        "/v1/converse",
        headers={"Authorization": f"ApiKey {key}"},
        json_body={
            "policy": talk,
            "taskType": "t",
            "complexity": 0.5,
            "messages": [{"role": "assistant", "content": [{"text": "hi"}]}],
        },
    )
    assert bad.status == 400 and "messages[0].role" in bad.json()["message"]
