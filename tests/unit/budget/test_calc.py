"""Budget arithmetic: periods, pricing, phases, actions, projection, the Cost Explorer filter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from incident_commander.budget import calc
from incident_commander.budget.model import (
    CostFilter,
    InvalidBudgetSpec,
    Price,
    Threshold,
    parse_budget_spec,
)

T = [
    Threshold(percent=50, action="Notify"),
    Threshold(percent=80, action="Downgrade"),
    Threshold(percent=95, action="Throttle"),
    Threshold(percent=100, action="Halt"),
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "moment", "start", "end"),
    [
        ("Daily", "2025-03-10T23:59:59", "2025-03-10T00:00:00", "2025-03-11T00:00:00"),
        ("Daily", "2025-03-11T00:00:00", "2025-03-11T00:00:00", "2025-03-12T00:00:00"),
        ("Monthly", "2025-12-31T23:59:59", "2025-12-01T00:00:00", "2026-01-01T00:00:00"),
        ("Monthly", "2024-02-29T12:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
    ],
)
def test_periods_start_at_the_utc_boundary(period: str, moment: str, start: str, end: str) -> None:
    assert calc.period_bounds(period, at(moment)) == (at(start), at(end))  # type: ignore[arg-type]


def test_period_of_a_non_utc_time_is_the_utc_one() -> None:
    moment = datetime(2025, 3, 11, 1, 30, tzinfo=__import__("datetime").timezone(timedelta(hours=2)))
    assert calc.period_bounds("Daily", moment)[0] == at("2025-03-10T00:00:00")


def test_usage_cost_is_exact_decimal() -> None:
    price = Price(input_per_1k=Decimal("0.00025"), output_per_1k=Decimal("0.00125"))
    cost = calc.usage_cost(price, input_tokens=1234, output_tokens=567)
    assert cost == Decimal("0.00101725")
    assert isinstance(cost, Decimal)
    total = sum((calc.usage_cost(price, input_tokens=1, output_tokens=0) for _ in range(1000)), Decimal(0))
    assert total == Decimal("0.00025")


@pytest.mark.parametrize(
    ("utilization", "phase", "action"),
    [
        ("0", "Ok", None),
        ("49.99", "Ok", None),
        ("50", "Warning", "Notify"),
        ("79.9999", "Warning", "Notify"),
        ("80", "Critical", "Downgrade"),
        ("96", "Critical", "Throttle"),
        ("99.999", "Critical", "Throttle"),
        ("100", "Exceeded", "Halt"),
        ("250", "Exceeded", "Halt"),
    ],
)
def test_phase_and_active_action(utilization: str, phase: str, action: str | None) -> None:
    top = calc.highest_crossed(Decimal(utilization), T)
    assert (top.action if top else None) == action
    assert calc.phase_for(Decimal(utilization), top.action if top else None) == phase


def test_exceeded_without_any_threshold_at_100() -> None:
    only_notify = [Threshold(percent=10, action="Notify")]
    assert calc.phase_for(Decimal(120), "Notify") == "Exceeded"
    assert calc.highest_crossed(Decimal(5), only_notify) is None


def test_monitor_enforces_nothing_and_break_glass_lifts_only_halt() -> None:
    def enforced(thresholds: list[Threshold], enforcement: str, glass: bool) -> str | None:
        return calc.enforced_action(
            utilization=Decimal(120),
            thresholds=thresholds,
            enforcement=enforcement,
            break_glass=glass,  # type: ignore[arg-type]
        )

    assert enforced(T, "Monitor", False) is None
    assert enforced(T, "Enforce", False) == "Halt"
    assert enforced(T, "Enforce", True) == "Throttle"
    assert enforced([Threshold(percent=100, action="Halt")], "Enforce", True) is None


def test_break_glass_annotation() -> None:
    now = at("2025-03-10T12:00:00")
    assert calc.parse_break_glass(None, now) == (None, None)
    assert calc.parse_break_glass("2025-03-10T13:00:00Z", now) == (at("2025-03-10T13:00:00"), None)
    assert calc.parse_break_glass("2025-03-10T11:00:00Z", now) == (None, None)  # expired
    assert calc.parse_break_glass("2025-03-20T00:00:00Z", now)[0] == now + timedelta(hours=24)  # capped
    until, problem = calc.parse_break_glass("true", now)
    assert until is None and problem and "RFC 3339" in problem


def test_projection_is_linear_and_starts_after_an_hour() -> None:
    start, end = at("2025-03-01T00:00:00"), at("2025-04-01T00:00:00")
    assert calc.project(Decimal(10), start=start, end=end, now=at("2025-03-16T12:00:00")) == Decimal(20)
    # ten minutes in: extrapolated from one hour, not from ten minutes
    early = calc.project(Decimal(1), start=start, end=end, now=start + timedelta(minutes=10))
    assert early == Decimal(31 * 24)
    assert calc.project(Decimal(7), start=start, end=end, now=end) == Decimal(7)


def test_display_rounds_down() -> None:
    assert calc.display(Decimal("99.999")) == "99.99"
    assert calc.display(Decimal("100")) == "100.00"
    assert calc.display(Decimal("0E+2")) == "0.00", "never exponent notation"


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0E+2", "0.00"),
        ("0", "0.00"),
        ("-0.000", "0.00"),
        ("5", "5.00"),
        ("1.2300", "1.23"),
        ("0.000096", "0.000096"),
        ("1E+3", "1000.00"),
        ("2.5E-7", "0.00000025"),
        ("-1.5", "-1.50"),
    ],
)
def test_money_is_fixed_point_and_exact(amount: str, shown: str) -> None:
    assert calc.money(Decimal(amount)) == shown
    assert Decimal(shown) == Decimal(amount)


def test_the_cap_is_where_the_budget_halts() -> None:
    spec = parse_budget_spec(
        {
            "connectionRef": {"name": "c"},
            "limit": {"amount": "200"},
            "thresholds": [{"percent": 50, "action": "Notify"}, {"percent": 90, "action": "Halt"}],
        }
    )
    assert calc.ledger_cap(spec, actual=Decimal("30"), break_glass=False) == Decimal("150")
    assert calc.ledger_cap(spec, actual=Decimal("30"), break_glass=True) is None
    monitor = replace(spec, enforcement="Monitor")
    assert calc.ledger_cap(monitor, actual=Decimal(0), break_glass=False) is None
    no_halt = replace(spec, thresholds=(Threshold(percent=100, action="Throttle"),))
    assert calc.ledger_cap(no_halt, actual=Decimal(0), break_glass=False) is None
    spent = calc.ledger_cap(spec, actual=Decimal("500"), break_glass=False)
    assert spent is not None and spent < 0, "Cost Explorer alone is past it: nothing fits"


def test_bedrock_is_left_to_the_ledger() -> None:
    everything = calc.cost_query(CostFilter())
    assert everything.exclude_bedrock and not everything.skip
    assert calc.cost_explorer_filter(everything) == {
        "Not": {"Dimensions": {"Key": "SERVICE", "Values": [calc.BEDROCK], "MatchOptions": ["EQUALS"]}}
    }
    services = (calc.BEDROCK, "Amazon DynamoDB")
    mixed = calc.cost_query(CostFilter(services=services, tags=(("team", ("sre",)),)))
    assert mixed.services == ("Amazon DynamoDB",) and not mixed.exclude_bedrock
    assert calc.cost_explorer_filter(mixed) == {
        "And": [
            {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon DynamoDB"], "MatchOptions": ["EQUALS"]}},
            {"Tags": {"Key": "team", "Values": ["sre"], "MatchOptions": ["EQUALS"]}},
        ]
    }
    assert calc.cost_query(CostFilter(services=(calc.BEDROCK,))).skip


def test_total_adds_cost_explorer_and_ledger_without_bedrock_twice() -> None:
    spec = parse_budget_spec(
        {
            "connectionRef": {"name": "c"},
            "limit": {"amount": "100.00"},
            "thresholds": [{"percent": 50, "action": "Notify"}, {"percent": 80, "action": "Downgrade"}],
        }
    )
    state = calc.evaluate(
        namespace="ns",
        name="b",
        spec=spec,
        actual=Decimal("30.10"),
        ledger=Decimal("50.00"),
        period=calc.period_bounds("Monthly", at("2025-03-10T00:00:00")),
        now=at("2025-03-10T00:00:00"),
        break_glass_until=None,
    )
    assert state.total == Decimal("80.10") and state.utilization == Decimal("80.10")
    assert (state.phase, state.active_action, state.enforced_action) == ("Critical", "Downgrade", "Downgrade")


def test_spec_parsing() -> None:
    spec = parse_budget_spec(
        {
            "connectionRef": {"name": "c"},
            "period": "Daily",
            "limit": {"amount": "2500.0001", "currency": "USD"},
            "thresholds": [{"percent": 90, "action": "Halt"}, {"percent": 10, "action": "Notify"}],
            "evaluationInterval": "10s",
            "enforcement": "Monitor",
            "pricing": [{"model": "m", "inputPer1kTokens": "0.00000001", "outputPer1kTokens": "1"}],
        }
    )
    assert spec.limit == Decimal("2500.0001") and spec.period == "Daily"
    assert [t.percent for t in spec.thresholds] == [10, 90]
    assert spec.evaluation_interval == timedelta(seconds=10) and spec.enforcement == "Monitor"
    assert spec.pricing["m"].input_per_1k == Decimal("0.00000001") and spec.pricing["m"].currency == "USD"
    assert spec.default_pricing and spec.reservation_ttl == timedelta(minutes=10), "the CRD's defaults"
    tuned = parse_budget_spec(
        {
            "connectionRef": {"name": "c"},
            "limit": {"amount": "1"},
            "thresholds": [{"percent": 100, "action": "Halt"}],
            "defaultPricing": False,
            "reservationTTL": "90s",
        }
    )
    assert not tuned.default_pricing and tuned.reservation_ttl == timedelta(seconds=90)
    with pytest.raises(InvalidBudgetSpec):
        parse_budget_spec({"connectionRef": {"name": "c"}, "limit": {"amount": "x"}, "thresholds": []})
