"""What an incident is and which changes it allows. Pure: no AWS, no clock of its own.

An incident moves ``open -> acknowledged -> resolved -> closed``; resolving an open incident
acknowledges it on the way (its time to acknowledge is then its time to resolve), and closing an
open or acknowledged one needs a resolution (it is resolved and closed at once). ``closed`` is
final. Remediation proposals belong to an incident: ``Pending -> Approving -> Approved`` when
distinct responders reach the severity's quorum (the consensus state machine has the last word),
``Refused`` on a refusal, ``Expired`` at the timeout, ``Failed`` when the state machine fails
otherwise. A severity with ``autoRemediate`` (or without ``requireApproval``) approves at once.

Every change is planned here as a :class:`Change`: the new version, the attributes to set on the
incident's item, the audit entry (which is also the stream event), and what else the same
DynamoDB transaction writes. ``store.py`` writes it; whoever planned it never writes half of it.
Refusals are :class:`IncidentError` with the HTTP status and a reason the API answers with.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from incident_commander.timestamps import parse_time, precise_time

Status = Literal["open", "acknowledged", "resolved", "closed"]
STATUSES: tuple[Status, ...] = ("open", "acknowledged", "resolved", "closed")
ACTIVE: tuple[Status, ...] = ("open", "acknowledged")
ProposalState = Literal["Pending", "Approving", "Approved", "Refused", "Expired", "Failed"]
UNDECIDED: tuple[ProposalState, ...] = ("Pending", "Approving")
ApprovalMode = Literal["quorum", "autoRemediate", "notRequired"]
RESOLUTION_CODES = ("fixed", "mitigated", "false_positive", "duplicate", "wont_fix")
ACTIONS = (
    "open",
    "acknowledge",
    "resolve",
    "close",
    "attach",
    "propose",
    "approve",
    "refuse",
    "decide",
)
"""Every action that makes a new version (the ``action`` of audit entries, a bounded metric label)."""

MAX_ARTIFACTS = 100
MAX_PROPOSALS = 50
"""Per incident: they live in the incident's partition and are read with it."""
DEFAULT_PROPOSAL_TIMEOUT = 3600
MAX_PROPOSAL_TIMEOUT = 7 * 24 * 3600
PENDING_MARKER = "~pending"
"""``status`` of a proposal item while the state machine still has to be told or heard from: it puts
the proposal into the table's ``by-status`` index, where the sweeper finds it."""
OUTBOX_MARKER = "~outbox"
"""``status`` of an incident's outbox item while events wait to be published."""
RESOLVED_MARKER = "~resolved"
"""``status`` of the item recording one resolution (severity and seconds), for MTTR by window."""

Details = Mapping[str, Any]


class IncidentError(Exception):
    """A request the incident cannot take: ``status`` is the HTTP answer, ``reason`` its code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts: an API client of the policy, or the operator itself (``role`` ``system``)."""

    client: str
    role: str

    def to_json(self) -> dict[str, str]:
        return {"client": self.client, "role": self.role}

    @classmethod
    def from_json(cls, data: Any) -> Actor:
        data = data if isinstance(data, Mapping) else {}
        return cls(client=str(data.get("client", "")), role=str(data.get("role", "")))


CONSENSUS = Actor(client="consensus", role="system")
"""The decision of the policy's state machine, recorded by the operator."""
POLICY = Actor(client="policy", role="system")
"""An approval the policy's severity grants by itself (autoRemediate, or no approval required)."""


@dataclass(frozen=True, kw_only=True)
class SeverityRule:
    """What a severity of the policy says about remediation (kinds/incidentpolicy/spec.Severity)."""

    name: str
    auto_remediate: bool
    require_approval: bool
    quorum: int


@dataclass(frozen=True, kw_only=True)
class Resolution:
    code: str
    summary: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "summary": self.summary}


@dataclass(frozen=True, kw_only=True)
class Artifact:
    id: str
    name: str
    content_type: str
    key: str
    attached_at: datetime
    attached_by: Actor


@dataclass(frozen=True, kw_only=True)
class Approval:
    by: Actor
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Proposal:
    id: str
    action: Mapping[str, Any]
    description: str
    proposed_by: Actor
    proposed_at: datetime
    mode: ApprovalMode
    quorum: int
    state: ProposalState
    timeout_seconds: int
    deadline: datetime
    approvals: tuple[Approval, ...] = ()
    decided_at: datetime | None = None
    decided_by: Actor | None = None
    reason: str | None = None
    """Why it was refused, expired or failed."""
    signalled: bool = True
    """False while the state machine still has to hear of this state (the item carries
    ``PENDING_MARKER``): a Pending proposal, an Approving one, a Refused one not yet told."""

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.by.client for a in self.approvals)


@dataclass(frozen=True, kw_only=True)
class Incident:
    id: str
    title: str
    severity: str
    status: Status
    version: int
    opened_at: datetime
    opened_by: Actor
    description: str = ""
    source: str = ""
    dedup_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    detections: int = 1
    last_detected_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: Actor | None = None
    resolved_at: datetime | None = None
    resolved_by: Actor | None = None
    closed_at: datetime | None = None
    closed_by: Actor | None = None
    resolution: Resolution | None = None
    updated_at: datetime | None = None
    artifacts: tuple[Artifact, ...] = ()
    proposals: tuple[Proposal, ...] = ()
    trace_parent: str | None = None
    """W3C traceparent of the span that opened the incident: later transitions link to it."""
    pending_events: int = 0
    """Committed events not yet published to the stream (the outbox)."""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def proposal(self, proposal_id: str) -> Proposal | None:
        return next((p for p in self.proposals if p.id == proposal_id), None)

    def artifact(self, artifact_id: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.id == artifact_id), None)


@dataclass(frozen=True, kw_only=True)
class ProposalWrite:
    """The proposal item's part of a transaction: created whole, or attributes set and removed."""

    proposal_id: str
    create: bool
    set: Mapping[str, Any]
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Change:
    """One new version of an incident, written in one DynamoDB transaction (store.commit)."""

    incident_id: str
    action: str
    expected_version: int
    """The version the plan was made from (0: the incident does not exist yet)."""
    version: int
    head: Mapping[str, Any]
    """Attributes of the incident's item to set (on open: the whole item)."""
    event: Mapping[str, Any]
    """The audit entry, which is also the stream record."""
    incident: Incident
    """The incident as it is once the change is written."""
    proposal: ProposalWrite | None = None
    release_dedup: str | None = None
    """A dedup key to free (the incident is no longer active): the next detection opens anew."""
    resolution_marker: tuple[datetime, float] | None = None
    """(resolved at, seconds from opening) of a first resolution, for MTTR over a window."""
    time_to_acknowledge: float | None = None
    time_to_resolve: float | None = None


# -- ids ---------------------------------------------------------------------------------------------


def new_incident_id(now: datetime) -> str:
    """``inc-`` + 12 hex digits of milliseconds + 10 random hex digits: ids sort by opening time,
    so the table's index lists newest first without another attribute."""
    return f"inc-{int(now.timestamp() * 1000):012x}{secrets.token_hex(5)}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


# -- detection ---------------------------------------------------------------------------------------

DetectionOutcome = Literal["open", "sampled_out", "halted"]


def detection_decision(
    *, severity: str, most_severe: str | None, sampling_rate: float, halted: bool, draw: float
) -> DetectionOutcome:
    """Whether a new detection (one no active incident shares a dedup key with) opens an incident.

    The policy's most severe severity (its first) always opens: sampling and the budget never hide
    an outage. Under a budget Halt nothing else opens. Otherwise a detection opens with the
    effective sampling rate's probability (``draw`` is uniform in [0, 1)): each detection is drawn
    on its own, so a problem detected again and again still opens eventually.
    """
    if most_severe is not None and severity == most_severe:
        return "open"
    if halted:
        return "halted"
    return "open" if draw < sampling_rate else "sampled_out"


# -- planning -----------------------------------------------------------------------------------------


def _event(
    incident: Incident,
    *,
    version: int,
    action: str,
    actor: Actor,
    now: datetime,
    before: Status | None,
    after: Status,
    details: Details | None = None,
) -> dict[str, Any]:
    return {
        "eventId": f"{incident.id}:{version}",
        "changeId": secrets.token_hex(8),
        "incidentId": incident.id,
        "version": version,
        "action": action,
        "at": precise_time(now),
        "by": actor.to_json(),
        "severity": incident.severity,
        "from": before,
        "to": after,
        "details": dict(details or {}),
    }


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def plan_open(
    *,
    incident_id: str,
    title: str,
    severity: str,
    actor: Actor,
    now: datetime,
    description: str = "",
    source: str = "",
    dedup_key: str | None = None,
    labels: Mapping[str, str] | None = None,
    trace_parent: str | None = None,
) -> Change:
    incident = Incident(
        id=incident_id,
        title=title,
        severity=severity,
        status="open",
        version=1,
        opened_at=now,
        opened_by=actor,
        description=description,
        source=source,
        dedup_key=dedup_key,
        labels=dict(labels or {}),
        detections=1,
        last_detected_at=now,
        updated_at=now,
        trace_parent=trace_parent,
        pending_events=1,
    )
    details: dict[str, Any] = {"title": title}
    if dedup_key:
        details["dedupKey"] = dedup_key
    return Change(
        incident_id=incident_id,
        action="open",
        expected_version=0,
        version=1,
        head=head_item(incident),
        event=_event(
            incident,
            version=1,
            action="open",
            actor=actor,
            now=now,
            before=None,
            after="open",
            details=details,
        ),
        incident=incident,
    )


def _next(
    incident: Incident,
    *,
    action: str,
    actor: Actor,
    now: datetime,
    head: Mapping[str, Any],
    updated: Incident,
    details: Details | None = None,
    **extra: Any,
) -> Change:
    version = incident.version + 1
    updated = replace(updated, version=version, updated_at=now, pending_events=incident.pending_events + 1)
    return Change(
        incident_id=incident.id,
        action=action,
        expected_version=incident.version,
        version=version,
        head={**head, "version": version, "updatedAt": precise_time(now)},
        event=_event(
            incident,
            version=version,
            action=action,
            actor=actor,
            now=now,
            before=incident.status,
            after=updated.status,
            details=details,
        ),
        incident=updated,
        **extra,
    )


def _illegal(incident: Incident, verb: str) -> IncidentError:
    return IncidentError(
        409, "IllegalTransition", f"incident {incident.id} is {incident.status}: it cannot be {verb}"
    )


def plan_acknowledge(incident: Incident, actor: Actor, now: datetime) -> Change:
    if incident.status == "acknowledged":
        by = incident.acknowledged_by.client if incident.acknowledged_by else "someone"
        raise IncidentError(409, "AlreadyAcknowledged", f"incident {incident.id} was acknowledged by {by}")
    if incident.status != "open":
        raise _illegal(incident, "acknowledged")
    seconds = _seconds(incident.opened_at, now)
    return _next(
        incident,
        action="acknowledge",
        actor=actor,
        now=now,
        head={
            "status": "acknowledged",
            "acknowledgedAt": precise_time(now),
            "acknowledgedBy": actor.to_json(),
        },
        updated=replace(incident, status="acknowledged", acknowledged_at=now, acknowledged_by=actor),
        details={"secondsToAcknowledge": round(seconds, 3)},
        time_to_acknowledge=seconds,
    )


def _resolving(
    incident: Incident, actor: Actor, now: datetime, resolution: Resolution, status: Status
) -> tuple[dict[str, Any], Incident, dict[str, Any], dict[str, Any]]:
    """The attributes, incident, details and Change fields of a first resolution."""
    head: dict[str, Any] = {
        "status": status,
        "resolvedAt": precise_time(now),
        "resolvedBy": actor.to_json(),
        "resolution": resolution.to_json(),
    }
    updated = replace(incident, status=status, resolved_at=now, resolved_by=actor, resolution=resolution)
    to_resolve = _seconds(incident.opened_at, now)
    extra: dict[str, Any] = {
        "release_dedup": incident.dedup_key,
        "resolution_marker": (now, to_resolve),
        "time_to_resolve": to_resolve,
    }
    if incident.acknowledged_at is None:
        # Resolved without an acknowledgement: the resolution acknowledges it.
        head["acknowledgedAt"] = precise_time(now)
        head["acknowledgedBy"] = actor.to_json()
        updated = replace(updated, acknowledged_at=now, acknowledged_by=actor)
        extra["time_to_acknowledge"] = to_resolve
    details = {"resolution": resolution.to_json(), "secondsToResolve": round(to_resolve, 3)}
    return head, updated, details, extra


def plan_resolve(incident: Incident, actor: Actor, now: datetime, resolution: Resolution) -> Change:
    if incident.status == "resolved":
        raise IncidentError(409, "AlreadyResolved", f"incident {incident.id} is already resolved")
    if incident.status == "closed":
        raise IncidentError(
            409,
            "IllegalTransition",
            f"incident {incident.id} is closed: a closed incident cannot be resolved",
        )
    head, updated, details, extra = _resolving(incident, actor, now, resolution, "resolved")
    return _next(
        incident, action="resolve", actor=actor, now=now, head=head, updated=updated, details=details, **extra
    )


def plan_close(incident: Incident, actor: Actor, now: datetime, resolution: Resolution | None) -> Change:
    if incident.status == "closed":
        raise IncidentError(409, "AlreadyClosed", f"incident {incident.id} is already closed")
    if incident.status == "resolved":
        head: dict[str, Any] = {
            "status": "closed",
            "closedAt": precise_time(now),
            "closedBy": actor.to_json(),
        }
        updated = replace(incident, status="closed", closed_at=now, closed_by=actor)
        details: dict[str, Any] = {}
        if resolution is not None:
            head["resolution"] = resolution.to_json()
            updated = replace(updated, resolution=resolution)
            details["resolution"] = resolution.to_json()
        return _next(
            incident, action="close", actor=actor, now=now, head=head, updated=updated, details=details
        )
    if resolution is None:
        raise IncidentError(
            409,
            "ResolutionRequired",
            f"incident {incident.id} is {incident.status}: closing it needs a resolution "
            "(or resolve it first)",
        )
    head, updated, details, extra = _resolving(incident, actor, now, resolution, "closed")
    head.update({"closedAt": precise_time(now), "closedBy": actor.to_json()})
    updated = replace(updated, closed_at=now, closed_by=actor)
    return _next(
        incident, action="close", actor=actor, now=now, head=head, updated=updated, details=details, **extra
    )


def artifact_key(incident_id: str, artifact_id: str, name: str) -> str:
    return f"incidents/{incident_id}/{artifact_id}/{name}"


def plan_attach(
    incident: Incident, actor: Actor, now: datetime, *, artifact_id: str, name: str, content_type: str
) -> Change:
    if incident.status == "closed":
        raise _illegal(incident, "given artifacts")
    if len(incident.artifacts) >= MAX_ARTIFACTS:
        raise IncidentError(409, "TooManyArtifacts", f"an incident holds at most {MAX_ARTIFACTS} artifacts")
    artifact = Artifact(
        id=artifact_id,
        name=name,
        content_type=content_type,
        key=artifact_key(incident.id, artifact_id, name),
        attached_at=now,
        attached_by=actor,
    )
    return _next(
        incident,
        action="attach",
        actor=actor,
        now=now,
        head={f"artifacts.{artifact_id}": artifact_item(artifact)},
        updated=replace(incident, artifacts=(*incident.artifacts, artifact)),
        details={"artifactId": artifact_id, "name": name, "contentType": content_type, "key": artifact.key},
    )


def plan_propose(
    incident: Incident,
    actor: Actor,
    now: datetime,
    *,
    rule: SeverityRule,
    proposal_id: str,
    action: Mapping[str, Any],
    description: str,
    timeout_seconds: int,
) -> Change:
    if not incident.active:
        raise _illegal(incident, "given remediation proposals")
    if len(incident.proposals) >= MAX_PROPOSALS:
        raise IncidentError(409, "TooManyProposals", f"an incident holds at most {MAX_PROPOSALS} proposals")
    mode: ApprovalMode = (
        "quorum" if rule.require_approval else "autoRemediate" if rule.auto_remediate else "notRequired"
    )
    deadline = now + timedelta(seconds=timeout_seconds)
    proposal = Proposal(
        id=proposal_id,
        action=dict(action),
        description=description,
        proposed_by=actor,
        proposed_at=now,
        mode=mode,
        quorum=rule.quorum if mode == "quorum" else 0,
        state="Pending" if mode == "quorum" else "Approved",
        timeout_seconds=timeout_seconds,
        deadline=deadline,
        decided_at=None if mode == "quorum" else now,
        decided_by=None if mode == "quorum" else POLICY,
        reason=None if mode == "quorum" else mode,
        signalled=mode != "quorum",
    )
    details: dict[str, Any] = {"proposalId": proposal_id, "mode": mode, "state": proposal.state}
    if mode == "quorum":
        details["quorum"] = proposal.quorum
    return _next(
        incident,
        action="propose",
        actor=actor,
        now=now,
        head={},
        updated=replace(incident, proposals=(*incident.proposals, proposal)),
        details=details,
        proposal=ProposalWrite(
            proposal_id=proposal_id, create=True, set=proposal_item(incident.id, proposal)
        ),
    )


def _proposal_or_404(incident: Incident, proposal_id: str) -> Proposal:
    proposal = incident.proposal(proposal_id)
    if proposal is None:
        raise IncidentError(404, "NotFound", f"incident {incident.id} has no proposal {proposal_id}")
    return proposal


def _undecided_or_409(proposal: Proposal, verb: str) -> None:
    if proposal.state == "Approving":
        raise IncidentError(
            409,
            "QuorumReached",
            f"proposal {proposal.id} already has its quorum; the consensus workflow is deciding",
        )
    if proposal.state != "Pending":
        raise IncidentError(
            409,
            f"Proposal{proposal.state}",
            f"proposal {proposal.id} is {proposal.state}: it cannot be {verb}",
        )


def _replace_proposal(incident: Incident, proposal: Proposal) -> Incident:
    return replace(
        incident, proposals=tuple(proposal if p.id == proposal.id else p for p in incident.proposals)
    )


def plan_approve(incident: Incident, actor: Actor, now: datetime, proposal_id: str) -> Change:
    proposal = _proposal_or_404(incident, proposal_id)
    if not incident.active:
        raise _illegal(incident, "given approvals")
    _undecided_or_409(proposal, "approved")
    if actor.client == proposal.proposed_by.client:
        raise IncidentError(
            409, "SelfApproval", f"{actor.client} proposed {proposal.id} and may not approve it too"
        )
    if actor.client in proposal.approvers:
        raise IncidentError(409, "AlreadyApproved", f"{actor.client} has already approved {proposal.id}")
    if now >= proposal.deadline:
        raise IncidentError(
            409, "ProposalExpired", f"proposal {proposal.id} timed out at {precise_time(proposal.deadline)}"
        )
    approvals = (*proposal.approvals, Approval(by=actor, at=now))
    reached = len({a.by.client for a in approvals}) >= proposal.quorum
    updated = replace(proposal, approvals=approvals, state="Approving" if reached else "Pending")
    return _next(
        incident,
        action="approve",
        actor=actor,
        now=now,
        head={},
        updated=_replace_proposal(incident, updated),
        details={
            "proposalId": proposal.id,
            "approvals": len(approvals),
            "quorum": proposal.quorum,
            "quorumReached": reached,
        },
        proposal=ProposalWrite(
            proposal_id=proposal.id,
            create=False,
            set={"state": updated.state, "approvals": [approval_item(a) for a in approvals]},
        ),
    )


def plan_refuse(incident: Incident, actor: Actor, now: datetime, proposal_id: str, reason: str) -> Change:
    proposal = _proposal_or_404(incident, proposal_id)
    if incident.status == "closed":
        raise _illegal(incident, "given refusals")
    _undecided_or_409(proposal, "refused")
    if now >= proposal.deadline:
        raise IncidentError(
            409, "ProposalExpired", f"proposal {proposal.id} timed out at {precise_time(proposal.deadline)}"
        )
    updated = replace(
        proposal, state="Refused", decided_at=now, decided_by=actor, reason=reason, signalled=False
    )
    return _next(
        incident,
        action="refuse",
        actor=actor,
        now=now,
        head={},
        updated=_replace_proposal(incident, updated),
        details={"proposalId": proposal.id, "reason": reason},
        proposal=ProposalWrite(
            proposal_id=proposal.id,
            create=False,
            set={
                "state": "Refused",
                "decidedAt": precise_time(now),
                "decidedBy": actor.to_json(),
                "reason": reason,
            },
        ),
    )


Outcome = Literal["Approved", "Expired", "Failed"]


def plan_decide(
    incident: Incident, now: datetime, proposal_id: str, outcome: Outcome, reason: str
) -> Change | None:
    """Record the state machine's decision on an undecided proposal; None when it is decided
    already (another replica, or an earlier try, recorded it): deciding twice changes nothing."""
    proposal = _proposal_or_404(incident, proposal_id)
    if proposal.state not in UNDECIDED:
        return None
    if outcome == "Approved" and proposal.state != "Approving":
        outcome, reason = "Failed", f"the workflow approved without the quorum recorded here ({reason})"
    updated = replace(
        proposal, state=outcome, decided_at=now, decided_by=CONSENSUS, reason=reason, signalled=True
    )
    return _next(
        incident,
        action="decide",
        actor=CONSENSUS,
        now=now,
        head={},
        updated=_replace_proposal(incident, updated),
        details={"proposalId": proposal.id, "state": outcome, "reason": reason},
        proposal=ProposalWrite(
            proposal_id=proposal.id,
            create=False,
            set={
                "state": outcome,
                "decidedAt": precise_time(now),
                "decidedBy": CONSENSUS.to_json(),
                "reason": reason,
            },
            remove=("status",),
        ),
    )


# -- items -------------------------------------------------------------------------------------------
# The DynamoDB layout (docs/incidents.md): one partition per incident, pk "I#<id>":
#   sk "I#<id>"        the incident (its status in the by-status index, newest first)
#   sk "O"             the outbox: events up to "upTo" committed, up to "publishedUpTo" published
#   sk "P#<proposal>"  a remediation proposal
#   sk "R#<time>#<id>" its resolution (status "~resolved"), for MTTR over a window
#   sk "T#<version>"   the audit trail: one entry per version, never changed
# and one item per active dedup key: pk "D#<key>", sk "D".


def partition(incident_id: str) -> str:
    return f"I#{incident_id}"


def head_key(incident_id: str) -> dict[str, str]:
    return {"pk": partition(incident_id), "sk": partition(incident_id)}


def audit_sort_key(version: int) -> str:
    return f"T#{version:010d}"


def dedup_key_item(key: str) -> dict[str, str]:
    return {"pk": f"D#{key}", "sk": "D"}


def head_item(incident: Incident) -> dict[str, Any]:
    item: dict[str, Any] = {
        **head_key(incident.id),
        "type": "incident",
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "version": incident.version,
        "openedAt": precise_time(incident.opened_at),
        "openedBy": incident.opened_by.to_json(),
        "detections": incident.detections,
        "artifacts": {a.id: artifact_item(a) for a in incident.artifacts},
    }
    optional = {
        "description": incident.description or None,
        "source": incident.source or None,
        "dedupKey": incident.dedup_key,
        "labels": dict(incident.labels) or None,
        "lastDetectedAt": precise_time(incident.last_detected_at) if incident.last_detected_at else None,
        "updatedAt": precise_time(incident.updated_at) if incident.updated_at else None,
        "traceParent": incident.trace_parent,
        "acknowledgedAt": precise_time(incident.acknowledged_at) if incident.acknowledged_at else None,
        "acknowledgedBy": incident.acknowledged_by.to_json() if incident.acknowledged_by else None,
        "resolvedAt": precise_time(incident.resolved_at) if incident.resolved_at else None,
        "resolvedBy": incident.resolved_by.to_json() if incident.resolved_by else None,
        "closedAt": precise_time(incident.closed_at) if incident.closed_at else None,
        "closedBy": incident.closed_by.to_json() if incident.closed_by else None,
        "resolution": incident.resolution.to_json() if incident.resolution else None,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item


def artifact_item(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "name": artifact.name,
        "contentType": artifact.content_type,
        "key": artifact.key,
        "attachedAt": precise_time(artifact.attached_at),
        "attachedBy": artifact.attached_by.to_json(),
    }


def approval_item(approval: Approval) -> dict[str, Any]:
    return {"by": approval.by.to_json(), "at": precise_time(approval.at)}


def proposal_item(incident_id: str, proposal: Proposal) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": partition(incident_id),
        "sk": f"P#{proposal.id}",
        "type": "proposal",
        "id": proposal.id,
        "incidentId": incident_id,
        "action": dict(proposal.action),
        "description": proposal.description,
        "proposedBy": proposal.proposed_by.to_json(),
        "proposedAt": precise_time(proposal.proposed_at),
        "mode": proposal.mode,
        "quorum": proposal.quorum,
        "state": proposal.state,
        "timeoutSeconds": proposal.timeout_seconds,
        "deadline": precise_time(proposal.deadline),
        "approvals": [approval_item(a) for a in proposal.approvals],
    }
    if not proposal.signalled:
        item["status"] = PENDING_MARKER
    if proposal.decided_at is not None:
        item["decidedAt"] = precise_time(proposal.decided_at)
    if proposal.decided_by is not None:
        item["decidedBy"] = proposal.decided_by.to_json()
    if proposal.reason is not None:
        item["reason"] = proposal.reason
    return item


def _time(value: Any) -> datetime | None:
    return parse_time(str(value)) if value else None


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, int | Decimal | float) and not isinstance(value, bool):
        return int(value)
    return default


def artifact_from_item(item: Mapping[str, Any]) -> Artifact:
    return Artifact(
        id=str(item["id"]),
        name=str(item["name"]),
        content_type=str(item["contentType"]),
        key=str(item["key"]),
        attached_at=parse_time(str(item["attachedAt"])),
        attached_by=Actor.from_json(item.get("attachedBy")),
    )


def proposal_from_item(item: Mapping[str, Any]) -> Proposal:
    return Proposal(
        id=str(item["id"]),
        action=dict(item.get("action") or {}),
        description=str(item.get("description") or ""),
        proposed_by=Actor.from_json(item.get("proposedBy")),
        proposed_at=parse_time(str(item["proposedAt"])),
        mode=item.get("mode", "quorum"),
        quorum=_int(item.get("quorum"), 1),
        state=item.get("state", "Pending"),
        timeout_seconds=_int(item.get("timeoutSeconds"), DEFAULT_PROPOSAL_TIMEOUT),
        deadline=parse_time(str(item["deadline"])),
        approvals=tuple(
            Approval(by=Actor.from_json(a.get("by")), at=parse_time(str(a["at"])))
            for a in item.get("approvals") or []
        ),
        decided_at=_time(item.get("decidedAt")),
        decided_by=Actor.from_json(item["decidedBy"]) if item.get("decidedBy") else None,
        reason=str(item["reason"]) if item.get("reason") is not None else None,
        signalled=item.get("status") != PENDING_MARKER,
    )


def incident_from_items(
    head: Mapping[str, Any],
    proposals: Sequence[Mapping[str, Any]] = (),
    outbox: Mapping[str, Any] | None = None,
) -> Incident:
    resolution = head.get("resolution")
    artifacts = sorted(
        (artifact_from_item(a) for a in (head.get("artifacts") or {}).values()), key=lambda a: a.attached_at
    )
    pending = 0
    if outbox:
        pending = max(0, _int(outbox.get("upTo")) - _int(outbox.get("publishedUpTo")))
    return Incident(
        id=str(head["id"]),
        title=str(head.get("title") or ""),
        severity=str(head["severity"]),
        status=head["status"],
        version=_int(head.get("version"), 1),
        opened_at=parse_time(str(head["openedAt"])),
        opened_by=Actor.from_json(head.get("openedBy")),
        description=str(head.get("description") or ""),
        source=str(head.get("source") or ""),
        dedup_key=head.get("dedupKey"),
        labels={str(k): str(v) for k, v in (head.get("labels") or {}).items()},
        detections=_int(head.get("detections"), 1),
        last_detected_at=_time(head.get("lastDetectedAt")),
        acknowledged_at=_time(head.get("acknowledgedAt")),
        acknowledged_by=Actor.from_json(head["acknowledgedBy"]) if head.get("acknowledgedBy") else None,
        resolved_at=_time(head.get("resolvedAt")),
        resolved_by=Actor.from_json(head["resolvedBy"]) if head.get("resolvedBy") else None,
        closed_at=_time(head.get("closedAt")),
        closed_by=Actor.from_json(head["closedBy"]) if head.get("closedBy") else None,
        resolution=Resolution(code=str(resolution.get("code")), summary=str(resolution.get("summary") or ""))
        if isinstance(resolution, Mapping)
        else None,
        updated_at=_time(head.get("updatedAt")),
        artifacts=tuple(artifacts),
        proposals=tuple(sorted((proposal_from_item(p) for p in proposals), key=lambda p: p.proposed_at)),
        trace_parent=head.get("traceParent"),
        pending_events=pending,
    )


# -- MTTR over a window -------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least ``fraction`` of the values at or
    below it); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def mttr_by_severity(samples: Sequence[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """``{severity: {count, p50Seconds, p90Seconds}}`` from (severity, seconds) resolutions."""
    by: dict[str, list[float]] = {}
    for severity, seconds in samples:
        by.setdefault(severity, []).append(seconds)
    return {
        severity: {
            "count": len(values),
            "p50Seconds": percentile(values, 0.5),
            "p90Seconds": percentile(values, 0.9),
        }
        for severity, values in sorted(by.items())
    }


# -- small copies, for the service --------------------------------------------------------------------


def replace_pending(incident: Incident, pending: int) -> Incident:
    return replace(incident, pending_events=pending)


def replace_detections(incident: Incident, detections: int) -> Incident:
    return replace(incident, detections=detections)


def replace_proposal(incident: Incident, proposal: Proposal) -> Incident:
    return _replace_proposal(incident, proposal)


def replace_signalled(proposal: Proposal) -> Proposal:
    return replace(proposal, signalled=True)
