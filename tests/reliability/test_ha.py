"""Several replicas, as processes on a control plane of their own (docs/ha.md).

Three operators elect a leader through a Lease; every one serves the API. The apiserver's audit log
records every write with the writer's User-Agent (which carries the replica's identity), so the
tests can show that a replica that does not lead writes nothing to the objects the operator
reconciles. Leader election runs with short timings here (6 s lease, 4 s renew deadline, 1 s
retry); docs/ha.md gives the failover time with the defaults too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from incident_commander.budget import calc, ledger
from tests.conftest import CRDS
from tests.controlplane.localcluster import LocalControlPlane, build_binaries, free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.http import call
from tests.support.incidents import agreement
from tests.support.kube import Kube, wait_for_condition
from tests.support.policies import client_key, key_index, setup_connection

pytestmark = pytest.mark.integration

NS = "ha"
TIMING = "--leader-elect-timing=6s,4s,1s"
LEASE = "ic"
STATE = "ic-system"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
RECONCILED = {"awsconnections", "budgetpolicies", "incidentpolicies", "secrets", "events"}


@dataclass
class Replica:
    name: str
    process: OperatorProcess | None
    log_dir: Path

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.api_url


@dataclass
class Cluster:
    plane: LocalControlPlane
    kube: Kube
    moto: MotoServer
    replicas: list[Replica]
    keys: dict[str, str] = field(default_factory=dict)

    def start(self, replica: Replica, *extra: str) -> None:
        replica.process = OperatorProcess.start(
            self.kube,
            replica.log_dir,
            extra_args=(
                "--all-namespaces",
                f"--leader-election-id={LEASE}",
                TIMING,
                f"--state-namespace={STATE}",
                *extra,
            ),
            env={"K8S_POD_NAME": replica.name},
        )

    def leader(self) -> Replica | None:
        lease = self.kube.get_or_none("lease", STATE, LEASE)
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
        return next((r for r in self.replicas if holder.startswith(f"{r.name}-")), None)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.process is not None]

    def audit(self) -> list[dict[str, Any]]:
        lines = self.plane.audit_log.read_text().splitlines() if self.plane.audit_log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def writes_by(self, replica: Replica, since: datetime | None = None) -> list[str]:
        """The writes to reconciled objects that carried this replica's identity."""
        found = []
        for event in self.audit():
            ref = event.get("objectRef") or {}
            if (
                event.get("verb") in WRITES
                and ref.get("resource") in RECONCILED
                and ref.get("namespace") != STATE  # the sealing key: whichever replica starts first
                and f"({replica.name}-" in (event.get("userAgent") or "")
                and (since is None or _time(event["stageTimestamp"]) >= since)
            ):
                found.append(
                    f"{event['verb']} {ref.get('resource')} {ref.get('namespace')}/{ref.get('name')}"
                )
        return found


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> float:
    """Seconds until ``predicate()``; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout}s")


def api_key(url: str, key: str) -> int:
    return call(url, "POST", "/v1/token", headers={"Authorization": f"ApiKey {key}"}).status


def route(url: str, key: str, severity: str | None = None) -> int:
    body: dict[str, Any] = {"policy": "p", "taskType": "triage", "complexity": 0.9, "estimatedTokens": 10}
    if severity:
        body["severity"] = severity
    return call(url, "POST", "/v1/route", headers={"Authorization": f"ApiKey {key}"}, json_body=body).status


def budget(limit: str, thresholds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "BudgetPolicy",
        "metadata": {"name": "b"},
        "spec": {
            "connectionRef": {"name": "conn"},
            "period": "Monthly",
            "limit": {"amount": limit, "currency": "USD"},
            "filter": {"services": ["Amazon Bedrock"]},  # the ledger only: no Cost Explorer
            "thresholds": thresholds,
            "evaluationInterval": "1h",
            "pricing": [
                {"model": "large", "inputPer1kTokens": "1.00", "outputPer1kTokens": "1.00"},
                {"model": "small", "inputPer1kTokens": "0.10", "outputPer1kTokens": "0.10"},
            ],
        },
    }


def policy(clients: list[dict[str, Any]], *, with_budget: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "IncidentPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "connectionRef": {"name": "conn"},
            **({"budgetRef": {"name": "b"}} if with_budget else {}),
            "modelRouting": {"simpleModel": "small", "complexModel": "large"},
            "storage": {
                "incidentTable": "ha-p-incidents",
                "eventStream": "ha-p-events",
                "artifactBucket": "ha-p-artifacts",
                "stateMachine": "ha-p-consensus",
            },
            "apiClients": clients,
            "auth": {"rateLimit": {"requestsPerMinute": 100000, "burst": 10000}},
            **spec,
        },
    }


CLIENTS = [{"name": "agent", "role": "responder"}, {"name": "admin", "role": "admin"}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bin_dir = build_binaries()
    work = tmp_path_factory.mktemp("ha")
    with LocalControlPlane(bin_dir=bin_dir, start_controller_manager=True, audit_writes=True) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        for namespace in (NS, STATE):
            kube.kubectl("create", "namespace", namespace)
        moto = MotoServer.start(work, serial=True)
        replicas = [Replica(f"replica-{i}", None, work / f"replica-{i}") for i in range(3)]
        for replica in replicas:
            replica.log_dir.mkdir()
        world = Cluster(plane=plane, kube=kube, moto=moto, replicas=replicas)
        try:
            for replica in replicas:
                world.start(replica)
            wait(lambda: world.leader() is not None, 30, "a leader")
            setup_connection(kube, NS, moto, services=("sts", "dynamodb", "kinesis", "s3", "stepfunctions"))
            kube.apply(budget("10.00", [{"percent": 100, "action": "Halt"}]), NS)
            kube.apply(policy(CLIENTS), NS)
            wait_for_condition(kube, "budgetpolicy", NS, "b", timeout=60)
            wait_for_condition(kube, "incidentpolicy", NS, "p", "CredentialsIssued", timeout=60)
            world.keys = {c["name"]: client_key(kube, NS, "p", c["name"])["apiKey"] for c in CLIENTS}
            for replica in replicas:
                wait(
                    lambda r=replica: api_key(r.url, world.keys["agent"]) == 200,
                    30,
                    f"{replica.name} serving",
                )
            yield world
        finally:
            for replica in replicas:
                if replica.process is not None:
                    replica.process.stop()
            moto.stop()


def test_exactly_one_leads_and_the_others_write_nothing(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    for replica in cluster.replicas:
        ready = call(replica.url, "GET", "/readyz")
        assert ready.status == 200, (replica.name, ready.body)
        if replica is not leader:
            assert cluster.writes_by(replica) == [], f"{replica.name} wrote while standing by"
    assert cluster.writes_by(leader), "the leader reconciled"


def test_incidents_are_served_by_every_replica_from_dynamodb(cluster: Cluster) -> None:
    """Incident writes go to the shared table, conditionally: agents on different replicas race on
    one incident and lose nothing, every replica reads the same version, and the standbys still
    write nothing to Kubernetes (docs/incidents.md)."""
    r0, r1, r2 = cluster.replicas

    def send(replica: Replica, who: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"ApiKey {cluster.keys[who]}"}
        return call(replica.url, method, path, headers=headers, json_body=body)

    detection = {"title": "replicas", "severity": "critical", "dedupKey": f"ha-{uuid.uuid4().hex[:6]}"}
    opened = send(r0, "agent", "POST", "/v1/incidents", detection)
    assert opened.status == 201, opened.body
    incident_id = opened.json()["incident"]["id"]
    joined = send(r1, "admin", "POST", "/v1/incidents", detection)
    assert (joined.status, joined.json()["incident"]["id"]) == (200, incident_id)

    async def race(*calls: tuple[Replica, str, str, Any]) -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one(replica: Replica, who: str, path: str, body: Any) -> int:
                headers = {"Authorization": f"ApiKey {cluster.keys[who]}"}
                async with session.post(f"{replica.url}{path}", json=body, headers=headers) as answer:
                    return answer.status

            return list(await asyncio.gather(*(one(*c) for c in calls)))

    base = f"/v1/incidents/{incident_id}"
    acks = asyncio.run(
        race((r1, "agent", f"{base}/acknowledge", {}), (r2, "admin", f"{base}/acknowledge", {}))
    )
    assert sorted(acks) == [200, 409], acks
    attached = asyncio.run(
        race(
            (r2, "agent", f"{base}/artifacts", {"name": "a.log", "contentType": "text/plain"}),
            (r0, "admin", f"{base}/artifacts", {"name": "b.log", "contentType": "text/plain"}),
        )
    )
    assert attached == [201, 201], attached
    assert {send(r, "agent", "GET", base).headers["etag"] for r in cluster.replicas} == {'"4"'}
    stale = call(
        r2.url,
        "POST",
        f"{base}/resolve",
        headers={"Authorization": f"ApiKey {cluster.keys['agent']}", "If-Match": '"2"'},
        json_body={"resolution": {"code": "fixed", "summary": "x"}},
    )
    assert stale.status == 412, stale.body
    dynamodb, kinesis = moto_client(cluster.moto.url, "dynamodb"), moto_client(cluster.moto.url, "kinesis")
    assert agreement(dynamodb, kinesis, "ha-p-incidents", "ha-p-events", [incident_id]) == []
    leader = cluster.leader()
    for replica in cluster.replicas:
        if replica is not leader:
            assert cluster.writes_by(replica) == [], f"{replica.name} wrote while standing by"


def test_a_revoked_key_is_refused_on_every_replica_within_2s(cluster: Cluster) -> None:
    kube = cluster.kube
    temp = [*CLIENTS, {"name": "temp", "role": "responder"}]
    kube.apply(policy(temp), NS)
    wait(lambda: "temp" in [e.client for e in key_index(kube, NS, "p").entries], 30, "temp's key")
    key = client_key(kube, NS, "p", "temp")["apiKey"]
    for replica in cluster.replicas:
        wait(lambda r=replica: api_key(r.url, key) == 200, 30, f"{replica.name} serving temp")
    token = call(
        cluster.replicas[0].url, "POST", "/v1/token", headers={"Authorization": f"ApiKey {key}"}
    ).json()
    kube.apply(policy(CLIENTS), NS)
    wait(
        lambda: any(e.client == "temp" and e.state == "Revoked" for e in key_index(kube, NS, "p").entries),
        30,
        "the revocation",
        step=0.05,
    )
    revoked_at = time.monotonic()
    refused: dict[str, float] = {}
    while len(refused) < len(cluster.replicas) and time.monotonic() - revoked_at < 10:
        for replica in cluster.replicas:
            if replica.name in refused:
                continue
            bearer = {"Authorization": f"Bearer {token['token']}"}
            if (
                api_key(replica.url, key) == 401
                and call(replica.url, "GET", "/v1/summary", headers=bearer).status == 401
            ):
                refused[replica.name] = time.monotonic() - revoked_at
        time.sleep(0.05)
    assert len(refused) == 3 and max(refused.values()) <= 2.0, refused


def test_usage_on_any_replica_counts_once_and_a_halt_reaches_every_replica_within_2s(
    cluster: Cluster,
) -> None:
    reports = [(uuid.uuid4().hex, 300) for _ in range(30)]  # 30 reports of 0.30 = 9.00

    async def send_all() -> None:
        async with aiohttp.ClientSession() as session:
            for index, (key, tokens) in enumerate(reports):
                for attempt in range(2):  # each report twice, to two replicas, with the same key
                    replica = cluster.replicas[(index + attempt) % 3]
                    async with session.post(
                        f"{replica.url}/v1/usage",
                        json={"policy": "p", "model": "large", "inputTokens": tokens, "outputTokens": 0},
                        headers={"Authorization": f"ApiKey {cluster.keys['agent']}", "Idempotency-Key": key},
                    ) as response:
                        assert response.status in (200, 201), await response.text()

    asyncio.run(send_all())
    start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
    dynamodb = moto_client(cluster.moto.url, "dynamodb")
    assert ledger.read(dynamodb, namespace=NS, budget="b", period_start=start) == Decimal("9.00")
    for replica in cluster.replicas:
        assert route(replica.url, cluster.keys["agent"]) == 200
    # Over the limit, through one standby: every replica refuses non-critical routing within 2 s.
    standby = next(r for r in cluster.replicas if r is not cluster.leader())
    answer = call(
        standby.url,
        "POST",
        "/v1/usage",
        headers={"Authorization": f"ApiKey {cluster.keys['agent']}"},
        json_body={"policy": "p", "model": "large", "inputTokens": 2000, "outputTokens": 0},
    )
    assert answer.status == 201, answer.body
    recorded_at = time.monotonic()
    halted: dict[str, float] = {}
    while len(halted) < 3 and time.monotonic() - recorded_at < 10:
        for replica in cluster.replicas:
            if replica.name not in halted and route(replica.url, cluster.keys["agent"]) == 402:
                halted[replica.name] = time.monotonic() - recorded_at
        time.sleep(0.05)
    assert len(halted) == 3 and max(halted.values()) <= 2.0, halted
    for replica in cluster.replicas:  # the critical severity still routes under a Halt
        assert route(replica.url, cluster.keys["agent"], severity="critical") == 200


def test_a_restart_under_a_halt_allows_no_route_and_writes_no_unchanged_status(cluster: Cluster) -> None:
    assert route(cluster.replicas[0].url, cluster.keys["agent"]) == 402, "the previous test left a Halt"
    # The previous test's critical calls took reservations: their figures reach the budget's status
    # in the leader's next pass. Let that write land first; every write after the restart is churn.
    settled = datetime.now(UTC)

    def status_quiet_for_3s() -> bool:
        nonlocal settled
        for event in cluster.audit():
            if (
                event.get("verb") in WRITES
                and (event.get("objectRef") or {}).get("subresource") == "status"
                and _time(event["stageTimestamp"]) > settled
            ):
                settled = _time(event["stageTimestamp"])
        return datetime.now(UTC) - settled > timedelta(seconds=3)

    wait(status_quiet_for_3s, 60, "no status write for 3 s", step=0.5)
    replica = cluster.leader()
    assert replica is not None and replica.process is not None
    since = datetime.now(UTC)
    replica.process.stop()  # SIGTERM: the leader releases the Lease, another takes over at once
    replica.process = None
    cluster.start(replica)
    statuses: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        statuses.append(route(replica.url, cluster.keys["agent"]))
    assert 200 not in statuses, "a restarted replica routed under a Halt"
    # Refusals only: 503 while it starts, then the Halt's 402 (or 429: under a Halt each routing
    # request costs the rate limit 1/factor tokens, and this loop asks as fast as it can).
    assert 402 in statuses and set(statuses) <= {402, 429, 503}, set(statuses)
    status_writes = [
        event
        for event in cluster.audit()
        if event.get("verb") in WRITES
        and (event.get("objectRef") or {}).get("subresource") == "status"
        and _time(event["stageTimestamp"]) >= since
    ]
    assert status_writes == [], [(e["objectRef"]["name"], e.get("requestObject")) for e in status_writes]


def test_killing_the_leader_hands_over_without_losing_or_reissuing_a_key(cluster: Cluster) -> None:
    kube = cluster.kube
    before = {e.key_id: e.state for e in key_index(kube, NS, "p").entries}
    leader = cluster.leader()
    assert leader is not None and leader.process is not None
    leader.process.process.stop(signal.SIGKILL)
    leader.process = None
    killed_at, killed = time.monotonic(), datetime.now(UTC)
    took = wait(lambda: cluster.leader() not in (None, leader), 30, "a new leader")
    new = cluster.leader()
    assert new is not None
    print(f"failover: a new leader {took:.1f}s after SIGKILL (lease 6s, retry 1s)")
    assert took <= 6 + 1 + 3  # lease duration + retry period + the slack of a loaded machine
    # The new leader reconciles: the policy's next pass writes nothing new for its keys.
    kube.kubectl("annotate", "incidentpolicy", "p", "-n", NS, f"poke={uuid.uuid4().hex[:6]}", "--overwrite")
    time.sleep(3)
    after = {e.key_id: e.state for e in key_index(kube, NS, "p").entries}
    assert after == before, "no key lost, none issued twice"
    for replica in cluster.live():
        assert api_key(replica.url, cluster.keys["agent"]) == 200
    for replica in cluster.live():
        if replica is not new:
            assert cluster.writes_by(replica, killed) == [], f"{replica.name} wrote while standing by"
    assert time.monotonic() - killed_at < 60
    cluster.start(leader)  # back to three for the next tests


def test_the_rate_limit_holds_in_total_across_three_replicas(cluster: Cluster) -> None:
    kube = cluster.kube
    per_minute, burst = 1200, 12
    kube.apply(budget("1000.00", [{"percent": 100, "action": "Halt"}]), NS)  # no Halt: routing costs 1
    for replica in cluster.replicas:
        wait(
            lambda r=replica: route(r.url, cluster.keys["agent"]) == 200,
            30,
            f"{replica.name} out of the Halt",
        )
    kube.apply(policy(CLIENTS, auth={"rateLimit": {"requestsPerMinute": per_minute, "burst": burst}}), NS)
    for replica in cluster.replicas:  # every replica knows the new limit and counts three members
        wait(
            lambda r=replica: (
                call(r.url, "POST", "/v1/token", headers={"Authorization": f"ApiKey {cluster.keys['admin']}"})
                .headers.get("ratelimit-policy", "")
                .startswith('"client";q=400;')
            ),
            30,
            f"{replica.name} taking a third of the limit",
        )
    time.sleep(burst / (per_minute / 60) + 1)  # let the buckets refill

    async def overload() -> tuple[list[int], float]:
        statuses: list[int] = []
        body = {"policy": "p", "taskType": "t", "complexity": 0.2, "estimatedTokens": 10}
        headers = {"Authorization": f"ApiKey {cluster.keys['agent']}"}
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            sent = 0
            last_sent = 0.0

            async def sender() -> None:
                # Ten times the allowed rate, round robin over the replicas. Several senders: an
                # answered /v1/route takes a reservation (a DynamoDB write), tens of ms on a busy
                # machine, so one sender alone could not ask fast enough.
                nonlocal sent, last_sent
                while time.monotonic() - started < 3:
                    last_sent = time.monotonic() - started
                    index = sent
                    sent += 1
                    replica = cluster.replicas[index % 3]
                    async with session.post(
                        f"{replica.url}/v1/route", json=body, headers=headers
                    ) as response:
                        statuses.append(response.status)
                    await asyncio.sleep(max(0.0, started + sent / 200 - time.monotonic()))

            await asyncio.gather(*(sender() for _ in range(16)))
            return statuses, last_sent

    # The window runs from the first request sent to the last (answers still in flight after it
    # are not time in which more could have been accepted).
    statuses, window = asyncio.run(overload())
    accepted = statuses.count(200)
    allowed = burst + per_minute / 60 * window
    seen = Counter(statuses)
    assert statuses.count(429) > len(statuses) / 2, ("the overload was not an overload", seen)
    assert abs(accepted - allowed) <= 0.10 * allowed, (accepted, allowed, window, seen)


def test_two_operators_sharding_namespaces_do_not_interfere(tmp_path: Path) -> None:
    bin_dir = build_binaries()
    with LocalControlPlane(bin_dir=bin_dir, start_controller_manager=True, audit_writes=True) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        for namespace in ("shard-a", "shard-b", STATE):
            kube.kubectl("create", "namespace", namespace)
        moto = MotoServer.start(tmp_path, port=free_port())
        operators = {}
        try:
            for shard in ("a", "b"):
                (tmp_path / shard).mkdir()
                operators[shard] = OperatorProcess.start(
                    kube,
                    tmp_path / shard,
                    extra_args=(
                        f"--namespace=shard-{shard}",
                        f"--leader-election-id=ic-{shard}",
                        TIMING,
                        f"--state-namespace={STATE}",
                    ),
                    env={"K8S_POD_NAME": f"shard-{shard}"},
                )
            keys = {}
            for shard in ("a", "b"):
                setup_connection(
                    kube,
                    f"shard-{shard}",
                    moto,
                    services=("sts", "dynamodb", "kinesis", "s3", "stepfunctions"),
                )
                kube.apply(
                    policy([{"name": "agent", "role": "responder"}], with_budget=False), f"shard-{shard}"
                )
                wait_for_condition(
                    kube, "incidentpolicy", f"shard-{shard}", "p", "CredentialsIssued", timeout=60
                )
                keys[shard] = client_key(kube, f"shard-{shard}", "p", "agent")["apiKey"]
            for shard, other in (("a", "b"), ("b", "a")):
                url = operators[shard].api_url
                wait(lambda u=url, k=keys[shard]: api_key(u, k) == 200, 30, f"shard {shard} serving its key")
                assert api_key(url, keys[other]) == 401, "a shard knows nothing of the other's keys"
            for event in (
                json.loads(line) for line in plane.audit_log.read_text().splitlines() if line.strip()
            ):
                ref = event.get("objectRef") or {}
                agent = event.get("userAgent") or ""
                if event.get("verb") in WRITES and ref.get("namespace", "").startswith("shard-"):
                    shard = ref["namespace"].removeprefix("shard-")
                    other = "b" if shard == "a" else "a"
                    assert f"(shard-{other}-" not in agent, f"shard {other} wrote in shard-{shard}: {event}"
            lease_a, lease_b = (
                kube.get("lease", STATE, f"ic-{s}")["spec"]["holderIdentity"] for s in ("a", "b")
            )
            assert lease_a.startswith("shard-a-") and lease_b.startswith("shard-b-")
        finally:
            for handle in operators.values():
                handle.stop()
            moto.stop()
