"""Connects the API to the budget engine: effective routing, usage recording, budget state.

The API modules depend only on small protocols (app.UsageSink, app.BudgetView,
routing.EffectiveRoutingView); this adapter is the one place that knows the
budget engine's types, so each side can be tested without the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from incident_commander.api.context import BudgetRefused, Hold, UsageRejected
from incident_commander.api.directory import PolicyView
from incident_commander.budget import breakdown
from incident_commander.budget.calc import display, money
from incident_commander.budget.enforcement import EffectiveRouting
from incident_commander.budget.ledger import reservation_period
from incident_commander.budget.model import (
    BudgetNotReady,
    BudgetState,
    IdempotencyConflict,
    InsufficientBudget,
    Reservation,
    ReservationRequest,
    UnknownModel,
    UsageRecorded,
    UsageReport,
)
from incident_commander.kinds.incidentpolicy.spec import PolicySpec, effective_routing_for
from incident_commander.timestamps import precise_time


class BudgetSource(Protocol):
    """What the API needs of the BudgetPolicy controller (kinds/budgetpolicy)."""

    def state(self, namespace: str, name: str) -> BudgetState | None: ...

    async def record_usage(self, namespace: str, name: str, report: UsageReport) -> UsageRecorded: ...

    async def reserve(self, namespace: str, name: str, request: ReservationRequest) -> Reservation | None: ...

    async def release(self, namespace: str, name: str, reservation: Reservation) -> bool: ...


EFFECTIVE_CACHE_POLICIES = 10_000
"""Policies whose last effective routing is kept; past that the cache starts again (it only saves work)."""


class BudgetBridge:
    def __init__(self, budgets: BudgetSource | None) -> None:
        self._budgets = budgets
        self._effective: dict[tuple[str, str], tuple[PolicySpec, BudgetState | None, EffectiveRouting]] = {}

    def effective_for(self, view: PolicyView) -> EffectiveRouting:
        """The policy's routing under its budget. Computed again only when the policy's spec or
        its budget's state is a new object (both are immutable and replaced on change): every
        routing request asks, and they rarely change."""
        state = None
        if view.spec.budget is not None and self._budgets is not None:
            state = self._budgets.state(view.namespace, view.spec.budget)
        key = (view.namespace, view.name)
        cached = self._effective.get(key)
        if cached is not None and cached[0] is view.spec and cached[1] is state:
            return cached[2]
        effective = effective_routing_for(view.spec, state)
        if len(self._effective) >= EFFECTIVE_CACHE_POLICIES:
            self._effective.clear()
        self._effective[key] = (view.spec, state, effective)
        return effective

    async def record(
        self,
        namespace: str,
        budget: str,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        incident_id: str | None,
        idempotency_key: str | None,
        reported_at: datetime,
        reservation_id: str | None = None,
        client: str | None = None,
        task_type: str | None = None,
    ) -> Mapping[str, Any]:
        if self._budgets is None:
            raise UsageRejected(503, "LedgerUnavailable", "the budget engine is not running")
        report = UsageReport(
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            incident_id=incident_id,
            idempotency_key=idempotency_key,
            reported_at=reported_at,
            reservation_id=reservation_id,
            client=client,
            task_type=task_type,
        )
        try:
            recorded = await self._budgets.record_usage(namespace, budget, report)
        except UnknownModel as unknown:
            raise UsageRejected(422, "UnknownModel", str(unknown)) from None
        except IdempotencyConflict as conflict:
            raise UsageRejected(409, "IdempotencyKeyReused", str(conflict)) from None
        except BudgetNotReady as not_ready:
            raise UsageRejected(503, not_ready.reason, not_ready.message) from None
        except ValueError as invalid:  # a reservation id this API did not issue
            raise UsageRejected(400, "InvalidBody", str(invalid)) from None
        answer: dict[str, Any] = {
            "cost": money(recorded.cost),
            "currency": recorded.currency,
            "periodStart": precise_time(recorded.period_start),
            "duplicate": recorded.duplicate,
        }
        if reservation_id is not None:
            answer["reservation"] = {
                "id": reservation_id,
                "outcome": recorded.reservation or "expired",
                "released": money(recorded.released) if recorded.released is not None else None,
            }
        return answer

    async def reserve(
        self,
        namespace: str,
        budget: str,
        *,
        model: str,
        estimated_tokens: int = 0,
        estimated_output_tokens: int | None = None,
        client: str | None = None,
        task_type: str | None = None,
        uncapped: bool = False,
    ) -> Hold | None:
        if self._budgets is None:
            raise UsageRejected(503, "LedgerUnavailable", "the budget engine is not running")
        request = ReservationRequest(
            model=model,
            estimated_tokens=estimated_tokens,
            estimated_output_tokens=estimated_output_tokens,
            client=client,
            task_type=task_type,
            uncapped=uncapped,
        )
        try:
            reservation = await self._budgets.reserve(namespace, budget, request)
        except InsufficientBudget as short:
            raise BudgetRefused(
                budget=short.budget,
                remaining=short.remaining,
                estimate=short.estimate,
                currency=short.currency,
                phase=short.phase,
                message=(
                    f"BudgetPolicy {short.budget} has {money(short.remaining)} {short.currency} left "
                    f"before it halts; this request is estimated at {money(short.estimate)} {short.currency}"
                ),
            ) from None
        except UnknownModel as unknown:
            raise UsageRejected(422, "UnknownModel", str(unknown)) from None
        except BudgetNotReady as not_ready:
            raise UsageRejected(503, not_ready.reason, not_ready.message) from None
        if reservation is None:
            return None
        return Hold(
            id=reservation.id,
            amount=reservation.amount,
            currency=reservation.currency,
            expires_at=reservation.expires_at,
            capped=reservation.capped,
        )

    async def release(self, namespace: str, budget: str, hold: Hold) -> None:
        if self._budgets is None:
            return
        period = reservation_period(hold.id)
        if period is None:
            return
        reservation = Reservation(
            id=hold.id,
            amount=hold.amount,
            currency=hold.currency,
            period_start=period,
            expires_at=hold.expires_at,
            capped=hold.capped,
        )
        with contextlib.suppress(BudgetNotReady):  # else it expires by itself (spec.reservationTTL)
            await self._budgets.release(namespace, budget, reservation)

    def budget_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        state = self._budgets.state(namespace, name) if self._budgets is not None else None
        if state is None:
            return None
        return {
            "phase": state.phase,
            "activeAction": state.active_action,
            "enforcedAction": state.enforced_action,
            "enforcement": state.enforcement,
            "utilization": display(state.utilization),
            "total": money(state.total),
            "limit": money(state.limit),
            "reserved": money(state.reserved),
            "currency": state.currency,
            "periodStart": precise_time(state.period_start),
            "periodEnd": precise_time(state.period_end),
            **breakdown.as_json(state.breakdown),
        }
