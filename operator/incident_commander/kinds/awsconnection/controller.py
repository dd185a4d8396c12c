"""AwsConnections: clients per connection, a probe round per pass, and the way other kinds use one.

Other kinds call ``ConnectionController.get(namespace, name)`` (aws/connection.ConnectionSource):
it returns a ReadyConnection with that connection's own clients, or raises ConnectionNotReady
with a reason the caller turns into its own condition.

A pass is one probe round; the next is due after ``probeInterval``, or at once when the spec or
the connection's Secret changes (watch events, no polling). Status is written only when it
differs, with an Event per cause of a condition flip. No finalizer is needed: nothing in AWS is created for a
connection, and a deleted connection's clients are dropped with its entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from opentelemetry.trace import Tracer

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE, ClientCache, ConnectionClients
from incident_commander.aws.connection import ConnectionNotReady, ReadyConnection
from incident_commander.aws.credentials import CredentialsError, keys_from_secret
from incident_commander.aws.health import DEFAULT_HEARTBEAT, assess_credentials_failure, assess_round
from incident_commander.aws.probes import ProbeContext, ServiceProbe, probe_service
from incident_commander.aws.resilience import CircuitBreaker
from incident_commander.aws.spec import ConnectionSpec, parse_connection_spec
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition, find_condition
from incident_commander.controller import Controller, Entry
from incident_commander.kinds.awsconnection.secret_reads import SharedSecretReads
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.status import Assessment
from incident_commander.telemetry.tracing import NOOP_TRACER

logger = logging.getLogger(__name__)

KIND = "AwsConnection"
PLURAL = "awsconnections"
BREAKER_THRESHOLD = 3
WARMUP_SECONDS = 10.0
"""After a start, how long an unknown connection counts as "not listed yet" rather than missing."""
FIRST_PROBE_GRACE = 120.0
"""How long a new connection's users wait for its first probe round before calling it not ready.
A round ends within its timeouts and retries even against a dead endpoint, but at a thousand new
connections the rounds queue (16 at a time): with 30 s, 658 of 1,000 budgets reported
ConnectionNotReady once anyway."""


class Prober(Protocol):
    """One service's probe (aws/probes.probe_service): the seam between the controller and AWS."""

    def __call__(
        self,
        clients: ConnectionClients,
        service: str,
        *,
        ctx: ProbeContext,
        executor: Executor,
        breaker: CircuitBreaker,
    ) -> Awaitable[ServiceProbe]: ...


@dataclass(kw_only=True)
class Connection(Entry):
    spec: ConnectionSpec | None = None
    spec_error: str | None = None
    clients: ConnectionClients | None = None
    clients_key: tuple[str, str | None] | None = None
    secret_stale: bool = True
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    account_id: str | None = None
    probed: bool = False
    """Whether this process has finished a probe round for the connection."""
    seen: float = field(default_factory=time.monotonic)
    preparing: asyncio.Task[None] | None = None
    """On a standby: the background build of the clients (reads the Secret, writes nothing)."""

    def breaker(self, service: str) -> CircuitBreaker:
        if service not in self.breakers:
            interval = self.spec.probe_interval if self.spec else 60.0
            self.breakers[service] = CircuitBreaker(
                failure_threshold=BREAKER_THRESHOLD, cooldown=2 * interval
            )
        return self.breakers[service]


class ConnectionController(Controller[Connection]):
    kind = KIND
    plural = PLURAL
    concurrency = 16
    condition_types = ("Ready", "CredentialsResolved", "Degraded")

    def __init__(
        self,
        *,
        kube: KubeApi,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        heartbeat: timedelta = DEFAULT_HEARTBEAT,
        threads: int = 64,
        client_cache: int = DEFAULT_CLIENT_CACHE,
        tracer: Tracer = NOOP_TRACER,
        probe: Prober = probe_service,
        web_identity_token_dirs: tuple[str, ...] = (),
        start_workers: bool = True,
    ) -> None:
        super().__init__(
            kube=kube,
            metrics=metrics,
            clock=clock,
            tracer=tracer,
            threads=threads,
            start_workers=start_workers,
        )
        self._heartbeat = heartbeat
        self._probe_service = probe
        self._by_secret: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._secret_reads = SharedSecretReads(
            lambda namespace, name: asyncio.to_thread(self.kube.read_secret, namespace, name)
        )
        self.client_cache = ClientCache(
            client_cache,
            on_build=metrics.aws_client_builds.inc,
            web_identity_token_dirs=web_identity_token_dirs,
        )
        metrics.aws_clients.set_function(lambda: len(self.client_cache))
        self._started = time.monotonic()

    # -- the API other kinds use (aws/connection.ConnectionSource) ---------------------------------
    def get(self, namespace: str, name: str) -> ReadyConnection:
        connection = self.entry(namespace, name)
        if connection is None:
            raise ConnectionNotReady(namespace, name, "ConnectionNotFound", "no such AwsConnection")
        ready = find_condition(connection.status.get("conditions"), "Ready")
        if connection.clients is None or ready is None or ready.get("status") != "True":
            reason = str((ready or {}).get("reason") or "Pending")
            message = str((ready or {}).get("message") or "not probed yet")
            raise ConnectionNotReady(namespace, name, reason, message)
        return ReadyConnection(
            namespace=namespace, name=name, account_id=connection.account_id, clients=connection.clients
        )

    def warming_up(self, namespace: str, name: str) -> bool:
        """True while this process cannot know yet what the stored status already says.

        Right after an operator (re)start a connection may not be listed yet, or listed as Ready
        but not probed by this process. Users of a connection wait (briefly) instead of flipping
        their own Ready to False and back, which would post Events and rewrite transition times
        on every restart.
        """
        connection = self.entry(namespace, name)
        if connection is None:
            return time.monotonic() - self._started < WARMUP_SECONDS
        if connection.probed:
            return False
        ready = find_condition(connection.status.get("conditions"), "Ready")
        return ready is not None and ready.get("status") == "True"

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        """True while a new connection (no Ready condition at all) has its first probe round
        running, for at most FIRST_PROBE_GRACE.

        Objects applied together (``kubectl apply -f`` of a connection and the budget on it)
        would otherwise report ConnectionNotReady with a Warning Event and flip to Ready a
        moment later. The first Ready, True or False, reaches subscribers, so users may wait
        for it rather than poll.
        """
        connection = self.entry(namespace, name)
        if connection is None or connection.probed:
            return False
        if find_condition(connection.status.get("conditions"), "Ready") is not None:
            return False
        return time.monotonic() - connection.seen < FIRST_PROBE_GRACE

    # -- the Secrets connections read --------------------------------------------------------------
    def secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A Secret was created, edited or deleted: re-resolve the connections reading it."""
        meta = body.get("metadata") or {}
        secret_key = (str(meta.get("namespace")), str(meta.get("name")))
        self._secret_reads.changed(*secret_key)
        for key in self._by_secret.get(secret_key, set()):
            connection = self.entry(*key)
            if connection is not None:
                connection.secret_stale = True
                self.wake(connection)
                self._prepare(connection)

    # -- a standby's connections: clients for the API, no probes, no writes ------------------------
    def observe(self, body: Mapping[str, Any]) -> None:
        super().observe(body)
        meta = body["metadata"]
        connection = self.entry(str(meta["namespace"]), str(meta["name"]))
        if connection is not None:
            self._prepare(connection)

    def status_observed(self, entry: Connection) -> None:
        account = entry.status.get("accountId")
        entry.account_id = str(account) if account else entry.account_id

    def _prepare(self, connection: Connection) -> None:
        """On a standby, build the clients the leader's status says work, so usage recorded on this
        replica reaches DynamoDB (the leader probes; a standby only reads the Secret)."""
        if self.active or connection.spec is None:
            return
        if (
            connection.clients is not None
            and not connection.secret_stale
            and connection.clients.spec == connection.spec
        ):
            return
        if connection.preparing is not None and not connection.preparing.done():
            return
        connection.preparing = asyncio.create_task(
            self._prepare_clients(connection), name=f"clients {connection.key}"
        )

    async def _prepare_clients(self, connection: Connection) -> None:
        spec = connection.spec
        if spec is None:
            return
        try:
            await self._clients(connection, spec)
        except CredentialsError:
            connection.clients, connection.clients_key = None, None
        except Exception as exc:  # the apiserver away: the next event or the leader's status retries
            logger.warning("building clients of %s/%s: %s", *connection.key, type(exc).__name__)

    # -- the controller's hooks --------------------------------------------------------------------
    def new_entry(self, ref: ObjectRef, body: Mapping[str, Any], status: dict[str, Any]) -> Connection:
        connection = Connection(ref=ref, body=body, status=status)
        self._set_spec(connection)
        self.status_observed(connection)
        return connection

    def triggered(self, entry: Connection) -> None:
        self._set_spec(entry)

    def forgotten(self, entry: Connection) -> None:
        self._unindex(entry)
        if entry.preparing is not None:
            entry.preparing.cancel()
        if entry.clients is not None:
            entry.clients.close()
        if entry.spec is not None:
            self.metrics.forget_connection(entry.ref.namespace, entry.ref.name, entry.spec.services)

    async def run_pass(self, entry: Connection) -> float:
        await self._round(entry)
        entry.probed = True
        return entry.spec.probe_interval if entry.spec else 60.0

    # -- internals ---------------------------------------------------------------------------------
    def _set_spec(self, connection: Connection) -> None:
        self._unindex(connection)
        try:
            connection.spec, connection.spec_error = (
                parse_connection_spec(connection.body.get("spec") or {}),
                None,
            )
        except (KeyError, ValueError) as exc:
            connection.spec, connection.spec_error = None, str(exc)
        if connection.spec and connection.spec.secret_ref:
            secret_key = (connection.ref.namespace, connection.spec.secret_ref.name)
            self._by_secret.setdefault(secret_key, set()).add(connection.key)

    def _unindex(self, connection: Connection) -> None:
        if connection.spec and connection.spec.secret_ref:
            secret_key = (connection.ref.namespace, connection.spec.secret_ref.name)
            holders = self._by_secret.get(secret_key, set())
            holders.discard(connection.key)
            if not holders:
                self._by_secret.pop(secret_key, None)
                self._secret_reads.forget(*secret_key)

    async def _round(self, connection: Connection) -> None:
        spec = connection.spec
        if spec is None:
            message = connection.spec_error or "spec could not be read"
            await self._write(
                connection,
                Assessment(
                    conditions=[
                        Condition(type="Ready", status="False", reason="InvalidSpec", message=message)
                    ]
                ),
            )
            return
        try:
            clients = await self._clients(connection, spec)
        except CredentialsError as error:
            await self._write(connection, assess_credentials_failure(error))
            return

        identity_breaker = connection.breaker("sts")
        ctx = ProbeContext(today=self.clock().date(), account_id=connection.account_id)
        if "budgets" in spec.services and connection.account_id is None:
            identity = await self._probe(connection, clients, "sts", ctx, identity_breaker)
            if identity.healthy:
                connection.account_id = identity.response.get("Account")
                ctx = ProbeContext(today=ctx.today, account_id=connection.account_id)
            probes = {"sts": identity} if "sts" in spec.services else {}
        else:
            identity, probes = None, {}
        pending = [s for s in spec.services if s not in probes]
        if identity is None and "sts" not in spec.services:
            pending.append("sts")
        results = await asyncio.gather(
            *(self._probe(connection, clients, s, ctx, connection.breaker(s)) for s in pending)
        )
        by_service = {r.service: r for r in results}
        identity = identity or by_service["sts"]
        probes.update({s: by_service[s] for s in spec.services if s in by_service})
        if identity.healthy:
            connection.account_id = (identity.response or {}).get("Account")
        assessment = assess_round(
            spec=spec,
            identity=identity,
            probes=probes,
            consecutive_failures={s: connection.breaker(s).failures for s in spec.services},
            previous_services=connection.status.get("services"),
            now=self.clock(),
            heartbeat=self._heartbeat,
        )
        await self._write(connection, assessment)

    async def _probe(
        self,
        connection: Connection,
        clients: ConnectionClients,
        service: str,
        ctx: ProbeContext,
        breaker: CircuitBreaker,
    ) -> ServiceProbe:
        result = await self._probe_service(clients, service, ctx=ctx, executor=self.executor, breaker=breaker)
        if not result.skipped and connection.spec is not None and service in connection.spec.services:
            labels = (connection.ref.namespace, connection.ref.name, service)
            self.metrics.aws_probe_duration.labels(*labels).observe(result.latency_ms / 1000)
            self.metrics.aws_service_up.labels(*labels).set(1 if result.healthy else 0)
        return result

    async def _clients(self, connection: Connection, spec: ConnectionSpec) -> ConnectionClients:
        """Reuse the clients unless the spec or the Secret's resourceVersion changed.

        ``secret_stale`` is cleared before the Secret is read, not after: a Secret event that comes
        while the read or the build is under way sets it again, so the next pass reads the
        Secret once more instead of keeping clients built from what it said before."""
        if connection.clients is not None and not connection.secret_stale and connection.clients.spec == spec:
            return connection.clients
        connection.secret_stale = False
        try:
            return await self._rebuild(connection, spec)
        except BaseException:
            connection.secret_stale = True  # read again on the next pass
            raise

    async def _rebuild(self, connection: Connection, spec: ConnectionSpec) -> ConnectionClients:
        secret = None
        if spec.secret_ref is not None:
            secret = await self._secret_reads.get(connection.ref.namespace, spec.secret_ref.name)
        key = (spec.fingerprint, secret.resource_version if secret else None)
        if connection.clients is not None and key == connection.clients_key:
            return connection.clients
        keys = keys_from_secret(secret, spec.secret_ref) if spec.secret_ref is not None else None
        loop = asyncio.get_running_loop()
        clients = await loop.run_in_executor(
            self.executor, ConnectionClients.build, spec, keys, self.client_cache
        )
        if connection.clients is not None:
            connection.clients.close()
        connection.clients, connection.clients_key = clients, key
        connection.breakers.clear()  # new credentials or endpoint: past failures say nothing about them
        return clients

    async def _write(self, connection: Connection, assessment: Assessment) -> None:
        if any(c.type == "CredentialsResolved" and c.status == "False" for c in assessment.conditions):
            if connection.clients is not None:
                connection.clients.close()
            connection.clients, connection.clients_key = None, None
        written = await self.write_status(connection, assessment)
        if written.stored is not None and any(t.type == "Ready" for t in written.plan.transitions):
            self.notify(connection.ref.namespace, connection.ref.name)
