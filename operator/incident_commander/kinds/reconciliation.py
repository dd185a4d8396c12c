"""The plumbing every kind shares: status writes, transition Events, metrics.

Kind modules decide (pure functions returning conditions and status fields);
this module acts on kopf's patch and posts Events, so the three kinds behave
the same way towards users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition
from incident_commander.metrics import OperatorMetrics
from incident_commander.status import StatusPlan, plan_status

logger = logging.getLogger(__name__)

ABNORMAL_WHEN_TRUE = frozenset({"Degraded", "BudgetExceeded"})
"""Condition types whose True status is bad news (a Warning Event)."""


@dataclass(frozen=True, kw_only=True)
class Assessment:
    """What a reconciliation found: conditions plus the kind's own status fields."""

    conditions: list[Condition]
    fields: Mapping[str, Any] = field(default_factory=dict)


Assess = Callable[[kopf.Body], Assessment]


@dataclass(frozen=True, kw_only=True)
class KindContext:
    """Collaborators handed to every kind's handlers instead of module globals."""

    metrics: OperatorMetrics
    clock: Clock = system_clock


@dataclass(frozen=True, kw_only=True)
class EventSpec:
    """A Kubernetes Event to post about the reconciled object."""

    type: str
    reason: str
    message: str


def transition_events(plan: StatusPlan) -> list[EventSpec]:
    """One Event per condition flip. A condition's first appearance is news only for
    Ready, or when it appears in its abnormal state; a healthy Degraded=False is not."""
    events = []
    for transition in plan.transitions:
        healthy = (transition.current == "True") != (transition.type in ABNORMAL_WHEN_TRUE)
        if transition.previous is None and transition.type != "Ready" and healthy:
            continue
        events.append(
            EventSpec(
                type="Normal" if healthy else "Warning",
                reason=transition.reason,
                message=f"{transition.type}={transition.current}: {transition.message}",
            )
        )
    return events


def write_status(
    *, body: kopf.Body, patch: kopf.Patch, assessment: Assessment, ctx: KindContext
) -> StatusPlan:
    """Stage the status change on kopf's patch (nothing if unchanged); post an Event per flip."""
    plan = plan_status(
        current=body.get("status"),
        generation=int(body.meta.get("generation") or 0),
        conditions=assessment.conditions,
        fields=assessment.fields,
        now=ctx.clock(),
    )
    if plan.patch:
        for key, value in plan.patch.items():
            patch.status[key] = value
    for event in transition_events(plan):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    return plan


def register_reconciler(
    registry: kopf.OperatorRegistry, *, kind: str, plural: str, assess: Assess, ctx: KindContext
) -> None:
    """Reconcile on create, on every spec change and when the operator resumes."""

    def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            write_status(body=body, patch=patch, assessment=assess(body), ctx=ctx)
            outcome = "success"
        finally:
            ctx.metrics.reconciliations.labels(kind=kind, outcome=outcome).inc()
            ctx.metrics.reconcile_duration.labels(kind=kind).observe(time.perf_counter() - started)

    handler_id = f"reconcile-{plural}"
    for cause in (kopf.on.create, kopf.on.update, kopf.on.resume):
        cause(API_GROUP, API_VERSION, plural, registry=registry, id=handler_id)(reconcile)
