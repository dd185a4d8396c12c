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


DEFAULT_SESSION_NAME = "incident-commander"
CHAINED_SESSION_SECONDS = 3600
"""AWS caps a role session reached by role chaining (a role assumed with a role's or a web
identity's credentials) at one hour: the hops of ``assumeRoleChain`` ask for exactly that."""


@dataclass(frozen=True, kw_only=True)
class AssumeRole:
    """STS AssumeRole parameters: ``assumeRole``, or one hop of ``assumeRoleChain``."""

    role_arn: str
    external_id: str | None = None
    session_name: str = DEFAULT_SESSION_NAME
    duration_seconds: int = 3600


@dataclass(frozen=True, kw_only=True)
class WebIdentity:
    """STS AssumeRoleWithWebIdentity with an OIDC token read from a file of the operator's pod
    (a projected service-account token, as IRSA mounts one)."""

    token_file: str
    role_arn: str
    session_name: str = DEFAULT_SESSION_NAME
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
    web_identity: WebIdentity | None
    """The source identity, instead of ``secret_ref`` (at most one of them; neither is the default chain)."""
    role_chain: tuple[AssumeRole, ...]
    """Roles assumed in order, each with the previous one's credentials (the first with the source
    identity's); ``assumeRole`` is a chain of one. Empty: the source identity is used as it is."""
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
        if self.secret_ref:
            source = f"the keys of Secret {self.secret_ref.name}"
        elif self.web_identity:
            source = (
                f"web identity token file {self.web_identity.token_file} "
                f"for role {self.web_identity.role_arn}"
            )
        else:
            source = "the default chain"
        if not self.role_chain:
            return source if self.secret_ref or self.web_identity else "the default credential chain"
        *via, last = self.role_chain
        through = f" through {', '.join(r.role_arn for r in via)}" if via else ""
        return f"role {last.role_arn} assumed{through} with {source}"

    def probe_timeout(self) -> float:
        """Upper bound of one service probe, retries and their backoff included."""
        per_attempt = self.connect_timeout + self.read_timeout
        attempts = self.retry.max_attempts
        return attempts * per_attempt + (attempts - 1) * self.retry.max_delay


def parse_connection_spec(spec: Mapping[str, Any]) -> ConnectionSpec:
    """Parse an admitted spec. Defaults mirror the CRD's, for objects admitted before a default existed.

    Raises ValueError (or KeyError) for a spec the CRD's validation should have refused.
    """
    credentials = spec.get("credentials") or {}
    secret = credentials.get("secretRef")
    web = credentials.get("webIdentity")
    role = credentials.get("assumeRole")
    chain = credentials.get("assumeRoleChain")
    if secret and web:
        raise ValueError("credentials.secretRef and credentials.webIdentity are alternatives: set one")
    if role and chain:
        raise ValueError("credentials.assumeRole and credentials.assumeRoleChain are alternatives: set one")
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
        web_identity=WebIdentity(
            token_file=str(web["tokenFile"]),
            role_arn=str(web["roleArn"]),
            session_name=web.get("sessionName", DEFAULT_SESSION_NAME),
            duration_seconds=int(web.get("durationSeconds", 3600)),
        )
        if web
        else None,
        role_chain=_role_chain(role, chain),
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


def _role_chain(
    role: Mapping[str, Any] | None, chain: list[Mapping[str, Any]] | None
) -> tuple[AssumeRole, ...]:
    if role:
        return (
            AssumeRole(
                role_arn=str(role["roleArn"]),
                external_id=role.get("externalId"),
                session_name=role.get("sessionName", DEFAULT_SESSION_NAME),
                duration_seconds=int(role.get("durationSeconds", 3600)),
            ),
        )
    if chain is not None and not chain:
        raise ValueError("credentials.assumeRoleChain needs at least one role")
    return tuple(
        AssumeRole(
            role_arn=str(hop["roleArn"]),
            external_id=hop.get("externalId"),
            session_name=hop.get("sessionName", DEFAULT_SESSION_NAME),
            duration_seconds=CHAINED_SESSION_SECONDS,
        )
        for hop in chain or ()
    )
