"""A budget's settled LLM spend broken down by model, API client and task type. Pure.

The ledger counter keeps one sum per model, per ``<policy>/<client>`` and per task type (task types
are bounded when written: budget/usage.bounded_task_type). What status, ``/v1/summary`` and the
metrics show is bounded again: the ``TOP`` largest entries of each dimension, and the rest summed
under ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from incident_commander.budget import calc
from incident_commander.budget.ledger import Counter

TOP = 10
OTHER = "other"
DIMENSIONS = (("model", "byModel"), ("client", "byClient"), ("task_type", "byTaskType"))
"""(the metric label and breakdown key, the status field) of each dimension."""

Breakdown = Mapping[str, Mapping[str, Decimal]]
"""{"model": {...}, "client": {...}, "task_type": {...}}"""


def top(values: Mapping[str, Decimal], count: int = TOP) -> dict[str, Decimal]:
    """The ``count`` largest entries (ties by name), the rest summed into ``other``."""
    ranked = sorted(((k, v) for k, v in values.items() if k != OTHER), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:count])
    rest = sum((v for _, v in ranked[count:]), values.get(OTHER, Decimal(0)))
    if rest or OTHER in values:
        kept[OTHER] = rest
    return kept


def of_counter(counter: Counter | None) -> dict[str, dict[str, Decimal]]:
    if counter is None:
        return {"model": {}, "client": {}, "task_type": {}}
    return {
        "model": top(counter.by_model),
        "client": top(counter.by_client),
        "task_type": top(counter.by_task_type),
    }


def status_fields(breakdown: Breakdown) -> dict[str, dict[str, str]]:
    """``status.spend.byModel`` etc.: decimal strings."""
    return {field: {k: calc.money(v) for k, v in breakdown.get(key, {}).items()} for key, field in DIMENSIONS}


def from_status(spend: Mapping[str, Any]) -> dict[str, dict[str, Decimal]]:
    """The breakdown a status shows (a standby's view); unreadable entries are left out."""
    result: dict[str, dict[str, Decimal]] = {}
    for key, field in DIMENSIONS:
        entries: dict[str, Decimal] = {}
        raw = spend.get(field)
        for name, amount in (raw or {}).items() if isinstance(raw, Mapping) else ():
            try:
                entries[str(name)] = Decimal(str(amount))
            except InvalidOperation:
                continue
        result[key] = entries
    return result


def as_floats(breakdown: Breakdown) -> dict[str, dict[str, float]]:
    return {key: {k: float(v) for k, v in values.items()} for key, values in breakdown.items()}


def as_json(breakdown: Breakdown) -> dict[str, dict[str, str]]:
    """For ``/v1/summary``: the same keys as status (``byModel``...)."""
    return status_fields(breakdown)
