import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from incident_commander.aws.errors import classify, redact


def client_error(code: str, status: int = 400, message: str = "m") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "reason", "retryable"),
    [
        (client_error("ThrottlingException"), "Throttled", True),
        (client_error("Throttling"), "Throttled", True),
        (client_error("Whatever", 429), "Throttled", True),
        (client_error("ServiceUnavailable", 503), "Throttled", True),
        (client_error("InternalFailure", 500), "ServiceError", True),
        (client_error("InvalidClientTokenId", 403), "InvalidClientTokenId", False),
        (client_error("SignatureDoesNotMatch", 403), "SignatureDoesNotMatch", False),
        (client_error("ExpiredToken", 403), "ExpiredToken", False),
        (client_error("AccessDeniedException", 400), "AccessDenied", False),
        (client_error("ValidationException"), "RequestFailed", False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "EndpointUnreachable", True),
        (ReadTimeoutError(endpoint_url="http://x"), "Timeout", True),
        (ConnectTimeoutError(endpoint_url="http://x"), "Timeout", True),
        (TimeoutError(), "Timeout", True),
        (RuntimeError("boom"), "InternalError", False),
    ],
)
def test_classification(exc: BaseException, reason: str, retryable: bool) -> None:
    error = classify(exc)
    assert (error.reason, error.retryable) == (reason, retryable)


def test_access_key_ids_are_masked_in_messages() -> None:
    error = classify(client_error("InvalidClientTokenId", 403, "The key AKIAABCDEFGHIJKLMNOP is invalid"))
    assert "AKIA" not in error.message and "****" in error.message
    assert redact("ASIA1234567890ABCDEF and more") == "**** and more"


def test_a_failed_credentials_refresh_inside_a_call_is_a_credentials_error() -> None:
    from incident_commander.aws.credentials import CredentialsError

    error = classify(
        CredentialsError("AssumeRoleFailed", "AssumeRole arn:aws:iam::1:role/r failed: AccessDenied")
    )
    assert (error.code, error.reason, error.retryable, error.is_credentials) == (
        "AssumeRoleFailed",
        "AssumeRoleFailed",
        False,
        True,
    )
