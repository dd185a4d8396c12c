"""Request bodies of the API: read (bounded in size, time and shape) and parsed strictly, with
messages that name the field. Everything but ``read_json`` is pure."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
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
    reservation_id: str | None = None
    task_type: str | None = None


MAX_MESSAGES = 100
MAX_BLOCKS = 20
MAX_TEXT = 60_000
MAX_OUTPUT_TOKENS = 128_000
DEFAULT_MAX_TOKENS = 1024
"""``inferenceConfig.maxTokens`` when the caller gives none: it bounds the reservation."""


@dataclass(frozen=True, kw_only=True)
class ConverseBody:
    policy: str
    task_type: str
    complexity: float
    severity: str | None
    incident_id: str | None
    messages: list[dict[str, Any]]
    system: list[dict[str, Any]]
    inference: dict[str, Any]
    """``inferenceConfig`` as Bedrock takes it, ``maxTokens`` always set."""
    estimated_input_tokens: int
    """The caller's estimate, or one from the text's length (``estimate_input_tokens``)."""

    @property
    def max_tokens(self) -> int:
        return int(self.inference["maxTokens"])


_ROUTE_REQUIRED = frozenset({"policy", "taskType", "complexity", "estimatedTokens"})
_ROUTE_OPTIONAL = frozenset({"severity"})


def parse_route_body(data: Any) -> RouteBody:
    body = _object(data, required=_ROUTE_REQUIRED, optional=_ROUTE_OPTIONAL)
    return RouteBody(
        policy=_string(body, "policy", max_length=253),
        task_type=_string(body, "taskType", max_length=128),
        complexity=_number(body, "complexity", low=0.0, high=1.0),
        estimated_tokens=_integer(body, "estimatedTokens", low=0, high=MAX_TOKENS),
        severity=_string(body, "severity", max_length=31) if "severity" in body else None,
    )


def parse_usage_body(data: Any) -> UsageBody:
    body = _object(
        data,
        required={"policy", "model", "inputTokens", "outputTokens"},
        optional={"incidentId", "reservationId", "taskType"},
    )
    return UsageBody(
        policy=_string(body, "policy", max_length=253),
        model=_string(body, "model", max_length=256),
        input_tokens=_integer(body, "inputTokens", low=0, high=MAX_TOKENS),
        output_tokens=_integer(body, "outputTokens", low=0, high=MAX_TOKENS),
        incident_id=_string(body, "incidentId", max_length=256) if "incidentId" in body else None,
        reservation_id=_string(body, "reservationId", max_length=64) if "reservationId" in body else None,
        task_type=_string(body, "taskType", max_length=128) if "taskType" in body else None,
    )


def parse_converse_body(data: Any) -> ConverseBody:
    body = _object(
        data,
        required={"policy", "taskType", "complexity", "messages"},
        optional={"severity", "incidentId", "system", "inferenceConfig", "estimatedInputTokens"},
    )
    messages = body["messages"]
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise BodyError(f"messages must be a list of 1 to {MAX_MESSAGES} messages")
    parsed_messages = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        entry = _object_at(message, where, required={"role", "content"}, optional=set())
        role = entry["role"]
        if role not in ("user", "assistant"):
            raise BodyError(f"{where}.role must be user or assistant")
        parsed_messages.append({"role": role, "content": _text_blocks(entry["content"], f"{where}.content")})
    if parsed_messages[0]["role"] != "user":
        raise BodyError("messages[0].role must be user: a conversation starts with the user")
    system = _text_blocks(body["system"], "system") if "system" in body else []
    inference = _inference(body.get("inferenceConfig", {}))
    if "estimatedInputTokens" in body:
        estimated = _integer(body, "estimatedInputTokens", low=0, high=MAX_TOKENS)
    else:
        estimated = estimate_input_tokens(system, parsed_messages)
    return ConverseBody(
        policy=_string(body, "policy", max_length=253),
        task_type=_string(body, "taskType", max_length=128),
        complexity=_number(body, "complexity", low=0.0, high=1.0),
        severity=_string(body, "severity", max_length=31) if "severity" in body else None,
        incident_id=_string(body, "incidentId", max_length=256) if "incidentId" in body else None,
        messages=parsed_messages,
        system=system,
        inference=inference,
        estimated_input_tokens=estimated,
    )


def estimate_input_tokens(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> int:
    """An upper estimate of the input tokens before the call: half a token per UTF-8 byte (Claude's
    tokenizers average three to four characters a token for English; fewer bytes per token for
    other scripts still stay under this), plus a few tokens of framing per message."""
    texts = [block["text"] for block in system]
    for message in messages:
        texts.extend(block["text"] for block in message["content"])
    return sum(math.ceil(len(t.encode()) / 2) for t in texts) + 16 + 8 * len(messages)


def _object_at(data: Any, where: str, *, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    try:
        return _object(data, required=required, optional=optional)
    except BodyError as exc:
        raise BodyError(f"{where}: {exc}") from None


def _text_blocks(data: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_BLOCKS:
        raise BodyError(f"{where} must be a list of 1 to {MAX_BLOCKS} blocks")
    blocks = []
    for index, block in enumerate(data):
        entry = _object_at(block, f"{where}[{index}]", required={"text"}, optional=set())
        blocks.append({"text": _string(entry, "text", max_length=MAX_TEXT)})
    return blocks


def _inference(data: Any) -> dict[str, Any]:
    config = _object_at(
        data,
        "inferenceConfig",
        required=set(),
        optional={"maxTokens", "temperature", "topP", "stopSequences"},
    )
    inference: dict[str, Any] = {
        "maxTokens": _integer(config, "maxTokens", low=1, high=MAX_OUTPUT_TOKENS)
        if "maxTokens" in config
        else DEFAULT_MAX_TOKENS
    }
    for name in ("temperature", "topP"):
        if name in config:
            inference[name] = _number(config, name, low=0.0, high=1.0)
    if "stopSequences" in config:
        stops = config["stopSequences"]
        if (
            not isinstance(stops, list)
            or len(stops) > 4
            or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in stops)
        ):
            raise BodyError(
                "inferenceConfig.stopSequences must be a list of up to 4 strings of 1 to 64 characters"
            )
        inference["stopSequences"] = list(stops)
    return inference


def _object(data: Any, *, required: AbstractSet[str], optional: AbstractSet[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object")
    keys = data.keys()
    if not keys >= required:  # the lists are built only for the message
        raise BodyError(f"missing field(s): {', '.join(sorted(required - keys))}")
    if len(keys) > len(required) and not keys - required <= optional:
        raise BodyError(f"unknown field(s): {', '.join(sorted(keys - required - optional))[:200]}")
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
    # The exact header most clients send needs no parsing (aiohttp's content_type parses it).
    if (
        request.headers.get("Content-Type") != "application/json"
        and request.content_type != "application/json"
    ):
        raise ApiError(415, "UnsupportedMediaType", "the body must be application/json")
    content = request.content
    if content.is_eof():
        # All of it arrived with the head and is buffered (decoded, if it was chunked or
        # compressed): take it at once, without read()'s loop of awaits.
        raw = content.read_nowait()
    else:
        if request.content_length is not None and request.content_length > ctx.max_body_bytes:
            raise ApiError(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
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
        # What json.loads does with bytes, with one decoder built once (loads builds one per call
        # when given parse hooks). An object's brace and a non-zero byte are UTF-8 to
        # json.detect_encoding as well: the usual body skips its look at byte-order marks.
        encoding = "utf-8" if raw[:1] == b"{" and raw[1:2] != b"\0" else json.detect_encoding(raw)
        data = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except RecursionError:
        raise ApiError(400, "MalformedJson", f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "MalformedJson", f"the body is not valid JSON at line {exc.lineno} column {exc.colno}"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        message = str(exc) if isinstance(exc, _JsonRefused) else "the body is not valid JSON"
        raise ApiError(400, "MalformedJson", message) from None
    # Each level opens a bracket: a body with fewer brackets than the limit cannot nest deeper.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
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


_DECODER = json.JSONDecoder(parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant)


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
