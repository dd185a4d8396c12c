"""Turns a reconciliation's findings into a status patch, or into nothing.

Every kind writes its status through here so that all of them honour the same
rules: ``observedGeneration`` is stamped, conditions keep their transition times,
and an unchanged status produces no API write at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from incident_commander.conditions import Condition, merge_conditions


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
