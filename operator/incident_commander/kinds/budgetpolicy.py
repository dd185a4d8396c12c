"""BudgetPolicy handlers: kopf watch events feed the BudgetRegistry, which evaluates and enforces.

Plain watch-event handlers, like the other kinds: the registry compares generations and the
break-glass annotation itself, so kopf writes no progress annotations and adds no finalizer
(nothing in AWS belongs to one budget; the shared ledger table is kept).
"""

from __future__ import annotations

from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.budget.registry import PLURAL, BudgetRegistry
from incident_commander.relist import forget_vanished

KIND = "BudgetPolicy"


def register(registry: kopf.OperatorRegistry, budgets: BudgetRegistry) -> None:
    """Attach this kind's handlers to the operator's registry."""

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    @forget_vanished(PLURAL)
    async def budget_event(type: str, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        if type == "DELETED":
            budgets.forget(str(namespace), name)
        else:
            budgets.observe(body)
