"""What each budget action does to routing and sampling."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from incident_commander.budget.enforcement import effective_routing
from incident_commander.budget.model import Action, BudgetState, Enforcement, Phase

NOW = datetime(2025, 3, 10, tzinfo=UTC)


def state(
    phase: Phase, active: Action | None, enforced: Action | None, enforcement: Enforcement = "Enforce"
) -> BudgetState:
    return BudgetState(
        namespace="ns",
        name="b",
        phase=phase,
        active_action=active,
        enforced_action=enforced,
        utilization=Decimal(0),
        total=Decimal(0),
        limit=Decimal(1),
        currency="USD",
        period_start=NOW,
        period_end=NOW,
        evaluated_at=NOW,
        enforcement=enforcement,
    )


def route(s: BudgetState | None) -> tuple[str, str, float, float, bool]:
    r = effective_routing(
        simple_model="small",
        complex_model="large",
        complexity_threshold=0.6,
        detection_rate=0.8,
        min_detection_rate=0.2,
        state=s,
    )
    assert r.simple_model == "small" and r.complexity_threshold == 0.6
    return r.mode, r.complex_model, r.sampling_rate, r.throttle_factor, r.halted


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (None, ("Normal", "large", 0.8, 1.0, False)),
        (state("Ok", None, None), ("Normal", "large", 0.8, 1.0, False)),
        (state("Warning", "Notify", "Notify"), ("Normal", "large", 0.8, 1.0, False)),
        (state("Critical", "Downgrade", "Downgrade"), ("Downgraded", "small", 0.5, 1.0, False)),
        (state("Critical", "Throttle", "Throttle"), ("Throttled", "small", 0.2, 0.25, False)),
        (state("Exceeded", "Halt", "Halt"), ("Halted", "small", 0.2, 0.25, True)),
        (state("Exceeded", "Halt", None, "Monitor"), ("Monitoring", "large", 0.8, 1.0, False)),
        (state("Exceeded", "Halt", "Throttle"), ("Throttled", "small", 0.2, 0.25, False)),  # break-glass
    ],
)
def test_actions(s: BudgetState | None, expected: tuple[str, str, float, float, bool]) -> None:
    assert route(s) == expected


def test_status_shape() -> None:
    r = effective_routing(
        simple_model="s",
        complex_model="c",
        complexity_threshold=0.7,
        detection_rate=1.0,
        min_detection_rate=0.1,
        state=state("Critical", "Downgrade", "Downgrade"),
    )
    assert r.model_routing_status() == {
        "mode": "Downgraded",
        "simpleModel": "s",
        "complexModel": "s",
        "complexityThreshold": 0.7,
    }
    assert r.sampling_rate == 0.55 and r.budget_phase == "Critical"
