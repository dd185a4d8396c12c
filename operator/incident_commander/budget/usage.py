"""Recording one usage report: price it (pure), then write it to the ledger (blocking).

``price`` decides what a report costs and which period it counts in; ``write`` makes it durable in
DynamoDB (budget/ledger.py) before the API answers. The budget controller ties them together and
re-evaluates the budget afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from incident_commander.budget import calc, ledger, pricing
from incident_commander.budget.model import BudgetNotReady, BudgetSpec, UsageReport

FUTURE_SKEW = timedelta(minutes=5)
"""A report dated up to this far ahead (a client's clock) keeps its time, capped at now; further
ahead, it counts now."""


MAX_TASK_TYPES = 20
"""Distinct task types a budget's breakdown keeps per period; later ones count as ``other``."""
OTHER = "other"
_TASK_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class PricedReport:
    cost: Decimal
    period_start: datetime
    hold_period: datetime | None = None
    """The period of the reservation the report settles (its counter holds the hold)."""
    attribution: ledger.Attribution | None = None


def price(spec: BudgetSpec, report: UsageReport, *, budget: str, now: datetime) -> PricedReport:
    """The report's cost from the budget's prices and the start of the period it counts in.

    Raises UnknownModel for a model without a price (never zero cost) and ValueError for negative
    token counts or a reservation id this ledger did not issue."""
    model_price = pricing.price_for(spec, report.model, budget=budget)
    if report.input_tokens < 0 or report.output_tokens < 0:
        raise ValueError("token counts must not be negative")
    hold_period = None
    if report.reservation_id is not None:
        hold_period = ledger.reservation_period(report.reservation_id)
        if hold_period is None:
            raise ValueError("reservationId is not a reservation this API issued")
    reported_at = min(report.reported_at, now) if report.reported_at <= now + FUTURE_SKEW else now
    period_start, _ = calc.period_bounds(spec.period, reported_at)
    cost = calc.usage_cost(model_price, input_tokens=report.input_tokens, output_tokens=report.output_tokens)
    return PricedReport(
        cost=cost,
        period_start=period_start,
        hold_period=hold_period,
        attribution=ledger.Attribution(
            model=report.model,
            client=report.client or "unknown",
            task_type=report.task_type or "unspecified",
        ),
    )


def bounded_task_type(task_type: str | None, known: Mapping[str, Any]) -> str | None:
    """The task type as the breakdown keeps it: as given while the period has fewer than
    MAX_TASK_TYPES (``known``: the ones the counter has), else ``other``; odd names are ``other``."""
    if task_type is None:
        return None
    if not _TASK_TYPE.match(task_type):
        return OTHER
    if task_type in known or len(known) < MAX_TASK_TYPES:
        return task_type
    return OTHER


def fingerprint(report: UsageReport) -> str:
    """What the report says, as a digest: an Idempotency-Key reused for another report is refused."""
    canonical = json.dumps(
        [
            report.model,
            report.input_tokens,
            report.output_tokens,
            report.incident_id,
            report.reservation_id,
            report.task_type,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def write(
    client: Any,
    *,
    namespace: str,
    budget: str,
    priced: PricedReport,
    key: str | None,
    table: str,
    reservation_id: str | None = None,
    fingerprint: str | None = None,
) -> ledger.Recorded:
    """Durable before it returns (blocking); a repeated idempotency key (or reservation) counts once.
    Raises BudgetNotReady(LedgerUnavailable) when DynamoDB cannot take it, IdempotencyConflict when
    the key was used for another report."""
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
            attribution=priced.attribution,
            fingerprint=fingerprint,
            reservation_id=reservation_id,
            hold_period=priced.hold_period,
        )
    except ledger.LedgerError as error:
        raise BudgetNotReady("LedgerUnavailable", f"{error.reason}: {error.message}") from None


@dataclass(frozen=True, kw_only=True)
class LedgerReading:
    """The freshest ledger figures this process knows for a budget's period."""

    total: Decimal = Decimal(0)
    """Settled spend."""
    period: datetime | None = None
    error: tuple[str, str] | None = None
    counter: ledger.Counter | None = None
    """The counter as last read (holds, breakdown), for the current ``period``."""

    def for_period(self, period_start: datetime) -> Decimal:
        return self.total if self.period == period_start else Decimal(0)

    def counter_for(self, period_start: datetime) -> ledger.Counter | None:
        return self.counter if self.period == period_start else None


def merged(
    reading: LedgerReading, period_start: datetime, total: Decimal, counter: ledger.Counter | None = None
) -> LedgerReading:
    """Settled totals only grow within a period, so the largest total seen is the freshest; a
    report for an earlier period does not move the current one's figure. Holds come and go: the
    counter is the one read last."""
    if reading.period == period_start:
        return LedgerReading(
            total=max(reading.total, total), period=period_start, counter=counter or reading.counter
        )
    if reading.period is not None and period_start < reading.period:
        return LedgerReading(total=reading.total, period=reading.period, counter=reading.counter)
    return LedgerReading(total=total, period=period_start, counter=counter)
