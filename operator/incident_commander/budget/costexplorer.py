"""Cost Explorer queries. Blocking boto3 calls: run them in a thread.

AWS bills USD 0.01 per Cost Explorer request (every page counts). The registry calls
``period_to_date`` once per ``evaluationInterval`` and ``forecast_remaining`` at most once per UTC
day per budget; nothing else in the operator calls Cost Explorer for budgets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from incident_commander.aws.errors import classify
from incident_commander.budget.calc import CostQuery, cost_explorer_filter
from incident_commander.budget.model import Period

logger = logging.getLogger(__name__)

METRIC = "UnblendedCost"
MAX_PAGES = 50
"""A runaway paginator costs money; no sane period-to-date query has this many pages."""


class CostExplorerError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class CostFigure:
    amount: Decimal
    currencies: frozenset[str]
    """Every Unit Cost Explorer reported; empty when it reported no cost at all."""
    requests: int


def _request(query: CostQuery, period: Period, start: datetime, now: datetime) -> dict[str, Any]:
    end = now.date() + timedelta(days=1)
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.date().isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY" if period == "Daily" else "MONTHLY",
        "Metrics": [METRIC],
    }
    expression = cost_explorer_filter(query)
    if expression is not None:
        request["Filter"] = expression
    return request


def period_to_date(
    client: Any, *, query: CostQuery, period: Period, start: datetime, now: datetime
) -> CostFigure:
    """Sum of the period's costs so far, following every NextPageToken."""
    request = _request(query, period, start, now)
    amount, currencies, requests = Decimal(0), set[str](), 0
    token: str | None = None
    while True:
        page_request = dict(request, NextPageToken=token) if token else request
        try:
            response = client.get_cost_and_usage(**page_request)
        except Exception as exc:
            error = classify(exc)
            raise CostExplorerError(error.reason, error.message) from None
        requests += 1
        for result in response.get("ResultsByTime") or []:
            total = (result.get("Total") or {}).get(METRIC)
            if not total:
                continue
            try:
                amount += Decimal(str(total.get("Amount") or "0"))
            except InvalidOperation:
                raise CostExplorerError("InvalidResponse", f"amount {total.get('Amount')!r}") from None
            currencies.add(str(total.get("Unit") or "USD"))
        token = response.get("NextPageToken")
        if not token:
            return CostFigure(amount=amount, currencies=frozenset(currencies), requests=requests)
        if requests >= MAX_PAGES:
            raise CostExplorerError("TooManyPages", f"more than {MAX_PAGES} pages of results")


def forecast_remaining(
    client: Any, *, query: CostQuery, period: Period, end: datetime, now: datetime
) -> tuple[Decimal, str] | None:
    """Cost Explorer's forecast from tomorrow to the period's end (mean value, currency), or None
    when there is nothing to forecast or Cost Explorer cannot (moto does not implement it; new
    accounts have too little history): the caller then projects from the period-to-date rate."""
    start = now.date() + timedelta(days=1)
    if start >= end.date():
        return None
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.date().isoformat()},
        "Metric": "UNBLENDED_COST",
        "Granularity": "DAILY" if period == "Daily" else "MONTHLY",
    }
    expression = cost_explorer_filter(query)
    if expression is not None:
        request["Filter"] = expression
    try:
        response = client.get_cost_forecast(**request)
        total = response["Total"]
        return Decimal(str(total["Amount"])), str(total.get("Unit") or "USD")
    except Exception as exc:
        logger.info("Cost Explorer forecast unavailable (%s); projecting instead", classify(exc).reason)
        return None
