"""IncidentPolicy handlers.

Skeleton reconciliation: accepts the admitted spec and reports the sampling rate
in force (the spec's, until budgets can lower it). Storage provisioning and
credential issuance replace this assessment in the IncidentPolicy issue.
"""

from __future__ import annotations

import kopf

from incident_commander.conditions import Condition
from incident_commander.kinds.reconciliation import Assessment, KindContext, register_reconciler

KIND = "IncidentPolicy"
PLURAL = "incidentpolicies"


def assess(body: kopf.Body) -> Assessment:
    """Accept the admitted spec; without budget enforcement the spec's routing is in force."""
    spec = body.get("spec", {})
    routing = spec.get("modelRouting", {})
    clients = len(spec.get("apiClients", []))
    return Assessment(
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Reconciled",
                message=f"policy with {clients} API client(s) accepted",
            )
        ],
        fields={
            "effectiveModelRouting": {
                "mode": "Normal",
                "simpleModel": routing.get("simpleModel"),
                "complexModel": routing.get("complexModel"),
                "complexityThreshold": routing.get("complexityThreshold", 0.7),
            },
            "effectiveSamplingRate": spec.get("sampling", {}).get("detectionRate", 1.0),
        },
    )


def register(registry: kopf.OperatorRegistry, ctx: KindContext) -> None:
    """Attach this kind's handlers to the operator's registry."""
    register_reconciler(registry, kind=KIND, plural=PLURAL, assess=assess, ctx=ctx)
