"""Classify AWS call failures into the reasons users see in conditions.

Messages are built from error codes and botocore's own messages, which name
endpoints and operations but never the credentials; the access key id that
some AWS messages quote is masked anyway.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from incident_commander.aws.credentials import CredentialsError

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AuthFailure",
    }
)
_ACCESS_KEY = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")


@dataclass(frozen=True, kw_only=True)
class ProbeError:
    """A failed call: the AWS (or transport) code, the reason class, and whether retrying may help."""

    code: str
    reason: str
    message: str
    retryable: bool

    credentials: bool = False
    """The credentials themselves could not be had (a refresh of a role chain or web identity failed)."""

    @property
    def is_credentials(self) -> bool:
        return self.credentials or self.reason in CREDENTIAL_CODES or self.reason == "NoCredentials"


def redact(message: str) -> str:
    """Mask access key ids that AWS error messages sometimes quote."""
    return _ACCESS_KEY.sub("****", message)


def classify(exc: BaseException) -> ProbeError:
    """Map an exception from a botocore call to a ProbeError."""
    if isinstance(exc, CredentialsError):
        # Raised by a refresh of expiring STS credentials inside the call (its message names roles
        # and files, never key material).
        return ProbeError(
            code=exc.reason, reason=exc.reason, message=exc.message, retryable=False, credentials=True
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = redact(str(error.get("Message") or code))
        if code in THROTTLING_CODES or status in (429, 503):
            return ProbeError(code=code, reason="Throttled", message=message, retryable=True)
        if code in CREDENTIAL_CODES:
            return ProbeError(code=code, reason=code, message=message, retryable=False)
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return ProbeError(code=code, reason="AccessDenied", message=message, retryable=False)
        if status >= 500:
            return ProbeError(code=code, reason="ServiceError", message=message, retryable=True)
        return ProbeError(code=code, reason="RequestFailed", message=message, retryable=False)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | asyncio.TimeoutError | TimeoutError):
        return ProbeError(code=type(exc).__name__, reason="Timeout", message=redact(str(exc)), retryable=True)
    if isinstance(exc, EndpointConnectionError):
        return ProbeError(
            code="EndpointConnectionError",
            reason="EndpointUnreachable",
            message=redact(str(exc)),
            retryable=True,
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProbeError(code=type(exc).__name__, reason="NoCredentials", message=str(exc), retryable=False)
    if isinstance(exc, ResponseParserError):
        # An answer that is not AWS's (a proxy's or load balancer's page): often transient.
        return ProbeError(
            code="ResponseParserError",
            reason="InvalidResponse",
            message=redact(str(exc))[:300],
            retryable=True,
        )
    if isinstance(exc, BotoCoreError):
        # ConnectionClosedError and other transport failures: the endpoint is there but misbehaves.
        return ProbeError(
            code=type(exc).__name__, reason="EndpointUnreachable", message=redact(str(exc)), retryable=True
        )
    return ProbeError(
        code=type(exc).__name__, reason="InternalError", message=redact(str(exc)), retryable=False
    )
