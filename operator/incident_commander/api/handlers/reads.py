"""The read routes: ``GET /v1/policies/{namespace}/{name}``, ``/v1/summary`` and ``/v1/history``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp import web

from incident_commander.api.auth import admit, require_scope
from incident_commander.api.context import ApiContext, ApiError
from incident_commander.api.directory import PolicyView
from incident_commander.api.routing import EffectiveRoutingView
from incident_commander.durations import InvalidDuration, format_duration, parse_duration
from incident_commander.incidents.model import IncidentError
from incident_commander.incidents.service import Target
from incident_commander.timestamps import precise_time

HISTORY_LIMIT = 100
SUMMARY_WINDOW = timedelta(hours=24)
MAX_SUMMARY_WINDOW = timedelta(days=30)
SUMMARY_TIMEOUT = 3.0
"""Seconds /v1/summary waits for the incident figures (two index queries) before answering without them."""


async def policy(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, _ = admit(request, ctx, minimum="viewer")
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    require_scope(request, ctx, principal, namespace, name)
    view = ctx.directory.policy(namespace, name)
    if view is None:
        raise ApiError(404, "NotFound", f"IncidentPolicy {namespace}/{name} not found")
    index = ctx.keyring.index((namespace, name))
    now = ctx.clock()
    keys = [
        {
            "client": e.client,
            "role": e.role,
            "keyId": e.key_id,
            "state": e.state if e.state != "Rotating" or e.valid_at(now) else "Expired",
            "issuedAt": precise_time(e.issued_at),
            "expiresAt": precise_time(e.expires_at),
        }
        for e in (index.entries if index else ())
        if e.state != "Pending"
    ]
    limit = view.spec.rate_limit
    return web.json_response(
        {
            "namespace": namespace,
            "name": name,
            "effectiveRouting": effective_json(ctx.budgets.effective_for(view)),
            "budget": budget_json(ctx, namespace, view.spec.budget),
            "rateLimit": {"requestsPerMinute": limit.per_minute, "burst": limit.burst},
            "apiKeys": keys,
        }
    )


async def summary(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="viewer")
    window = _window(request)
    key = (principal.namespace, principal.policy)
    index = ctx.keyring.index(key)
    states: dict[str, int] = {"Active": 0, "Rotating": 0, "Revoked": 0}
    now = ctx.clock()
    for entry in index.entries if index else ():
        if entry.state == "Rotating" and not entry.valid_at(now):
            states["Revoked"] += 1
        elif entry.state in states:
            states[entry.state] += 1
    counts = ctx.history.counts(key)
    return web.json_response(
        {
            "namespace": principal.namespace,
            "policy": principal.policy,
            "objects": ctx.directory.counts(principal.namespace),
            "apiKeys": states,
            "budget": budget_json(ctx, principal.namespace, view.spec.budget),
            "routing": {"decisions": counts.get("decision", 0), "refusals": counts.get("refusal", 0)},
            "usageReports": counts.get("usage", 0),
            "recent": ctx.history.recent(key, 10),
            "incidents": await incident_summary(ctx, view, window),
        }
    )


def _window(request: web.Request) -> timedelta:
    unknown = sorted(set(request.query) - {"window"})
    if unknown:
        raise ApiError(400, "InvalidQuery", f"unknown query parameter(s): {', '.join(unknown)[:200]}")
    raw = request.query.get("window")
    if raw is None:
        return SUMMARY_WINDOW
    try:
        window = parse_duration(raw)
    except InvalidDuration:
        window = timedelta(0)
    if not timedelta(minutes=1) <= window <= MAX_SUMMARY_WINDOW:
        raise ApiError(400, "InvalidQuery", "window must be a duration from 1m to 720h, such as 24h")
    return window


async def incident_summary(ctx: ApiContext, view: PolicyView, window: timedelta) -> dict[str, Any]:
    """MTTR p50/p90 per severity over the window and active incidents per severity, from the
    policy's table (shared by every replica); why not, when the table cannot be read."""
    answer: dict[str, Any] = {"window": format_duration(window)}
    if ctx.incidents is None:
        return {**answer, "error": "IncidentsUnavailable", "message": "this replica serves no incidents"}
    target = Target(namespace=view.namespace, name=view.name, spec=view.spec)
    try:
        async with asyncio.timeout(SUMMARY_TIMEOUT):
            found = await ctx.incidents.summary(target, window)
    except IncidentError as failure:
        return {**answer, "error": failure.reason, "message": failure.message}
    except TimeoutError:
        # The rest of the summary is from memory: it does not wait for a slow table.
        message = f"the incident table did not answer within {SUMMARY_TIMEOUT:g}s"
        return {**answer, "error": "Timeout", "message": message}
    return {**answer, **found}


async def history(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, _ = admit(request, ctx, minimum="viewer")
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_LIMIT:
        raise ApiError(400, "InvalidQuery", f"limit must be an integer from 1 to {HISTORY_LIMIT}")
    key = (principal.namespace, principal.policy)
    return web.json_response(
        {"namespace": key[0], "policy": key[1], "entries": ctx.history.recent(key, int(raw))}
    )


def effective_json(routing: EffectiveRoutingView) -> dict[str, Any]:
    return {
        "mode": routing.mode,
        "simpleModel": routing.simple_model,
        "complexModel": routing.complex_model,
        "complexityThreshold": routing.complexity_threshold,
        "samplingRate": routing.sampling_rate,
        "budgetPhase": routing.budget_phase,
    }


def budget_json(ctx: ApiContext, namespace: str, budget: str | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"name": budget, **(ctx.budgets.budget_status(namespace, budget) or {"phase": None})}
