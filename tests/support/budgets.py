"""A budget engine for API tests that need none: routing from the policy's spec alone, no usage."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incident_commander.api.context import Hold, UsageRejected
from incident_commander.api.directory import PolicyView
from incident_commander.budget.enforcement import EffectiveRouting
from incident_commander.budget.model import BudgetState
from incident_commander.kinds.incidentpolicy.spec import effective_routing_for


class NoBudgets:
    """Every policy routes as its spec says (no budget state); usage has nowhere to go (503)."""

    def __init__(self, state: BudgetState | None = None) -> None:
        self.state = state

    def effective_for(self, view: PolicyView) -> EffectiveRouting:
        return effective_routing_for(view.spec, self.state)

    async def record(self, namespace: str, budget: str, **_: Any) -> Mapping[str, Any]:
        raise UsageRejected(503, "LedgerUnavailable", "no budget engine in this test")

    async def reserve(self, namespace: str, budget: str, **_: Any) -> Hold | None:
        return None  # no budget engine: nothing to hold

    async def release(self, namespace: str, budget: str, hold: Hold) -> None:
        return None

    def budget_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return None


def _unused(_: datetime) -> None:
    """(keeps the signature types importable for readers; nothing calls it)"""
