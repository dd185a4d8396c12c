"""boto3 clients for connections, built from each connection's spec and credentials.

A ConnectionClients object belongs to exactly one AwsConnection and one
(spec fingerprint, Secret resourceVersion) pair; when either changes the owner
builds a new one, so a client never outlives the credentials it was made with.

Connections whose keys come straight from a Secret (or from the default chain) share their
clients with every connection that has the same keys and the same client settings (region,
endpoint, timeouts, retries): such clients are interchangeable, and sharing grants a connection
nothing it does not hold already. At 1,000 connections on one Secret this builds 7 clients instead
of 7,000, each a few ms of CPU (issue #19). A connection with a role chain or a web identity keeps
clients of its own: its session refreshes its own STS credentials.

Also shared is what holds no credentials: botocore's model loader and one boto3 session used only
as a client factory (each client gets its keys explicitly). Live clients are held in one bounded,
least-recently-used :class:`ClientCache` per operator: a botocore client costs about 150 KB of
Python objects when built and 400 KB once used (its own event hooks, client class, endpoint rules
and operation models). A client evicted from the cache is closed and rebuilt on its next use; a
shared client is closed when the last connection holding it goes.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.loaders import Loader, create_loader

from incident_commander import __version__
from incident_commander.aws.credentials import CredentialsError, StaticKeys, read_web_identity_token
from incident_commander.aws.errors import classify
from incident_commander.aws.spec import AssumeRole, ConnectionSpec

USER_AGENT = f"incident-commander/{__version__}"
MAX_POOL_CONNECTIONS = 32
"""HTTP connections a client keeps: a shared client serves every controller's passes at once (up
to 16 threads each); a full pool makes urllib3 open and discard a connection per extra call."""
DEFAULT_CLIENT_CACHE = 32
"""Live clients kept across all connections: 12 MB or so (a used client holds 300-400 KB)."""

ClientKey = tuple[int | str, str, bool]
"""(holder, service, botocore retries): a holder is one ConnectionClients object (its owner number)
or, for clients shared by content, the digest of their keys and settings (``ClientCache.identity``)."""


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


def for_service(config: Config, service: str) -> Config:
    """S3 signs with SigV4 explicitly: botocore otherwise presigns URLs (incident artifacts) with
    SigV2 for a custom endpoint, which AWS deprecated and newer regions refuse."""
    return config.merge(Config(signature_version="s3v4")) if service == "s3" else config


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
        web_identity_token_dirs: Sequence[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if capacity < 1:
            raise ValueError("a client cache holds at least one client")
        self.capacity = capacity
        self.loader = loader or new_model_loader()
        self.factory = boto3.Session(botocore_session=_core_session(self.loader))
        """Holds no credentials of any connection: each client is given its own."""
        self._on_build = on_build
        self.web_identity_token_dirs = tuple(web_identity_token_dirs)
        self.clock = clock
        """Decides when STS credentials are due for refresh (timezone-aware)."""
        """Directories whose token files AwsConnections may name as a web identity; none by default."""
        self._clients: OrderedDict[ClientKey, Any] = OrderedDict()
        self._owners = itertools.count(1)
        self._sharers: dict[str, set[int]] = {}
        """Owners holding each shared identity: its clients are closed when the last one goes."""
        self._salt = os.urandom(32)
        """Keys the identity digests: they are never a stable hash of anyone's secret key."""
        self._lock = threading.RLock()

    def new_owner(self, shares: str | None = None) -> int:
        """A new holder of clients; ``shares``: the identity whose shared clients it uses."""
        owner = next(self._owners)
        if shares is not None:
            with self._lock:
                self._sharers.setdefault(shares, set()).add(owner)
        return owner

    def identity(self, spec: ConnectionSpec, keys: StaticKeys | None) -> str:
        """What makes clients interchangeable: the same keys (None: the default chain) and the same
        client settings. Salted, so the digest says nothing about the keys outside this process."""
        settings = (
            spec.region,
            spec.endpoint_url,
            spec.connect_timeout,
            spec.read_timeout,
            spec.retry.mode,
            spec.retry.max_attempts,
            None if keys is None else (keys.access_key_id, keys.secret_access_key, keys.session_token),
        )
        return hmac.new(self._salt, repr(settings).encode(), hashlib.sha256).hexdigest()

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
        self,
        spec: ConnectionSpec,
        service: str,
        keys: StaticKeys | None,
        *,
        botocore_retries: bool,
        unsigned: bool = False,
    ) -> Any:
        """A new client from the shared factory session, with the connection's own keys (or none
        at all: ``unsigned`` for calls whose body is the credential, such as a web identity's)."""
        config = for_service(client_config(spec, botocore_retries=botocore_retries), service)
        if unsigned:
            config = config.merge(Config(signature_version=UNSIGNED))
        with self._lock:
            return self.factory.client(
                service,
                region_name=spec.region,
                endpoint_url=spec.endpoint_url,
                config=config,
                **_credential_kwargs(keys),
            )

    def discard(self, owner: int, shares: str | None = None) -> None:
        """Close and forget every client of one owner (its connection changed or went away), and
        the shared clients of ``shares`` when no other owner holds them."""
        with self._lock:
            holders: set[int | str] = {owner}
            if shares is not None:
                sharers = self._sharers.get(shares, set())
                sharers.discard(owner)
                if not sharers:
                    self._sharers.pop(shares, None)
                    holders.add(shares)
            for key in [k for k in self._clients if k[0] in holders]:
                self._clients.pop(key).close()

    def __len__(self) -> int:
        return len(self._clients)


def _chained_session(spec: ConnectionSpec, keys: StaticKeys | None, cache: ClientCache) -> boto3.Session:
    """A session of this connection alone whose credentials come from STS (a web identity, a chain
    of assumed roles, or both) and refresh themselves: botocore refreshes RefreshableCredentials
    ahead of expiry, and each refresh walks the whole way again from the source identity (a web
    identity token is re-read, as projected tokens rotate; chained role sessions last one hour, so
    every hop expires together anyway)."""

    def fetch() -> dict[str, Any]:
        creds = _source_credentials(spec, keys, cache)
        for hop, role in enumerate(spec.role_chain, start=1):
            signer = keys if creds is None else _session_keys(creds)
            creds = _assume_role(spec, role, signer, cache, hop=hop)
        assert creds is not None  # a chained session has a web identity or at least one role
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    method = "sts-assume-role" if spec.role_chain else "assume-role-with-web-identity"
    advisory, mandatory = refresh_margins(spec)
    first = fetch()
    credentials = RefreshableCredentials(
        access_key=first["access_key"],
        secret_key=first["secret_key"],
        token=first["token"],
        expiry_time=datetime.fromisoformat(first["expiry_time"]),
        refresh_using=fetch,
        method=method,
        time_fetcher=cache.clock,
        advisory_timeout=advisory,
        mandatory_timeout=mandatory,
    )
    core = _core_session(cache.loader)
    core._credentials = (
        credentials  # the documented-by-practice way to hand a session refreshable credentials
    )
    core.set_config_variable("region", spec.region)
    return boto3.Session(botocore_session=core)


def refresh_margins(spec: ConnectionSpec) -> tuple[int, int]:
    """Seconds before expiry at which botocore refreshes: when it may (advisory), when it must
    (mandatory). botocore's 15 and 10 minutes, scaled down for shorter sessions: at the CRD's
    minimum of 900 s, 15 minutes would be "due" from the start and every AWS call would walk the
    whole chain again."""
    durations = [role.duration_seconds for role in spec.role_chain]
    if spec.web_identity is not None:
        durations.append(spec.web_identity.duration_seconds)
    shortest = min(durations)
    return min(15 * 60, shortest // 4), min(10 * 60, shortest // 6)


def _source_credentials(
    spec: ConnectionSpec, keys: StaticKeys | None, cache: ClientCache
) -> dict[str, Any] | None:
    """STS credentials of the web identity, or None when the source is the Secret's keys or the
    default chain (the first hop then signs with those)."""
    web = spec.web_identity
    if web is None:
        return None
    token = read_web_identity_token(web.token_file, cache.web_identity_token_dirs)
    # AssumeRoleWithWebIdentity is unsigned: the token is the credential.
    sts = cache.factory_client(spec, "sts", None, botocore_retries=True, unsigned=True)
    try:
        response = sts.assume_role_with_web_identity(
            RoleArn=web.role_arn,
            RoleSessionName=web.session_name,
            WebIdentityToken=token,
            DurationSeconds=web.duration_seconds,
        )
    except Exception as exc:
        error = classify(exc)
        raise CredentialsError(
            "AssumeRoleWithWebIdentityFailed",
            f"AssumeRoleWithWebIdentity {web.role_arn} with the token in {web.token_file} failed: "
            f"{error.code}: {error.message}",
        ) from None
    finally:
        sts.close()
    return dict(response["Credentials"])


def _assume_role(
    spec: ConnectionSpec,
    role: AssumeRole,
    signer: StaticKeys | None,
    cache: ClientCache,
    *,
    hop: int,
) -> dict[str, Any]:
    """One hop: AssumeRole signed by ``signer``, the previous hop's session or the source identity
    (the Secret's keys; None for the default chain)."""
    sts = cache.factory_client(spec, "sts", signer, botocore_retries=True)
    params: dict[str, Any] = {
        "RoleArn": role.role_arn,
        "RoleSessionName": role.session_name,
        "DurationSeconds": role.duration_seconds,
    }
    if role.external_id:
        params["ExternalId"] = role.external_id
    try:
        return dict(sts.assume_role(**params)["Credentials"])
    except Exception as exc:
        error = classify(exc)
        where = f" (role {hop} of {len(spec.role_chain)})" if len(spec.role_chain) > 1 else ""
        raise CredentialsError(
            "AssumeRoleFailed", f"AssumeRole {role.role_arn}{where} failed: {error.code}: {error.message}"
        ) from None
    finally:
        sts.close()


def _session_keys(creds: Mapping[str, Any]) -> StaticKeys:
    return StaticKeys(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


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
    """Only for a web identity or assumed roles: the connection's own session with refreshing credentials."""
    owner: int = 0
    shares: str | None = None
    """The identity whose clients this connection shares with others (ClientCache.identity); None
    for a chained session, whose clients are its own."""

    @classmethod
    def build(cls, spec: ConnectionSpec, keys: StaticKeys | None, cache: ClientCache) -> ConnectionClients:
        """Blocking (a web identity or a role chain calls STS): run it off the event loop.
        Raises CredentialsError when the source or a hop is refused."""
        chained = bool(spec.role_chain) or spec.web_identity is not None
        session = _chained_session(spec, keys, cache) if chained else None
        shares = None if chained else cache.identity(spec, keys)
        return cls(
            spec=spec, cache=cache, keys=keys, session=session, owner=cache.new_owner(shares), shares=shares
        )

    def client(self, service: str) -> Any:
        """A client for other kinds' calls: botocore retries as the spec says."""
        return self._get(service, botocore_retries=True)

    def probe_client(self, service: str) -> Any:
        """A client for probes: one attempt per call, our own backoff retries around it."""
        return self._get(service, botocore_retries=False)

    def _get(self, service: str, *, botocore_retries: bool) -> Any:
        def create() -> Any:  # called under the cache's lock
            if self.session is not None:
                config = for_service(client_config(self.spec, botocore_retries=botocore_retries), service)
                return self.session.client(service, endpoint_url=self.spec.endpoint_url, config=config)
            return self.cache.factory_client(self.spec, service, self.keys, botocore_retries=botocore_retries)

        holder: int | str = self.owner if self.shares is None else self.shares
        return self.cache.get((holder, service, botocore_retries), create)

    def close(self) -> None:
        self.cache.discard(self.owner, self.shares)
