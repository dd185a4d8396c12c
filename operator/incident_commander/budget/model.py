"""Budget types shared by the engine and the HTTP API. Pure: frozen dataclasses, no I/O.

Money is ``Decimal`` everywhere; nothing here ever holds a float amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from incident_commander.durations import parse_duration

Phase = Literal["Ok", "Warning", "Critical", "Exceeded"]
Action = Literal["Notify", "Downgrade", "Throttle", "Halt"]
Period = Literal["Daily", "Monthly"]
Enforcement = Literal["Enforce", "Monitor"]

ACTION_SEVERITY: Mapping[str, int] = {"Notify": 1, "Downgrade": 2, "Throttle": 3, "Halt": 4}
"""Actions in increasing strength; each one includes the effects of the weaker ones."""


@dataclass(frozen=True, kw_only=True)
class BudgetState:
    """A budget's evaluated state, as the HTTP API and the IncidentPolicies see it."""

    namespace: str
    name: str
    phase: Phase
    active_action: Action | None
    """The highest crossed threshold's action, as computed."""
    enforced_action: Action | None
    """What to enforce: None under ``enforcement: Monitor``; Halt lifted while break-glass is on."""
    utilization: Decimal
    """Total spend in percent of the limit."""
    total: Decimal
    limit: Decimal
    currency: str
    period_start: datetime
    period_end: datetime
    evaluated_at: datetime
    enforcement: Enforcement = "Enforce"
    break_glass_until: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class UsageReport:
    """One LLM call's token usage, as reported to ``/v1/usage``."""

    model: str
    input_tokens: int
    output_tokens: int
    incident_id: str | None
    idempotency_key: str | None
    reported_at: datetime


@dataclass(frozen=True, kw_only=True)
class UsageRecorded:
    """What recording a report did: its price, the period it counted in, whether it was a retry."""

    cost: Decimal
    currency: str
    period_start: datetime
    duplicate: bool


class UnknownModel(ValueError):
    """The reported model has no ``spec.pricing`` entry (the HTTP API answers 422)."""

    def __init__(self, model: str, budget: str) -> None:
        super().__init__(f"model {model!r} has no pricing entry in BudgetPolicy {budget}")
        self.model = model


class BudgetNotReady(Exception):
    """The budget cannot take usage now: missing, connection not ready, ledger unavailable (503)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Threshold:
    percent: int
    action: Action


@dataclass(frozen=True, kw_only=True)
class Price:
    input_per_1k: Decimal
    output_per_1k: Decimal


@dataclass(frozen=True, kw_only=True)
class CostFilter:
    services: tuple[str, ...] = ()
    tags: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, kw_only=True)
class BudgetSpec:
    connection: str
    period: Period
    limit: Decimal
    currency: str
    filter: CostFilter
    thresholds: tuple[Threshold, ...]
    enforcement: Enforcement
    evaluation_interval: timedelta
    pricing: Mapping[str, Price] = field(default_factory=dict)

    @property
    def cost_explorer_inputs(self) -> tuple[Any, ...]:
        """What a Cost Explorer figure depends on; a change makes the last figure meaningless."""
        return (self.connection, self.period, self.filter)


class InvalidBudgetSpec(ValueError):
    """A spec the CRD admitted but the engine cannot use (it should not happen)."""


def parse_budget_spec(spec: Mapping[str, Any]) -> BudgetSpec:
    """Typed values from an admitted spec. Amounts stay decimal strings until they become Decimal."""
    try:
        limit = spec["limit"]
        raw_filter = spec.get("filter") or {}
        return BudgetSpec(
            connection=str(spec["connectionRef"]["name"]),
            period="Daily" if spec.get("period") == "Daily" else "Monthly",
            limit=Decimal(str(limit["amount"])),
            currency=str(limit.get("currency") or "USD"),
            filter=CostFilter(
                services=tuple(sorted(str(s) for s in raw_filter.get("services") or [])),
                tags=tuple(
                    sorted(
                        (str(k), tuple(sorted(str(v) for v in vs)))
                        for k, vs in (raw_filter.get("tags") or {}).items()
                    )
                ),
            ),
            thresholds=tuple(
                sorted(
                    (Threshold(percent=int(t["percent"]), action=t["action"]) for t in spec["thresholds"]),
                    key=lambda t: t.percent,
                )
            ),
            enforcement="Monitor" if spec.get("enforcement") == "Monitor" else "Enforce",
            evaluation_interval=parse_duration(str(spec.get("evaluationInterval") or "1h")),
            pricing={
                str(p["model"]): Price(
                    input_per_1k=Decimal(str(p["inputPer1kTokens"])),
                    output_per_1k=Decimal(str(p["outputPer1kTokens"])),
                )
                for p in spec.get("pricing") or []
            },
        )
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise InvalidBudgetSpec(f"spec could not be read: {exc}") from exc
