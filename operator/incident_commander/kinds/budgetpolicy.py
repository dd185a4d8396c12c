"""BudgetPolicy handlers.

Skeleton reconciliation: accepts the admitted spec. Spend evaluation, thresholds
and enforcement replace this assessment in the BudgetPolicy issue.
"""

from __future__ import annotations

import kopf

from incident_commander.conditions import Condition
from incident_commander.kinds.reconciliation import Assessment, KindContext, register_reconciler

KIND = "BudgetPolicy"
PLURAL = "budgetpolicies"


def assess(body: kopf.Body) -> Assessment:
    """Accept the admitted spec; Ready says which limit was taken in."""
    spec = body.get("spec", {})
    limit = spec.get("limit", {})
    return Assessment(
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Reconciled",
                message=(
                    f"{spec.get('period', 'Monthly').lower()} limit of {limit.get('amount')} "
                    f"{limit.get('currency', 'USD')} accepted"
                ),
            )
        ]
    )


def register(registry: kopf.OperatorRegistry, ctx: KindContext) -> None:
    """Attach this kind's handlers to the operator's registry."""
    register_reconciler(registry, kind=KIND, plural=PLURAL, assess=assess, ctx=ctx)
