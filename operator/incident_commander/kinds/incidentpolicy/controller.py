"""IncidentPolicies: credentials, backing AWS resources, status, and deletion.

A policy's pass runs on every relevant watch event (spec, rotate annotations, deletion, the
policy's own Secrets, its connection or budget changing) and otherwise when the next key
rotation, grace end, storage retry or drift check is due.

Deletion: with ``storage.deletionPolicy: Delete`` the policy carries our finalizer. On deletion the
operator deletes the AWS resources it created (never adopted ones) and then drops the finalizer.
An unreachable AWS cannot block deletion forever: after ``deletion_timeout`` (5 minutes by
default, measured from ``deletionTimestamp``, so restarts do not reset it) the operator gives up,
posts a Warning Event ``StorageOrphaned`` naming what was left, and removes the finalizer. The
annotation ``incidentcommander.io/force-delete: "true"`` skips the AWS cleanup at once. With
``Retain`` there is no finalizer at all. Credential Secrets are owned by the policy and
garbage-collected with it; the key index goes with them, so every key of a deleted policy stops
verifying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypedDict

from opentelemetry.trace import Tracer

from incident_commander import API_GROUP
from incident_commander.aws.connection import ConnectionNotReady, ConnectionSource, ReadyConnection
from incident_commander.budget.model import BudgetState
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition, find_condition
from incident_commander.controller import Controller, Entry
from incident_commander.credentials import api_keys, signing
from incident_commander.credentials.integrity import IntegrityKey, IntegrityKeyHolder, IntegrityKeyUnavailable
from incident_commander.credentials.issuer import (
    CredentialIssuer,
    CredentialOutcome,
    SecretNameConflict,
    api_key_secret_name,
)
from incident_commander.kinds.incidentpolicy.spec import (
    InvalidPolicySpec,
    PolicySpec,
    effective_routing_for,
    parse_policy_spec,
)
from incident_commander.kube_api import Conflict, KubeApi, ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.status import Assessment
from incident_commander.storage import provisioner
from incident_commander.storage.provisioner import ResourceStatus, StorageNames
from incident_commander.telemetry.tracing import NOOP_TRACER
from incident_commander.timestamps import kubernetes_time, parse_time

KIND = "IncidentPolicy"
PLURAL = "incidentpolicies"
FINALIZER = f"{API_GROUP}/storage-cleanup"
"""Our own finalizer. Not kopf's (``incidentcommander.io/finalizer``): kopf strips its finalizer from
objects that have no kopf handler needing it, and these objects are handled outside kopf's handlers."""
ROTATE_ANNOTATION = f"{API_GROUP}/rotate"
ROTATE_SIGNING_ANNOTATION = f"{API_GROUP}/rotate-signing-key"
FORCE_DELETE_ANNOTATION = f"{API_GROUP}/force-delete"
STORAGE_RETRY = 15.0
WARMUP_RETRY = 0.5
DRIFT_CHECK = 600.0
IDLE = 3600.0
CREDENTIALS_RECHECK = timedelta(minutes=10)
"""How long a pass may take the credentials as the previous pass left them, when nothing that
could change them happened (see ``CredentialsSeen``): a bound, should a watch event ever be lost."""
DEFAULT_ACCOUNT = "000000000000"
"""The account in names when STS has not told it (emulators without one)."""


class Storage(Protocol):
    """The policy's AWS resources: the seam between the controller and AWS (blocking calls)."""

    def ensure(
        self, connection: ReadyConnection, names: StorageNames, *, owner: str
    ) -> list[ResourceStatus]: ...

    def delete_owned(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[str]: ...

    def observe(
        self, connection: ReadyConnection, names: StorageNames, *, owner: str
    ) -> list[ResourceStatus]:
        """Look at the resources without creating, changing or deleting anything."""
        ...


class ProvisionedStorage:
    """Storage through storage/provisioner.py and the connection's clients."""

    def ensure(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[ResourceStatus]:
        return provisioner.ensure_all(connection.client, names, owner=owner, **self._where(connection))

    def observe(
        self, connection: ReadyConnection, names: StorageNames, *, owner: str
    ) -> list[ResourceStatus]:
        return provisioner.ensure_all(
            connection.client,
            names,
            region=connection.region,
            account=connection.account_id or DEFAULT_ACCOUNT,
            owner=owner,
            observe=True,
        )

    def delete_owned(self, connection: ReadyConnection, names: StorageNames, *, owner: str) -> list[str]:
        return provisioner.delete_owned(connection.client, names, owner=owner, **self._where(connection))

    @staticmethod
    def _where(connection: ReadyConnection) -> _Where:
        return {"region": connection.region, "account": connection.account_id or DEFAULT_ACCOUNT}


class _Where(TypedDict):
    """Where a policy's resources live: the keyword arguments of the provisioner's calls."""

    region: str
    account: str


@dataclass(frozen=True, kw_only=True)
class CredentialsSeen:
    """What the last pass found of a policy's credentials, and under which conditions it still
    holds: the same generation and rotation requests, no news from the Secret watch since (a
    change by anyone but this process, or a deletion), and not yet at the next rotation or expiry.
    A pass woken for anything else (its connection or budget became Ready, a storage retry) then
    skips the issuer's reads: two GETs and a LIST of Secrets, each decoded by the client."""

    inputs: tuple[Any, ...]
    secret_news: int
    valid_until: datetime
    condition: Condition
    outcome: CredentialOutcome
    """Without its happenings and warnings: those were posted by the pass that had them."""
    retry: float


@dataclass(kw_only=True)
class Policy(Entry):
    storage: list[ResourceStatus] = field(default_factory=list)
    storage_generation: int | None = None
    storage_checked: float = 0.0
    storage_ok: bool = False
    table_created_here: bool = False
    """This process created the incident table: nothing but this replica's API can have written to
    it since, so a standalone operator need not sweep it at first sight (incidents/sweeper.py)."""
    secret_news: int = 0
    """Watch events about the policy's Secrets that this process did not cause (see
    ``PolicyController.secret_changed``)."""
    credentials_seen: CredentialsSeen | None = None
    issuing: bool = False
    """The issuer runs for this policy now (in a thread)."""
    unjudged: list[str] = field(default_factory=list)
    """resourceVersions the Secret watch brought while the issuer ran: the run may have made those
    writes without having recorded them yet, so they are judged when it returns."""
    _parsed_from: Any = field(default=None, repr=False)
    _parsed: PolicySpec | str = field(default="", repr=False)

    def spec(self) -> PolicySpec:
        """The parsed spec, parsed again only when a watch event brought a new one: the sweep asks
        for every policy's at each tick (at 1,000 policies, re-parsing was most of the idle CPU).
        Raises InvalidPolicySpec."""
        raw = self.body.get("spec")
        if raw is None or raw is not self._parsed_from:
            try:
                self._parsed = parse_policy_spec(raw or {})
            except InvalidPolicySpec as invalid:
                self._parsed = str(invalid)
            self._parsed_from = raw
        if isinstance(self._parsed, str):
            raise InvalidPolicySpec(self._parsed)
        return self._parsed

    @property
    def owner(self) -> str:
        return f"{self.ref.namespace}/{self.ref.name}"


class PolicyController(Controller[Policy]):
    kind = KIND
    plural = PLURAL
    references = ("connectionRef", "budgetRef")
    condition_types = ("Ready", "CredentialsIssued", "StorageReady", "BudgetApplied")

    def __init__(
        self,
        *,
        kube: KubeApi,
        connections: ConnectionSource,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        deletion_timeout: timedelta = timedelta(minutes=5),
        budget_state: Callable[[str, str], BudgetState | None] | None = None,
        tracer: Tracer = NOOP_TRACER,
        integrity_key: Callable[[], IntegrityKey] | None = None,
        storage: Storage | None = None,
        start_workers: bool = True,
    ) -> None:
        super().__init__(kube=kube, metrics=metrics, clock=clock, tracer=tracer, start_workers=start_workers)
        self._connections = connections
        self._deletion_timeout = deletion_timeout
        self._budget_state = budget_state or (lambda _namespace, _name: None)
        self._issuer = CredentialIssuer(kube, clock, integrity_key or IntegrityKeyHolder().require)
        self._storage = storage or ProvisionedStorage()

    def storage_in_place(self) -> list[tuple[ObjectRef, PolicySpec]]:
        """Policies whose AWS resources are all in place (none Failed), with their spec: where the
        leader sweeps incidents (incidents/sweeper.py). A new leader knows them from status.
        The search collection's rows do not count: incidents are not indexed there, so a failing
        collection (StorageReady says so) does not stop the sweep of the policy's incidents."""
        found = []
        for policy in self:
            used = [r for r in policy.storage if r.kind not in provisioner.SEARCH_KINDS]
            if not used or any(r.state in ("Failed", "Missing") for r in used):
                continue
            if policy.body["metadata"].get("deletionTimestamp"):
                continue
            try:
                found.append((policy.ref, policy.spec()))
            except InvalidPolicySpec:
                continue
        return found

    def table_created_here(self, namespace: str, name: str) -> bool:
        policy = self.entry(namespace, name)
        return policy is not None and policy.table_created_here

    # -- what changes wake a policy -----------------------------------------------------------------
    def trigger(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        return (
            meta.get("generation"),
            annotations.get(ROTATE_ANNOTATION),
            annotations.get(ROTATE_SIGNING_ANNOTATION),
            annotations.get(FORCE_DELETE_ANNOTATION),
            meta.get("deletionTimestamp"),
        )

    def new_entry(self, ref: ObjectRef, body: Mapping[str, Any], status: dict[str, Any]) -> Policy:
        policy = Policy(ref=ref, body=body, status=status)
        self.status_observed(policy)
        return policy

    def status_observed(self, entry: Policy) -> None:
        """What the status says is in place, until this process checks: a restart or a new leader
        then writes the same list again (no write), and resources created stay Created."""
        entry.storage = [
            ResourceStatus.from_json(r) for r in entry.status.get("storage") or [] if isinstance(r, Mapping)
        ]

    def forgotten(self, entry: Policy) -> None:
        self.metrics.forget_policy(entry.ref.namespace, entry.ref.name)
        self._issuer.forget(entry.ref)

    def secret_changed(self, namespace: str, policy_name: str, resource_version: str | None) -> None:
        """One of the policy's Secrets changed (or a Secret under one of its names went away;
        ``resource_version`` None). The pass that made a write already knows what it wrote: only
        someone else's change is news (an issuing pass's own five writes used to wake the policy
        for a pass that read its Secrets again to find nothing to do)."""
        if resource_version is not None and self._issuer.wrote(namespace, policy_name, resource_version):
            return
        policy = self.entry(namespace, policy_name)
        if policy is None:
            return
        if policy.issuing and resource_version is not None:
            # The watch can bring a write back before the thread that made it has recorded it.
            policy.unjudged.append(resource_version)
            return
        policy.secret_news += 1
        self.wake(policy)

    def _judge_unjudged(self, policy: Policy) -> None:
        """After an issuer run: the events that came during it and were not its own writes."""
        unjudged, policy.unjudged = policy.unjudged, []
        ref = policy.ref
        if any(not self._issuer.wrote(ref.namespace, ref.name, version) for version in unjudged):
            policy.secret_news += 1
            self.wake(policy)

    def budget_changed(self, namespace: str, budget: str) -> None:
        """A BudgetPolicy's phase or action changed: refresh the policies that reference it."""
        self.wake_referencing("budgetRef", namespace, budget)

    def connection_changed(self, namespace: str, connection: str) -> None:
        """An AwsConnection became Ready or stopped being Ready: retry storage of its policies now."""
        self.wake_referencing("connectionRef", namespace, connection)

    # -- one pass ----------------------------------------------------------------------------------
    async def run_pass(self, entry: Policy) -> float:
        policy = entry
        if policy.body["metadata"].get("deletionTimestamp"):
            return await self._finalize(policy)
        try:
            spec = policy.spec()
        except InvalidPolicySpec as invalid:
            condition = Condition(type="Ready", status="False", reason="InvalidSpec", message=str(invalid))
            await self.write_status(policy, Assessment(conditions=[condition]))
            return IDLE

        credentials_condition, outcome, retry = await self._credentials(policy, spec)
        storage_condition, storage_retry = await self._storage_pass(policy, spec)
        await self._ensure_finalizer(policy, spec)

        conditions = [credentials_condition, storage_condition]
        failing = next((c for c in conditions if c.status != "True"), None)
        ready = (
            Condition(
                type="Ready",
                status="True",
                reason="Reconciled",
                message="storage and credentials are in place",
            )
            if failing is None
            else Condition(type="Ready", status="False", reason=failing.reason, message=failing.message)
        )
        budget = self._budget_condition(policy, spec)
        await self.write_status(
            policy,
            Assessment(
                conditions=[ready, *conditions, *([budget] if budget else [])],
                fields=self._fields(policy, spec, outcome),
            ),
        )
        for reason, message in outcome.happenings if outcome else []:
            await self.post_event(policy, "Normal", reason, message)
        for reason, message in outcome.warnings if outcome else []:
            await self.post_event(policy, "Warning", reason, message)
        return min(retry, storage_retry, self._credentials_due(outcome))

    async def _credentials(
        self, policy: Policy, spec: PolicySpec
    ) -> tuple[Condition, CredentialOutcome | None, float]:
        """The credentials as the issuer leaves them, or as the previous pass found them when
        that still holds (``CredentialsSeen``)."""
        inputs = (
            policy.ref.uid,
            policy.generation,
            policy.annotations.get(ROTATE_ANNOTATION),
            policy.annotations.get(ROTATE_SIGNING_ANNOTATION),
        )
        seen, news, now = policy.credentials_seen, policy.secret_news, self.clock()
        if seen is not None and seen.inputs == inputs and seen.secret_news == news and now < seen.valid_until:
            return seen.condition, seen.outcome, seen.retry
        policy.credentials_seen = None  # nothing to reuse should this run raise
        policy.issuing = True
        try:
            condition, outcome, retry = await self._issue(policy, spec)
        finally:
            policy.issuing = False
            self._judge_unjudged(policy)
        if outcome is not None and condition.status == "True":
            policy.credentials_seen = CredentialsSeen(
                inputs=inputs,
                secret_news=news,
                valid_until=min([now + CREDENTIALS_RECHECK, *_due_moments(outcome)]),
                condition=condition,
                outcome=dataclasses.replace(outcome, happenings=[], warnings=[]),
                retry=retry,
            )
        return condition, outcome, retry

    async def _issue(
        self, policy: Policy, spec: PolicySpec
    ) -> tuple[Condition, CredentialOutcome | None, float]:
        """One run of the issuer: reads the policy's Secrets, writes what its plans call for."""

        def failed(reason: str, message: str, retry: float) -> tuple[Condition, None, float]:
            return (
                Condition(type="CredentialsIssued", status="False", reason=reason, message=message),
                None,
                retry,
            )

        try:
            outcome = await asyncio.to_thread(
                self._issuer.reconcile,
                policy.ref,
                clients=spec.clients,
                algorithm=spec.algorithm,
                token_ttl=spec.token.ttl,
                rotate_request=policy.annotations.get(ROTATE_ANNOTATION),
                signing_rotate_request=policy.annotations.get(ROTATE_SIGNING_ANNOTATION),
                # No pass has written a status yet: the issuer may create without reading first.
                first_sight=not policy.status.get("observedGeneration"),
            )
        except Conflict as conflict:
            return failed("Conflict", str(conflict), 1.0)
        except SecretNameConflict as conflict:
            # Woken by the Secret watch when the holder goes; the retry is a safety net.
            return failed("SecretNameConflict", str(conflict), STORAGE_RETRY)
        except IntegrityKeyUnavailable as unavailable:
            return failed("IntegrityKeyUnavailable", str(unavailable), WARMUP_RETRY)
        active = len(spec.clients) - len(outcome.conflicts)
        current = next((k for k in outcome.signing_keys if k.current), None)
        signing_text = f"signing key {current.kid} ({current.algorithm})" if current else "no signing key"
        message = f"{active} API client key(s) active; {signing_text}"
        if outcome.conflicts:
            names = ", ".join(api_key_secret_name(policy.ref.name, c) for c in outcome.conflicts)
            condition = Condition(
                type="CredentialsIssued",
                status="False",
                reason="SecretNameConflict",
                message=f"{message}; no key for client(s) {', '.join(outcome.conflicts)}: "
                f"Secret(s) {names} belong to something else and are not overwritten",
            )
            return condition, outcome, STORAGE_RETRY
        return (
            Condition(type="CredentialsIssued", status="True", reason="Issued", message=message),
            outcome,
            IDLE,
        )

    def _credentials_due(self, outcome: CredentialOutcome | None) -> float:
        if outcome is None:
            return STORAGE_RETRY
        moments = _due_moments(outcome)
        if not moments:
            return IDLE
        return max(0.5, (min(moments) - self.clock()).total_seconds() + 0.5)

    async def _storage_pass(self, policy: Policy, spec: PolicySpec) -> tuple[Condition, float]:
        loop = asyncio.get_running_loop()
        due = (
            policy.storage_generation != policy.generation
            or not policy.storage_ok
            or loop.time() - policy.storage_checked >= DRIFT_CHECK
        )
        stored = find_condition(policy.status.get("conditions"), "StorageReady")
        if due and stored is not None and self._connections.warming_up(policy.ref.namespace, spec.connection):
            # Just (re)started: keep what the status says until this process knows the connection,
            # rather than flipping StorageReady to False and back on every restart.
            self.defer(policy, WARMUP_RETRY)
            return (
                Condition(
                    type="StorageReady",
                    status="True" if stored.get("status") == "True" else "False",
                    reason=str(stored.get("reason")),
                    message=str(stored.get("message") or ""),
                ),
                WARMUP_RETRY,
            )
        if due:
            try:
                connection = self._connections.get(policy.ref.namespace, spec.connection)
            except ConnectionNotReady as not_ready:
                policy.storage_ok = False
                return Condition(
                    type="StorageReady",
                    status="False",
                    reason="ConnectionNotReady",
                    message=not_ready.describe()[:1000],
                ), STORAGE_RETRY
            names = self._names(policy, spec, connection)
            look = self._storage.observe if spec.observe_only else self._storage.ensure
            ensure = functools.partial(look, connection, names, owner=policy.owner)
            found = await loop.run_in_executor(self.executor, ensure)
            if any(r.kind == "DynamoDBTable" and r.state == "Created" for r in found):
                policy.table_created_here = True
            policy.storage = provisioner.keep_created(policy.storage, found)
            policy.storage_generation = policy.generation
            policy.storage_checked = loop.time()
            policy.storage_ok = all(r.state not in ("Failed", "Missing") for r in policy.storage)
        failed = [r for r in policy.storage if r.state == "Failed"]
        missing = [r for r in policy.storage if r.state == "Missing"]
        drifted = [r for r in policy.storage if r.state == "Drifted"]
        if missing and not failed:
            message = "; ".join(f"{r.kind} {r.name}: {r.message}" for r in missing)
            return Condition(
                type="StorageReady", status="False", reason="ResourcesMissing", message=message[:1000]
            ), STORAGE_RETRY
        if failed:
            message = "; ".join(f"{r.kind} {r.name}: {r.message}" for r in failed)
            return Condition(
                type="StorageReady", status="False", reason="ProvisioningFailed", message=message[:1000]
            ), STORAGE_RETRY
        if drifted:
            message = "; ".join(f"{r.kind} {r.name}: {r.message}" for r in drifted)
            return Condition(
                type="StorageReady", status="True", reason="DriftDetected", message=message[:1000]
            ), DRIFT_CHECK
        return (
            Condition(
                type="StorageReady",
                status="True",
                reason="Provisioned",
                message=f"{len(policy.storage)} resources in place",
            ),
            DRIFT_CHECK,
        )

    @staticmethod
    def _names(policy: Policy, spec: PolicySpec, connection: ReadyConnection) -> StorageNames:
        return spec.storage_names(
            namespace=policy.ref.namespace,
            policy=policy.ref.name,
            account=connection.account_id or DEFAULT_ACCOUNT,
        )

    async def _ensure_finalizer(self, policy: Policy, spec: PolicySpec) -> None:
        finalizers = list(policy.body["metadata"].get("finalizers") or [])
        wanted = spec.deletion_policy == "Delete" and not spec.observe_only  # admission forbids both
        if wanted and FINALIZER not in finalizers:
            await asyncio.to_thread(self.kube.patch_finalizers, policy.ref, [*finalizers, FINALIZER])
        elif not wanted and FINALIZER in finalizers:
            await asyncio.to_thread(
                self.kube.patch_finalizers, policy.ref, [f for f in finalizers if f != FINALIZER]
            )

    async def _finalize(self, policy: Policy) -> float:
        meta = policy.body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return IDLE
        remaining = [f for f in finalizers if f != FINALIZER]
        now = self.clock()
        if policy.annotations.get(FORCE_DELETE_ANNOTATION) == "true":
            return await self._release(
                policy,
                remaining,
                "Warning",
                "CleanupSkipped",
                f"{FORCE_DELETE_ANNOTATION} set: AWS resources left in place",
            )
        try:
            spec = policy.spec()
            if spec.observe_only:
                return await self._release(
                    policy, remaining, "Normal", "StorageDeleted", "managementPolicy Observe: nothing deleted"
                )
            connection = self._connections.get(policy.ref.namespace, spec.connection)
            delete = functools.partial(
                self._storage.delete_owned,
                connection,
                self._names(policy, spec, connection),
                owner=policy.owner,
            )
            deleted = await asyncio.get_running_loop().run_in_executor(self.executor, delete)
        except Exception as exc:  # AWS or connection trouble: retry until the deletion window closes
            reason = exc.reason if isinstance(exc, ConnectionNotReady) else type(exc).__name__
            if now - parse_time(str(meta["deletionTimestamp"])) >= self._deletion_timeout:
                return await self._release(
                    policy,
                    remaining,
                    "Warning",
                    "StorageOrphaned",
                    f"gave up deleting AWS resources after {self._deletion_timeout} ({reason})",
                )
            condition = Condition(
                type="Ready",
                status="False",
                reason="DeletionPending",
                message=f"deleting AWS resources failed ({reason}); retrying",
            )
            await self.write_status(policy, Assessment(conditions=[condition]))
            return 5.0
        return await self._release(
            policy,
            remaining,
            "Normal",
            "StorageDeleted",
            f"deleted: {', '.join(deleted) or 'nothing the policy owned'}",
        )

    async def _release(
        self, policy: Policy, remaining: list[str], type_: str, reason: str, message: str
    ) -> float:
        """Say what became of the AWS resources, then let the deletion finish."""
        await self.post_event(policy, type_, reason, message)
        await asyncio.to_thread(self.kube.patch_finalizers, policy.ref, remaining)
        return IDLE

    # -- status ------------------------------------------------------------------------------------
    def _budget_state_of(self, policy: Policy, spec: PolicySpec) -> BudgetState | None:
        return self._budget_state(policy.ref.namespace, spec.budget) if spec.budget else None

    def _fields(self, policy: Policy, spec: PolicySpec, outcome: CredentialOutcome | None) -> dict[str, Any]:
        routing = effective_routing_for(spec, self._budget_state_of(policy, spec))
        fields: dict[str, Any] = {
            "storage": [r.to_json() for r in policy.storage],
            "effectiveModelRouting": routing.model_routing_status(),
            "effectiveSamplingRate": routing.sampling_rate,
        }
        if outcome is None:
            return fields
        now = self.clock()
        clients = []
        expiries: dict[str, float] = {}
        for client in spec.clients:
            active = outcome.index.for_client(client.name, "Active")
            if not active:
                continue
            current = max(active, key=lambda e: e.issued_at)
            expiries[client.name] = current.expires_at.timestamp()
            rotating = any(e.valid_at(now) for e in outcome.index.for_client(client.name, "Rotating"))
            clients.append(
                {
                    "name": client.name,
                    "role": current.role,
                    "secretName": api_key_secret_name(policy.ref.name, client.name),
                    "keyId": current.key_id,
                    "fingerprint": api_keys.fingerprint(current.hash),
                    "issuedAt": kubernetes_time(current.issued_at),
                    "expiresAt": kubernetes_time(current.expires_at),
                    "state": "Rotating" if rotating else "Active",
                }
            )
        fields["apiClients"] = clients
        self.metrics.set_api_keys(policy.ref.namespace, policy.ref.name, expiries)
        fields["signingKeys"] = [
            {
                "kid": key.kid,
                "algorithm": key.algorithm,
                "notAfter": kubernetes_time(
                    key.not_after or key.created_at + signing.SIGNING_KEY_LIFETIME + spec.token.ttl
                ),
            }
            for key in outcome.signing_keys
        ]
        return fields

    def _budget_condition(self, policy: Policy, spec: PolicySpec) -> Condition | None:
        """``BudgetApplied`` when the policy references a budget; not part of Ready."""
        if not spec.budget:
            return None
        state = self._budget_state_of(policy, spec)
        if state is None:
            return Condition(
                type="BudgetApplied",
                status="False",
                reason="BudgetNotFound",
                message=f"BudgetPolicy {spec.budget} not found or not evaluated yet; routing is Normal",
            )
        enforcing = state.enforced_action or "nothing"
        return Condition(
            type="BudgetApplied",
            status="True",
            reason=f"Phase{state.phase}",
            message=f"BudgetPolicy {spec.budget} is {state.phase}; enforcing {enforcing}",
        )


def _due_moments(outcome: CredentialOutcome) -> list[datetime]:
    """When the issuer next has work without being asked: a rotation, an expiry, a grace period's end."""
    return [m for m in (api_keys.next_due(outcome.index), signing.next_due(outcome.signing_keys)) if m]
