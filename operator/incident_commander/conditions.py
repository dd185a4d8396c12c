"""Status conditions in the Kubernetes shape, computed without I/O.

Follows the cert-manager discipline: conditions are keyed by type,
``lastTransitionTime`` moves only when ``status`` flips, and callers compare the
result with the current status so that nothing is written when nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from incident_commander.timestamps import kubernetes_time

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, kw_only=True)
class Condition:
    """One observation, before it is stamped with a transition time."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    desired: Iterable[Condition],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return the new condition list: desired conditions first, in their order, then
    any other condition types already present (owned by other controllers).

    A condition whose status is unchanged keeps its ``lastTransitionTime``.
    """
    by_type = {str(c.get("type")): c for c in (current or [])}
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for cond in desired:
        previous = by_type.get(cond.type)
        if (
            previous is not None
            and previous.get("status") == cond.status
            and previous.get("lastTransitionTime")
        ):
            transition = str(previous["lastTransitionTime"])
        else:
            transition = kubernetes_time(now)
        merged.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": transition,
                "observedGeneration": generation,
            }
        )
        seen.add(cond.type)
    merged.extend(dict(c) for t, c in by_type.items() if t not in seen)
    return merged


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of that type, or None."""
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond
    return None
