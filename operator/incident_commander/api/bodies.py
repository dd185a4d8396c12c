"""Request bodies of the API: read (bounded in size, time and shape) and parsed strictly, with
messages that name the field. Everything but ``read_json`` is pure."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from incident_commander.api.context import ApiContext, ApiError

MAX_JSON_DEPTH = 32
"""Nesting levels a body may have (ours have three); deeper is refused with 400."""
MAX_JSON_DIGITS = 40
"""Digits a JSON number may have; Python refuses to parse integers past 4,300 digits with an
error that is not a JSON error, and nothing we accept needs more than 40."""
T = TypeVar("T")

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


async def read_json(request: web.Request, ctx: ApiContext) -> Any:
    if request.content_length is not None and request.content_length > ctx.max_body_bytes:
        raise ApiError(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    if request.content_type != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "the body must be application/json")
    try:
        async with asyncio.timeout(ctx.body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408, "RequestTimeout", f"the body did not arrive within {ctx.body_timeout:g}s"
        ) from None
    if len(raw) > ctx.max_body_bytes:
        raise ApiError(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """JSON as the API accepts it, or ApiError 400: never a 500, whatever the bytes.

    Refused: invalid JSON, NaN and Infinity, numbers of more than MAX_JSON_DIGITS digits, and
    nesting deeper than MAX_JSON_DEPTH (the parser's recursion is caught too, for depths it cannot
    even reach).
    """
    try:
        data = json.loads(
            raw, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant
        )
    except RecursionError:
        raise ApiError(400, "MalformedJson", f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "MalformedJson", f"the body is not valid JSON at line {exc.lineno} column {exc.colno}"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        message = str(exc) if isinstance(exc, _JsonRefused) else "the body is not valid JSON"
        raise ApiError(400, "MalformedJson", message) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "MalformedJson", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


class _JsonRefused(ValueError):
    """Valid JSON that the API refuses to take in (its message is the answer's)."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _JsonRefused(f"the body has a number of more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_JSON_DIGITS + 8:  # digits, a sign, a point and an exponent
        raise _JsonRefused(f"the body has a number of more than {MAX_JSON_DIGITS} digits")
    return float(text)


def _no_constant(text: str) -> Any:
    raise _JsonRefused(f"the body has {text}, which is not a JSON number")


def _depth(data: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(value, dict):
            stack.extend((item, level + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, level + 1) for item in value)
    return deepest


def parsed(parser: Callable[[Any], T], data: Any) -> T:
    """``parser(data)``, with a BodyError answered as 400 InvalidBody naming the field."""
    try:
        return parser(data)
    except BodyError as exc:
        raise ApiError(400, "InvalidBody", str(exc)) from None
