"""Reservations as the routes take them: a hold on the policy's budget for the routed model.

``/v1/route`` and ``/v1/converse`` both reserve the estimated cost before answering (docs/api.md,
"Reservations"). A request that does not fit is answered 402 naming the budget, what is left, the
estimate and the phase. The policy's most severe severity is never refused by the budget (the Halt
rule): its hold is tracked without the cap, and when no hold can be taken at all (the ledger is
unreachable, the routed model has no price) it is routed without one, logged, rather than refused.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from incident_commander.api.context import ApiContext, ApiError, BudgetRefused, Hold, UsageRejected
from incident_commander.api.directory import PolicyView
from incident_commander.api.principal import Principal
from incident_commander.api.routing import HALT_STATUS
from incident_commander.budget.calc import money
from incident_commander.timestamps import precise_time

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The request does not fit: ``response`` is the 402 to answer."""

    def __init__(self, response: web.Response, refused: BudgetRefused) -> None:
        super().__init__(refused.message)
        self.response = response
        self.refused = refused


async def reserve_for(
    ctx: ApiContext,
    principal: Principal,
    view: PolicyView,
    *,
    model: str,
    task_type: str,
    severity: str | None,
    estimated_tokens: int,
    estimated_output_tokens: int | None = None,
) -> Hold | None:
    """The hold for a routed call; None when the policy has no budget (or it does not exist), or
    for the most severe severity when the ledger is unavailable. Raises Refused (402), ApiError."""
    budget = view.spec.budget
    if budget is None:
        return None
    critical = severity is not None and severity == view.spec.critical_severity
    try:
        return await ctx.budgets.reserve(
            principal.namespace,
            budget,
            model=model,
            estimated_tokens=estimated_tokens,
            estimated_output_tokens=estimated_output_tokens,
            client=f"{principal.policy}/{principal.client}",
            task_type=task_type,
            uncapped=critical,
        )
    except BudgetRefused as refused:
        raise Refused(insufficient(refused), refused) from None
    except UsageRejected as rejected:
        if critical and rejected.status in (422, 503):
            logger.warning(
                "routing severity %s for %s/%s without a reservation: %s",
                severity,
                principal.namespace,
                principal.policy,
                rejected.message,
            )
            return None
        headers = {"Retry-After": "2"} if rejected.status == 503 else None
        raise ApiError(rejected.status, rejected.reason, rejected.message, headers=headers) from None


def insufficient(refused: BudgetRefused) -> web.Response:
    return web.json_response(
        {
            "error": "InsufficientBudget",
            "message": refused.message,
            "budget": refused.budget,
            "remaining": money(refused.remaining),
            "estimate": money(refused.estimate),
            "currency": refused.currency,
            "budgetPhase": refused.phase,
        },
        status=HALT_STATUS,
    )


def hold_json(hold: Hold | None) -> dict[str, Any] | None:
    if hold is None:
        return None
    return {
        "id": hold.id,
        "amount": money(hold.amount),
        "currency": hold.currency,
        "expiresAt": precise_time(hold.expires_at),
        "capped": hold.capped,
    }
