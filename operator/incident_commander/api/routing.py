"""Model routing decisions for ``POST /v1/route``. Pure.

The policy's ``modelRouting`` picks the complex model at or above the
complexity threshold and the simple model below it. The budget's enforced
action (already folded into the effective routing) can force the simple model
(Downgrade) or refuse routing altogether (Halt), except for the policy's most
severe severity (the first entry of ``spec.severities``, ``critical`` by
default), which keeps the simple model so an outage is never left unattended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

HALT_STATUS = 402
"""HTTP status of a refusal under Halt: distinct from 403 (not allowed) and 429 (too fast)."""


class EffectiveRoutingView(Protocol):
    """The routing in force after the budget's action (budget.enforcement.EffectiveRouting)."""

    @property
    def mode(self) -> str: ...
    @property
    def simple_model(self) -> str: ...
    @property
    def complex_model(self) -> str: ...
    @property
    def complexity_threshold(self) -> float: ...
    @property
    def sampling_rate(self) -> float: ...
    @property
    def halted(self) -> bool: ...
    @property
    def budget_phase(self) -> str | None: ...
    @property
    def throttle_factor(self) -> float: ...


@dataclass(frozen=True, kw_only=True)
class RouteRequest:
    policy: str
    task_type: str
    complexity: float
    estimated_tokens: int
    severity: str | None = None


@dataclass(frozen=True, kw_only=True)
class RouteDecision:
    model: str
    reason: str
    budget_phase: str | None
    sampling_rate: float


@dataclass(frozen=True, kw_only=True)
class RouteRefused:
    reason: str
    message: str
    budget_phase: str | None


def decide_route(
    request: RouteRequest, routing: EffectiveRoutingView, *, critical_severity: str | None
) -> RouteDecision | RouteRefused:
    phase = routing.budget_phase
    if routing.halted:
        if critical_severity is not None and request.severity == critical_severity:
            return RouteDecision(
                model=routing.simple_model,
                reason=f"budget halted; severity {critical_severity} keeps the simple model",
                budget_phase=phase,
                sampling_rate=routing.sampling_rate,
            )
        return RouteRefused(
            reason="BudgetHalted",
            message=(
                f"the budget is halted (phase {phase}); only severity {critical_severity} is routed"
                if critical_severity
                else f"the budget is halted (phase {phase})"
            ),
            budget_phase=phase,
        )
    threshold = routing.complexity_threshold
    if request.complexity >= threshold:
        model = routing.complex_model
        reason = f"complexity {request.complexity:.2f} >= threshold {threshold:.2f}"
        if model == routing.simple_model and routing.mode != "Normal":
            reason += f"; budget {routing.mode.lower()}: simple model only"
    else:
        model = routing.simple_model
        reason = f"complexity {request.complexity:.2f} < threshold {threshold:.2f}"
    return RouteDecision(model=model, reason=reason, budget_phase=phase, sampling_rate=routing.sampling_rate)
