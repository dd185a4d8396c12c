"""Budget arithmetic: periods, prices, phases, actions, projection. Pure and Decimal-only.

The rules (documented in docs/budgetpolicy.md):

- A period starts at the UTC day or month boundary; it is ``[start, end)``.
- A usage report belongs to the period of its ``reported_at``.
- A threshold is crossed when utilization >= its percent; the highest crossed one is active.
- Phase: Exceeded at >= 100 %; else Critical when the active action is Downgrade, Throttle or
  Halt; Warning when it is Notify; Ok when nothing is crossed.
- Enforced action: none under Monitor; while break-glass is on, Halt is lifted and the highest
  crossed action below Halt is enforced instead.
- Total = Cost Explorer's period-to-date cost (Amazon Bedrock excluded) + the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from incident_commander.budget.model import (
    Action,
    BudgetSpec,
    BudgetState,
    CostFilter,
    Enforcement,
    Period,
    Phase,
    Price,
    Threshold,
)
from incident_commander.timestamps import parse_time

BEDROCK = "Amazon Bedrock"
"""The Cost Explorer SERVICE of the platform's LLM calls. They are counted by the ledger only."""
MIN_ELAPSED_FOR_PROJECTION = timedelta(hours=1)
"""Projections extrapolate from at least this much of the period, so the first minutes of a
period do not multiply a few cents into a huge forecast."""
CENT = Decimal("0.01")


def period_bounds(period: Period, at: datetime) -> tuple[datetime, datetime]:
    """The UTC period containing ``at``: ``[start, end)``."""
    at = at.astimezone(UTC)
    if period == "Daily":
        start = datetime(at.year, at.month, at.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = (
        datetime(at.year + 1, 1, 1, tzinfo=UTC)
        if at.month == 12
        else datetime(at.year, at.month + 1, 1, tzinfo=UTC)
    )
    return start, end


def usage_cost(price: Price, *, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact price of one call; tokens are priced per 1,000 and never rounded."""
    return (price.input_per_1k * input_tokens + price.output_per_1k * output_tokens) / 1000


def highest_crossed(utilization: Decimal, thresholds: Sequence[Threshold]) -> Threshold | None:
    crossed = [t for t in thresholds if utilization >= t.percent]
    return max(crossed, key=lambda t: t.percent) if crossed else None


def phase_for(utilization: Decimal, active: Action | None) -> Phase:
    if utilization >= 100:
        return "Exceeded"
    if active is None:
        return "Ok"
    return "Warning" if active == "Notify" else "Critical"


def enforced_action(
    *,
    utilization: Decimal,
    thresholds: Sequence[Threshold],
    enforcement: Enforcement,
    break_glass: bool,
) -> Action | None:
    if enforcement == "Monitor":
        return None
    candidates = [
        t for t in thresholds if utilization >= t.percent and not (break_glass and t.action == "Halt")
    ]
    return max(candidates, key=lambda t: t.percent).action if candidates else None


def utilization_percent(total: Decimal, limit: Decimal) -> Decimal:
    """Exact percentage (phases use this); round it only for display."""
    return total * 100 / limit


def display(amount: Decimal, places: Decimal = CENT) -> str:
    """A decimal string for status, rounded down so 99.999 % never reads as 100.00; fixed-point,
    never exponent notation (``str(Decimal)`` writes zero percent as "0E+2")."""
    return format(amount.quantize(places, rounding=ROUND_DOWN) + 0, "f")


def money(amount: Decimal) -> str:
    """An exact amount as JSON and status show it: fixed-point, at least two decimal places, and
    every further digit there is ("0.00", "5.00", "0.0035"), never exponent notation."""
    text = format(amount + 0, "f")  # + 0 turns -0 into 0
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def ledger_cap(spec: BudgetSpec, *, actual: Decimal, break_glass: bool) -> Decimal | None:
    """The ledger total (settled + held) at which the budget halts, or None when nothing halts it.

    Only an enforced Halt refuses routing, so only then are reservations refused: ``enforcement:
    Enforce``, a Halt threshold, and no break-glass. The cap is that threshold's share of the limit
    minus the Cost Explorer figure (the ledger holds LLM spend only)."""
    if spec.enforcement != "Enforce" or break_glass:
        return None
    halts = [t.percent for t in spec.thresholds if t.action == "Halt"]
    if not halts:
        return None
    return spec.limit * min(halts) / 100 - actual


def project(amount: Decimal, *, start: datetime, end: datetime, now: datetime) -> Decimal:
    """Linear projection of period-to-date spend to the period's end."""
    elapsed = max(now - start, MIN_ELAPSED_FOR_PROJECTION)
    if elapsed >= end - start:
        return amount
    return amount * Decimal((end - start) // timedelta(seconds=1)) / Decimal(elapsed // timedelta(seconds=1))


@dataclass(frozen=True, kw_only=True)
class CostQuery:
    """Which SERVICE values to ask Cost Explorer about; ``skip`` when nothing but LLM spend is wanted."""

    services: tuple[str, ...]
    exclude_bedrock: bool
    tags: tuple[tuple[str, tuple[str, ...]], ...]
    skip: bool


def cost_query(cost_filter: CostFilter) -> CostQuery:
    """Bedrock is always left out of Cost Explorer: LLM spend comes from the ledger, so it is never
    counted twice, whatever Cost Explorer's lag. A filter listing only Bedrock needs no query."""
    services = tuple(s for s in cost_filter.services if s != BEDROCK)
    if cost_filter.services and not services:
        return CostQuery(services=(), exclude_bedrock=False, tags=cost_filter.tags, skip=True)
    return CostQuery(services=services, exclude_bedrock=not services, tags=cost_filter.tags, skip=False)


def cost_explorer_filter(query: CostQuery) -> dict[str, object] | None:
    """The GetCostAndUsage ``Filter`` expression for a query, or None for all costs."""
    parts: list[dict[str, object]] = []
    if query.services:
        parts.append(
            {"Dimensions": {"Key": "SERVICE", "Values": list(query.services), "MatchOptions": ["EQUALS"]}}
        )
    if query.exclude_bedrock:
        parts.append(
            {"Not": {"Dimensions": {"Key": "SERVICE", "Values": [BEDROCK], "MatchOptions": ["EQUALS"]}}}
        )
    parts.extend(
        {"Tags": {"Key": key, "Values": list(values), "MatchOptions": ["EQUALS"]}}
        for key, values in query.tags
    )
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"And": parts}


def parse_break_glass(value: str | None, now: datetime) -> tuple[datetime | None, str | None]:
    """The break-glass annotation holds an RFC 3339 time until which Halt is lifted.

    Returns (until, problem): ``until`` only while it lies in the future, at most 24 hours ahead
    (a later time is capped); ``problem`` explains an unreadable value, which is ignored.
    """
    if not value:
        return None, None
    try:
        until = parse_time(value.strip())
    except ValueError:
        return None, f"break-glass annotation {value[:64]!r} is not an RFC 3339 time with a zone; ignored"
    if until <= now:
        return None, None
    return min(until, now + timedelta(hours=24)), None


def evaluate(
    *,
    namespace: str,
    name: str,
    spec: BudgetSpec,
    actual: Decimal,
    ledger: Decimal,
    period: tuple[datetime, datetime],
    now: datetime,
    break_glass_until: datetime | None,
) -> BudgetState:
    """The budget's state from its two spend figures."""
    total = actual + ledger
    utilization = utilization_percent(total, spec.limit)
    top = highest_crossed(utilization, spec.thresholds)
    active = top.action if top else None
    return BudgetState(
        namespace=namespace,
        name=name,
        phase=phase_for(utilization, active),
        active_action=active,
        enforced_action=enforced_action(
            utilization=utilization,
            thresholds=spec.thresholds,
            enforcement=spec.enforcement,
            break_glass=break_glass_until is not None,
        ),
        utilization=utilization,
        total=total,
        limit=spec.limit,
        currency=spec.currency,
        period_start=period[0],
        period_end=period[1],
        evaluated_at=now,
        enforcement=spec.enforcement,
        break_glass_until=break_glass_until,
    )
