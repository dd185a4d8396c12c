"""AwsConnection handlers.

Skeleton reconciliation: the spec has passed admission (schema and CEL), so the
connection is accepted. Client building and service probes replace this
assessment in the AwsConnection issue.
"""

from __future__ import annotations

import kopf

from incident_commander.conditions import Condition
from incident_commander.kinds.reconciliation import Assessment, KindContext, register_reconciler

KIND = "AwsConnection"
PLURAL = "awsconnections"


def assess(body: kopf.Body) -> Assessment:
    """Accept the admitted spec; Ready says which generation was taken in."""
    spec = body.get("spec", {})
    services = ", ".join(spec.get("services", ["sts"]))
    return Assessment(
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Reconciled",
                message=f"connection to {spec.get('region')} for {services} accepted",
            )
        ]
    )


def register(registry: kopf.OperatorRegistry, ctx: KindContext) -> None:
    """Attach this kind's handlers to the operator's registry."""
    register_reconciler(registry, kind=KIND, plural=PLURAL, assess=assess, ctx=ctx)
