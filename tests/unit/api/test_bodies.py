from __future__ import annotations

from typing import Any

import pytest

from incident_commander.api.bodies import BodyError, parse_route_body, parse_usage_body

ROUTE = {"policy": "p", "taskType": "triage", "complexity": 0.5, "estimatedTokens": 100}


def test_route_body_parses() -> None:
    body = parse_route_body({**ROUTE, "severity": "critical"})
    assert (body.policy, body.complexity, body.estimated_tokens, body.severity) == ("p", 0.5, 100, "critical")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"complexity": 1.01}, "complexity"),
        ({"complexity": -0.1}, "complexity"),
        ({"complexity": True}, "complexity"),
        ({"complexity": "0.5"}, "complexity"),
        ({"complexity": float("nan")}, "complexity"),
        ({"estimatedTokens": 1.5}, "estimatedTokens"),
        ({"estimatedTokens": -1}, "estimatedTokens"),
        ({"estimatedTokens": 10**12}, "estimatedTokens"),
        ({"taskType": ""}, "taskType"),
        ({"policy": 3}, "policy"),
        ({"severity": None}, "severity"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_route_body_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError, match=field):
        parse_route_body({**ROUTE, **change})


def test_missing_fields_are_listed() -> None:
    with pytest.raises(BodyError, match="complexity, estimatedTokens"):
        parse_route_body({"policy": "p", "taskType": "t"})


@pytest.mark.parametrize("data", [[], "x", 3, None])
def test_body_must_be_an_object(data: Any) -> None:
    with pytest.raises(BodyError, match="JSON object"):
        parse_usage_body(data)


def test_usage_body() -> None:
    body = parse_usage_body(
        {"policy": "p", "model": "m", "inputTokens": 3, "outputTokens": 4, "incidentId": "i-1"}
    )
    assert (body.input_tokens, body.output_tokens, body.incident_id) == (3, 4, "i-1")
    with pytest.raises(BodyError, match="outputTokens"):
        parse_usage_body({"policy": "p", "model": "m", "inputTokens": 3, "outputTokens": "4"})
