from __future__ import annotations

from typing import Any

import pytest

from incident_commander.api.bodies import BodyError, parse_converse_body, parse_route_body, parse_usage_body

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


CONVERSE = {
    "policy": "p",
    "taskType": "summarize",
    "complexity": 0.5,
    "messages": [{"role": "user", "content": [{"text": "how many tokens is this"}]}],
}


def test_usage_body_takes_a_reservation_and_a_task_type() -> None:
    body = parse_usage_body(
        {
            "policy": "p",
            "model": "m",
            "inputTokens": 1,
            "outputTokens": 2,
            "reservationId": "r1-x",
            "taskType": "t",
        }
    )
    assert (body.reservation_id, body.task_type) == ("r1-x", "t")


def test_converse_body_parses_with_defaults_and_an_estimate() -> None:
    body = parse_converse_body({**CONVERSE, "system": [{"text": "be brief"}]})
    assert body.inference == {"maxTokens": 1024} and body.max_tokens == 1024
    assert body.system == [{"text": "be brief"}]
    # 23 bytes of message -> 12, 8 bytes of system -> 4, framing 16 + 8 per message.
    assert body.estimated_input_tokens == 12 + 4 + 16 + 8
    given = parse_converse_body(
        {**CONVERSE, "estimatedInputTokens": 5, "inferenceConfig": {"maxTokens": 7, "temperature": 0.2}}
    )
    assert (given.estimated_input_tokens, given.inference) == (5, {"maxTokens": 7, "temperature": 0.2})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}, r"messages\[0\].role"),
        ({"messages": [{"role": "user", "content": [{"image": "x"}]}]}, r"messages\[0\].content\[0\]"),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, r"messages\[0\].role"),
        ({"inferenceConfig": {"maxTokens": 0}}, "maxTokens"),
        ({"inferenceConfig": {"topK": 3}}, "topK"),
        ({"inferenceConfig": {"stopSequences": ["a"] * 5}}, "stopSequences"),
        ({"system": [{"text": ""}]}, "text"),
        ({"estimatedInputTokens": -1}, "estimatedInputTokens"),
        ({"modelId": "x"}, "modelId"),
    ],
)
def test_converse_body_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError, match=field):
        parse_converse_body({**CONVERSE, **change})
