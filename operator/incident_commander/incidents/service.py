"""Incidents for the API and the sweeper: plan (model), write (store), publish, coordinate (consensus).

Every replica serves incidents from the policy's DynamoDB table: nothing here keeps state between
requests, so any replica may take any request, and a replica that dies mid-change leaves nothing
another one cannot finish (store.py, "the write order").

A change is planned from a strongly consistent read and written conditionally on the version it
was planned from. A caller that sent ``If-Match`` gets 412 when the incident moved on; without it
the change is planned again from a fresh read (a few times), so two agents acknowledging at once
get one 200 and one 409 ``AlreadyAcknowledged``, never a lost write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, Tracer

from incident_commander.aws.connection import ConnectionNotReady, ConnectionSource
from incident_commander.clock import Clock, system_clock
from incident_commander.incidents import model
from incident_commander.incidents.consensus import Consensus, Execution, outcome_of
from incident_commander.incidents.model import (
    Actor,
    Change,
    Incident,
    IncidentError,
    Proposal,
    Resolution,
    SeverityRule,
)
from incident_commander.incidents.store import (
    DedupTaken,
    IncidentStore,
    StoreError,
    VersionConflict,
    decode_cursor,
)
from incident_commander.kinds.incidentpolicy.spec import PolicySpec
from incident_commander.metrics import OperatorMetrics
from incident_commander.telemetry.sampled_log import SampledLog
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.telemetry.tracing import NOOP_TRACER

logger = logging.getLogger(__name__)

T = TypeVar("T")
PLAN_ATTEMPTS = 5
"""Fresh reads and plans of one change when other writers keep moving the incident (no If-Match)."""
DEFAULT_ACCOUNT = "000000000000"
ARTIFACT_URL_SECONDS = 900
TOKEN_WAIT = 5.0
"""Seconds a request waits for the state machine to record its task token (moto: 0.2-0.7 s)."""
DECISION_WAIT = 5.0
"""Seconds a request waits for the execution to end once it was told the quorum."""
POLL = 0.05
INCIDENT_ID = "incidentcommander.incident.id"


@dataclass(frozen=True, kw_only=True)
class Target:
    """The policy whose incidents a request or sweep is about."""

    namespace: str
    name: str
    spec: PolicySpec


@dataclass(frozen=True, kw_only=True)
class OpenRequest:
    title: str
    severity: str
    description: str = ""
    source: str = ""
    dedup_key: str | None = None
    labels: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Opened:
    outcome: Literal["opened", "deduplicated", "sampled_out", "halted"]
    incident: Incident | None
    sampling_rate: float


@dataclass(frozen=True, kw_only=True)
class Presigned:
    url: str
    expires_at: datetime
    method: str
    headers: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Storage:
    store: IncidentStore
    consensus: Consensus
    s3: Any
    bucket: str


def rule_of(spec: PolicySpec, severity: str) -> SeverityRule | None:
    found = spec.severity(severity)
    if found is None:
        return None
    return SeverityRule(
        name=found.name,
        auto_remediate=found.auto_remediate,
        require_approval=found.require_approval,
        quorum=found.quorum,
    )


def unknown_severity(spec: PolicySpec, severity: str) -> IncidentError:
    names = ", ".join(s.name for s in spec.severities) or "none"
    return IncidentError(
        422, "UnknownSeverity", f"severity {severity!r} is not one of the policy's severities ({names})"
    )


def traceparent(context: SpanContext) -> str | None:
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    try:
        _, trace_id, span_id, flags = str(value).split("-")
        context = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


class IncidentService:
    def __init__(
        self,
        *,
        connections: ConnectionSource,
        metrics: OperatorMetrics,
        tracer: Tracer = NOOP_TRACER,
        clock: Clock = system_clock,
        rng: Callable[[], float] | None = None,
        threads: int = 16,
        token_wait: float = TOKEN_WAIT,
        decision_wait: float = DECISION_WAIT,
    ) -> None:
        self._connections = connections
        self.metrics = metrics
        self._tracer = tracer
        self.clock = clock
        self._draw = rng or random.Random().random  # noqa: S311 - sampling, not secrecy
        self._executor = ContextThreadPoolExecutor(max_workers=threads, thread_name_prefix="incidents")
        self._token_wait = token_wait
        self._decision_wait = decision_wait
        self._log = SampledLog(logger, per_window=10, window=60.0)
        self.written: Callable[[str, str], None] = lambda namespace, policy: None
        """Called with a policy's namespace and name after this process committed a change to one
        of its incidents (the sweeper looks at that policy again soon)."""

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))
        except StoreError as failure:
            if failure.missing:
                raise IncidentError(503, "StorageNotReady", failure.message) from None
            raise IncidentError(503, "StorageUnavailable", f"{failure.reason}: {failure.message}") from None

    def storage(self, target: Target) -> Storage:
        """The policy's incident storage through its AwsConnection (503 while it is not Ready)."""
        try:
            connection = self._connections.get(target.namespace, target.spec.connection)
        except ConnectionNotReady as not_ready:
            raise IncidentError(503, "ConnectionNotReady", not_ready.describe()) from None
        account = connection.account_id or DEFAULT_ACCOUNT
        names = target.spec.storage_names(namespace=target.namespace, policy=target.name, account=account)
        state_machine = f"arn:aws:states:{connection.region}:{account}:stateMachine:{names.state_machine}"
        return Storage(
            store=IncidentStore(
                dynamodb=connection.client("dynamodb"),
                kinesis=_Deferred(lambda: connection.client("kinesis")),
                table=names.incident_table,
                stream=names.event_stream,
            ),
            consensus=Consensus(
                sfn=_Deferred(lambda: connection.client("stepfunctions")),
                state_machine_arn=state_machine,
                table=names.incident_table,
            ),
            s3=_Deferred(lambda: connection.client("s3")),
            bucket=names.artifact_bucket,
        )

    # -- spans and metrics ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _span(
        self, action: str, target: Target, incident_id: str | None, link: str | None = None
    ) -> Iterator[trace.Span]:
        """One span per transition: ``incident <action>``, with the incident id as attribute and a
        link to the span that opened the incident, so a trace backend joins an incident's story."""
        parent = parse_traceparent(link)
        attributes: dict[str, str] = {
            "k8s.namespace.name": target.namespace,
            "incidentcommander.policy": target.name,
            "incidentcommander.incident.action": action,
        }
        if incident_id:
            attributes[INCIDENT_ID] = incident_id
        with self._tracer.start_as_current_span(
            f"incident {action}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=[Link(parent, {INCIDENT_ID: incident_id or ""})] if parent else None,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except IncidentError as refused:
                span.set_attribute("incidentcommander.incident.refused", refused.reason)
                if refused.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, refused.reason))
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def _committed(self, target: Target, change: Change, span: trace.Span) -> None:
        span.set_attribute(INCIDENT_ID, change.incident_id)
        span.set_attribute("incidentcommander.incident.version", change.version)
        span.set_attribute("incidentcommander.incident.severity", change.incident.severity)
        span.set_attribute("incidentcommander.incident.status", change.incident.status)
        self.metrics.incident_transitions.labels(action=change.action).inc()
        self.written(target.namespace, target.name)
        if change.time_to_acknowledge is not None or change.time_to_resolve is not None:
            self.metrics.retain_incident_severities(
                target.namespace, target.name, tuple(s.name for s in target.spec.severities)
            )
            self.metrics.observe_incident(
                target.namespace,
                target.name,
                change.incident.severity,
                to_acknowledge=change.time_to_acknowledge,
                to_resolve=change.time_to_resolve,
            )

    async def _publish(self, storage: Storage, change: Change) -> Incident:
        """Publish after the commit; a failure leaves the events in the outbox for later (the
        change is durable: the answer does not depend on the stream)."""
        try:
            await self._run(storage.store.flush, change.incident_id, {change.version: change.event})
        except IncidentError as failure:
            self._log.warning(
                "publish", "incident %s: events wait in the outbox (%s)", change.incident_id, failure.message
            )
            return change.incident
        return model.replace_pending(change.incident, 0)

    # -- the lifecycle -----------------------------------------------------------------------------
    async def open(
        self, target: Target, actor: Actor, request: OpenRequest, *, sampling_rate: float, halted: bool
    ) -> Opened:
        if target.spec.severity(request.severity) is None:
            raise unknown_severity(target.spec, request.severity)
        storage = self.storage(target)
        store = storage.store
        with self._span("open", target, None) as span:
            stale: str | None = None
            if request.dedup_key:
                joined, stale = await self._join(target, store, request.dedup_key)
                if joined is not None:
                    span.set_attribute(INCIDENT_ID, joined.id)
                    span.set_attribute("incidentcommander.incident.deduplicated", True)
                    self.metrics.incident_detections.labels(outcome="deduplicated").inc()
                    return Opened(outcome="deduplicated", incident=joined, sampling_rate=sampling_rate)
            decision = model.detection_decision(
                severity=request.severity,
                most_severe=target.spec.critical_severity,
                sampling_rate=sampling_rate,
                halted=halted,
                draw=self._draw(),
            )
            if decision != "open":
                span.set_attribute("incidentcommander.incident.opened", False)
                self.metrics.incident_detections.labels(outcome=decision).inc()
                return Opened(outcome=decision, incident=None, sampling_rate=sampling_rate)
            now = self.clock()
            change = model.plan_open(
                incident_id=model.new_incident_id(now),
                title=request.title,
                severity=request.severity,
                actor=actor,
                now=now,
                description=request.description,
                source=request.source,
                dedup_key=request.dedup_key,
                labels=request.labels,
                trace_parent=traceparent(span.get_span_context()),
            )
            try:
                await self._run(store.commit, change, dedup_stale=stale)
            except DedupTaken as taken:
                # A concurrent detection opened it first: this one joins it.
                joined = await self._read(store, taken.incident_id) if taken.incident_id else None
                if joined is None or not await self._run(store.note_detection, joined.id, self.clock()):
                    raise IncidentError(
                        409, "Conflict", "a concurrent detection holds the dedup key; retry"
                    ) from None
                span.set_attribute(INCIDENT_ID, joined.id)
                self.metrics.incident_detections.labels(outcome="deduplicated").inc()
                return Opened(
                    outcome="deduplicated",
                    incident=model.replace_detections(joined, joined.detections + 1),
                    sampling_rate=sampling_rate,
                )
            except VersionConflict as conflict:
                raise IncidentError(
                    409, "Conflict", f"the new incident could not be written ({conflict}); retry"
                ) from None
            self._committed(target, change, span)
            self.metrics.incident_detections.labels(outcome="opened").inc()
            return Opened(
                outcome="opened", incident=await self._publish(storage, change), sampling_rate=sampling_rate
            )

    async def _join(
        self, target: Target, store: IncidentStore, key: str
    ) -> tuple[Incident | None, str | None]:
        """The active incident holding ``key`` with this detection counted, or (None, the holder
        when it is no longer active: its key may be taken over)."""
        holder = await self._run(store.dedup_holder, key)
        if holder is None:
            return None, None
        incident = await self._read(store, holder)
        if (
            incident is not None
            and incident.active
            and await self._run(store.note_detection, holder, self.clock())
        ):
            return model.replace_detections(incident, incident.detections + 1), None
        return None, holder

    async def _read(self, store: IncidentStore, incident_id: str) -> Incident | None:
        return await self._run(store.read, incident_id)

    async def get(self, target: Target, incident_id: str) -> Incident:
        storage = self.storage(target)
        incident = await self._read(storage.store, incident_id)
        if incident is None:
            raise not_found(incident_id)
        if incident.pending_events:
            # Events a crashed writer left in the outbox: publish them before answering.
            with contextlib.suppress(IncidentError):
                await self._run(storage.store.flush, incident_id)
                incident = model.replace_pending(incident, 0)
        return incident

    async def list_incidents(
        self,
        target: Target,
        *,
        statuses: tuple[str, ...],
        severity: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Incident], str | None]:
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if after is None:
                raise IncidentError(400, "InvalidQuery", "cursor is not one this API handed out")
        if severity is not None and target.spec.severity(severity) is None:
            raise unknown_severity(target.spec, severity)
        storage = self.storage(target)
        return await self._run(
            storage.store.list_incidents, statuses=statuses, severity=severity, limit=limit, after=after
        )

    async def audit(
        self, target: Target, incident_id: str, *, after_version: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        storage = self.storage(target)
        entries, more = await self._run(
            storage.store.audit, incident_id, after_version=after_version, limit=limit
        )
        if not entries and after_version == 0 and await self._read(storage.store, incident_id) is None:
            raise not_found(incident_id)
        return entries, more

    async def _change(
        self,
        target: Target,
        storage: Storage,
        incident_id: str,
        action: str,
        if_match: int | None,
        plan: Callable[[Incident], Change | None],
    ) -> tuple[Incident, Change | None]:
        """Read, plan, write conditionally, publish: one transition in one span."""
        store = storage.store
        incident = await self._read(store, incident_id)
        if incident is None:
            raise not_found(incident_id)
        with self._span(action, target, incident_id, incident.trace_parent) as span:
            for _ in range(PLAN_ATTEMPTS):
                if if_match is not None and incident.version != if_match:
                    raise precondition_failed(incident, if_match)
                change = plan(incident)
                if change is None:
                    return incident, None
                try:
                    await self._run(store.commit, change)
                except VersionConflict:
                    if if_match is not None:
                        raise IncidentError(
                            412, "PreconditionFailed", f"incident {incident_id} changed: read it again"
                        ) from None
                    fresh = await self._read(store, incident_id)
                    if fresh is None:
                        raise not_found(incident_id) from None
                    incident = fresh
                    continue
                self._committed(target, change, span)
                return await self._publish(storage, change), change
            raise IncidentError(
                409, "Conflict", f"incident {incident_id} kept changing under {PLAN_ATTEMPTS} attempts; retry"
            )

    async def acknowledge(
        self, target: Target, actor: Actor, incident_id: str, if_match: int | None
    ) -> Incident:
        storage = self.storage(target)
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "acknowledge",
            if_match,
            lambda current: model.plan_acknowledge(current, actor, self.clock()),
        )
        return incident

    async def resolve(
        self, target: Target, actor: Actor, incident_id: str, if_match: int | None, resolution: Resolution
    ) -> Incident:
        storage = self.storage(target)
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "resolve",
            if_match,
            lambda current: model.plan_resolve(current, actor, self.clock(), resolution),
        )
        return incident

    async def close(
        self,
        target: Target,
        actor: Actor,
        incident_id: str,
        if_match: int | None,
        resolution: Resolution | None,
    ) -> Incident:
        storage = self.storage(target)
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "close",
            if_match,
            lambda current: model.plan_close(current, actor, self.clock(), resolution),
        )
        return incident

    # -- artifacts ---------------------------------------------------------------------------------
    async def attach(
        self,
        target: Target,
        actor: Actor,
        incident_id: str,
        if_match: int | None,
        *,
        name: str,
        content_type: str,
    ) -> tuple[Incident, model.Artifact, Presigned]:
        storage = self.storage(target)
        artifact_id = model.new_id("art")
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "attach",
            if_match,
            lambda current: model.plan_attach(
                current, actor, self.clock(), artifact_id=artifact_id, name=name, content_type=content_type
            ),
        )
        artifact = incident.artifact(artifact_id)
        assert artifact is not None
        url = await self._presign(
            storage,
            "put_object",
            {"Key": artifact.key, "ContentType": content_type},
            "PUT",
            {"Content-Type": content_type},
        )
        return incident, artifact, url

    async def artifact(
        self, target: Target, incident_id: str, artifact_id: str
    ) -> tuple[model.Artifact, Presigned]:
        storage = self.storage(target)
        incident = await self._read(storage.store, incident_id)
        if incident is None:
            raise not_found(incident_id)
        artifact = incident.artifact(artifact_id)
        if artifact is None:
            raise IncidentError(404, "NotFound", f"incident {incident_id} has no artifact {artifact_id}")
        url = await self._presign(storage, "get_object", {"Key": artifact.key}, "GET", {})
        return artifact, url

    async def _presign(
        self, storage: Storage, operation: str, params: dict[str, str], method: str, headers: dict[str, str]
    ) -> Presigned:
        """A URL signed with the operator's credentials for one object: no AWS call, nothing to
        leak beyond that object, for ARTIFACT_URL_SECONDS."""
        now = self.clock()
        url = await self._run(
            storage.s3.generate_presigned_url,
            operation,
            Params={"Bucket": storage.bucket, **params},
            ExpiresIn=ARTIFACT_URL_SECONDS,
            HttpMethod=method,
        )
        return Presigned(
            url=str(url),
            expires_at=now + timedelta(seconds=ARTIFACT_URL_SECONDS),
            method=method,
            headers=headers,
        )

    # -- remediation proposals ---------------------------------------------------------------------
    async def propose(
        self,
        target: Target,
        actor: Actor,
        incident_id: str,
        if_match: int | None,
        *,
        action: dict[str, Any],
        description: str,
        timeout_seconds: int,
    ) -> tuple[Incident, Proposal]:
        storage = self.storage(target)
        proposal_id = model.new_id("prop")

        def plan(current: Incident) -> Change:
            rule = rule_of(target.spec, current.severity)
            if rule is None:
                raise IncidentError(
                    409,
                    "UnknownSeverity",
                    f"severity {current.severity} is no longer one of the policy's: no remediation rule",
                )
            return model.plan_propose(
                current,
                actor,
                self.clock(),
                rule=rule,
                proposal_id=proposal_id,
                action=action,
                description=description,
                timeout_seconds=timeout_seconds,
            )

        incident, _ = await self._change(target, storage, incident_id, "propose", if_match, plan)
        proposal = incident.proposal(proposal_id)
        assert proposal is not None
        if proposal.state == "Pending":
            try:
                await self._run(storage.consensus.start, incident_id, proposal, self.clock())
            except IncidentError as failure:  # the sweeper starts it later
                self._log.warning(
                    "start", "proposal %s: workflow not started (%s)", proposal_id, failure.message
                )
        return incident, proposal

    async def proposal(self, target: Target, incident_id: str, proposal_id: str) -> tuple[Incident, Proposal]:
        """The proposal, first settled with its state machine when a decision may be due."""
        storage = self.storage(target)
        incident = await self._read(storage.store, incident_id)
        if incident is None:
            raise not_found(incident_id)
        proposal = incident.proposal(proposal_id)
        if proposal is None:
            raise IncidentError(404, "NotFound", f"incident {incident_id} has no proposal {proposal_id}")
        if not proposal.signalled and (proposal.state != "Pending" or self.clock() >= proposal.deadline):
            incident = await self.settle(target, storage, incident_id, proposal_id)
        return incident, _proposal(incident, proposal_id)

    async def approve(
        self, target: Target, actor: Actor, incident_id: str, proposal_id: str, if_match: int | None
    ) -> tuple[Incident, Proposal]:
        storage = self.storage(target)
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "approve",
            if_match,
            lambda current: model.plan_approve(current, actor, self.clock(), proposal_id),
        )
        if _proposal(incident, proposal_id).state == "Approving":
            incident = await self.settle(target, storage, incident_id, proposal_id)
        return incident, _proposal(incident, proposal_id)

    async def refuse(
        self,
        target: Target,
        actor: Actor,
        incident_id: str,
        proposal_id: str,
        if_match: int | None,
        reason: str,
    ) -> tuple[Incident, Proposal]:
        storage = self.storage(target)
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "refuse",
            if_match,
            lambda current: model.plan_refuse(current, actor, self.clock(), proposal_id, reason),
        )
        incident = await self.settle(target, storage, incident_id, proposal_id)
        return incident, _proposal(incident, proposal_id)

    async def settle(self, target: Target, storage: Storage, incident_id: str, proposal_id: str) -> Incident:
        """Bring a proposal and its execution into agreement; idempotent, so any replica (the
        request that reached the quorum, a later read, the leader's sweeper) may do it, again.

        DynamoDB orders the decisions (a refusal and the quorum-reaching approval cannot both be
        written), the state machine confirms: it is told the approvers or the refusal, and its end
        (Approved, Expired at the timeout, Failed) is recorded as a ``decide`` change."""
        store, consensus = storage.store, storage.consensus
        incident = await self._read(store, incident_id)
        if incident is None:
            raise not_found(incident_id)
        proposal = _proposal(incident, proposal_id)
        if proposal.signalled:
            return incident
        now = self.clock()
        if proposal.state == "Refused":
            token = await self._token(store, incident_id, proposal_id, wait=self._token_wait)
            if token is not None:
                await self._run(
                    consensus.refuse,
                    token,
                    proposal.decided_by.client if proposal.decided_by else "-",
                    proposal.reason or "",
                )
            else:
                await self._run(consensus.stop, proposal_id, "refused before the workflow recorded its token")
            await self._run(store.mark_signalled, incident_id, proposal_id, "Refused")
            return model.replace_proposal(incident, model.replace_signalled(proposal))
        execution = await self._run(consensus.describe, proposal_id)
        if execution is None:
            if now >= proposal.deadline:
                return await self._decide(
                    target,
                    storage,
                    incident_id,
                    proposal_id,
                    "Expired",
                    "timed out before its workflow started",
                )
            await self._run(consensus.start, incident_id, proposal, now)
            execution = Execution(status="RUNNING")
        if execution.running and proposal.state == "Approving":
            token = await self._token(store, incident_id, proposal_id, wait=self._token_wait)
            if token is None:
                return incident  # the workflow has not recorded its token yet: settled later
            await self._run(consensus.approve, token, sorted(set(proposal.approvers)))
            execution = await self._ended(consensus, proposal_id, self._decision_wait)
        elif execution.running and now >= proposal.deadline:
            execution = await self._ended(consensus, proposal_id, 2.0)  # its own clock ends it
        if execution.running:
            return incident
        outcome, reason = outcome_of(execution)
        return await self._decide(target, storage, incident_id, proposal_id, outcome, reason)

    async def _decide(
        self,
        target: Target,
        storage: Storage,
        incident_id: str,
        proposal_id: str,
        outcome: model.Outcome,
        reason: str,
    ) -> Incident:
        incident, _ = await self._change(
            target,
            storage,
            incident_id,
            "decide",
            None,
            lambda current: model.plan_decide(current, self.clock(), proposal_id, outcome, reason),
        )
        return incident

    async def _token(
        self, store: IncidentStore, incident_id: str, proposal_id: str, *, wait: float
    ) -> str | None:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            token = await self._run(store.task_token, incident_id, proposal_id)
            if token is not None or asyncio.get_running_loop().time() >= deadline:
                return token
            await asyncio.sleep(POLL * 2)

    async def _ended(self, consensus: Consensus, name: str, wait: float) -> Execution:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            execution = await self._run(consensus.describe, name)
            if execution is None:
                return Execution(status="RUNNING")
            if not execution.running or asyncio.get_running_loop().time() >= deadline:
                return execution
            await asyncio.sleep(POLL)

    # -- reading across incidents ------------------------------------------------------------------
    async def summary(self, target: Target, window: timedelta, *, max_items: int = 10_000) -> dict[str, Any]:
        """MTTR p50/p90 per severity over the window, and active incidents per severity."""
        storage = self.storage(target)
        now = self.clock()
        samples, truncated = await self._run(
            storage.store.resolutions, since=now - window, until=now, max_items=max_items
        )
        counts = await self._run(storage.store.open_counts)
        severities = [s.name for s in target.spec.severities]
        return {
            "windowSeconds": int(window.total_seconds()),
            "mttr": model.mttr_by_severity(samples),
            "resolved": len(samples),
            "truncated": truncated,
            "open": {name: counts.get(name, 0) for name in severities},
        }

    async def sweep(self, target: Target, *, count: bool) -> dict[str, int]:
        """What a crash or a timeout left: publish pending events, settle proposals; with ``count``
        also set the open-incidents gauge. Run by the leader (incidents/sweeper.py). ``unsettled``
        counts the proposals still open (settled or not by this sweep), so the sweeper knows the
        policy is not quiet."""
        storage = self.storage(target)
        published = 0
        for incident_id in await self._run(storage.store.unpublished):
            published += await self._run(storage.store.flush, incident_id)
        settled = 0
        unsettled = await self._run(storage.store.unsettled_proposals)
        for incident_id, proposal_id in unsettled:
            incident = await self._read(storage.store, incident_id)
            proposal = incident.proposal(proposal_id) if incident else None
            if proposal is None or proposal.signalled:
                continue
            if proposal.state == "Pending" and self.clock() < proposal.deadline:
                # Make sure its workflow runs (a crash between the proposal and its start); settle
                # it only if the workflow already ended on its own (it failed).
                execution = await self._run(storage.consensus.describe, proposal_id)
                if execution is None:
                    await self._run(storage.consensus.start, incident_id, proposal, self.clock())
                    continue
                if execution.running:
                    continue
            await self.settle(target, storage, incident_id, proposal_id)
            settled += 1
        if count:
            counts = await self._run(storage.store.open_counts)
            self.metrics.set_open_incidents(
                target.namespace, target.name, {s.name: counts.get(s.name, 0) for s in target.spec.severities}
            )
        return {"published": published, "settled": settled, "unsettled": len(unsettled)}


class _Deferred:
    """A connection's client fetched on its first use. A sweep of a quiet policy and most requests
    need only DynamoDB, and a fetch can mean building a client (the connections' client cache is
    bounded): at 1,000 policies, fetching all four each sweep rebuilt clients all the time."""

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self._fetch = fetch
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._fetch()
        return getattr(self._client, name)


def _proposal(incident: Incident, proposal_id: str) -> Proposal:
    proposal = incident.proposal(proposal_id)
    if proposal is None:
        raise IncidentError(404, "NotFound", f"incident {incident.id} has no proposal {proposal_id}")
    return proposal


def not_found(incident_id: str) -> IncidentError:
    return IncidentError(404, "NotFound", f"no incident {incident_id} in this policy")


def precondition_failed(incident: Incident, if_match: int) -> IncidentError:
    return IncidentError(
        412,
        "PreconditionFailed",
        f"incident {incident.id} is at version {incident.version}, not {if_match}: read it again",
    )
