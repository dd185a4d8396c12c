"""The IncidentPolicy controller's decisions, with a fake Kubernetes and fake storage (no cluster, no AWS)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest

from incident_commander.aws.connection import ReadyConnection
from incident_commander.budget.model import BudgetState
from incident_commander.conditions import find_condition
from incident_commander.credentials import integrity
from incident_commander.credentials.integrity import IntegrityKey, IntegrityKeyHolder
from incident_commander.kinds.incidentpolicy.controller import (
    CREDENTIALS_RECHECK,
    FINALIZER,
    FORCE_DELETE_ANNOTATION,
    ROTATE_ANNOTATION,
    Policy,
    PolicyController,
)
from incident_commander.kinds.incidentpolicy.spec import InvalidPolicySpec
from incident_commander.kube_api import ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.storage.provisioner import ResourceStatus, StorageNames
from tests.support.fake_aws import FakeConnections
from tests.support.fake_kube import FakeKube

NS = "team"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = IntegrityKey(b"k" * 32)


@dataclass
class FakeStorage:
    """Storage that 'creates' every resource; ``fail`` makes ensure and delete raise."""

    ensured: list[StorageNames] = field(default_factory=list)
    deleted: list[StorageNames] = field(default_factory=list)
    observed: list[StorageNames] = field(default_factory=list)
    fail: Exception | None = None

    def ensure(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[ResourceStatus]:
        if self.fail:
            raise self.fail
        self.ensured.append(names)
        return [
            ResourceStatus(kind=kind, name=name, arn=f"arn:{name}", state="Created", message="created")
            for kind, name in (("DynamoDBTable", names.incident_table), ("KinesisStream", names.event_stream))
        ]

    def delete_owned(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[str]:
        if self.fail:
            raise self.fail
        self.deleted.append(names)
        return [names.incident_table]

    def observe(
        self, connection: ReadyConnection, names: StorageNames, *, owner: str
    ) -> list[ResourceStatus]:
        """Observe mode: the table exists (adopted), the stream does not."""
        self.observed.append(names)
        return [
            ResourceStatus(
                kind="DynamoDBTable", name=names.incident_table, arn="arn:t", state="Adopted", message="ok"
            ),
            ResourceStatus(
                kind="KinesisStream", name=names.event_stream, arn=None, state="Missing", message="absent"
            ),
        ]


@dataclass
class Env:
    kube: FakeKube
    connections: FakeConnections
    storage: FakeStorage
    controller: PolicyController
    budgets: dict[str, BudgetState]

    def observe(self, **changes: Any) -> Policy:
        self.controller.observe(body(**changes))
        entry = self.controller.entry(NS, "p")
        assert entry is not None
        return entry

    def restarted(self, storage: FakeStorage | None = None) -> PolicyController:
        """A new operator process on the same cluster and AWS: what it knows it learns from them."""
        return PolicyController(
            start_workers=False,
            kube=self.kube,  # type: ignore[arg-type]
            connections=self.connections,
            metrics=OperatorMetrics(),
            clock=lambda: NOW,
            integrity_key=IntegrityKeyHolder(KEY).require,
            storage=self.storage if storage is None else storage,
        )

    def run(self, entry: Policy) -> float:
        return asyncio.run(self.controller.run_pass(entry))

    def status(self) -> dict[str, Any]:
        return self.kube.statuses[("incidentpolicies", NS, "p")]

    def condition(self, type_: str) -> dict[str, Any]:
        found = find_condition(self.status().get("conditions"), type_)
        assert found is not None, self.status()
        return dict(found)


def body(
    *, uid: str = "uid-p", generation: int = 1, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": NS, "name": "p", "uid": uid, "generation": generation}
    for key in ("deletionTimestamp", "finalizers"):
        if key in spec:
            meta[key] = spec.pop(key)
    if annotations:
        meta["annotations"] = annotations
    return {
        "metadata": meta,
        "spec": {
            "connectionRef": {"name": "conn"},
            "modelRouting": {"simpleModel": "small", "complexModel": "large"},
            "apiClients": [{"name": "agent", "role": "responder"}],
            **spec,
        },
    }


@pytest.fixture
def env() -> Iterator[Env]:
    kube, connections, storage = FakeKube(), FakeConnections(), FakeStorage()
    budgets: dict[str, BudgetState] = {}
    controller = PolicyController(
        start_workers=False,  # the tests run the passes themselves
        kube=kube,  # type: ignore[arg-type]
        connections=connections,
        metrics=OperatorMetrics(),
        clock=lambda: NOW,
        budget_state=lambda _ns, name: budgets.get(name),
        integrity_key=IntegrityKeyHolder(KEY).require,
        storage=storage,
    )
    connections.ready(NS)
    yield Env(kube=kube, connections=connections, storage=storage, controller=controller, budgets=budgets)
    asyncio.run(controller.close())


def test_a_first_pass_issues_sealed_credentials_and_provisions_storage(env: Env) -> None:
    env.run(env.observe())
    assert env.condition("Ready")["status"] == "True"
    assert env.condition("CredentialsIssued")["reason"] == "Issued"
    assert env.condition("StorageReady")["reason"] == "Provisioned"
    status = env.status()
    assert [c["name"] for c in status["apiClients"]] == ["agent"]
    assert [r["state"] for r in status["storage"]] == ["Created", "Created"]
    for name in ("p-api-key-index", "p-jwt-signing-keys"):
        stored = env.kube.secrets[(NS, name)]
        assert stored.controller == ("IncidentPolicy", "p", "uid-p")
        assert stored.annotations[integrity.ANNOTATION].startswith("v1:")
    assert "ApiKeyIssued" in env.kube.reasons() and "SigningKeyRotated" in env.kube.reasons()


def test_an_unchanged_policy_costs_no_write(env: Env) -> None:
    entry = env.observe()
    env.run(entry)
    writes = len(env.kube.writes)
    env.run(entry)
    assert env.kube.writes[writes:] == []
    assert len(env.storage.ensured) == 1  # the drift check is not due yet


def test_the_policy_s_own_secret_writes_do_not_wake_it_and_anyone_else_s_do(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[str] = []
    monkeypatch.setattr(env.controller, "wake", lambda entry, **_: woken.append(entry.ref.name))
    env.run(env.observe())
    ours = {s.resource_version for (ns, _), s in env.kube.secrets.items() if ns == NS}
    assert len(ours) == 3  # signing keys, key index, the client's Secret
    for version in ours:
        env.controller.secret_changed(NS, "p", version)
    assert woken == []
    env.controller.secret_changed(NS, "p", "99999")  # an edit, or a Secret planted under the label
    env.controller.secret_changed(NS, "p", None)  # deleted
    assert woken == ["p", "p"]
    # A deleted policy's writes are forgotten (a new policy under its name starts afresh).
    env.controller.forgotten(env.observe())
    env.controller.secret_changed(NS, "p", next(iter(ours)))
    assert woken == ["p", "p", "p"]


def test_a_pass_woken_for_something_else_reads_no_secret_until_something_could_have_changed_them(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_secret_reads(env, monkeypatch)
    entry = env.observe()
    env.run(entry)
    issued = (len(reads), len(env.kube.events))
    assert issued[0] == 0  # a new policy's first pass creates without reading

    def reads_of_a_pass(entry: Policy) -> int:
        before = len(reads)
        env.run(entry)
        return len(reads) - before

    assert reads_of_a_pass(entry) == 0  # e.g. woken because its connection became Ready
    assert len(env.kube.events) == issued[1]  # the issuance's Events are not posted again
    assert env.condition("CredentialsIssued")["reason"] == "Issued"
    # Someone else's change to one of its Secrets: read again.
    env.controller.secret_changed(NS, "p", "99999")
    assert reads_of_a_pass(entry) > 0
    assert reads_of_a_pass(entry) == 0
    # A rotation request, a new generation: read again (and rotate).
    entry = env.observe(annotations={ROTATE_ANNOTATION: "now"})
    assert reads_of_a_pass(entry) > 0
    assert "ApiKeyIssued" in env.kube.reasons()[issued[1] :]
    assert reads_of_a_pass(entry) == 0
    entry = env.observe(annotations={ROTATE_ANNOTATION: "now"}, generation=2)
    assert reads_of_a_pass(entry) > 0
    # No longer than CREDENTIALS_RECHECK, should a watch event ever be lost.
    assert reads_of_a_pass(entry) == 0
    env.controller.clock = lambda: NOW + CREDENTIALS_RECHECK
    assert reads_of_a_pass(entry) > 0


def count_secret_reads(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    for method in ("read_managed_secret", "list_managed_secrets"):
        original = getattr(env.kube, method)
        monkeypatch.setattr(
            env.kube, method, lambda *args, _m=method, _o=original: reads.append(_m) or _o(*args)
        )
    return reads


def test_the_watch_bringing_a_write_back_before_the_issuer_recorded_it_is_not_news(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write returns in the issuer's thread while the watch event can already be handled on
    the event loop: the event must wait for the run's own record, not count as someone else's."""
    woken: list[str] = []
    monkeypatch.setattr(env.controller, "wake", lambda entry, **_: woken.append(entry.ref.name))
    write = env.kube.write_secret

    def write_and_echo(namespace: str, **kwargs: Any) -> str:
        version = write(namespace, **kwargs)
        env.controller.secret_changed(namespace, "p", version)  # the watch, faster than the issuer
        return version

    monkeypatch.setattr(env.kube, "write_secret", write_and_echo)
    reads = count_secret_reads(env, monkeypatch)
    entry = env.observe()
    env.run(entry)
    assert woken == []
    env.run(entry)
    assert reads == []  # the second pass took the credentials as the first left them
    # Someone else's write that arrives during a run is still news, judged when the run returns.
    listing = env.kube.list_managed_secrets

    def list_during_a_foreign_write(namespace: str, selector: str) -> list[Any]:
        env.controller.secret_changed(namespace, "p", "99999")
        assert woken == []  # not yet: the run might have written it
        return listing(namespace, selector)

    monkeypatch.setattr(env.kube, "list_managed_secrets", list_during_a_foreign_write)
    env.controller.clock = lambda: NOW + CREDENTIALS_RECHECK  # the next pass runs the issuer
    env.run(entry)
    assert woken == ["p"]
    monkeypatch.setattr(env.kube, "list_managed_secrets", listing)
    env.controller.clock = lambda: NOW + CREDENTIALS_RECHECK + timedelta(seconds=1)
    before = len(reads)
    env.run(entry)
    assert len(reads) > before


def test_a_new_policy_s_first_pass_creates_its_secrets_without_reading_any(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_secret_reads(env, monkeypatch)
    env.run(env.observe())
    assert reads == []
    assert env.condition("CredentialsIssued")["reason"] == "Issued"
    assert sorted(name for ns, name in env.kube.secrets if ns == NS) == [
        "p-agent-api-key",
        "p-api-key-index",
        "p-jwt-signing-keys",
    ]
    assert sorted(set(env.kube.reasons()) - {"Reconciled"}) == ["ApiKeyIssued", "SigningKeyRotated"]


def test_a_policy_without_status_whose_secrets_exist_reads_them_and_keeps_its_keys(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that issued and crashed before its status write: the next pass takes the policy for
    new, its first create fails, and it reads what is there instead of issuing again."""
    env.run(env.observe())
    names = ("p-agent-api-key", "p-jwt-signing-keys")
    kept = {name: dict(env.kube.secrets[(NS, name)].data) for name in names}
    events = len(env.kube.events)
    reads = count_secret_reads(env, monkeypatch)
    restarted = env.restarted()
    restarted.observe(body())  # no status
    entry = restarted.entry(NS, "p")
    assert entry is not None
    asyncio.run(restarted.run_pass(entry))
    asyncio.run(restarted.close())
    assert reads  # AlreadyExists sent it to the reads
    for name, data in kept.items():
        assert dict(env.kube.secrets[(NS, name)].data) == data
    assert not {"ApiKeyIssued", "SigningKeyRotated"} & set(env.kube.reasons()[events:])  # none again
    assert env.condition("CredentialsIssued")["reason"] == "Issued"


def test_a_connection_that_is_not_ready_is_the_reason_for_storage_and_ready(env: Env) -> None:
    env.connections.not_ready(NS, "conn", "EndpointUnreachable", "connection refused")
    retry = env.run(env.observe())
    storage = env.condition("StorageReady")
    assert storage["status"] == "False" and storage["reason"] == "ConnectionNotReady"
    assert "EndpointUnreachable" in storage["message"]
    assert env.condition("Ready")["reason"] in ("ConnectionNotReady",)
    assert env.condition("CredentialsIssued")["status"] == "True"  # keys do not wait for AWS
    assert retry <= 15


def test_a_restart_keeps_the_stored_storage_condition_while_the_connection_warms_up(env: Env) -> None:
    env.run(env.observe())
    stored = env.status()
    restarted = env.restarted()
    restarted.observe({**body(), "status": stored})
    env.connections.warming = True
    writes = len(env.kube.writes)
    entry = restarted.entry(NS, "p")
    assert entry is not None
    asyncio.run(restarted.run_pass(entry))
    assert env.kube.writes[writes:] == [], "no flip of StorageReady on a restart"
    asyncio.run(restarted.close())


def test_a_foreign_secret_under_the_signing_key_name_is_a_conflict_and_left_alone(env: Env) -> None:
    foreign = env.kube.put_secret(NS, "p-jwt-signing-keys", {"note": "not yours"})
    env.run(env.observe())
    credentials = env.condition("CredentialsIssued")
    assert credentials["status"] == "False" and credentials["reason"] == "SecretNameConflict"
    assert "was not created by the operator" in credentials["message"]
    assert env.kube.secrets[(NS, "p-jwt-signing-keys")] is foreign
    assert env.condition("Ready")["reason"] == "SecretNameConflict"


def test_an_unsealed_secret_of_the_policy_is_replaced_with_a_warning(env: Env) -> None:
    entry = env.observe()
    env.run(entry)
    planted = {"keys": [], "note": "planted"}
    owner = entry.ref
    stored = env.kube.put_secret(
        NS,
        "p-jwt-signing-keys",
        {"signing-keys.json": json.dumps(planted)},
        type_="incidentcommander.io/jwt-signing-keys",
        owner=owner,
    )
    env.controller.secret_changed(NS, "p", stored.resource_version)  # what the Secret watch does
    env.run(entry)
    assert "UntrustedSecretReplaced" in env.kube.reasons()
    replaced = env.kube.secrets[(NS, "p-jwt-signing-keys")]
    assert (
        integrity.ANNOTATION in replaced.annotations and b"planted" not in replaced.data["signing-keys.json"]
    )


def test_a_client_secret_name_held_by_another_policy_leaves_only_that_client_without_a_key(env: Env) -> None:
    # Policy "p-agent" with client "api"... or here simply policy q's Secret under p's client name.
    env.kube.put_secret(NS, "p-agent-api-key", {"apiKey": "theirs"}, owner=_ref("q", "uid-q"))
    entry = env.observe(
        apiClients=[{"name": "agent", "role": "responder"}, {"name": "dash", "role": "viewer"}]
    )
    env.run(entry)
    credentials = env.condition("CredentialsIssued")
    assert credentials["reason"] == "SecretNameConflict" and "p-agent-api-key" in credentials["message"]
    assert [c["name"] for c in env.status()["apiClients"]] == ["dash"]
    assert env.kube.secrets[(NS, "p-agent-api-key")].data == {"apiKey": b"theirs"}
    # The first sight's create of that Secret failed after the signing keys were written: the
    # pass read everything then, and the rotation's Event is posted once.
    assert env.kube.reasons().count("SigningKeyRotated") == 1


def test_the_budget_shapes_routing_and_its_condition(env: Env) -> None:
    entry = env.observe(budgetRef={"name": "b"})
    env.run(entry)
    assert env.condition("BudgetApplied")["reason"] == "BudgetNotFound"
    env.budgets["b"] = budget_state("Exceeded", "Halt")
    env.run(entry)
    assert env.condition("BudgetApplied")["reason"] == "PhaseExceeded"
    routing = env.status()["effectiveModelRouting"]
    assert routing["mode"] == "Halted" and routing["complexModel"] == "small"
    assert env.status()["effectiveSamplingRate"] == 0.1


def test_an_invalid_spec_is_a_condition_not_a_crash(env: Env) -> None:
    invalid = body()
    del invalid["spec"]["connectionRef"]
    env.controller.observe(invalid)
    entry = env.controller.entry(NS, "p")
    assert entry is not None
    env.run(entry)
    assert env.condition("Ready")["reason"] == "InvalidSpec"


def test_delete_policy_adds_the_finalizer_and_deletion_removes_what_it_created(env: Env) -> None:
    entry = env.observe(storage={"deletionPolicy": "Delete"})
    env.run(entry)
    assert env.kube.finalizers[("incidentpolicies", NS, "p")] == [FINALIZER]
    deleting = env.observe(
        storage={"deletionPolicy": "Delete"}, deletionTimestamp="2026-12-01T11:59:00Z", finalizers=[FINALIZER]
    )
    env.run(deleting)
    assert [n.incident_table for n in env.storage.deleted] == [f"{NS}-p-incidents"]
    assert env.kube.finalizers[("incidentpolicies", NS, "p")] == []
    assert "StorageDeleted" in env.kube.reasons()


def test_an_unreachable_aws_blocks_deletion_only_for_the_deletion_timeout(env: Env) -> None:
    env.storage.fail = RuntimeError("AWS is down")
    recent = env.observe(
        storage={"deletionPolicy": "Delete"}, deletionTimestamp="2026-12-01T11:58:00Z", finalizers=[FINALIZER]
    )
    assert env.run(recent) == 5.0
    assert env.condition("Ready")["reason"] == "DeletionPending"
    assert ("incidentpolicies", NS, "p") not in env.kube.finalizers
    old = env.observe(
        storage={"deletionPolicy": "Delete"}, deletionTimestamp="2026-12-01T11:50:00Z", finalizers=[FINALIZER]
    )
    env.run(old)
    assert "StorageOrphaned" in env.kube.reasons()
    assert env.kube.finalizers[("incidentpolicies", NS, "p")] == []


def test_force_delete_skips_the_cleanup(env: Env) -> None:
    entry = env.observe(
        storage={"deletionPolicy": "Delete"},
        deletionTimestamp="2026-12-01T11:59:00Z",
        finalizers=[FINALIZER],
        annotations={FORCE_DELETE_ANNOTATION: "true"},
    )
    env.run(entry)
    assert env.storage.deleted == [] and "CleanupSkipped" in env.kube.reasons()
    assert env.kube.finalizers[("incidentpolicies", NS, "p")] == []


def test_the_next_pass_is_due_at_the_next_rotation(env: Env) -> None:
    # Sooner than the drift check (10 minutes): the rotation sets the next pass.
    due = env.run(env.observe(apiClients=[{"name": "agent", "role": "responder", "rotationPeriod": "5m"}]))
    assert 299 <= due <= 301


def budget_state(phase: Any, action: Any) -> BudgetState:
    return BudgetState(
        namespace=NS,
        name="b",
        phase=phase,
        active_action=action,
        enforced_action=action,
        utilization=Decimal(120),
        total=Decimal(12),
        limit=Decimal(10),
        currency="USD",
        period_start=NOW - timedelta(days=1),
        period_end=NOW + timedelta(days=29),
        evaluated_at=NOW,
    )


def _ref(name: str, uid: str) -> ObjectRef:
    return ObjectRef(kind="IncidentPolicy", plural="incidentpolicies", namespace=NS, name=name, uid=uid)


@dataclass
class RecordingStorage(FakeStorage):
    """Like the provisioner: ``Created`` when it makes a resource, ``Adopted`` when it finds one in
    place (its own from an earlier pass, or one that existed before the policy)."""

    existing: set[str] = field(default_factory=set)

    def ensure(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[ResourceStatus]:
        self.ensured.append(names)
        found = []
        for kind, name in (("DynamoDBTable", names.incident_table), ("KinesisStream", names.event_stream)):
            state: Literal["Adopted", "Created"] = "Adopted" if name in self.existing else "Created"
            self.existing.add(name)
            found.append(
                ResourceStatus(kind=kind, name=name, arn=f"arn:{name}", state=state, message=state.lower())
            )
        return found


def test_created_storage_stays_created_across_passes_and_a_restart(env: Env) -> None:
    """The resources the operator made are Created in status for good: a later pass (a new
    generation) and a restarted operator find them in place, which is not adopting them; and a
    resource that existed before the policy stays Adopted."""
    storage = RecordingStorage(existing={f"{NS}-p-events"})

    def run(controller: PolicyController, **changes: Any) -> None:
        controller.observe(
            {**body(**changes), "status": env.kube.statuses.get(("incidentpolicies", NS, "p"))}
        )
        entry = controller.entry(NS, "p")
        assert entry is not None
        asyncio.run(controller.run_pass(entry))

    first = env.restarted(storage)
    run(first)
    assert [(r["kind"], r["state"]) for r in env.status()["storage"]] == [
        ("DynamoDBTable", "Created"),
        ("KinesisStream", "Adopted"),
    ]
    assert first.table_created_here(NS, "p"), "this process made the table: no sweep at first sight"
    recorded = env.status()["storage"]
    run(first, generation=2)  # an edit: the storage is checked again
    assert len(storage.ensured) == 2 and env.status()["storage"] == recorded
    assert first.table_created_here(NS, "p")
    asyncio.run(first.close())

    restarted = env.restarted(storage)
    writes = len(env.kube.writes)
    run(restarted, generation=2)  # the connection is known: the storage is checked at once
    assert len(storage.ensured) == 3
    assert env.kube.writes[writes:] == [], "no status write: the storage record did not change"
    assert env.status()["storage"] == recorded
    assert not restarted.table_created_here(NS, "p"), (
        "a restart sweeps what it found: a crash may have left work"
    )
    asyncio.run(restarted.close())


def test_observe_only_looks_and_reports_what_is_missing(env: Env) -> None:
    entry = env.observe(storage={"managementPolicy": "Observe"})
    retry = env.run(entry)
    assert env.storage.ensured == [] and len(env.storage.observed) == 1, "nothing created"
    storage = env.condition("StorageReady")
    assert (storage["status"], storage["reason"]) == ("False", "ResourcesMissing")
    assert "KinesisStream" in storage["message"]
    assert [r["state"] for r in env.status()["storage"]] == ["Adopted", "Missing"]
    assert retry <= 15, "looked at again soon"
    assert env.controller.storage_in_place() == [], "no incident sweep of incomplete storage"


@dataclass
class FailingSearchStorage(FakeStorage):
    """The table and stream are created; the search collection fails (no aoss permissions, say)."""

    def ensure(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[ResourceStatus]:
        assert names.search is not None, "searchCollection.enabled reaches the storage names"
        return [
            *super().ensure(connection, names, owner=owner),
            ResourceStatus(
                kind="SearchCollection",
                name=names.search.name,
                arn=None,
                state="Failed",
                message="AccessDenied",
            ),
        ]


def test_a_failing_search_collection_is_reported_but_does_not_stop_the_incident_sweep() -> None:
    kube, connections, storage = FakeKube(), FakeConnections(), FailingSearchStorage()
    controller = PolicyController(
        start_workers=False,
        kube=kube,  # type: ignore[arg-type]
        connections=connections,
        metrics=OperatorMetrics(),
        clock=lambda: NOW,
        integrity_key=IntegrityKeyHolder(KEY).require,
        storage=storage,
    )
    connections.ready(NS)
    env = Env(kube=kube, connections=connections, storage=storage, controller=controller, budgets={})
    env.run(env.observe(storage={"searchCollection": {"enabled": True}}))
    ready = env.condition("StorageReady")
    assert (ready["status"], ready["reason"]) == ("False", "ProvisioningFailed")
    assert "SearchCollection" in ready["message"] and "AccessDenied" in ready["message"]
    assert [ref.name for ref, _spec in controller.storage_in_place()] == ["p"]
    asyncio.run(controller.close())


def test_the_spec_is_parsed_once_per_watched_version_and_an_invalid_one_always_raises(env: Env) -> None:
    env.controller.observe(body())
    entry = env.controller.entry(NS, "p")
    assert entry is not None
    first = entry.spec()
    assert entry.spec() is first, "the same spec object: not parsed again"
    env.controller.observe(body(generation=2, severities="not a list"))
    entry = env.controller.entry(NS, "p")
    assert entry is not None
    for _ in range(2):
        with pytest.raises(InvalidPolicySpec):
            entry.spec()
    env.controller.observe(body(generation=3))
    assert entry.spec() is not first and entry.spec() == first
