"""A budget's Cost Explorer figure: when to query, what a result or a failure means, the forecast.

Pure and clock-injected: every function takes the time and returns a new ``CostExplorerState``;
the budget controller does the querying (budget/costexplorer.py) and keeps the state.

Rules (docs/budgetpolicy.md):
- Cost Explorer is billed per request, so it is queried only when ``lastCostExplorerQuery +
  evaluationInterval`` has passed (that time survives restarts: it is in status), or at once when
  the figure's inputs (connection, period, filter) changed.
- A failure keeps the last figure for the same inputs and retries after at most 5 minutes.
- A figure in another currency than the limit is left out (and said so), never converted.
- A new period starts at zero; its figure waits for the next due query (rollover buys no request).
- A filter that Cost Explorer cannot express (no services, no tags: all spend) still queries; only
  a filter that selects nothing skips Cost Explorer (``calc.cost_query(...).skip``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from incident_commander.budget import calc
from incident_commander.budget.costexplorer import CostFigure
from incident_commander.budget.model import BudgetSpec, BudgetState
from incident_commander.timestamps import parse_time_or_none

RETRY_MAX = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class CostExplorerState:
    actual: Decimal = Decimal(0)
    """Spend to date of ``period`` as Cost Explorer reported it (0 when left out)."""
    period: datetime | None = None
    inputs: tuple[Any, ...] | None = None
    """``BudgetSpec.cost_explorer_inputs`` the figure was queried with."""
    last_query: datetime | None = None
    error: tuple[str, str] | None = None
    retry_at: datetime | None = None
    currency_problem: str | None = None
    forecast: tuple[date, tuple[Any, ...], Decimal | None] | None = None
    """(day, inputs, Cost Explorer's forecast of the rest of the period, or None when it has none)."""


def restore(
    status: Mapping[str, Any], spec: BudgetSpec, *, generation: int, now: datetime
) -> CostExplorerState:
    """The last figure from status, so a restart does not query again. Only when status describes
    the current generation (so its filter is the current one) and the current period."""
    empty = CostExplorerState()
    if status.get("observedGeneration") != generation:
        return empty
    queried = parse_time_or_none(status.get("lastCostExplorerQuery"))
    start = parse_time_or_none((status.get("period") or {}).get("start"))
    actual = (status.get("spend") or {}).get("actual")
    if queried is None or start is None or actual is None:
        return empty
    if start != calc.period_bounds(spec.period, now)[0]:
        return empty
    try:
        amount = Decimal(str(actual))
    except InvalidOperation:
        return empty
    return CostExplorerState(
        actual=amount, period=start, inputs=spec.cost_explorer_inputs, last_query=queried
    )


def stored_ledger(status: Mapping[str, Any], period_start: datetime) -> Decimal | None:
    """The ledger total the status shows for the period starting at ``period_start``, if it does."""
    start = parse_time_or_none((status.get("period") or {}).get("start"))
    ledger = (status.get("spend") or {}).get("ledger")
    if start != period_start or ledger is None:
        return None
    try:
        return Decimal(str(ledger))
    except InvalidOperation:
        return None


def due(state: CostExplorerState, spec: BudgetSpec, period_start: datetime) -> datetime | None:
    """When the next query is due; None when this budget never queries Cost Explorer."""
    if calc.cost_query(spec.filter).skip:
        return None
    if state.inputs != spec.cost_explorer_inputs or state.last_query is None:
        return state.retry_at or period_start
    next_query = state.last_query + spec.evaluation_interval
    return max(next_query, state.retry_at) if state.retry_at else next_query


def skipped(spec: BudgetSpec, period_start: datetime) -> CostExplorerState:
    """A filter that selects no Cost Explorer spend: the figure is zero, with nothing to query."""
    return CostExplorerState(period=period_start, inputs=spec.cost_explorer_inputs)


def started(state: CostExplorerState, now: datetime) -> CostExplorerState:
    """A query is going out now (recorded before it, so a crash does not query again at once)."""
    return replace(state, last_query=now)


def succeeded(
    state: CostExplorerState, spec: BudgetSpec, *, period_start: datetime, figure: CostFigure
) -> CostExplorerState:
    foreign = sorted(figure.currencies - {spec.currency})
    problem = (
        f"Cost Explorer reports {', '.join(foreign)} but the limit is in {spec.currency}; "
        "Cost Explorer spend is left out until they match"
        if foreign
        else None
    )
    return replace(
        state,
        actual=Decimal(0) if foreign else figure.amount,
        period=period_start,
        inputs=spec.cost_explorer_inputs,
        error=None,
        retry_at=None,
        currency_problem=problem,
    )


def failed(
    state: CostExplorerState, spec: BudgetSpec, *, now: datetime, reason: str, message: str
) -> CostExplorerState:
    """Keep the last figure for the same inputs; a figure for other inputs says nothing any more."""
    return replace(
        state,
        error=(reason, message),
        retry_at=now + min(spec.evaluation_interval, RETRY_MAX),
        actual=state.actual if state.inputs == spec.cost_explorer_inputs else Decimal(0),
    )


def rolled_over(state: CostExplorerState, period_start: datetime) -> CostExplorerState:
    """A new period: its figure waits for the next due query; until then only the ledger counts."""
    if state.period == period_start:
        return state
    return replace(state, actual=Decimal(0), period=period_start)


def forecast_due(state: CostExplorerState, spec: BudgetSpec, today: date) -> bool:
    """One forecast request a day (and after the inputs change)."""
    return (
        state.forecast is None or state.forecast[0] != today or state.forecast[1] != spec.cost_explorer_inputs
    )


def with_forecast(
    state: CostExplorerState, spec: BudgetSpec, *, today: date, forecast: tuple[Decimal, str] | None
) -> CostExplorerState:
    remaining = forecast[0] if forecast is not None and forecast[1] == spec.currency else None
    return replace(state, forecast=(today, spec.cost_explorer_inputs, remaining))


def projected_total(state: CostExplorerState, budget: BudgetState, now: datetime) -> Decimal:
    """Spend projected for the end of the period: Cost Explorer's own forecast for its part when it
    has one for today, else a linear projection; the ledger part is always projected linearly."""
    window = {"start": budget.period_start, "end": budget.period_end, "now": now}
    remaining = state.forecast[2] if state.forecast and state.forecast[0] == now.date() else None
    ce_part = state.actual + remaining if remaining is not None else calc.project(state.actual, **window)
    return ce_part + calc.project(budget.total - state.actual, **window)


FORECAST_REFRESH = timedelta(hours=1)
"""A projection moves with the clock alone; recomputed when the spend moves and at least hourly,
so a quiet budget's status is not rewritten every pass for a cent of projection."""


@dataclass(frozen=True, kw_only=True)
class Forecast:
    value: Decimal
    total: Decimal
    """The spend the projection was made from."""
    at: datetime


def kept_forecast(previous: Forecast | None, *, total: Decimal, now: datetime) -> Forecast | None:
    """The previous forecast while the spend has not moved and it is under an hour old, else None."""
    if previous is not None and previous.total == total and now - previous.at < FORECAST_REFRESH:
        return previous
    return None


def stored_forecast(status: Mapping[str, Any], now: datetime) -> Forecast | None:
    """The forecast the status shows, as of now (a restart or a new leader keeps it)."""
    figures = status.get("spend") or {}
    try:
        return Forecast(value=Decimal(str(figures["forecast"])), total=Decimal(str(figures["total"])), at=now)
    except (KeyError, InvalidOperation):
        return None
