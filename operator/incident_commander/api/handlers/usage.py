"""``POST /v1/usage``: an LLM call's token usage into the budget's ledger, once per Idempotency-Key
(and per reservation: a report naming the ``reservationId`` that ``/v1/route`` returned settles it)."""

from __future__ import annotations

from aiohttp import web

from incident_commander.api import bodies
from incident_commander.api.auth import admit, require_scope
from incident_commander.api.context import ApiContext, ApiError, UsageRejected

MAX_IDEMPOTENCY_KEY = 200


async def usage(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="responder")
    body = bodies.parsed(bodies.parse_usage_body, await bodies.read_json(request, ctx))
    require_scope(request, ctx, principal, principal.namespace, body.policy)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400,
            "InvalidIdempotencyKey",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters long",
        )
    budget = view.spec.budget
    if budget is None:
        raise ApiError(
            409, "NoBudget", f"IncidentPolicy {view.name} has no budgetRef: usage has nowhere to go"
        )
    try:
        recorded = await ctx.budgets.record(
            principal.namespace,
            budget,
            model=body.model,
            input_tokens=body.input_tokens,
            output_tokens=body.output_tokens,
            incident_id=body.incident_id,
            idempotency_key=idempotency_key,
            reported_at=ctx.clock(),
            reservation_id=body.reservation_id,
            client=f"{principal.policy}/{principal.client}",
            task_type=body.task_type,
        )
    except UsageRejected as rejected:
        headers = {"Retry-After": "5"} if rejected.status == 503 else None
        raise ApiError(rejected.status, rejected.reason, rejected.message, headers=headers) from None
    ctx.history.record(
        (principal.namespace, principal.policy),
        "usage",
        {"at": ctx.clock(), "client": principal.client, "model": body.model, "cost": recorded.get("cost")},
    )
    status = 200 if recorded.get("duplicate") else 201
    return web.json_response({"budget": budget, **recorded}, status=status)
