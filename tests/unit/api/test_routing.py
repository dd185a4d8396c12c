from __future__ import annotations

from dataclasses import dataclass

from incident_commander.api.routing import RouteDecision, RouteRefused, RouteRequest, decide_route


@dataclass(frozen=True)
class Routing:
    mode: str = "Normal"
    simple_model: str = "small"
    complex_model: str = "large"
    complexity_threshold: float = 0.7
    sampling_rate: float = 1.0
    halted: bool = False
    budget_phase: str | None = None
    throttle_factor: float = 1.0


def request(complexity: float, severity: str | None = None) -> RouteRequest:
    return RouteRequest(
        policy="p", task_type="t", complexity=complexity, estimated_tokens=1, severity=severity
    )


def test_threshold_picks_the_model() -> None:
    assert decide_route(request(0.7), Routing(), critical_severity="critical").model == "large"  # type: ignore[union-attr]
    assert decide_route(request(0.69), Routing(), critical_severity="critical").model == "small"  # type: ignore[union-attr]


def test_downgrade_routes_complex_work_to_the_simple_model() -> None:
    routing = Routing(mode="Downgraded", complex_model="small", sampling_rate=0.4, budget_phase="Critical")
    decision = decide_route(request(0.9), routing, critical_severity="critical")
    assert isinstance(decision, RouteDecision)
    assert decision.model == "small" and decision.budget_phase == "Critical" and decision.sampling_rate == 0.4
    assert "downgraded" in decision.reason


def test_halt_refuses_all_but_the_most_severe() -> None:
    routing = Routing(mode="Halted", complex_model="small", halted=True, budget_phase="Exceeded")
    refused = decide_route(request(0.9, "high"), routing, critical_severity="critical")
    assert isinstance(refused, RouteRefused) and refused.reason == "BudgetHalted"
    assert isinstance(decide_route(request(0.9), routing, critical_severity="critical"), RouteRefused)
    kept = decide_route(request(0.9, "critical"), routing, critical_severity="critical")
    assert isinstance(kept, RouteDecision) and kept.model == "small"


def test_halt_without_severities_refuses_everything() -> None:
    routing = Routing(halted=True, budget_phase="Exceeded")
    assert isinstance(decide_route(request(0.1, "critical"), routing, critical_severity=None), RouteRefused)
