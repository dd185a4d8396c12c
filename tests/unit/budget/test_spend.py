"""A budget's Cost Explorer schedule and its forecast: pure, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from incident_commander.budget import spend
from incident_commander.budget.costexplorer import CostFigure
from incident_commander.budget.model import parse_budget_spec

SPEC = parse_budget_spec(
    {
        "connectionRef": {"name": "conn"},
        "period": "Monthly",
        "limit": {"amount": "100", "currency": "USD"},
        "thresholds": [{"percent": 100, "action": "Halt"}],
        "evaluationInterval": "1h",
    }
)
START = datetime(2026, 12, 1, tzinfo=UTC)
NOW = START + timedelta(days=3)


def test_a_query_is_due_at_once_for_new_inputs_then_every_interval() -> None:
    state = spend.CostExplorerState()
    assert spend.due(state, SPEC, START) == START
    state = spend.started(state, NOW)
    state = spend.succeeded(
        state,
        SPEC,
        period_start=START,
        figure=CostFigure(amount=Decimal(5), currencies=frozenset({"USD"}), requests=1),
    )
    assert state.actual == Decimal(5) and spend.due(state, SPEC, START) == NOW + timedelta(hours=1)


def test_a_failure_keeps_the_figure_and_retries_within_five_minutes() -> None:
    state = spend.succeeded(
        spend.started(spend.CostExplorerState(), NOW),
        SPEC,
        period_start=START,
        figure=CostFigure(amount=Decimal(5), currencies=frozenset({"USD"}), requests=1),
    )
    failed = spend.failed(state, SPEC, now=NOW, reason="Throttled", message="slow down")
    assert failed.actual == Decimal(5) and failed.error == ("Throttled", "slow down")
    assert spend.due(failed, SPEC, START) == NOW + timedelta(hours=1)  # max(next interval, retry)
    assert failed.retry_at == NOW + timedelta(minutes=5)


def test_a_foreign_currency_is_left_out_and_said() -> None:
    state = spend.succeeded(
        spend.CostExplorerState(),
        SPEC,
        period_start=START,
        figure=CostFigure(amount=Decimal(5), currencies=frozenset({"EUR"}), requests=1),
    )
    assert state.actual == 0 and state.currency_problem and "EUR" in state.currency_problem


def test_the_forecast_is_kept_while_spend_is_still_and_for_an_hour_at_most() -> None:
    kept = spend.Forecast(value=Decimal("30.00"), total=Decimal(3), at=NOW)
    assert spend.kept_forecast(kept, total=Decimal(3), now=NOW + timedelta(minutes=59)) is kept
    assert spend.kept_forecast(kept, total=Decimal(3), now=NOW + timedelta(minutes=61)) is None
    assert spend.kept_forecast(kept, total=Decimal(4), now=NOW) is None
    stored = spend.stored_forecast({"spend": {"forecast": "30.00", "total": "3"}}, NOW)
    assert stored == kept
    assert spend.stored_forecast({}, NOW) is None
