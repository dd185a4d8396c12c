"""``/v1/incidents``: open, read, list, acknowledge, resolve, close, artifacts, remediation proposals.

Scope is the credential's own policy: incidents live in that policy's table, so another policy's
incident id is simply not found (404), which tells nobody that it exists. viewer reads; responder
and above change. Every answer about one incident carries its version as a strong ``ETag``; a
change sent with ``If-Match`` is refused with 412 when the incident has moved on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from incident_commander.api import bodies, incident_bodies
from incident_commander.api.auth import admit
from incident_commander.api.context import ApiContext, ApiError
from incident_commander.api.directory import PolicyView
from incident_commander.api.principal import Principal
from incident_commander.incidents.model import Actor, Artifact, Incident, IncidentError, Proposal
from incident_commander.incidents.service import IncidentService, Presigned, Target
from incident_commander.incidents.store import encode_cursor
from incident_commander.timestamps import precise_time

T = TypeVar("T")


def _service(ctx: ApiContext) -> IncidentService:
    if ctx.incidents is None:
        raise ApiError(
            503, "IncidentsUnavailable", "this replica serves no incidents", headers={"Retry-After": "5"}
        )
    return ctx.incidents


def _target(view: PolicyView) -> Target:
    return Target(namespace=view.namespace, name=view.name, spec=view.spec)


def _actor(principal: Principal) -> Actor:
    return Actor(client=principal.client, role=principal.role)


async def _call(work: Awaitable[T]) -> T:
    try:
        return await work
    except IncidentError as refused:
        headers = {"Retry-After": "5"} if refused.status == 503 else None
        raise ApiError(refused.status, refused.reason, refused.message, headers=headers) from None


def _parsed(parser: Callable[[Any], T], data: Any) -> T:
    return bodies.parsed(parser, data)


async def _optional_json(request: web.Request, ctx: ApiContext) -> Any:
    """The body when there is one: acknowledge and approve need none."""
    if not request.can_read_body:
        return None
    return await bodies.read_json(request, ctx)


def _if_match(request: web.Request) -> int | None:
    try:
        return incident_bodies.parse_if_match(request.headers.get("If-Match"))
    except bodies.BodyError as exc:
        raise ApiError(400, "InvalidIfMatch", str(exc)) from None


def _incident_id(request: web.Request) -> str:
    incident_id = request.match_info["id"]
    if not incident_bodies.INCIDENT_ID.match(incident_id):
        raise ApiError(404, "NotFound", "no such incident in this policy")
    return incident_id


def _sub_id(request: web.Request, name: str, pattern: Any, what: str) -> str:
    value = request.match_info[name]
    if not pattern.match(value):
        raise ApiError(404, "NotFound", f"no such {what}")
    return value


def _etag(incident: Incident) -> dict[str, str]:
    return {"ETag": f'"{incident.version}"'}


def actor_json(actor: Actor | None) -> dict[str, str] | None:
    return actor.to_json() if actor else None


def _time(value: Any) -> str | None:
    return precise_time(value) if value else None


def proposal_json(proposal: Proposal) -> dict[str, Any]:
    return {
        "id": proposal.id,
        "action": proposal.action,
        "description": proposal.description,
        "proposedBy": proposal.proposed_by.to_json(),
        "proposedAt": precise_time(proposal.proposed_at),
        "mode": proposal.mode,
        "quorum": proposal.quorum,
        "state": proposal.state,
        "approvals": [{"by": a.by.to_json(), "at": precise_time(a.at)} for a in proposal.approvals],
        "timeoutSeconds": proposal.timeout_seconds,
        "deadline": precise_time(proposal.deadline),
        "decidedAt": _time(proposal.decided_at),
        "decidedBy": actor_json(proposal.decided_by),
        "reason": proposal.reason,
    }


def artifact_json(artifact: Artifact) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "name": artifact.name,
        "contentType": artifact.content_type,
        "key": artifact.key,
        "attachedAt": precise_time(artifact.attached_at),
        "attachedBy": artifact.attached_by.to_json(),
    }


def incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "version": incident.version,
        "description": incident.description,
        "source": incident.source,
        "dedupKey": incident.dedup_key,
        "labels": dict(incident.labels),
        "detections": incident.detections,
        "lastDetectedAt": _time(incident.last_detected_at),
        "openedAt": precise_time(incident.opened_at),
        "openedBy": incident.opened_by.to_json(),
        "acknowledgedAt": _time(incident.acknowledged_at),
        "acknowledgedBy": actor_json(incident.acknowledged_by),
        "resolvedAt": _time(incident.resolved_at),
        "resolvedBy": actor_json(incident.resolved_by),
        "closedAt": _time(incident.closed_at),
        "closedBy": actor_json(incident.closed_by),
        "resolution": incident.resolution.to_json() if incident.resolution else None,
        "updatedAt": _time(incident.updated_at),
        "artifacts": [artifact_json(a) for a in incident.artifacts],
        "proposals": [proposal_json(p) for p in incident.proposals],
        "pendingEvents": incident.pending_events,
    }


def _url_json(url: Presigned) -> dict[str, Any]:
    return {
        "url": url.url,
        "method": url.method,
        "headers": url.headers,
        "expiresAt": precise_time(url.expires_at),
    }


# -- routes -------------------------------------------------------------------------------------------


async def open_incident(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    body = _parsed(incident_bodies.parse_open, await bodies.read_json(request, ctx))
    service = _service(ctx)
    effective = ctx.budgets.effective_for(view)
    opened = await _call(
        service.open(
            _target(view),
            _actor(principal),
            body,
            sampling_rate=effective.sampling_rate,
            halted=effective.halted,
        )
    )
    answer: dict[str, Any] = {
        "outcome": opened.outcome,
        "samplingRate": opened.sampling_rate,
        "budgetPhase": effective.budget_phase,
        "incident": incident_json(opened.incident) if opened.incident else None,
    }
    if opened.incident is None:
        return web.json_response(answer)
    headers = _etag(opened.incident)
    if opened.outcome == "opened":
        headers["Location"] = f"/v1/incidents/{opened.incident.id}"
        return web.json_response(answer, status=201, headers=headers)
    return web.json_response(answer, headers=headers)


async def list_incidents(request: web.Request, ctx: ApiContext) -> web.Response:
    _, view = admit(request, ctx, minimum="viewer")
    try:
        query = incident_bodies.parse_list_query(request.query)
    except bodies.BodyError as exc:
        raise ApiError(400, "InvalidQuery", str(exc)) from None
    found, more = await _call(
        _service(ctx).list_incidents(
            _target(view),
            statuses=query.statuses,
            severity=query.severity,
            limit=query.limit,
            cursor=query.cursor,
        )
    )
    return web.json_response(
        {"incidents": [incident_json(i) for i in found], "nextCursor": encode_cursor(more) if more else None}
    )


async def get_incident(request: web.Request, ctx: ApiContext) -> web.Response:
    _, view = admit(request, ctx, minimum="viewer")
    incident = await _call(_service(ctx).get(_target(view), _incident_id(request)))
    return web.json_response(incident_json(incident), headers=_etag(incident))


async def audit(request: web.Request, ctx: ApiContext) -> web.Response:
    _, view = admit(request, ctx, minimum="viewer")
    incident_id = _incident_id(request)
    try:
        after, limit = incident_bodies.parse_audit_query(request.query)
    except bodies.BodyError as exc:
        raise ApiError(400, "InvalidQuery", str(exc)) from None
    entries, more = await _call(
        _service(ctx).audit(_target(view), incident_id, after_version=after, limit=limit)
    )
    return web.json_response(
        {
            "incidentId": incident_id,
            "entries": entries,
            "nextAfter": entries[-1]["version"] if more and entries else None,
        }
    )


async def acknowledge(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    _parsed(incident_bodies.parse_empty, await _optional_json(request, ctx))
    incident = await _call(
        _service(ctx).acknowledge(_target(view), _actor(principal), _incident_id(request), _if_match(request))
    )
    return web.json_response(incident_json(incident), headers=_etag(incident))


async def resolve(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    resolution = _parsed(incident_bodies.parse_resolve, await bodies.read_json(request, ctx))
    incident = await _call(
        _service(ctx).resolve(
            _target(view), _actor(principal), _incident_id(request), _if_match(request), resolution
        )
    )
    return web.json_response(incident_json(incident), headers=_etag(incident))


async def close(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    resolution = _parsed(incident_bodies.parse_close, await _optional_json(request, ctx))
    incident = await _call(
        _service(ctx).close(
            _target(view), _actor(principal), _incident_id(request), _if_match(request), resolution
        )
    )
    return web.json_response(incident_json(incident), headers=_etag(incident))


async def attach(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    body = _parsed(incident_bodies.parse_attach, await bodies.read_json(request, ctx))
    incident, artifact, upload = await _call(
        _service(ctx).attach(
            _target(view),
            _actor(principal),
            _incident_id(request),
            _if_match(request),
            name=body.name,
            content_type=body.content_type,
        )
    )
    return web.json_response(
        {
            "incident": incident_json(incident),
            "artifact": artifact_json(artifact),
            "upload": _url_json(upload),
        },
        status=201,
        headers=_etag(incident),
    )


async def artifact(request: web.Request, ctx: ApiContext) -> web.Response:
    _, view = admit(request, ctx, minimum="viewer")
    incident_id = _incident_id(request)
    artifact_id = _sub_id(request, "artifact", incident_bodies.ARTIFACT_ID, "artifact")
    found, download = await _call(_service(ctx).artifact(_target(view), incident_id, artifact_id))
    return web.json_response({"artifact": artifact_json(found), "download": _url_json(download)})


def _proposal_answer(incident: Incident, proposal: Proposal, status: int = 200) -> web.Response:
    return web.json_response(
        {"incidentId": incident.id, "incidentVersion": incident.version, "proposal": proposal_json(proposal)},
        status=status,
        headers=_etag(incident),
    )


async def propose(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    body = _parsed(incident_bodies.parse_propose, await bodies.read_json(request, ctx))
    incident, proposal = await _call(
        _service(ctx).propose(
            _target(view),
            _actor(principal),
            _incident_id(request),
            _if_match(request),
            action=body.action,
            description=body.description,
            timeout_seconds=body.timeout_seconds,
        )
    )
    return _proposal_answer(incident, proposal, 201)


async def proposal(request: web.Request, ctx: ApiContext) -> web.Response:
    _, view = admit(request, ctx, minimum="viewer")
    incident_id = _incident_id(request)
    proposal_id = _sub_id(request, "proposal", incident_bodies.PROPOSAL_ID, "proposal")
    incident, found = await _call(_service(ctx).proposal(_target(view), incident_id, proposal_id))
    return _proposal_answer(incident, found)


async def approve(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    _parsed(incident_bodies.parse_empty, await _optional_json(request, ctx))
    incident_id = _incident_id(request)
    proposal_id = _sub_id(request, "proposal", incident_bodies.PROPOSAL_ID, "proposal")
    incident, found = await _call(
        _service(ctx).approve(_target(view), _actor(principal), incident_id, proposal_id, _if_match(request))
    )
    return _proposal_answer(incident, found)


async def refuse(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    reason = _parsed(incident_bodies.parse_refuse, await bodies.read_json(request, ctx))
    incident_id = _incident_id(request)
    proposal_id = _sub_id(request, "proposal", incident_bodies.PROPOSAL_ID, "proposal")
    incident, found = await _call(
        _service(ctx).refuse(
            _target(view), _actor(principal), incident_id, proposal_id, _if_match(request), reason
        )
    )
    return _proposal_answer(incident, found)
