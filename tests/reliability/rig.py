"""The fault matrix's own world: a control plane, moto and a fault proxy that tests may break.

Destructive faults (restarting the apiserver, pausing etcd, compacting its history) run against a
``LocalControlPlane`` of this package, never the session's, so later tests find theirs healthy.
moto runs single-threaded: its threaded server does not apply concurrent DynamoDB ``ADD``s
atomically (real DynamoDB does), and the usage ledger's exactness is one of the things checked.

``IC_RELIABILITY=long`` (``make reliability``) selects the long variant of every scenario.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from incident_commander.budget import calc, ledger
from tests.conftest import CRDS
from tests.controlplane.localcluster import LocalControlPlane, free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.faultproxy import FaultProxy
from tests.support.http import call
from tests.support.kube import Kube, condition, wait_for
from tests.support.policies import client_key, key_index, secret_data, verifies
from tests.support.processes import http_ok

LONG = os.environ.get("IC_RELIABILITY") == "long"
API = "incidentcommander.io/v1alpha1"
PRICE_IN, PRICE_OUT = Decimal("0.001"), Decimal("0.002")


@dataclass
class Rig:
    """Everything a fault test touches; ``operator`` is replaced when a test kills it."""

    plane: LocalControlPlane
    kube: Kube
    moto: MotoServer
    proxy: FaultProxy
    logs: Path
    operator: OperatorProcess | None = None
    log_mark: int = 0

    def start_operator(self) -> OperatorProcess:
        self.operator = OperatorProcess.start(self.kube, self.logs)
        return self.operator

    def live_operator(self) -> OperatorProcess:
        assert self.operator is not None, "the operator is not running"
        return self.operator

    def operator_pid(self) -> int:
        process = self.live_operator().process.process
        assert process is not None and process.poll() is None, "the operator process has exited"
        return process.pid

    def kill_operator(self) -> None:
        operator = self.live_operator()
        assert operator.process.stop(signal.SIGKILL) == -signal.SIGKILL
        self.operator = None

    def pause_operator(self) -> None:
        os.killpg(self.operator_pid(), signal.SIGSTOP)

    def resume_operator(self) -> None:
        os.killpg(self.operator_pid(), signal.SIGCONT)

    def logs_tail(self) -> str:
        return self.operator.logs() if self.operator else "(operator not running)"

    def mark_log(self) -> None:
        """Remember where the operator log ends now: ``new_log`` returns what follows."""
        self.log_mark = len(self.log_text())

    def log_text(self) -> str:
        try:
            return (self.logs / "operator.log").read_text(errors="replace")
        except OSError:
            return ""

    def new_log(self) -> str:
        return self.log_text()[self.log_mark :]

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.plane.audit_log.read_text().splitlines()]


def rig_context(bin_dir: Path, logs: Path) -> Iterator[Rig]:
    with LocalControlPlane(bin_dir=bin_dir, audit_writes=True) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=bin_dir)
        kube.kubectl("apply", "-f", str(CRDS))
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        moto = MotoServer.start(logs, serial=True)
        proxy = FaultProxy(upstream=moto.url, port=free_port(), delay=4.0)
        proxy.start()
        rig = Rig(plane=plane, kube=kube, moto=moto, proxy=proxy, logs=logs)
        try:
            rig.start_operator()
            yield rig
        finally:
            if rig.operator is not None:
                code = rig.operator.stop()
                assert code == 0, f"operator exited with {code}:\n{rig.logs_tail()}"
            proxy.stop()
            moto.stop()


# -- the objects every scenario deploys ----------------------------------------------------------


def clients(count: int, prefix: str = "agent") -> list[dict[str, str]]:
    return [
        {"name": f"{prefix}-{i}", "role": "responder", "rotationPeriod": "1h", "gracePeriod": "2s"}
        for i in range(count)
    ]


def policy_manifest(name: str, client_list: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "IncidentPolicy",
        "metadata": {"name": name},
        "spec": {
            "connectionRef": {"name": "conn"},
            "budgetRef": {"name": "budget"},
            "modelRouting": {"simpleModel": "m", "complexModel": "m"},
            "storage": {"deletionPolicy": "Retain"},
            "apiClients": client_list,
        },
    }


def deploy(rig: Rig, namespace: str, client_list: list[dict[str, str]]) -> None:
    """A Secret, an AwsConnection through the fault proxy, a BudgetPolicy and an IncidentPolicy."""
    rig.kube.kubectl("create", "namespace", namespace)
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        },
        {
            "apiVersion": API,
            "kind": "AwsConnection",
            "metadata": {"name": "conn"},
            "spec": {
                "region": "us-east-1",
                "endpointUrl": rig.proxy.url,
                "credentials": {"secretRef": {"name": "aws-creds"}},
                "services": ["sts", "dynamodb", "s3", "kinesis", "stepfunctions"],
                "probeInterval": "5s",
                "retry": {"maxAttempts": 2, "baseDelay": "100ms", "maxDelay": "500ms"},
                "timeouts": {"connect": "1s", "read": "2s"},
            },
        },
        {
            "apiVersion": API,
            "kind": "BudgetPolicy",
            "metadata": {"name": "budget"},
            "spec": {
                "connectionRef": {"name": "conn"},
                "period": "Monthly",
                "limit": {"amount": "1000000.00", "currency": "USD"},
                # Bedrock only: spend comes from the ledger alone, no Cost Explorer requests.
                "filter": {"services": ["Amazon Bedrock"]},
                "thresholds": [{"percent": 80, "action": "Downgrade"}, {"percent": 100, "action": "Halt"}],
                "evaluationInterval": "24h",
                "pricing": [
                    {"model": "m", "inputPer1kTokens": str(PRICE_IN), "outputPer1kTokens": str(PRICE_OUT)}
                ],
            },
        },
        policy_manifest("policy", client_list),
    ]
    for doc in docs:
        rig.kube.apply(doc, namespace)


def ready_now(obj: Mapping[str, Any]) -> bool:
    ready = condition(obj, "Ready")
    return bool(
        ready
        and ready.get("status") == "True"
        and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def wait_ready(rig: Rig, namespace: str, kind: str, name: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(
        rig.kube, kind, namespace, name, ready_now, timeout=timeout, describe="Ready=True", logs=rig.logs_tail
    )


def check_keys(rig: Rig, namespace: str, policy: str, client_list: list[dict[str, str]]) -> None:
    """Every client has exactly one Active key, held by its Secret and verifying; no Pending entry,
    no Secret of a client that is gone, no Secret holding a key the index does not know."""
    index = key_index(rig.kube, namespace, policy)
    assert not [e for e in index.entries if e.state == "Pending"], "a Pending key entry survived"
    for client in client_list:
        active = index.for_client(client["name"], "Active")
        assert len(active) == 1, (client["name"], active)
        secret = client_key(rig.kube, namespace, policy, client["name"])
        assert secret["keyId"] == active[0].key_id, client["name"]
        assert verifies(rig.kube, namespace, policy, secret["apiKey"])
    names = rig.kube.kubectl(
        "get",
        "secrets",
        "-n",
        namespace,
        "-l",
        f"incidentcommander.io/policy={policy},incidentcommander.io/purpose=api-key",
        "-o",
        "name",
    ).stdout.split()
    assert sorted(names) == sorted(f"secret/{policy}-{c['name']}-api-key" for c in client_list)
    known = {e.key_id for e in index.entries}
    for name in names:
        data = secret_data(rig.kube, namespace, name.split("/", 1)[1])
        assert data["keyId"] in known, f"{name} holds a key the index does not know"


def wait_converged(
    rig: Rig, namespace: str, policy: str, client_list: list[dict[str, str]], timeout: float = 90
) -> None:
    """All three kinds Ready for their current generation, the policy's clients all issued."""
    wait_ready(rig, namespace, "awsconnection", "conn", timeout)
    wait_ready(rig, namespace, "budgetpolicy", "budget", timeout)
    wanted = [c["name"] for c in client_list]

    def settled(obj: Mapping[str, Any]) -> bool:
        listed = [c["name"] for c in (obj.get("status") or {}).get("apiClients", [])]
        return ready_now(obj) and listed == wanted

    wait_for(
        rig.kube,
        "incidentpolicy",
        namespace,
        policy,
        settled,
        timeout=timeout,
        describe=f"Ready with clients {wanted}",
        logs=rig.logs_tail,
    )
    # The keys are written before the status that lists them, but a rotation's last step (the old
    # key's grace) may still be running: wait for the index to settle, then check it.
    deadline = time.monotonic() + timeout
    while True:
        index = key_index(rig.kube, namespace, policy)
        if not index.rotation_queue and not any(e.state == "Pending" for e in index.entries):
            break
        assert time.monotonic() < deadline, "the key index never settled"
        time.sleep(0.25)
    check_keys(rig, namespace, policy, client_list)


# -- usage reports: a client that retries with the same Idempotency-Key until it gets an answer -----


def report_cost(input_tokens: int, output_tokens: int) -> Decimal:
    return input_tokens * PRICE_IN / 1000 + output_tokens * PRICE_OUT / 1000


@dataclass
class UsageClient:
    """Posts usage reports to ``/v1/usage`` in a thread; each report is retried (same key) until the
    operator answers 200/201, across operator restarts and AWS outages. ``expected`` is the exact
    sum the ledger must hold afterwards."""

    rig: Rig
    namespace: str
    client: str
    api_key: str = ""
    expected: Decimal = Decimal(0)
    answered: int = 0
    duplicates: int = 0
    retries: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="usage-client")
        self._thread.start()

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the usage client never got its last report through"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            i = 0
            while not self._stop.is_set():
                self.send(1000 * (i % 7 + 1), 500 * (i % 3))
                i += 1
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def refresh_key(self) -> None:
        """Read the client's current key from its Secret, as a client does after a rotation (401)."""
        self.api_key = api_key_of(self.rig, self.namespace, "policy", self.client)

    def send(self, input_tokens: int, output_tokens: int) -> None:
        if not self.api_key:
            self.refresh_key()
        key = uuid.uuid4().hex
        body = {"policy": "policy", "model": "m", "inputTokens": input_tokens, "outputTokens": output_tokens}
        deadline = time.monotonic() + 120
        while True:
            operator = self.rig.operator
            status = 0
            if operator is not None:
                try:
                    answer = call(
                        operator.api_url,
                        "POST",
                        "/v1/usage",
                        headers={"Authorization": f"ApiKey {self.api_key}", "Idempotency-Key": key},
                        json_body=body,
                        timeout=10,
                    )
                    status = answer.status
                except OSError:
                    status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status in (200, 201):
                self.answered += 1
                self.duplicates += status == 200
                self.expected += report_cost(input_tokens, output_tokens)
                return
            # 0 (operator down), 401 (restarted operator still loading keys) and 503 (ledger or
            # connection not ready) are worth a retry; anything else is a bug.
            assert status in (0, 401, 503), f"/v1/usage answered {status}"
            assert time.monotonic() < deadline, f"a usage report got no answer for 120 s (last {status})"
            self.retries += 1
            if status == 401:
                with contextlib.suppress(AssertionError):  # kubectl failed: the apiserver is away
                    self.refresh_key()
            time.sleep(0.2)


def ledger_counter(rig: Rig, namespace: str) -> Decimal:
    """The budget's counter for the current month, read from moto directly (not through the proxy)."""
    client = moto_client(rig.moto.url, "dynamodb")
    start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
    item = client.get_item(
        TableName=ledger.TABLE,
        Key={"pk": {"S": ledger.counter_key(namespace, "budget", start)}},
        ConsistentRead=True,
    ).get("Item")
    return Decimal(item["cost"]["N"]) if item else Decimal(0)


def check_usage(rig: Rig, namespace: str, expected: Decimal) -> None:
    """Nothing lost, nothing counted twice: the ledger and the budget's status hold the exact sum."""
    assert ledger_counter(rig, namespace) == expected
    wait_for(
        rig.kube,
        "budgetpolicy",
        namespace,
        "budget",
        lambda o: Decimal(((o.get("status") or {}).get("spend") or {}).get("ledger") or "0") == expected,
        timeout=30,
        describe=f"spend.ledger == {expected}",
        logs=rig.logs_tail,
    )


def api_key_of(rig: Rig, namespace: str, policy: str, client: str) -> str:
    return client_key(rig.kube, namespace, policy, client)["apiKey"]


def operator_alive(rig: Rig, pid: int) -> None:
    """The same process is still running and live: no crash, no restart."""
    assert rig.operator_pid() == pid, "the operator restarted"
    assert http_ok(rig.live_operator().liveness_url), "the operator's liveness probe fails"
