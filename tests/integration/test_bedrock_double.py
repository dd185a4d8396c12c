"""The Bedrock test double, spoken to by real boto3 clients: what botocore parses is what tests get.

No control plane is needed; the forwarding test uses the session's moto server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from incident_commander.aws.errors import classify
from tests.support.bedrock import BedrockDouble, encode_event
from tests.support.endpoints import MotoServer

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
KEY_ID = "AKIADOUBLETEST00001"


@pytest.fixture
def double() -> Iterator[BedrockDouble]:
    with BedrockDouble(reply="one two three four five") as server:
        yield server


def client(url: str, service: str = "bedrock-runtime", **config: Any) -> Any:
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key="secret",
        config=Config(**{"retries": {"mode": "standard", "total_max_attempts": 1}, **config}),
    )


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": text}]}], **extra}


def test_converse_answers_with_token_usage_and_records_the_request(double: BedrockDouble) -> None:
    response = client(double.url).converse(
        **ask("how many tokens is this", system=[{"text": "be brief"}], inferenceConfig={"maxTokens": 100})
    )
    assert response["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "one two three four five"}],
    }
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": 7, "outputTokens": 5, "totalTokens": 12}
    assert response["metrics"]["latencyMs"] >= 0
    [call] = double.calls_of("Converse")
    assert call.model_id == MODEL and call.status == 200
    assert call.access_key_id == KEY_ID and call.region == "eu-west-1" and call.service == "bedrock"
    assert call.body["messages"][0]["content"][0]["text"] == "how many tokens is this"
    assert call.body["inferenceConfig"] == {"maxTokens": 100}


def test_max_tokens_cuts_the_answer(double: BedrockDouble) -> None:
    response = client(double.url).converse(**ask("hi", inferenceConfig={"maxTokens": 2}))
    assert response["output"]["message"]["content"][0]["text"] == "one two"
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] == 2


def test_reply_may_depend_on_the_request() -> None:
    with BedrockDouble(reply=lambda body: body["messages"][-1]["content"][0]["text"].upper()) as server:
        response = client(server.url).converse(**ask("echo me"))
    assert response["output"]["message"]["content"][0]["text"] == "ECHO ME"


def test_converse_stream_is_parsed_by_botocore_with_usage_in_the_metadata_event(
    double: BedrockDouble,
) -> None:
    response = client(double.url).converse_stream(**ask("stream this please"))
    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * 5,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "one two three four five"
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}
    assert [c.operation for c in double.calls] == ["ConverseStream"]


def test_stream_events_arrive_as_they_are_sent() -> None:
    with BedrockDouble(reply="a b c d", event_delay=0.15) as server:
        response = client(server.url).converse_stream(**ask("slowly"))
        started = time.monotonic()
        arrivals = [time.monotonic() - started for _ in response["stream"]]
    assert len(arrivals) == 8  # start, 4 deltas, stop, messageStop, metadata
    assert arrivals[0] < arrivals[-1] - 0.6, arrivals  # not one block at the end


def test_throttling_has_bedrocks_shape_as_botocore_parses_it(double: BedrockDouble) -> None:
    double.throttle(1)
    with pytest.raises(ClientError) as raised:
        client(double.url).converse(**ask("hi"))
    error = raised.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert "Too many requests" in error["Error"]["Message"]
    assert classify(raised.value).reason == "Throttled"
    assert client(double.url).converse(**ask("hi"))["usage"]["outputTokens"] == 5  # only the next 1 call


def test_botocore_retries_throttling_and_each_attempt_is_recorded(double: BedrockDouble) -> None:
    double.throttle(2, operations=["Converse"])
    retrying = client(double.url, retries={"mode": "standard", "total_max_attempts": 3})
    assert retrying.converse(**ask("hi"))["stopReason"] == "end_turn"
    assert [c.status for c in double.calls_of("Converse")] == [429, 429, 200]


def test_throttling_a_stream_before_it_starts(double: BedrockDouble) -> None:
    double.throttle(1, operations=["ConverseStream"])
    with pytest.raises(ClientError) as raised:
        client(double.url).converse_stream(**ask("hi"))
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"


def test_an_exception_event_in_the_middle_of_a_stream(double: BedrockDouble) -> None:
    double.fail_stream(1, after_deltas=2)
    stream = client(double.url).converse_stream(**ask("hi"))["stream"]
    received: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as raised:
        for event in stream:
            received.append(event)
    assert raised.value.response["Error"]["Code"] == "throttlingException"
    assert [next(iter(e)) for e in received] == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert not any("metadata" in e for e in received)


def test_other_injected_errors(double: BedrockDouble) -> None:
    double.fail(1, status=503, code="ServiceUnavailableException", message="busy")
    with pytest.raises(ClientError) as raised:
        client(double.url).converse(**ask("hi"))
    assert raised.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_latency_on_demand(double: BedrockDouble) -> None:
    double.latency = 0.5
    started = time.monotonic()
    client(double.url).converse(**ask("hi"))
    assert time.monotonic() - started >= 0.5
    with pytest.raises(ReadTimeoutError):
        client(double.url, read_timeout=0.2).converse(**ask("hi"))


def test_unknown_model_and_bad_conversation_are_validation_errors(double: BedrockDouble) -> None:
    runtime = client(double.url)
    with pytest.raises(ClientError) as raised:
        runtime.converse(**{**ask("hi"), "modelId": "anthropic.claude-v9"})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        runtime.converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "x"}]}])
    # A cross-region inference profile of a known model is accepted, as on Bedrock.
    assert runtime.converse(**{**ask("hi"), "modelId": "us." + MODEL})["stopReason"] == "end_turn"


def test_control_plane_lists_foundation_models_and_runtime_lists_async_invokes(double: BedrockDouble) -> None:
    listing = client(double.url, "bedrock").list_foundation_models()
    ids = [m["modelId"] for m in listing["modelSummaries"]]
    assert MODEL in ids
    assert listing["modelSummaries"][0]["modelArn"].startswith("arn:aws:bedrock:eu-west-1::foundation-model/")
    assert client(double.url, "bedrock").list_foundation_models(byProvider="Meta")["modelSummaries"] == []
    assert client(double.url).list_async_invokes(maxResults=1)["asyncInvokeSummaries"] == []
    assert [c.operation for c in double.calls] == [
        "ListFoundationModels",
        "ListFoundationModels",
        "ListAsyncInvokes",
    ]


def test_other_services_are_forwarded_to_the_upstream(moto: MotoServer) -> None:
    with BedrockDouble(upstream=moto.url) as server:
        identity = client(server.url, "sts").get_caller_identity()
        assert identity["Account"] == "123456789012"
        assert client(server.url, "bedrock").list_foundation_models()["modelSummaries"]
        [forwarded] = server.forwarded()
    assert forwarded.service == "sts" and forwarded.status == 200


def test_without_an_upstream_other_services_get_unknown_operation(double: BedrockDouble) -> None:
    with pytest.raises(ResponseParserError):  # a JSON error where STS speaks XML: never a success
        client(double.url, "sts").get_caller_identity()
    assert [(c.service, c.operation, c.status) for c in double.calls] == [("sts", None, 404)]


def test_event_framing_matches_botocores_decoder() -> None:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(encode_event({":event-type": "x", "k": "v" * 300}, b'{"a": 1}') * 2)
    messages = list(buffer)
    assert len(messages) == 2
    assert messages[0].headers == {":event-type": "x", "k": "v" * 300}
    assert messages[0].payload == b'{"a": 1}'


def test_stop_closes_the_port() -> None:
    server = BedrockDouble().start()
    url = server.url
    server.stop()
    with pytest.raises(Exception, match="Could not connect"):
        client(url, "bedrock").list_foundation_models()
