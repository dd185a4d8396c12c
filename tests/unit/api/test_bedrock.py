"""What a failed Bedrock call becomes in the API's answer (api/bedrock.failure). Pure."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError

from incident_commander.api.bedrock import failure


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} from Bedrock"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Converse",
    )


@pytest.mark.parametrize(
    ("code", "status", "answer", "reason", "outcome"),
    [
        ("ThrottlingException", 429, 429, "ModelThrottled", "throttled"),
        ("ServiceQuotaExceededException", 400, 429, "ModelThrottled", "throttled"),
        ("ModelNotReadyException", 429, 503, "ModelUnavailable", "failed"),
        ("ServiceUnavailableException", 503, 503, "ModelUnavailable", "failed"),
        ("ValidationException", 400, 422, "ModelRequestRejected", "rejected"),
        ("ResourceNotFoundException", 404, 422, "ModelRequestRejected", "rejected"),
        ("AccessDeniedException", 403, 502, "ModelAccessDenied", "failed"),
        ("UnrecognizedClientException", 403, 502, "ModelAccessDenied", "failed"),
        ("ModelTimeoutException", 408, 504, "ModelTimeout", "failed"),
        ("InternalServerException", 500, 503, "ModelUnavailable", "failed"),
        ("SomethingNew", 500, 502, "ModelCallFailed", "failed"),
    ],
)
def test_bedrock_errors_become_clear_api_errors(
    code: str, status: int, answer: int, reason: str, outcome: str
) -> None:
    failed, counted = failure("Converse", client_error(code, status))
    assert (failed.status, failed.reason, counted) == (answer, reason, outcome)
    assert code in failed.message and failed.message.startswith("Bedrock Converse:")
    assert (failed.retry_after is not None) == (answer in (429, 503))


def test_errors_in_a_stream_and_timeouts() -> None:
    stream_error = EventStreamError(
        {"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream"
    )
    assert failure("ConverseStream", stream_error)[0].reason == "ModelThrottled"
    timeout = ReadTimeoutError(endpoint_url="http://bedrock")
    assert failure("Converse", timeout)[0].status == 504
