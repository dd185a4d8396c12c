"""The incident service against moto without Kubernetes: its spans, the sweep's recovery of what a
crash leaves, and MTTR by window with an injected clock.

moto runs single-threaded with Step Functions executions enabled (its executions call back into the
same server through MOTO_PORT); the service uses a real connection's clients pointed at it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.connection import ReadyConnection
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec
from incident_commander.incidents import model
from incident_commander.incidents.model import Actor, Resolution
from incident_commander.incidents.service import IncidentService, OpenRequest, Target
from incident_commander.incidents.store import VersionConflict
from incident_commander.kinds.incidentpolicy.spec import parse_policy_spec
from incident_commander.metrics import OperatorMetrics
from incident_commander.storage import provisioner
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer
from tests.support.fake_aws import FakeConnections
from tests.support.incidents import agreement, enable_state_machine_executions

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
A = Actor(client="agent-a", role="responder")
B = Actor(client="agent-b", role="responder")
C = Actor(client="agent-c", role="responder")
FIXED = Resolution(code="fixed", summary="restarted")


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class World:
    def __init__(self, moto: MotoServer, name: str) -> None:
        spec = parse_connection_spec({"region": "us-east-1", "endpointUrl": moto.url})
        clients = ConnectionClients.build(spec, StaticKeys("testing", "testing"), ClientCache())
        self.connection = ReadyConnection(namespace="ns", name="conn", account_id=ACCOUNT, clients=clients)
        connections = FakeConnections()
        connections.known[("ns", "conn")] = self.connection
        self.spec = parse_policy_spec(
            {"connectionRef": {"name": "conn"}, "modelRouting": {"simpleModel": "s", "complexModel": "c"}}
        )
        self.target = Target(namespace="ns", name=name, spec=self.spec)
        self.names = self.spec.storage_names(namespace="ns", policy=name, account=ACCOUNT)
        results = provisioner.ensure_all(
            self.connection.client, self.names, region="us-east-1", account=ACCOUNT, owner=f"ns/{name}"
        )
        assert {r.state for r in results} == {"Created"}, results
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.clock = Clock()
        self.metrics = OperatorMetrics()
        self.service = IncidentService(
            connections=connections,
            metrics=self.metrics,
            tracer=provider.get_tracer("test"),
            clock=self.clock,
        )

    def run(self, coroutine: Any) -> Any:
        return asyncio.run(coroutine)

    def open(self, severity: str = "high") -> model.Incident:
        opened = self.run(
            self.service.open(
                self.target, A, OpenRequest(title="t", severity=severity), sampling_rate=1.0, halted=False
            )
        )
        assert opened.incident is not None
        return opened.incident

    def agree(self, *incident_ids: str) -> list[str]:
        return agreement(
            self.connection.client("dynamodb"),
            self.connection.client("kinesis"),
            self.names.incident_table,
            self.names.event_stream,
            incident_ids,
        )


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    server = MotoServer.start(
        tmp_path_factory.mktemp("moto-sfn"),
        port=port,
        serial=True,
        name="moto-sfn",
        env={"MOTO_PORT": str(port)},
    )
    try:
        enable_state_machine_executions(server.url)
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(moto: MotoServer, request: pytest.FixtureRequest) -> World:
    return World(moto, f"p{abs(hash(request.node.name)) % 10**8}")


def spans_named(world: World, prefix: str) -> list[ReadableSpan]:
    return [s for s in world.spans.get_finished_spans() if s.name.startswith(prefix)]


def test_one_span_per_transition_linked_to_the_opening_one(world: World) -> None:
    incident = world.open()
    world.run(world.service.acknowledge(world.target, B, incident.id, None))
    world.run(world.service.resolve(world.target, B, incident.id, None, FIXED))
    spans = spans_named(world, "incident ")
    assert [s.name for s in spans] == ["incident open", "incident acknowledge", "incident resolve"]
    opening = spans[0]
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["incidentcommander.incident.id"] == incident.id
    assert [s.attributes["incidentcommander.incident.version"] for s in spans] == [1, 2, 3]  # type: ignore[index]
    for span in spans[1:]:
        assert [link.context.span_id for link in span.links] == [opening.context.span_id]
        assert span.links[0].attributes == {"incidentcommander.incident.id": incident.id}
    # A refused change is a span too, saying why.
    with pytest.raises(model.IncidentError):
        world.run(world.service.resolve(world.target, B, incident.id, None, FIXED))
    refused = spans_named(world, "incident resolve")[-1]
    assert refused.attributes["incidentcommander.incident.refused"] == "AlreadyResolved"  # type: ignore[index]


def test_the_sweep_publishes_what_a_crash_left_in_the_outbox_and_starts_a_missing_workflow(
    world: World,
) -> None:
    storage = world.service.storage(world.target)
    incident = world.open("critical")
    # A process that died between its transaction and its publish: committed, never flushed.
    change = model.plan_acknowledge(incident, B, world.clock())
    storage.store.commit(change)
    later = model.plan_propose(
        change.incident,
        A,
        world.clock(),
        rule=model.SeverityRule(name="critical", auto_remediate=False, require_approval=True, quorum=2),
        proposal_id="prop-00000000000000aa",
        action={"kind": "restart"},
        description="restart",
        timeout_seconds=600,
    )
    storage.store.commit(later)  # ... and died before starting the proposal's execution
    assert world.agree(incident.id), "the crash left something to repair"
    done = world.run(world.service.sweep(world.target, count=True))
    assert done == {"published": 2, "settled": 0, "unsettled": 1}  # the proposal waits for approvals
    assert world.agree(incident.id) == []
    assert storage.consensus.describe("prop-00000000000000aa") is not None, "the sweep started it"
    assert (
        world.metrics.registry.get_sample_value(
            "incident_commander_incidents_open",
            {"namespace": "ns", "policy": world.target.name, "severity": "critical"},
        )
        == 1
    )
    world.run(world.service.approve(world.target, B, incident.id, "prop-00000000000000aa", None))
    _, proposal = world.run(
        world.service.approve(world.target, C, incident.id, "prop-00000000000000aa", None)
    )
    assert proposal.state == "Approved"
    assert world.agree(incident.id) == []


def test_an_approval_whose_workflow_answer_was_lost_is_settled_by_the_sweep(world: World) -> None:
    storage = world.service.storage(world.target)
    incident = world.open("high")
    _, proposal = world.run(
        world.service.propose(
            world.target, A, incident.id, None, action={"k": 1}, description="d", timeout_seconds=600
        )
    )
    # The quorum-reaching approval committed, then the process died before telling the workflow.
    current = storage.store.read(incident.id)
    assert current is not None
    storage.store.commit(model.plan_approve(current, B, world.clock(), proposal.id))
    assert storage.store.read(incident.id).proposal(proposal.id).state == "Approving"  # type: ignore[union-attr]
    done = world.run(world.service.sweep(world.target, count=False))
    assert done["settled"] == 1
    settled = storage.store.read(incident.id).proposal(proposal.id)  # type: ignore[union-attr]
    assert settled is not None and settled.state == "Approved" and settled.signalled
    assert world.agree(incident.id) == []


def test_mttr_by_window_counts_the_resolutions_in_the_window(world: World) -> None:
    fast, slow = world.open("critical"), world.open("critical")
    world.clock.offset = timedelta(minutes=10)
    world.run(world.service.resolve(world.target, A, fast.id, None, FIXED))
    world.clock.offset = timedelta(minutes=40)
    world.run(world.service.resolve(world.target, A, slow.id, None, FIXED))
    world.clock.offset = timedelta(minutes=45)
    summary = world.run(world.service.summary(world.target, timedelta(hours=1)))
    critical = summary["mttr"]["critical"]
    assert (
        critical["count"] == 2
        and 595 <= critical["p50Seconds"] <= 605
        and 2395 <= critical["p90Seconds"] <= 2405
    )
    assert summary["open"] == {"critical": 0, "high": 0, "low": 0}
    # Ten minutes later the faster resolution (at minute 10) has left a 40-minute window.
    world.clock.offset = timedelta(minutes=55)
    summary = world.run(world.service.summary(world.target, timedelta(minutes=40)))
    assert summary["mttr"]["critical"]["count"] == 1
    assert (
        world.metrics.registry.get_sample_value(
            "incident_commander_incident_time_to_resolve_seconds_count",
            {"namespace": "ns", "policy": world.target.name, "severity": "critical"},
        )
        == 2
    )


def test_two_replicas_racing_share_nothing_but_the_table(world: World, moto: MotoServer) -> None:
    """Two services with clients of their own (two replicas' worth) race on one incident."""
    spec = parse_connection_spec({"region": "us-east-1", "endpointUrl": moto.url})
    clients = ConnectionClients.build(spec, StaticKeys("testing", "testing"), ClientCache())
    connections = FakeConnections()
    connections.known[("ns", "conn")] = ReadyConnection(
        namespace="ns", name="conn", account_id=ACCOUNT, clients=clients
    )
    second = IncidentService(connections=connections, metrics=OperatorMetrics())
    incident = world.open()

    async def both() -> list[object]:
        return await asyncio.gather(
            world.service.acknowledge(world.target, A, incident.id, None),
            second.acknowledge(world.target, B, incident.id, None),
            return_exceptions=True,
        )

    outcomes = asyncio.run(both())
    assert sorted(type(o).__name__ for o in outcomes) == ["Incident", "IncidentError"]
    refused = next(o for o in outcomes if isinstance(o, model.IncidentError))
    assert refused.reason == "AlreadyAcknowledged"
    assert world.agree(incident.id) == []


def test_a_retried_transaction_that_was_applied_is_not_refused(world: World) -> None:
    """botocore retries a transaction whose answer was lost; the retry finds its own audit entry."""
    storage = world.service.storage(world.target)
    incident = world.open()
    change = model.plan_acknowledge(incident, B, world.clock())
    storage.store.commit(change)
    storage.store.commit(change)  # the same call again: applied already, so not a conflict
    rival = model.plan_acknowledge(incident, C, world.clock())  # planned from the same version
    with pytest.raises(VersionConflict):
        storage.store.commit(rival)
    assert storage.store.read(incident.id).version == 2  # type: ignore[union-attr]
    assert world.agree(incident.id) != []  # committed, not yet flushed: the outbox has it
    storage.store.flush(incident.id)
    assert world.agree(incident.id) == []
