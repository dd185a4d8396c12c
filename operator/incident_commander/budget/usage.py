"""Recording one usage report: price it (pure), then write it to the ledger (blocking).

``price`` decides what a report costs and which period it counts in; ``write`` makes it durable in
DynamoDB (budget/ledger.py) before the API answers. The budget controller ties them together and
re-evaluates the budget afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from incident_commander.budget import calc, ledger
from incident_commander.budget.model import BudgetNotReady, BudgetSpec, UnknownModel, UsageReport

FUTURE_SKEW = timedelta(minutes=5)
"""A report dated up to this far ahead (a client's clock) keeps its time, capped at now; further
ahead, it counts now."""


@dataclass(frozen=True, kw_only=True)
class PricedReport:
    cost: Decimal
    period_start: datetime


def price(spec: BudgetSpec, report: UsageReport, *, budget: str, now: datetime) -> PricedReport:
    """The report's cost from ``spec.pricing`` and the start of the period it counts in.

    Raises UnknownModel for a model without a price (never zero cost) and ValueError for negative
    token counts."""
    model_price = spec.pricing.get(report.model)
    if model_price is None:
        raise UnknownModel(report.model, budget)
    if report.input_tokens < 0 or report.output_tokens < 0:
        raise ValueError("token counts must not be negative")
    reported_at = min(report.reported_at, now) if report.reported_at <= now + FUTURE_SKEW else now
    period_start, _ = calc.period_bounds(spec.period, reported_at)
    cost = calc.usage_cost(model_price, input_tokens=report.input_tokens, output_tokens=report.output_tokens)
    return PricedReport(cost=cost, period_start=period_start)


def write(
    client: Any, *, namespace: str, budget: str, priced: PricedReport, key: str | None, table: str
) -> ledger.Recorded:
    """Durable before it returns (blocking); a repeated idempotency key counts once.
    Raises BudgetNotReady(LedgerUnavailable) when DynamoDB cannot take it."""
    try:
        ledger.ensure_table(client, table)
        return ledger.record(
            client,
            namespace=namespace,
            budget=budget,
            period_start=priced.period_start,
            cost=priced.cost,
            key=key,
            table=table,
        )
    except ledger.LedgerError as error:
        raise BudgetNotReady("LedgerUnavailable", f"{error.reason}: {error.message}") from None


@dataclass(frozen=True, kw_only=True)
class LedgerReading:
    """The freshest ledger total this process knows for a budget's period."""

    total: Decimal = Decimal(0)
    period: datetime | None = None
    error: tuple[str, str] | None = None

    def for_period(self, period_start: datetime) -> Decimal:
        return self.total if self.period == period_start else Decimal(0)


def merged(reading: LedgerReading, period_start: datetime, total: Decimal) -> LedgerReading:
    """Counters only grow within a period, so the largest total seen is the freshest; a report for
    an earlier period does not move the current one's figure."""
    if reading.period == period_start:
        return LedgerReading(total=max(reading.total, total), period=period_start)
    if reading.period is not None and period_start < reading.period:
        return LedgerReading(total=reading.total, period=reading.period)
    return LedgerReading(total=total, period=period_start)
