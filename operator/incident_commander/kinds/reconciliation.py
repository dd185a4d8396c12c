"""The plumbing every kind shares: status writes and transition Events.

Kind modules decide (pure functions returning conditions and status fields);
``apply_status`` acts: it patches the status subresource only when the planned
status differs from the stored one, and posts one Event per condition flip, so
the three kinds behave the same way towards users.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from incident_commander.conditions import Condition
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.status import StatusPlan, plan_status

logger = logging.getLogger(__name__)

ABNORMAL_WHEN_TRUE = frozenset({"Degraded", "BudgetExceeded"})
"""Condition types whose True status is bad news (a Warning Event)."""


@dataclass(frozen=True, kw_only=True)
class Assessment:
    """What a reconciliation found: conditions plus the kind's own status fields."""

    conditions: list[Condition]
    fields: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True, kw_only=True)
class StatusWrite:
    """What ``apply_status`` did: the plan, and the status now stored (None: the object is gone)."""

    plan: StatusPlan
    stored: dict[str, Any] | None


async def apply_status(
    kube: KubeApi,
    ref: ObjectRef,
    *,
    current: Mapping[str, Any] | None,
    generation: int,
    assessment: Assessment,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    force: bool = False,
) -> StatusWrite:
    """Patch the status when the plan differs from ``current`` (or ``force``; ``extra`` fields ride
    along with a write but never cause one), then post an Event per condition flip."""
    plan = plan_status(
        current=current,
        generation=generation,
        conditions=assessment.conditions,
        fields=assessment.fields,
        now=now,
    )
    stored: dict[str, Any] | None = dict(current or {})
    if plan.patch or force:
        stored = await asyncio.to_thread(kube.patch_status, ref, {**(plan.patch or {}), **(extra or {})})
        if stored is None:
            return StatusWrite(plan=plan, stored=None)
    for event in transition_events(plan):
        await asyncio.to_thread(
            kube.post_event, ref, type_=event.type, reason=event.reason, message=event.message, now=now
        )
    return StatusWrite(plan=plan, stored=stored)
