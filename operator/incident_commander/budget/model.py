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

DEFAULT_RESERVATION_TTL = timedelta(minutes=10)
"""How long a hold taken at routing time lasts unsettled (``spec.reservationTTL``): longer than a
model call with its retries takes, short enough that a crashed client's holds come back soon."""

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
    reserved: Decimal = Decimal(0)
    """Held by unsettled reservations (not spend: phases ignore it)."""
    breakdown: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    """Settled ledger spend by ``model``, ``client`` and ``task_type`` (budget/breakdown.py)."""


@dataclass(frozen=True, kw_only=True)
class UsageReport:
    """One LLM call's token usage, as reported to ``/v1/usage`` (or measured by ``/v1/converse``)."""

    model: str
    input_tokens: int
    output_tokens: int
    incident_id: str | None
    idempotency_key: str | None
    reported_at: datetime
    reservation_id: str | None = None
    """The hold taken at routing time that this usage settles."""
    client: str | None = None
    """``<policy>/<client>`` of the API client that reported it (the spend breakdown)."""
    task_type: str | None = None
    fingerprint: str | None = None
    """A digest of what the report says: the same Idempotency-Key with another body is refused."""


@dataclass(frozen=True, kw_only=True)
class UsageRecorded:
    """What recording a report did: its price, the period it counted in, whether it was a retry."""

    cost: Decimal
    currency: str
    period_start: datetime
    duplicate: bool
    reservation: str | None = None
    """``settled`` (the hold was replaced by the cost), ``expired`` (the hold was gone: the cost
    was added on its own), or None without a reservation."""
    released: Decimal | None = None
    """What the hold had reserved beyond the cost (negative when the cost exceeded it)."""


@dataclass(frozen=True, kw_only=True)
class ReservationRequest:
    """A hold on the budget for one routed call, asked for by ``/v1/route`` or ``/v1/converse``."""

    model: str
    estimated_tokens: int = 0
    """Priced each at the model's higher price (``pricing.estimate``); with
    ``estimated_output_tokens``, these are the input tokens, at the input price."""
    estimated_output_tokens: int | None = None
    """At most this many output tokens, at the output price (``pricing.converse_estimate``)."""
    client: str | None = None
    task_type: str | None = None
    uncapped: bool = False
    """The policy's most severe severity: never refused for money (the Halt rule); still held."""


@dataclass(frozen=True, kw_only=True)
class Reservation:
    id: str
    amount: Decimal
    currency: str
    period_start: datetime
    expires_at: datetime
    capped: bool
    """Whether the hold was checked against the cap (False: tracked only)."""


class InsufficientBudget(Exception):
    """The estimate does not fit in what is left before the budget halts (the API answers 402)."""

    def __init__(
        self, *, budget: str, remaining: Decimal, estimate: Decimal, currency: str, phase: str | None
    ) -> None:
        super().__init__(
            f"BudgetPolicy {budget} has {remaining} {currency} left before it halts; "
            f"this request is estimated at {estimate} {currency}"
        )
        self.budget = budget
        self.remaining = remaining
        self.estimate = estimate
        self.currency = currency
        self.phase = phase


class IdempotencyConflict(Exception):
    """The Idempotency-Key (or reservation) was already used for a different report (409)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key[:64]!r} was already used for a different report; "
            "use a new key for a new report"
        )
        self.key = key


class UnknownModel(ValueError):
    """The model has no price: not in ``spec.pricing``, not among the defaults (the API answers 422)."""

    def __init__(self, model: str, budget: str, why: str | None = None) -> None:
        super().__init__(
            why
            or (
                f"model {model!r} has no price in BudgetPolicy {budget} (spec.pricing) nor among the "
                "default prices: add a spec.pricing entry for it"
            )
        )
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
    currency: str = "USD"


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
    default_pricing: bool = True
    """Price models that ``pricing`` does not list from budget/pricing.DEFAULT_PRICES."""
    reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL

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
                    currency=str(p.get("currency") or "USD"),
                )
                for p in spec.get("pricing") or []
            },
            default_pricing=spec.get("defaultPricing", True) is not False,
            reservation_ttl=parse_duration(str(spec.get("reservationTTL") or "10m")),
        )
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise InvalidBudgetSpec(f"spec could not be read: {exc}") from exc
