"""``POST /v1/route``: which model to use for a task, under the policy's budget, with a reservation
of its estimated cost (api/reservations.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from incident_commander.api import bodies
from incident_commander.api.auth import authenticate, charge, require_role, require_scope
from incident_commander.api.context import ApiContext, Hold
from incident_commander.api.directory import PolicyView
from incident_commander.api.principal import Principal
from incident_commander.api.reservations import Refused, hold_json, reserve_for
from incident_commander.api.routing import (
    HALT_STATUS,
    EffectiveRoutingView,
    RouteDecision,
    RouteRefused,
    RouteRequest,
    decide_route,
)

Routed = tuple[RouteDecision, Hold | None, tuple[str, str], dict[str, Any], str]
"""A routed call: the decision, its hold (None without a budget), the history key, the history
entry's common fields and the budget phase label."""


async def route(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = authenticate(request, ctx)
    require_role(request, ctx, principal, "responder")
    effective = ctx.budgets.effective_for(view)  # once per request: it sets the cost and the answer
    # Under the budget's Throttle and Halt actions each routing request costs 1/factor tokens.
    charge(request, ctx, principal, view, cost=1.0 / max(effective.throttle_factor, 1e-6))
    body = bodies.parsed(bodies.parse_route_body, await bodies.read_json(request, ctx))
    require_scope(request, ctx, principal, principal.namespace, body.policy)
    routed = await route_and_reserve(
        ctx,
        principal,
        view,
        effective,
        RouteRequest(
            policy=body.policy,
            task_type=body.task_type,
            complexity=body.complexity,
            estimated_tokens=body.estimated_tokens,
            severity=body.severity,
        ),
        {"complexity": body.complexity},
        reserve_tokens=body.estimated_tokens,
    )
    if not isinstance(routed, tuple):  # the refusal's answer (a tuple check: Response is an ABC)
        return routed
    decision, hold, key, entry, phase = routed
    ctx.metrics.route_decided("routed", phase)
    ctx.history.record(
        key,
        "decision",
        {
            **entry,
            "model": decision.model,
            "reason": decision.reason,
            "reservation": hold.id if hold else None,
        },
    )
    return web.json_response(
        {
            "model": decision.model,
            "reason": decision.reason,
            "budgetPhase": decision.budget_phase,
            "samplingRate": decision.sampling_rate,
            "reservation": hold_json(hold),
        }
    )


async def route_and_reserve(
    ctx: ApiContext,
    principal: Principal,
    view: PolicyView,
    effective: EffectiveRoutingView,
    request: RouteRequest,
    details: dict[str, Any],
    *,
    reserve_tokens: int,
    reserve_output_tokens: int | None = None,
) -> Routed | web.Response:
    """Decide the route and hold its estimated cost; the refusal's response (counted and kept in
    the history) when the budget says no. ``/v1/route`` and the metered ``/v1/converse`` share this,
    so a call is refused the same way whichever route it takes."""
    decision = decide_route(request, effective, critical_severity=view.spec.critical_severity)
    key = (principal.namespace, principal.policy)
    entry = {
        "at": ctx.clock(),
        "client": principal.client,
        "taskType": request.task_type,
        **details,
        "severity": request.severity,
    }
    phase = decision.budget_phase or "None"
    if isinstance(decision, RouteRefused):
        ctx.metrics.route_decided("refused", phase)
        ctx.history.record(key, "refusal", {**entry, "reason": decision.reason})
        return web.json_response(
            {"error": decision.reason, "message": decision.message, "budgetPhase": decision.budget_phase},
            status=HALT_STATUS,
        )
    if view.spec.budget is None:  # nothing to hold: no coroutine for it either
        return decision, None, key, entry, phase
    try:
        hold = await reserve_for(
            ctx,
            principal,
            view,
            model=decision.model,
            task_type=request.task_type,
            severity=request.severity,
            estimated_tokens=reserve_tokens,
            estimated_output_tokens=reserve_output_tokens,
        )
    except Refused as refused:
        ctx.metrics.route_decided("refused", phase)
        ctx.history.record(key, "refusal", {**entry, "reason": "InsufficientBudget"})
        return refused.response
    return decision, hold, key, entry, phase
