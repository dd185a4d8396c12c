"""The AwsConnection controller's decisions, with a fake Kubernetes and a fake prober (no AWS)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from incident_commander.aws.clients import ConnectionClients
from incident_commander.aws.connection import ConnectionNotReady
from incident_commander.aws.errors import ProbeError
from incident_commander.aws.probes import ProbeContext, ServiceProbe
from incident_commander.aws.resilience import CircuitBreaker
from incident_commander.conditions import find_condition
from incident_commander.kinds.awsconnection.controller import Connection, ConnectionController
from incident_commander.metrics import OperatorMetrics
from tests.support.fake_kube import FakeKube

NS = "team"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeProber:
    """Healthy unless the service is listed in ``failing`` (with that error code)."""

    failing: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(
        self,
        clients: ConnectionClients,
        service: str,
        *,
        ctx: ProbeContext,
        executor: Executor,
        breaker: CircuitBreaker,
    ) -> ServiceProbe:
        self.calls.append(service)
        code = self.failing.get(service)
        if code is None:
            response = {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/t"}
            return ServiceProbe(
                service=service, healthy=True, latency_ms=3, error=None, attempts=1, response=response
            )
        error = ProbeError(reason="AccessDenied", code=code, message="denied", retryable=False)
        return ServiceProbe(service=service, healthy=False, latency_ms=3, error=error, attempts=1)


@dataclass
class Env:
    kube: FakeKube
    prober: FakeProber
    controller: ConnectionController
    notified: list[tuple[str, str]]

    def observe(self, generation: int = 1, name: str = "conn", **spec: Any) -> Connection:
        self.controller.observe(
            {
                "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}", "generation": generation},
                "spec": {
                    "region": "us-east-1",
                    "endpointUrl": "http://127.0.0.1:9",
                    "credentials": {"secretRef": {"name": "keys"}},
                    "services": ["sts", "dynamodb"],
                    **spec,
                },
            }
        )
        entry = self.controller.entry(NS, name)
        assert entry is not None
        return entry

    def run(self, entry: Connection) -> float:
        return asyncio.run(self.controller.run_pass(entry))

    def condition(self, type_: str) -> dict[str, Any]:
        status = self.kube.statuses[("awsconnections", NS, "conn")]
        found = find_condition(status.get("conditions"), type_)
        assert found is not None, status
        return dict(found)


@pytest.fixture
def env() -> Iterator[Env]:
    kube, prober = FakeKube(), FakeProber()
    controller = ConnectionController(
        start_workers=False,  # the tests run the passes themselves
        kube=kube,  # type: ignore[arg-type]
        metrics=OperatorMetrics(),
        clock=lambda: NOW,
        probe=prober,
    )
    notified: list[tuple[str, str]] = []
    controller.subscribe(lambda ns, name: notified.append((ns, name)))
    kube.put_secret(NS, "keys", {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    yield Env(kube=kube, prober=prober, controller=controller, notified=notified)
    asyncio.run(controller.close())


def test_healthy_services_make_a_ready_connection_and_tell_its_users(env: Env) -> None:
    entry = env.observe()
    with pytest.raises(ConnectionNotReady, match="not probed yet"):
        env.controller.get(NS, "conn")
    assert env.run(entry) == 60.0  # the default probe interval
    assert env.condition("Ready")["status"] == "True"
    assert env.notified == [(NS, "conn")]
    ready = env.controller.get(NS, "conn")
    assert ready.account_id == "123456789012" and ready.region == "us-east-1"
    assert not env.controller.warming_up(NS, "conn") and not env.controller.first_probe_pending(NS, "conn")


def test_a_failing_service_degrades_and_unreadies_with_its_reason(env: Env) -> None:
    env.prober.failing["dynamodb"] = "AccessDeniedException"
    env.run(env.observe())
    ready, degraded = env.condition("Ready"), env.condition("Degraded")
    assert ready["status"] == "False" and ready["reason"] == "AccessDenied"
    assert degraded["status"] == "True"
    with pytest.raises(ConnectionNotReady) as raised:
        env.controller.get(NS, "conn")
    assert raised.value.reason == "AccessDenied"


def test_a_missing_secret_is_a_credentials_condition_without_probing(env: Env) -> None:
    del env.kube.secrets[(NS, "keys")]
    env.run(env.observe())
    assert env.condition("CredentialsResolved")["reason"] == "SecretNotFound"
    assert env.condition("Ready")["reason"] == "SecretNotFound"
    assert env.prober.calls == []


def test_an_invalid_spec_is_a_condition(env: Env) -> None:
    env.run(env.observe(probeInterval="soon"))
    assert env.condition("Ready")["reason"] == "InvalidSpec"


def test_a_changed_secret_rebuilds_the_clients_and_a_quiet_round_writes_nothing(env: Env) -> None:
    entry = env.observe()
    env.run(entry)
    clients = entry.clients
    writes = len(env.kube.writes)
    env.run(entry)
    assert entry.clients is clients and env.kube.writes[writes:] == []
    env.kube.put_secret(NS, "keys", {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "other"})
    env.controller.secret_event("MODIFIED", {"metadata": {"namespace": NS, "name": "keys"}})
    assert entry.secret_stale
    env.run(entry)
    assert entry.clients is not clients


def test_a_new_connection_is_awaited_by_its_users_until_its_first_round(env: Env) -> None:
    entry = env.observe()
    assert env.controller.first_probe_pending(NS, "conn")
    env.run(entry)
    assert not env.controller.first_probe_pending(NS, "conn")


def test_connections_sharing_a_secret_read_it_once_until_it_changes(env: Env) -> None:
    entries = [env.observe(name=f"conn-{i}") for i in range(20)]

    async def first_rounds() -> None:
        await asyncio.gather(*(env.controller.run_pass(entry) for entry in entries))

    asyncio.run(first_rounds())
    assert env.kube.secret_reads == [(NS, "keys")]
    assert all(entry.clients is not None for entry in entries)

    env.kube.put_secret(NS, "keys", {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "other"})
    env.controller.secret_event("MODIFIED", {"metadata": {"namespace": NS, "name": "keys"}})
    asyncio.run(first_rounds())
    assert env.kube.secret_reads == [(NS, "keys")] * 2
    assert len({entry.clients_key for entry in entries}) == 1


def test_a_secret_edited_while_it_is_read_is_read_again_on_the_next_pass(env: Env) -> None:
    """The watch can report an edit after the GET left and before the clients are built from
    what it returned: that connection must not keep the old keys as if they were current."""
    entry = env.observe()
    original_read = env.kube.read_secret

    def read_then_edited(namespace: str, name: str) -> Any:
        found = original_read(namespace, name)
        env.kube.put_secret(NS, "keys", {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "other"})
        loop.call_soon_threadsafe(
            env.controller.secret_event, "MODIFIED", {"metadata": {"namespace": NS, "name": "keys"}}
        )
        return found

    env.kube.read_secret = read_then_edited  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(env.controller.run_pass(entry))
        first_key = entry.clients_key
        assert entry.secret_stale, "the edit that came during the pass was forgotten"
        env.kube.read_secret = original_read  # type: ignore[method-assign]
        loop.run_until_complete(env.controller.run_pass(entry))
    finally:
        loop.close()
    assert entry.clients_key != first_key
    assert entry.clients_key == (entry.spec.fingerprint, env.kube.secrets[(NS, "keys")].resource_version)  # type: ignore[union-attr]


def test_a_secret_no_connection_refers_to_is_not_held(env: Env) -> None:
    entry = env.observe()
    env.run(entry)
    assert len(env.controller._secret_reads) == 1
    env.observe(generation=2, credentials={"secretRef": {"name": "other-keys"}})
    assert entry.spec is not None and entry.spec.secret_ref is not None
    assert entry.spec.secret_ref.name == "other-keys"
    assert len(env.controller._secret_reads) == 0
