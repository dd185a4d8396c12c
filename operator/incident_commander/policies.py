"""IncidentPolicies: credentials, backing AWS resources, status, and deletion.

One ObjectWorker per policy runs a pass on every relevant watch event (spec,
rotate annotations, deletion, the policy's own Secrets) and otherwise sleeps
until the next key rotation, grace end, storage retry or drift check.

Deletion: with ``storage.deletionPolicy: Delete`` the policy carries our
finalizer. On deletion the operator deletes the AWS resources it created (never
adopted ones) and then drops the finalizer. An unreachable AWS cannot block
deletion forever: after ``deletion_timeout`` (5 minutes by default, measured
from ``deletionTimestamp``, so restarts do not reset it) the operator gives up,
posts a Warning Event ``StorageOrphaned`` naming what was left, and removes the
finalizer. The annotation ``incidentcommander.io/force-delete: "true"`` skips
the AWS cleanup at once. With ``Retain`` there is no finalizer at all.
Credential Secrets are owned by the policy and garbage-collected with it; the
key index goes with them, so every key of a deleted policy stops verifying.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import Tracer

from incident_commander import API_GROUP
from incident_commander.budget.enforcement import effective_routing
from incident_commander.budget.model import BudgetState
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition, find_condition, utc_timestamp
from incident_commander.connections import ConnectionNotReady, ConnectionRegistry
from incident_commander.credentials import api_keys, signing
from incident_commander.credentials.integrity import IntegrityKey, IntegrityKeyHolder, IntegrityKeyUnavailable
from incident_commander.credentials.issuer import (
    CredentialIssuer,
    CredentialOutcome,
    SecretNameConflict,
    api_key_secret_name,
)
from incident_commander.kept_objects import kept_body
from incident_commander.kinds.reconciliation import Assessment, apply_status
from incident_commander.kube_api import Conflict, KubeApi, ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.policy_spec import PolicySpec, parse_policy_spec
from incident_commander.storage import provisioner
from incident_commander.storage.provisioner import ResourceStatus
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.telemetry.tracing import NOOP_TRACER
from incident_commander.workers import Dependents, ObjectWorker, wake_referencing

logger = logging.getLogger(__name__)

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
PASS_CONCURRENCY = 8
"""Policies reconciled at once. A pass is mostly CPU (botocore, the GIL): more at once only adds
in-flight memory. At 1,000 policies, 8 instead of 16 lowered the peak RSS with no loss of time
(docs/performance.md)."""


@dataclass(kw_only=True)
class _Policy:
    ref: ObjectRef
    body: Mapping[str, Any]
    """The latest watched object without status (kept_objects.kept_body): metadata and spec."""
    status: dict[str, Any]
    """What this operator last wrote (or found at first sight)."""
    trigger: tuple[Any, ...]
    worker: ObjectWorker | None = None
    storage: list[ResourceStatus] = field(default_factory=list)
    storage_generation: int | None = None
    storage_checked: float = 0.0
    storage_ok: bool = False


class PolicyRegistry:
    def __init__(
        self,
        *,
        kube: KubeApi,
        connections: ConnectionRegistry,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        deletion_timeout: timedelta = timedelta(minutes=5),
        budget_state: Callable[[str, str], BudgetState | None] | None = None,
        tracer: Tracer = NOOP_TRACER,
        integrity_key: Callable[[], IntegrityKey] | None = None,
    ) -> None:
        self._kube = kube
        self._tracer = tracer
        self._connections = connections
        self._metrics = metrics
        self._clock = clock
        self._deletion_timeout = deletion_timeout
        self._budget_state = budget_state or (lambda _namespace, _name: None)
        self._issuer = CredentialIssuer(kube, clock, integrity_key or IntegrityKeyHolder().require)
        self._policies: dict[tuple[str, str], _Policy] = {}
        self._dependents = Dependents("connectionRef", "budgetRef")
        self._gate = asyncio.Semaphore(PASS_CONCURRENCY)
        self._executor = ContextThreadPoolExecutor(max_workers=16, thread_name_prefix="policy")

    # -- fed by watch events ---------------------------------------------------------------------
    def observe(self, body: Mapping[str, Any]) -> None:
        watched_status = body.get("status") or {}
        body = kept_body(body)  # without status: ours is in policy.status
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        annotations = meta.get("annotations") or {}
        trigger = (
            meta.get("generation"),
            annotations.get(ROTATE_ANNOTATION),
            annotations.get(ROTATE_SIGNING_ANNOTATION),
            annotations.get(FORCE_DELETE_ANNOTATION),
            meta.get("deletionTimestamp"),
        )
        policy = self._policies.get(key)
        if policy is not None and policy.ref.uid == meta["uid"]:
            self._dependents.track(key, body)
            policy.body = body
            if trigger != policy.trigger:
                policy.trigger = trigger
                assert policy.worker is not None
                policy.worker.wake()
            return
        if policy is not None:
            self.forget(*key)
        self._dependents.track(key, body)
        policy = _Policy(
            ref=ObjectRef(kind=KIND, plural=PLURAL, namespace=key[0], name=key[1], uid=meta["uid"]),
            body=body,
            status=dict(watched_status),
            trigger=trigger,
        )
        self._policies[key] = policy
        policy.worker = ObjectWorker(
            kind=KIND,
            name=f"{key[0]}/{key[1]}",
            run_pass=functools.partial(self._pass, policy),
            metrics=self._metrics,
            gate=self._gate,
            tracer=self._tracer,
        )

    def forget(self, namespace: str, name: str) -> None:
        self._dependents.untrack((namespace, name))
        self._metrics.forget_policy(namespace, name)
        policy = self._policies.pop((namespace, name), None)
        if policy is not None and policy.worker is not None:
            policy.worker.cancel()

    def secret_changed(self, namespace: str, policy_name: str) -> None:
        policy = self._policies.get((namespace, policy_name))
        if policy is not None and policy.worker is not None:
            policy.worker.wake()

    def budget_changed(self, namespace: str, budget: str) -> None:
        """A BudgetPolicy's phase or action changed: refresh the policies that reference it."""
        wake_referencing(self._policies, self._dependents, namespace, "budgetRef", budget)

    def connection_changed(self, namespace: str, connection: str) -> None:
        """An AwsConnection became Ready or stopped being Ready: retry storage of its policies now."""
        wake_referencing(self._policies, self._dependents, namespace, "connectionRef", connection)

    async def close(self) -> None:
        for key in list(self._policies):
            self.forget(*key)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- one pass ----------------------------------------------------------------------------------
    async def _pass(self, policy: _Policy) -> float:
        meta = policy.body["metadata"]
        if meta.get("deletionTimestamp"):
            return await self._finalize(policy)
        spec = parse_policy_spec(policy.body.get("spec") or {})
        annotations = meta.get("annotations") or {}

        credentials_condition, outcome, retry = await self._credentials(policy, spec, annotations)
        storage_condition, storage_retry = await self._storage(policy, spec, int(meta.get("generation") or 0))
        await self._ensure_finalizer(policy, spec, list(meta.get("finalizers") or []))

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
        await self._write(
            policy,
            Assessment(
                conditions=[ready, *conditions, *([budget] if budget else [])],
                fields=self._fields(policy, spec, outcome),
            ),
        )
        for reason, message in outcome.happenings if outcome else []:
            await self._event(policy, "Normal", reason, message)
        for reason, message in outcome.warnings if outcome else []:
            await self._event(policy, "Warning", reason, message)
        return min(retry, storage_retry, self._credentials_due(outcome))

    async def _credentials(
        self, policy: _Policy, spec: PolicySpec, annotations: Mapping[str, str]
    ) -> tuple[Condition, CredentialOutcome | None, float]:
        try:
            outcome = await asyncio.to_thread(
                self._issuer.reconcile,
                policy.ref,
                clients=spec.clients,
                algorithm=spec.algorithm,
                token_ttl=spec.token_ttl,
                rotate_request=annotations.get(ROTATE_ANNOTATION),
                signing_rotate_request=annotations.get(ROTATE_SIGNING_ANNOTATION),
            )
        except Conflict as conflict:
            return (
                Condition(type="CredentialsIssued", status="False", reason="Conflict", message=str(conflict)),
                None,
                1.0,
            )
        except SecretNameConflict as conflict:
            # Woken by the Secret watch when the holder goes; the retry is a safety net.
            return (
                Condition(
                    type="CredentialsIssued",
                    status="False",
                    reason="SecretNameConflict",
                    message=str(conflict),
                ),
                None,
                STORAGE_RETRY,
            )
        except IntegrityKeyUnavailable as unavailable:
            return (
                Condition(
                    type="CredentialsIssued",
                    status="False",
                    reason="IntegrityKeyUnavailable",
                    message=str(unavailable),
                ),
                None,
                WARMUP_RETRY,
            )
        active = len(spec.clients) - len(outcome.conflicts)
        current = next((k for k in outcome.signing_keys if k.current), None)
        signing_text = f"signing key {current.kid} ({current.algorithm})" if current else "no signing key"
        message = f"{active} API client key(s) active; {signing_text}"
        if outcome.conflicts:
            names = ", ".join(api_key_secret_name(policy.ref.name, c) for c in outcome.conflicts)
            return (
                Condition(
                    type="CredentialsIssued",
                    status="False",
                    reason="SecretNameConflict",
                    message=f"{message}; no key for client(s) {', '.join(outcome.conflicts)}: "
                    f"Secret(s) {names} belong to something else and are not overwritten",
                ),
                outcome,
                STORAGE_RETRY,
            )
        condition = Condition(type="CredentialsIssued", status="True", reason="Issued", message=message)
        return condition, outcome, IDLE

    def _credentials_due(self, outcome: CredentialOutcome | None) -> float:
        if outcome is None:
            return STORAGE_RETRY
        moments = [m for m in (api_keys.next_due(outcome.index), signing.next_due(outcome.signing_keys)) if m]
        if not moments:
            return IDLE
        return max(0.5, (min(moments) - self._clock()).total_seconds() + 0.5)

    async def _storage(self, policy: _Policy, spec: PolicySpec, generation: int) -> tuple[Condition, float]:
        loop = asyncio.get_running_loop()
        due = (
            policy.storage_generation != generation
            or not policy.storage_ok
            or loop.time() - policy.storage_checked >= DRIFT_CHECK
        )
        stored = find_condition(policy.status.get("conditions"), "StorageReady")
        if due and stored is not None and self._connections.warming_up(policy.ref.namespace, spec.connection):
            # Just (re)started: keep what the status says until this process knows the connection,
            # rather than flipping StorageReady to False and back on every restart.
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
                message = (
                    f"AwsConnection {spec.connection} is not ready ({not_ready.reason}): {not_ready.message}"
                )
                return Condition(
                    type="StorageReady", status="False", reason="ConnectionNotReady", message=message[:1000]
                ), STORAGE_RETRY
            account = connection.account_id or "000000000000"
            names = spec.storage_names(
                namespace=policy.ref.namespace, policy=policy.ref.name, account=account
            )
            ensure = functools.partial(
                provisioner.ensure_all,
                connection.client,
                names,
                region=connection.clients.spec.region,
                account=account,
                owner=f"{policy.ref.namespace}/{policy.ref.name}",
            )
            policy.storage = await loop.run_in_executor(self._executor, ensure)
            policy.storage_generation = generation
            policy.storage_checked = loop.time()
            policy.storage_ok = all(r.state != "Failed" for r in policy.storage)
        failed = [r for r in policy.storage if r.state == "Failed"]
        drifted = [r for r in policy.storage if r.state == "Drifted"]
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

    async def _ensure_finalizer(self, policy: _Policy, spec: PolicySpec, finalizers: list[str]) -> None:
        wanted = spec.deletion_policy == "Delete"
        if wanted and FINALIZER not in finalizers:
            await asyncio.to_thread(self._kube.patch_finalizers, policy.ref, [*finalizers, FINALIZER])
        elif not wanted and FINALIZER in finalizers:
            await asyncio.to_thread(
                self._kube.patch_finalizers, policy.ref, [f for f in finalizers if f != FINALIZER]
            )

    async def _finalize(self, policy: _Policy) -> float:
        meta = policy.body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return IDLE
        annotations = meta.get("annotations") or {}
        remaining = [f for f in finalizers if f != FINALIZER]
        now = self._clock()
        if annotations.get(FORCE_DELETE_ANNOTATION) == "true":
            await self._event(
                policy,
                "Warning",
                "CleanupSkipped",
                f"{FORCE_DELETE_ANNOTATION} set: AWS resources left in place",
            )
            await asyncio.to_thread(self._kube.patch_finalizers, policy.ref, remaining)
            return IDLE
        spec = parse_policy_spec(policy.body.get("spec") or {})
        try:
            connection = self._connections.get(policy.ref.namespace, spec.connection)
            account = connection.account_id or "000000000000"
            names = spec.storage_names(
                namespace=policy.ref.namespace, policy=policy.ref.name, account=account
            )
            delete = functools.partial(
                provisioner.delete_owned,
                connection.client,
                names,
                region=connection.clients.spec.region,
                account=account,
                owner=f"{policy.ref.namespace}/{policy.ref.name}",
            )
            deleted = await asyncio.get_running_loop().run_in_executor(self._executor, delete)
        except Exception as exc:  # AWS or connection trouble: retry until the deletion window closes
            reason = exc.reason if isinstance(exc, ConnectionNotReady) else type(exc).__name__
            started = datetime.fromisoformat(str(meta["deletionTimestamp"]).replace("Z", "+00:00"))
            if now - started >= self._deletion_timeout:
                await self._event(
                    policy,
                    "Warning",
                    "StorageOrphaned",
                    f"gave up deleting AWS resources after {self._deletion_timeout} ({reason})",
                )
                await asyncio.to_thread(self._kube.patch_finalizers, policy.ref, remaining)
                return IDLE
            condition = Condition(
                type="Ready",
                status="False",
                reason="DeletionPending",
                message=f"deleting AWS resources failed ({reason}); retrying",
            )
            await self._write(policy, Assessment(conditions=[condition]))
            return 5.0
        await self._event(
            policy, "Normal", "StorageDeleted", f"deleted: {', '.join(deleted) or 'nothing the policy owned'}"
        )
        await asyncio.to_thread(self._kube.patch_finalizers, policy.ref, remaining)
        return IDLE

    # -- status ------------------------------------------------------------------------------------
    def _fields(self, policy: _Policy, spec: PolicySpec, outcome: CredentialOutcome | None) -> dict[str, Any]:
        routing = effective_routing(
            simple_model=str(spec.routing.get("simpleModel")),
            complex_model=str(spec.routing.get("complexModel")),
            complexity_threshold=float(spec.routing.get("complexityThreshold", 0.7)),
            detection_rate=spec.detection_rate,
            min_detection_rate=spec.min_detection_rate,
            state=self._budget_state(policy.ref.namespace, spec.budget) if spec.budget else None,
        )
        fields: dict[str, Any] = {
            "storage": [r.to_json() for r in policy.storage],
            "effectiveModelRouting": routing.model_routing_status(),
            "effectiveSamplingRate": routing.sampling_rate,
        }
        if outcome is None:
            return fields
        now = self._clock()
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
                    "issuedAt": utc_timestamp(current.issued_at),
                    "expiresAt": utc_timestamp(current.expires_at),
                    "state": "Rotating" if rotating else "Active",
                }
            )
        fields["apiClients"] = clients
        self._metrics.set_api_keys(policy.ref.namespace, policy.ref.name, expiries)
        fields["signingKeys"] = [
            {
                "kid": key.kid,
                "algorithm": key.algorithm,
                "notAfter": utc_timestamp(
                    key.not_after or key.created_at + signing.SIGNING_KEY_LIFETIME + spec.token_ttl
                ),
            }
            for key in outcome.signing_keys
        ]
        return fields

    def _budget_condition(self, policy: _Policy, spec: PolicySpec) -> Condition | None:
        """``BudgetApplied`` when the policy references a budget; not part of Ready."""
        if not spec.budget:
            return None
        state = self._budget_state(policy.ref.namespace, spec.budget)
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

    async def _write(self, policy: _Policy, assessment: Assessment) -> None:
        written = await apply_status(
            self._kube,
            policy.ref,
            current=policy.status,
            generation=int(policy.body["metadata"].get("generation") or 0),
            assessment=assessment,
            now=self._clock(),
        )
        if written.stored is not None:
            policy.status = written.stored

    async def _event(self, policy: _Policy, type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(
            self._kube.post_event, policy.ref, type_=type_, reason=reason, message=message, now=self._clock()
        )
