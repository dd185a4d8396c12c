"""What a budget's state means for one IncidentPolicy's routing and sampling. Pure.

Actions are cumulative, in the order Notify < Downgrade < Throttle < Halt:

| enforced action | mode       | complex model     | sampling rate                       | throttle | halted |
| --------------- | ---------- | ----------------- | ----------------------------------- | -------- | ------ |
| none, Notify    | Normal     | as configured     | detectionRate                       | 1.0      | no     |
| Downgrade       | Downgraded | the simple model  | (detectionRate + minDetectionRate)/2| 1.0      | no     |
| Throttle        | Throttled  | the simple model  | minDetectionRate                    | 0.25     | no     |
| Halt            | Halted     | the simple model  | minDetectionRate                    | 0.25     | yes    |

Under ``enforcement: Monitor`` the mode is ``Monitoring`` while a threshold is crossed, and nothing
else changes. ``halted`` means: refuse non-critical routing; critical incidents keep the simple
model (the HTTP API applies that per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from incident_commander.budget.model import BudgetState, Phase

Mode = Literal["Normal", "Monitoring", "Downgraded", "Throttled", "Halted"]
THROTTLE_FACTOR = 0.25
"""Fraction of the normal /v1/route rate limit left under Throttle and Halt."""


@dataclass(frozen=True, kw_only=True)
class EffectiveRouting:
    mode: Mode
    simple_model: str
    complex_model: str
    complexity_threshold: float
    sampling_rate: float
    throttle_factor: float
    halted: bool
    budget_phase: Phase | None

    def model_routing_status(self) -> dict[str, Any]:
        """``status.effectiveModelRouting`` of an IncidentPolicy."""
        return {
            "mode": self.mode,
            "simpleModel": self.simple_model,
            "complexModel": self.complex_model,
            "complexityThreshold": self.complexity_threshold,
        }


def effective_routing(
    *,
    simple_model: str,
    complex_model: str,
    complexity_threshold: float,
    detection_rate: float,
    min_detection_rate: float,
    state: BudgetState | None,
) -> EffectiveRouting:
    floor = min(min_detection_rate, detection_rate)
    action = state.enforced_action if state else None
    phase = state.phase if state else None
    if action in (None, "Notify"):
        monitoring = state is not None and state.enforcement == "Monitor" and state.active_action is not None
        return EffectiveRouting(
            mode="Monitoring" if monitoring else "Normal",
            simple_model=simple_model,
            complex_model=complex_model,
            complexity_threshold=complexity_threshold,
            sampling_rate=detection_rate,
            throttle_factor=1.0,
            halted=False,
            budget_phase=phase,
        )
    if action == "Downgrade":
        return EffectiveRouting(
            mode="Downgraded",
            simple_model=simple_model,
            complex_model=simple_model,
            complexity_threshold=complexity_threshold,
            sampling_rate=round((detection_rate + floor) / 2, 6),
            throttle_factor=1.0,
            halted=False,
            budget_phase=phase,
        )
    return EffectiveRouting(
        mode="Halted" if action == "Halt" else "Throttled",
        simple_model=simple_model,
        complex_model=simple_model,
        complexity_threshold=complexity_threshold,
        sampling_rate=floor,
        throttle_factor=THROTTLE_FACTOR,
        halted=action == "Halt",
        budget_phase=phase,
    )
