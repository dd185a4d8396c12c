"""boto3 sessions and botocore clients for one connection, built from its spec and credentials.

A ConnectionClients object belongs to exactly one AwsConnection and one
(spec fingerprint, Secret resourceVersion) pair; when either changes the owner
builds a new one, so clients are never shared across connections or outlive the
credentials they were made with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.loaders import Loader, create_loader

from incident_commander import __version__
from incident_commander.aws.credentials import CredentialsError, StaticKeys
from incident_commander.aws.errors import classify
from incident_commander.aws.spec import ConnectionSpec

USER_AGENT = f"incident-commander/{__version__}"
MAX_POOL_CONNECTIONS = 10


def client_config(spec: ConnectionSpec, *, botocore_retries: bool) -> Config:
    """Timeouts, pool size and user agent from the spec; retries per spec, or none for probes."""
    attempts = spec.retry.max_attempts if botocore_retries else 1
    return Config(
        region_name=spec.region,
        connect_timeout=spec.connect_timeout,
        read_timeout=spec.read_timeout,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"mode": spec.retry.mode, "total_max_attempts": attempts},
        user_agent_extra=USER_AGENT,
    )


def new_model_loader() -> Loader:
    """botocore's loader of service models. One is shared by all of an operator's sessions:
    the models are read-only JSON, and loading them per connection costs far more than a probe."""
    return create_loader()


def _core_session(loader: Loader) -> botocore.session.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    return core


def _source_session(spec: ConnectionSpec, keys: StaticKeys | None, loader: Loader) -> boto3.Session:
    if keys is None:
        return boto3.Session(region_name=spec.region, botocore_session=_core_session(loader))
    return boto3.Session(
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        aws_session_token=keys.session_token,
        region_name=spec.region,
        botocore_session=_core_session(loader),
    )


def _assumed_role_session(spec: ConnectionSpec, source: boto3.Session, loader: Loader) -> boto3.Session:
    """A session whose credentials come from STS AssumeRole and refresh themselves
    (botocore refreshes RefreshableCredentials ahead of expiry)."""
    role = spec.assume_role
    assert role is not None
    sts = source.client(
        "sts", endpoint_url=spec.endpoint_url, config=client_config(spec, botocore_retries=True)
    )

    def fetch() -> dict[str, Any]:
        params: dict[str, Any] = {
            "RoleArn": role.role_arn,
            "RoleSessionName": role.session_name,
            "DurationSeconds": role.duration_seconds,
        }
        if role.external_id:
            params["ExternalId"] = role.external_id
        try:
            creds = sts.assume_role(**params)["Credentials"]
        except Exception as exc:
            error = classify(exc)
            raise CredentialsError(
                "AssumeRoleFailed", f"AssumeRole {role.role_arn} failed: {error.code}: {error.message}"
            ) from None
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = (
        credentials  # the documented-by-practice way to hand a session refreshable credentials
    )
    core.set_config_variable("region", spec.region)
    return boto3.Session(botocore_session=core)


@dataclass
class ConnectionClients:
    """Lazily created, cached clients of one connection. Thread-safe."""

    spec: ConnectionSpec
    session: boto3.Session
    _clients: dict[tuple[str, bool], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, spec: ConnectionSpec, keys: StaticKeys | None, loader: Loader) -> ConnectionClients:
        """Blocking (AssumeRole calls STS): run it off the event loop."""
        session = _source_session(spec, keys, loader)
        if spec.assume_role is not None:
            session = _assumed_role_session(spec, session, loader)
        return cls(spec=spec, session=session)

    def client(self, service: str) -> Any:
        """A client for other kinds' calls: botocore retries as the spec says."""
        return self._get(service, botocore_retries=True)

    def probe_client(self, service: str) -> Any:
        """A client for probes: one attempt per call, our own backoff retries around it."""
        return self._get(service, botocore_retries=False)

    def _get(self, service: str, *, botocore_retries: bool) -> Any:
        key = (service, botocore_retries)
        with self._lock:  # boto3 sessions are not thread-safe; the clients they make are
            if key not in self._clients:
                self._clients[key] = self.session.client(
                    service,
                    endpoint_url=self.spec.endpoint_url,
                    config=client_config(self.spec, botocore_retries=botocore_retries),
                )
            return self._clients[key]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
