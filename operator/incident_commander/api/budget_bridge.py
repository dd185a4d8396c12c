"""Connects the API to the budget engine: effective routing, usage recording, budget state.

The API modules depend only on small protocols (app.UsageSink, app.BudgetView,
routing.EffectiveRoutingView); this adapter is the one place that knows the
budget engine's types, so each side can be tested without the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from incident_commander.api.context import UsageRejected
from incident_commander.api.directory import PolicyView
from incident_commander.budget.enforcement import EffectiveRouting
from incident_commander.budget.model import (
    BudgetNotReady,
    BudgetState,
    UnknownModel,
    UsageRecorded,
    UsageReport,
)
from incident_commander.kinds.incidentpolicy.spec import effective_routing_for
from incident_commander.timestamps import precise_time


class BudgetSource(Protocol):
    """What the API needs of the BudgetPolicy controller (kinds/budgetpolicy)."""

    def state(self, namespace: str, name: str) -> BudgetState | None: ...

    async def record_usage(self, namespace: str, name: str, report: UsageReport) -> UsageRecorded: ...


class BudgetBridge:
    def __init__(self, budgets: BudgetSource | None) -> None:
        self._budgets = budgets

    def effective_for(self, view: PolicyView) -> EffectiveRouting:
        state = None
        if view.spec.budget is not None and self._budgets is not None:
            state = self._budgets.state(view.namespace, view.spec.budget)
        return effective_routing_for(view.spec, state)

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
        )
        try:
            recorded = await self._budgets.record_usage(namespace, budget, report)
        except UnknownModel as unknown:
            raise UsageRejected(422, "UnknownModel", str(unknown)) from None
        except BudgetNotReady as not_ready:
            raise UsageRejected(503, not_ready.reason, not_ready.message) from None
        return {
            "cost": str(recorded.cost),
            "currency": recorded.currency,
            "periodStart": precise_time(recorded.period_start),
            "duplicate": recorded.duplicate,
        }

    def budget_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        state = self._budgets.state(namespace, name) if self._budgets is not None else None
        if state is None:
            return None
        return {
            "phase": state.phase,
            "activeAction": state.active_action,
            "enforcedAction": state.enforced_action,
            "enforcement": state.enforcement,
            "utilization": str(state.utilization),
            "total": str(state.total),
            "limit": str(state.limit),
            "currency": state.currency,
            "periodStart": precise_time(state.period_start),
            "periodEnd": precise_time(state.period_end),
        }
