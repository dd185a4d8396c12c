"""boto3 clients for connections, built from each connection's spec and credentials.

A ConnectionClients object belongs to exactly one AwsConnection and one
(spec fingerprint, Secret resourceVersion) pair; when either changes the owner
builds a new one, so a client is never shared across connections or outlives the
credentials it was made with.

What *is* shared is what holds no credentials: botocore's model loader and one boto3
session used only as a client factory (each client gets its connection's keys
explicitly). Live clients are held in one bounded, least-recently-used
:class:`ClientCache` per operator: a botocore client costs about 150 KB of Python objects
when built and 400 KB once used (its own event hooks, client class, endpoint rules and
operation models), so keeping every client of every connection alive cost 3 MB per
connection. A client evicted from the cache is closed and rebuilt on its connection's
next call.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
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
DEFAULT_CLIENT_CACHE = 32
"""Live clients kept across all connections: 12 MB or so (a used client holds 300-400 KB)."""

ClientKey = tuple[int, str, bool]
"""(owner, service, botocore retries): an owner is one ConnectionClients object."""


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


class ClientCache:
    """The operator's live clients, least recently used first out. Thread-safe.

    One (re-entrant) lock covers lookups and creation: creating a client is CPU-bound
    Python (the GIL serialises it anyway) and boto3 sessions, which create them, are not
    thread-safe.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CLIENT_CACHE,
        loader: Loader | None = None,
        *,
        on_build: Callable[[], None] = lambda: None,
    ) -> None:
        if capacity < 1:
            raise ValueError("a client cache holds at least one client")
        self.capacity = capacity
        self.loader = loader or new_model_loader()
        self.factory = boto3.Session(botocore_session=_core_session(self.loader))
        """Holds no credentials of any connection: each client is given its own."""
        self._on_build = on_build
        self._clients: OrderedDict[ClientKey, Any] = OrderedDict()
        self._owners = itertools.count(1)
        self._lock = threading.RLock()

    def new_owner(self) -> int:
        return next(self._owners)

    def get(self, key: ClientKey, create: Callable[[], Any]) -> Any:
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = create()
            self._on_build()
            self._clients[key] = client
            while len(self._clients) > self.capacity:
                _, evicted = self._clients.popitem(last=False)
                # Safe while a caller still holds it: close() only empties urllib3's pools,
                # which reconnect on the next call.
                evicted.close()
            return client

    def factory_client(
        self, spec: ConnectionSpec, service: str, keys: StaticKeys | None, *, botocore_retries: bool
    ) -> Any:
        """A new client from the shared factory session, with the connection's own keys."""
        with self._lock:
            return self.factory.client(
                service,
                region_name=spec.region,
                endpoint_url=spec.endpoint_url,
                config=client_config(spec, botocore_retries=botocore_retries),
                **_credential_kwargs(keys),
            )

    def discard(self, owner: int) -> None:
        """Close and forget every client of one owner (its connection changed or went away)."""
        with self._lock:
            for key in [k for k in self._clients if k[0] == owner]:
                self._clients.pop(key).close()

    def __len__(self) -> int:
        return len(self._clients)


def _assumed_role_session(spec: ConnectionSpec, keys: StaticKeys | None, cache: ClientCache) -> boto3.Session:
    """A session of this connection alone whose credentials come from STS AssumeRole and
    refresh themselves (botocore refreshes RefreshableCredentials ahead of expiry)."""
    role = spec.assume_role
    assert role is not None
    sts = cache.factory_client(spec, "sts", keys, botocore_retries=True)

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
    core = _core_session(cache.loader)
    core._credentials = (
        credentials  # the documented-by-practice way to hand a session refreshable credentials
    )
    core.set_config_variable("region", spec.region)
    return boto3.Session(botocore_session=core)


def _credential_kwargs(keys: StaticKeys | None) -> dict[str, Any]:
    """Explicit keys for one client; none means the factory session's default chain."""
    if keys is None:
        return {}
    return {
        "aws_access_key_id": keys.access_key_id,
        "aws_secret_access_key": keys.secret_access_key,
        "aws_session_token": keys.session_token,
    }


@dataclass
class ConnectionClients:
    """The clients of one connection, created on first use and kept in the operator's
    :class:`ClientCache` (rebuilt after eviction). Thread-safe."""

    spec: ConnectionSpec
    cache: ClientCache
    keys: StaticKeys | None = field(default=None, repr=False)
    session: boto3.Session | None = field(default=None, repr=False)
    """Only for an assumed role: the connection's own session with refreshing credentials."""
    owner: int = 0

    @classmethod
    def build(cls, spec: ConnectionSpec, keys: StaticKeys | None, cache: ClientCache) -> ConnectionClients:
        """Blocking (AssumeRole calls STS): run it off the event loop."""
        session = _assumed_role_session(spec, keys, cache) if spec.assume_role is not None else None
        return cls(spec=spec, cache=cache, keys=keys, session=session, owner=cache.new_owner())

    def client(self, service: str) -> Any:
        """A client for other kinds' calls: botocore retries as the spec says."""
        return self._get(service, botocore_retries=True)

    def probe_client(self, service: str) -> Any:
        """A client for probes: one attempt per call, our own backoff retries around it."""
        return self._get(service, botocore_retries=False)

    def _get(self, service: str, *, botocore_retries: bool) -> Any:
        def create() -> Any:  # called under the cache's lock
            if self.session is not None:
                config = client_config(self.spec, botocore_retries=botocore_retries)
                return self.session.client(service, endpoint_url=self.spec.endpoint_url, config=config)
            return self.cache.factory_client(self.spec, service, self.keys, botocore_retries=botocore_retries)

        return self.cache.get((self.owner, service, botocore_retries), create)

    def close(self) -> None:
        self.cache.discard(self.owner)
