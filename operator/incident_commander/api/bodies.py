"""Request bodies of the API, parsed strictly with messages that name the field. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_TOKENS = 100_000_000
"""Upper bound on any token count in one request: far above any model's context, far below overflow."""


class BodyError(ValueError):
    """The body is JSON but not the expected shape; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class RouteBody:
    policy: str
    task_type: str
    complexity: float
    estimated_tokens: int
    severity: str | None


@dataclass(frozen=True, kw_only=True)
class UsageBody:
    policy: str
    model: str
    input_tokens: int
    output_tokens: int
    incident_id: str | None


def parse_route_body(data: Any) -> RouteBody:
    body = _object(
        data, required={"policy", "taskType", "complexity", "estimatedTokens"}, optional={"severity"}
    )
    return RouteBody(
        policy=_string(body, "policy", max_length=253),
        task_type=_string(body, "taskType", max_length=128),
        complexity=_number(body, "complexity", low=0.0, high=1.0),
        estimated_tokens=_integer(body, "estimatedTokens", low=0, high=MAX_TOKENS),
        severity=_string(body, "severity", max_length=31) if "severity" in body else None,
    )


def parse_usage_body(data: Any) -> UsageBody:
    body = _object(data, required={"policy", "model", "inputTokens", "outputTokens"}, optional={"incidentId"})
    return UsageBody(
        policy=_string(body, "policy", max_length=253),
        model=_string(body, "model", max_length=256),
        input_tokens=_integer(body, "inputTokens", low=0, high=MAX_TOKENS),
        output_tokens=_integer(body, "outputTokens", low=0, high=MAX_TOKENS),
        incident_id=_string(body, "incidentId", max_length=256) if "incidentId" in body else None,
    )


def _object(data: Any, *, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object")
    missing = sorted(required - data.keys())
    if missing:
        raise BodyError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(data.keys() - required - optional)
    if unknown:
        raise BodyError(f"unknown field(s): {', '.join(unknown)[:200]}")
    return data


def _string(body: Mapping[str, Any], name: str, *, max_length: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise BodyError(f"{name} must be a string")
    if not value or len(value) > max_length:
        raise BodyError(f"{name} must be 1 to {max_length} characters long")
    return value


def _number(body: Mapping[str, Any], name: str, *, low: float, high: float) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(f"{name} must be a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise BodyError(f"{name} must be between {low:g} and {high:g}")
    return number


def _integer(body: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"{name} must be an integer")
    if not low <= value <= high:
        raise BodyError(f"{name} must be between {low} and {high}")
    return value
