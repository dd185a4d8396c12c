"""An AwsConnection's spec as a typed value, parsed once per change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from incident_commander.durations import parse_duration

RetryMode = Literal["standard", "adaptive"]


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    """Where static keys live in the connection's namespace."""

    name: str
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name, not a secret
    session_token_key: str = "AWS_SESSION_TOKEN"  # noqa: S105 - a key name, not a secret


@dataclass(frozen=True, kw_only=True)
class AssumeRole:
    """STS AssumeRole parameters."""

    role_arn: str
    external_id: str | None = None
    session_name: str = "incident-commander"
    duration_seconds: int = 3600


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """botocore retry settings plus the bounds of our own probe backoff, in seconds."""

    mode: RetryMode = "standard"
    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 20.0


@dataclass(frozen=True, kw_only=True)
class ConnectionSpec:
    """Everything needed to build clients and probe services."""

    region: str
    endpoint_url: str | None
    secret_ref: SecretRef | None
    assume_role: AssumeRole | None
    services: tuple[str, ...]
    retry: RetryPolicy
    connect_timeout: float
    read_timeout: float
    probe_interval: float

    @property
    def fingerprint(self) -> str:
        """Stable digest of the spec: clients are rebuilt when it changes."""
        payload = json.dumps(self, default=lambda o: o.__dict__, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def credential_source(self) -> str:
        """Human-readable origin of the credentials, for condition messages."""
        if self.assume_role and self.secret_ref:
            return f"role {self.assume_role.role_arn} assumed with the keys of Secret {self.secret_ref.name}"
        if self.assume_role:
            return f"role {self.assume_role.role_arn} assumed with the default chain"
        if self.secret_ref:
            return f"Secret {self.secret_ref.name}"
        return "the default credential chain"

    def probe_timeout(self) -> float:
        """Upper bound of one service probe, retries and their backoff included."""
        per_attempt = self.connect_timeout + self.read_timeout
        attempts = self.retry.max_attempts
        return attempts * per_attempt + (attempts - 1) * self.retry.max_delay


def parse_connection_spec(spec: Mapping[str, Any]) -> ConnectionSpec:
    """Parse an admitted spec. Defaults mirror the CRD's, for objects admitted before a default existed."""
    credentials = spec.get("credentials") or {}
    secret = credentials.get("secretRef")
    role = credentials.get("assumeRole")
    retry = spec.get("retry") or {}
    timeouts = spec.get("timeouts") or {}
    return ConnectionSpec(
        region=str(spec["region"]),
        endpoint_url=spec.get("endpointUrl") or None,
        secret_ref=SecretRef(
            name=secret["name"],
            access_key_id_key=secret.get("accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
            secret_access_key_key=secret.get("secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY"),
            session_token_key=secret.get("sessionTokenKey", "AWS_SESSION_TOKEN"),
        )
        if secret
        else None,
        assume_role=AssumeRole(
            role_arn=role["roleArn"],
            external_id=role.get("externalId"),
            session_name=role.get("sessionName", "incident-commander"),
            duration_seconds=int(role.get("durationSeconds", 3600)),
        )
        if role
        else None,
        services=tuple(spec.get("services") or ("sts",)),
        retry=RetryPolicy(
            mode=retry.get("mode", "standard"),
            max_attempts=int(retry.get("maxAttempts", 3)),
            base_delay=parse_duration(retry.get("baseDelay", "200ms")).total_seconds(),
            max_delay=parse_duration(retry.get("maxDelay", "20s")).total_seconds(),
        ),
        connect_timeout=parse_duration(timeouts.get("connect", "5s")).total_seconds(),
        read_timeout=parse_duration(timeouts.get("read", "10s")).total_seconds(),
        probe_interval=parse_duration(spec.get("probeInterval", "60s")).total_seconds(),
    )
