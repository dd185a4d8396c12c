"""Turns a reconciliation's findings into a status patch (or into nothing), and writes it.

Every kind writes its status through here so that all of them honour the same
rules: ``observedGeneration`` is stamped, conditions keep their transition times,
an unchanged status produces no API write at all, and one Event is posted per
cause of a condition flip. Kinds decide (pure functions returning an ``Assessment``);
``apply_status`` acts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from incident_commander.conditions import Condition, merge_conditions
from incident_commander.kube_api import KubeApi, ObjectRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Transition:
    """A condition whose status flipped, worth an Event."""

    type: str
    previous: str | None
    current: str
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class StatusPlan:
    """What to write to ``status`` (``None`` means leave it alone) and which conditions flipped."""

    patch: dict[str, Any] | None
    transitions: list[Transition] = field(default_factory=list)


def plan_status(
    *,
    current: Mapping[str, Any] | None,
    generation: int,
    conditions: Iterable[Condition],
    fields: Mapping[str, Any] | None = None,
    now: datetime,
) -> StatusPlan:
    """Compare the desired status with the current one.

    ``fields`` are the kind's own top-level status fields; a value of ``None``
    removes the field. The returned patch is a JSON merge patch for ``status``.
    """
    current = current or {}
    desired_conditions = list(conditions)
    merged = merge_conditions(current.get("conditions"), desired_conditions, generation=generation, now=now)

    patch: dict[str, Any] = {}
    if current.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    if _without_times(merged) != _without_times(current.get("conditions") or []):
        patch["conditions"] = merged
    for key, value in (fields or {}).items():
        if current.get(key) != value:
            patch[key] = value

    previous_by_type = {c.get("type"): c for c in current.get("conditions") or []}
    transitions = [
        Transition(
            type=cond.type,
            previous=(previous_by_type.get(cond.type) or {}).get("status"),
            current=cond.status,
            reason=cond.reason,
            message=cond.message,
        )
        for cond in desired_conditions
        if (previous_by_type.get(cond.type) or {}).get("status") != cond.status
    ]
    return StatusPlan(patch=patch or None, transitions=transitions)


def _without_times(conditions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Conditions minus transition times, which differ only when something else does."""
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions]


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
    """One Event per cause. A condition flip is news; a condition's first appearance is news only
    for Ready, or when it appears in its abnormal state (a healthy Degraded=False is not).

    Flips that share their Event type, reason and message have one cause: a kind's Ready takes
    the reason and message of its failing sub-condition (an IncidentPolicy's Ready=False and
    StorageReady=False both say the connection is not ready), so they become one Event naming
    both, ``Ready=False, StorageReady=False: <message>``, instead of the same news twice."""
    causes: dict[tuple[str, str, str], list[Transition]] = {}
    for transition in plan.transitions:
        healthy = (transition.current == "True") != (transition.type in ABNORMAL_WHEN_TRUE)
        if transition.previous is None and transition.type != "Ready" and healthy:
            continue
        type_ = "Normal" if healthy else "Warning"
        causes.setdefault((type_, transition.reason, transition.message), []).append(transition)
    return [
        EventSpec(
            type=type_,
            reason=reason,
            message=f"{', '.join(f'{t.type}={t.current}' for t in flips)}: {message}",
        )
        for (type_, reason, message), flips in causes.items()
    ]


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
    along with a write but never cause one), then post one Event per cause of a condition flip."""
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
