"""``POST /v1/converse`` and ``/v1/converse/stream``: a metered Bedrock Converse call.

Route (as ``/v1/route`` would), reserve the call's upper cost (the input estimate at the input
price, ``maxTokens`` at the output price), call Bedrock through the policy's AwsConnection with the
routed model, then settle the reservation with the token counts Bedrock reports: the caller reports
nothing. A failed call releases the reservation. The call and its settlement run to the end even
when the caller goes away (the model is billed either way), so no usage is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from incident_commander.api import bodies
from incident_commander.api.auth import authenticate, charge, require_role, require_scope
from incident_commander.api.context import (
    ApiContext,
    ApiError,
    Hold,
    ModelAnswer,
    ModelCallFailed,
    UsageRejected,
)
from incident_commander.api.directory import PolicyView
from incident_commander.api.handlers.routing import route_and_reserve
from incident_commander.api.principal import Principal
from incident_commander.api.reservations import hold_json
from incident_commander.api.routing import (
    RouteDecision,
    RouteRequest,
)

logger = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 3
"""Tries to record a finished call's usage (idempotent: keyed by the reservation) before the answer
says ``recorded: false`` and leaves the report to the caller."""


async def converse(request: web.Request, ctx: ApiContext) -> web.Response:
    call = await _prepare(request, ctx)
    if isinstance(call, web.Response):
        return call
    task = asyncio.ensure_future(call.run_converse())
    # Shielded: a caller that disconnects does not stop the call or its settlement.
    answer = await asyncio.shield(task)
    return web.json_response(answer)


async def converse_stream(request: web.Request, ctx: ApiContext) -> web.StreamResponse:
    call = await _prepare(request, ctx)
    if isinstance(call, web.Response):
        return call
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    task = asyncio.ensure_future(call.run_stream(request, response))
    await asyncio.shield(task)
    return response


class _Call:
    """One metered call: what was decided and reserved, and how to settle it."""

    def __init__(
        self,
        ctx: ApiContext,
        principal: Principal,
        view: PolicyView,
        body: bodies.ConverseBody,
        decision: RouteDecision,
        hold: Hold,
    ) -> None:
        self.ctx = ctx
        self.principal = principal
        self.view = view
        self.body = body
        self.decision = decision
        self.hold = hold
        self.budget = view.spec.budget or ""

    @property
    def bedrock_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"messages": self.body.messages, "inferenceConfig": self.body.inference}
        if self.body.system:
            request["system"] = self.body.system
        return request

    async def run_converse(self) -> dict[str, Any]:
        models = self.ctx.models
        assert models is not None
        try:
            answer = await models.converse(
                self.principal.namespace, self.view.spec.connection, self.decision.model, self.bedrock_request
            )
        except ModelCallFailed as failed:
            await self.ctx.budgets.release(self.principal.namespace, self.budget, self.hold)
            raise _api_error(failed) from None
        except BaseException:
            await self.ctx.budgets.release(self.principal.namespace, self.budget, self.hold)
            raise
        settled = await self.settle(answer.input_tokens, answer.output_tokens)
        return {
            "model": self.decision.model,
            "reason": self.decision.reason,
            "budgetPhase": self.decision.budget_phase,
            "output": answer.output,
            "stopReason": answer.stop_reason,
            "usage": _usage(answer),
            **settled,
        }

    async def run_stream(self, request: web.Request, response: web.StreamResponse) -> None:
        models = self.ctx.models
        assert models is not None
        listening = True

        async def send(event: str, data: Mapping[str, Any]) -> None:
            nonlocal listening
            if not listening:
                return
            try:
                await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            except (ConnectionError, RuntimeError):
                listening = False  # the caller left; the stream is still read to its usage

        usage: Mapping[str, Any] | None = None
        stream = models.converse_stream(
            self.principal.namespace, self.view.spec.connection, self.decision.model, self.bedrock_request
        )
        try:
            async for event in stream:
                if not response.prepared:
                    await response.prepare(request)
                    await send("route", {**self._route_fields(), "reservation": hold_json(self.hold)})
                if "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"].get("delta") or {}
                    if "text" in delta:
                        await send("delta", {"text": delta["text"]})
                elif "messageStop" in event:
                    await send("stop", {"stopReason": event["messageStop"].get("stopReason")})
                elif "metadata" in event:
                    usage = event["metadata"].get("usage")
        except ModelCallFailed as failed:
            await self.ctx.budgets.release(self.principal.namespace, self.budget, self.hold)
            if not response.prepared:
                raise _api_error(failed) from None
            await send("error", {"error": failed.reason, "message": failed.message})
            await _end(response, listening)
            return
        except BaseException:
            await self.ctx.budgets.release(self.principal.namespace, self.budget, self.hold)
            raise
        if not response.prepared:
            await response.prepare(request)
            await send("route", {**self._route_fields(), "reservation": hold_json(self.hold)})
        if (
            not usage
            or not isinstance(usage.get("inputTokens"), int)
            or not isinstance(usage.get("outputTokens"), int)
        ):
            await self.ctx.budgets.release(self.principal.namespace, self.budget, self.hold)
            await send(
                "error", {"error": "ModelCallFailed", "message": "the stream ended without token usage"}
            )
            await _end(response, listening)
            return
        settled = await self.settle(usage["inputTokens"], usage["outputTokens"])
        await send(
            "usage",
            {
                "usage": {
                    "inputTokens": usage["inputTokens"],
                    "outputTokens": usage["outputTokens"],
                    "totalTokens": usage["inputTokens"] + usage["outputTokens"],
                },
                **settled,
            },
        )
        await _end(response, listening)

    def _route_fields(self) -> dict[str, Any]:
        return {
            "model": self.decision.model,
            "reason": self.decision.reason,
            "budgetPhase": self.decision.budget_phase,
        }

    async def settle(self, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        """Record the call's usage against its reservation; retried, as it is idempotent."""
        problem = ""
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                recorded = await self.ctx.budgets.record(
                    self.principal.namespace,
                    self.budget,
                    model=self.decision.model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    incident_id=self.body.incident_id,
                    idempotency_key=None,
                    reported_at=self.ctx.clock(),
                    reservation_id=self.hold.id,
                    client=f"{self.principal.policy}/{self.principal.client}",
                    task_type=self.body.task_type,
                )
            except UsageRejected as rejected:
                problem = f"{rejected.reason}: {rejected.message}"
                if rejected.status != 503:
                    break
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            self.ctx.history.record(
                (self.principal.namespace, self.principal.policy),
                "usage",
                {
                    "at": self.ctx.clock(),
                    "client": self.principal.client,
                    "model": self.decision.model,
                    "cost": recorded.get("cost"),
                },
            )
            return {
                "cost": recorded.get("cost"),
                "currency": recorded.get("currency"),
                "recorded": True,
                "reservation": {**(hold_json(self.hold) or {}), **(recorded.get("reservation") or {})},
            }
        logger.error(
            "usage of a Bedrock call for %s/%s could not be recorded (%s); the caller is asked to "
            "report it with reservation %s",
            self.principal.namespace,
            self.principal.policy,
            problem,
            self.hold.id,
        )
        return {
            "cost": None,
            "currency": self.hold.currency,
            "recorded": False,
            "recordError": problem,
            "reservation": hold_json(self.hold),
        }


async def _prepare(request: web.Request, ctx: ApiContext) -> _Call | web.Response:
    """Admission, routing and the reservation; a response when the call must not happen."""
    principal, view = authenticate(request, ctx)
    require_role(request, ctx, principal, "responder")
    effective = ctx.budgets.effective_for(view)
    charge(request, ctx, principal, view, cost=1.0 / max(effective.throttle_factor, 1e-6))
    body = bodies.parsed(bodies.parse_converse_body, await bodies.read_json(request, ctx))
    require_scope(request, ctx, principal, principal.namespace, body.policy)
    if view.spec.budget is None:
        raise ApiError(
            409, "NoBudget", f"IncidentPolicy {view.name} has no budgetRef: a metered call needs a budget"
        )
    if ctx.models is None:
        raise ApiError(
            503, "ModelsUnavailable", "this operator makes no model calls", headers={"Retry-After": "5"}
        )
    routed = await route_and_reserve(
        ctx,
        principal,
        view,
        effective,
        RouteRequest(
            policy=body.policy,
            task_type=body.task_type,
            complexity=body.complexity,
            estimated_tokens=body.estimated_input_tokens + body.max_tokens,
            severity=body.severity,
        ),
        {},
        reserve_tokens=body.estimated_input_tokens,
        reserve_output_tokens=body.max_tokens,
    )
    if isinstance(routed, web.Response):
        return routed
    decision, hold, key, entry, phase = routed
    if hold is None:
        raise ApiError(
            503,
            "BudgetNotAvailable",
            f"BudgetPolicy {view.spec.budget} cannot take a reservation now: the call would not be metered",
            headers={"Retry-After": "5"},
        )
    ctx.metrics.route_decided("routed", phase)
    ctx.history.record(
        key, "decision", {**entry, "model": decision.model, "reason": decision.reason, "reservation": hold.id}
    )
    return _Call(ctx, principal, view, body, decision, hold)


def _usage(answer: ModelAnswer) -> dict[str, int]:
    return {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens + answer.output_tokens,
    }


def _api_error(failed: ModelCallFailed) -> ApiError:
    headers = {"Retry-After": str(failed.retry_after)} if failed.retry_after else None
    return ApiError(failed.status, failed.reason, failed.message, headers=headers)


async def _end(response: web.StreamResponse, listening: bool) -> None:
    if listening:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
