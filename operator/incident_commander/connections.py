"""The registry of AwsConnections: one probe loop per connection, and the way other kinds use one.

Other kinds call ``ConnectionRegistry.get(namespace, name)``: it returns a
ReadyConnection with that connection's own clients, or raises
ConnectionNotReady with a reason the caller turns into its own condition.

Each connection has an asyncio task that probes every ``probeInterval`` and at
once when woken by a spec change or a change of its Secret (kopf watch events,
no polling). The task writes status with a merge patch only when the planned
status differs from the last one stored, and posts an Event per condition flip.
No finalizer is needed: nothing in AWS is created for a connection, and a
deleted connection's task and clients are dropped on the DELETED event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from opentelemetry.trace import Tracer

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE, ClientCache, ConnectionClients
from incident_commander.aws.credentials import CredentialsError, keys_from_secret
from incident_commander.aws.health import DEFAULT_HEARTBEAT, assess_credentials_failure, assess_round
from incident_commander.aws.probes import ProbeContext, ServiceProbe, probe_service
from incident_commander.aws.resilience import CircuitBreaker
from incident_commander.aws.spec import ConnectionSpec, parse_connection_spec
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition, find_condition
from incident_commander.kinds.reconciliation import Assessment, apply_status
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.telemetry.spans import traced_pass
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.telemetry.tracing import NOOP_TRACER

logger = logging.getLogger(__name__)

KIND = "AwsConnection"
PLURAL = "awsconnections"
BREAKER_THRESHOLD = 3
MAX_CONCURRENT_ROUNDS = 16
WARMUP_SECONDS = 10.0
"""After a start, how long an unknown connection counts as "not listed yet" rather than missing."""
FIRST_PROBE_GRACE = 120.0
"""How long a new connection's users wait for its first probe round before calling it not ready.
A round ends within its timeouts and retries even against a dead endpoint, but at a thousand new
connections the rounds queue (16 at a time): with 30 s, 658 of 1,000 budgets reported
ConnectionNotReady once anyway."""


class ConnectionNotReady(Exception):
    """The connection is missing or not Ready; ``reason`` is meant for the caller's condition."""

    def __init__(self, namespace: str, name: str, reason: str, message: str) -> None:
        super().__init__(f"AwsConnection {namespace}/{name} is not ready ({reason}): {message}")
        self.namespace = namespace
        self.name = name
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class ReadyConnection:
    """A Ready connection's identity and clients. Client calls block: run them off the loop."""

    namespace: str
    name: str
    account_id: str | None
    clients: ConnectionClients

    def client(self, service: str) -> Any:
        return self.clients.client(service)


@dataclass(kw_only=True)
class _Runtime:
    ref: ObjectRef
    generation: int
    spec: ConnectionSpec | None
    spec_error: str | None
    status: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    clients: ConnectionClients | None = None
    clients_key: tuple[str, str | None] | None = None
    secret_stale: bool = True
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    account_id: str | None = None
    probed: bool = False
    """Whether this process has finished a probe round for the connection."""
    seen: float = field(default_factory=time.monotonic)

    def breaker(self, service: str) -> CircuitBreaker:
        if service not in self.breakers:
            interval = self.spec.probe_interval if self.spec else 60.0
            self.breakers[service] = CircuitBreaker(
                failure_threshold=BREAKER_THRESHOLD, cooldown=2 * interval
            )
        return self.breakers[service]


class ConnectionRegistry:
    """Explicit registry of the operator's connections (the only cross-kind shared state)."""

    def __init__(
        self,
        *,
        kube: KubeApi,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        heartbeat: timedelta = DEFAULT_HEARTBEAT,
        aws_threads: int = 64,
        client_cache: int = DEFAULT_CLIENT_CACHE,
        tracer: Tracer = NOOP_TRACER,
        web_identity_token_dirs: tuple[str, ...] = (),
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._tracer = tracer
        self._clock = clock
        self._heartbeat = heartbeat
        self._entries: dict[tuple[str, str], _Runtime] = {}
        self._by_secret: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._executor = ContextThreadPoolExecutor(max_workers=aws_threads, thread_name_prefix="aws")
        self._rounds = asyncio.Semaphore(MAX_CONCURRENT_ROUNDS)
        self.client_cache = ClientCache(
            client_cache,
            on_build=metrics.aws_client_builds.inc,
            web_identity_token_dirs=web_identity_token_dirs,
        )
        metrics.aws_clients.set_function(lambda: len(self.client_cache))
        self._subscribers: list[Callable[[str, str], None]] = []
        self._started = time.monotonic()

    # -- the API other kinds use -------------------------------------------------------------
    def get(self, namespace: str, name: str) -> ReadyConnection:
        runtime = self._entries.get((namespace, name))
        if runtime is None:
            raise ConnectionNotReady(namespace, name, "ConnectionNotFound", "no such AwsConnection")
        ready = find_condition(runtime.status.get("conditions"), "Ready")
        if runtime.clients is None or ready is None or ready.get("status") != "True":
            reason = str((ready or {}).get("reason") or "Pending")
            message = str((ready or {}).get("message") or "not probed yet")
            raise ConnectionNotReady(namespace, name, reason, message)
        return ReadyConnection(
            namespace=namespace, name=name, account_id=runtime.account_id, clients=runtime.clients
        )

    def warming_up(self, namespace: str, name: str) -> bool:
        """True while this process cannot know yet what the stored status already says.

        Right after an operator (re)start a connection may not be listed yet, or listed as Ready
        but not probed by this process. Users of a connection wait (briefly) instead of flipping
        their own Ready to False and back, which would post Events and rewrite transition times
        on every restart.
        """
        runtime = self._entries.get((namespace, name))
        if runtime is None:
            return time.monotonic() - self._started < WARMUP_SECONDS
        if runtime.probed:
            return False
        ready = find_condition(runtime.status.get("conditions"), "Ready")
        return ready is not None and ready.get("status") == "True"

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        """True while a new connection (no Ready condition at all) has its first probe round
        running, for at most FIRST_PROBE_GRACE.

        Objects applied together (``kubectl apply -f`` of a connection and the budget on it)
        would otherwise report ConnectionNotReady with a Warning Event and flip to Ready a
        moment later. The first Ready, True or False, reaches subscribers, so users may wait
        for it rather than poll.
        """
        runtime = self._entries.get((namespace, name))
        if runtime is None or runtime.probed:
            return False
        if find_condition(runtime.status.get("conditions"), "Ready") is not None:
            return False
        return time.monotonic() - runtime.seen < FIRST_PROBE_GRACE

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """``callback(namespace, name)`` runs on the event loop whenever a connection's Ready flips,
        so the kinds that use it act within seconds instead of at their next retry."""
        self._subscribers.append(callback)

    # -- fed by kopf watch events --------------------------------------------------------------
    def observe(self, body: Mapping[str, Any]) -> None:
        """An AwsConnection was listed, added or modified."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        generation = int(meta.get("generation") or 0)
        runtime = self._entries.get(key)
        if runtime is not None and runtime.ref.uid == meta["uid"]:
            if generation != runtime.generation:
                self._set_spec(runtime, body.get("spec") or {}, generation)
                runtime.wake.set()
            return
        if runtime is not None:  # same name, new object: drop the old one's state
            self._drop(key)
        runtime = _Runtime(
            ref=ObjectRef(kind=KIND, plural=PLURAL, namespace=key[0], name=key[1], uid=meta["uid"]),
            generation=generation,
            spec=None,
            spec_error=None,
            status=dict(body.get("status") or {}),
        )
        self._set_spec(runtime, body.get("spec") or {}, generation)
        self._entries[key] = runtime
        runtime.task = asyncio.create_task(self._run(runtime), name=f"probe {key[0]}/{key[1]}")

    def forget(self, namespace: str, name: str) -> None:
        """The AwsConnection was deleted."""
        self._drop((namespace, name))

    def references_secret(self, namespace: str, name: str) -> bool:
        return bool(self._by_secret.get((namespace, name)))

    def secret_changed(self, namespace: str, name: str) -> None:
        """The Secret was created, edited or deleted: re-resolve credentials at once."""
        for key in self._by_secret.get((namespace, name), set()):
            runtime = self._entries.get(key)
            if runtime is not None:
                runtime.secret_stale = True
                runtime.wake.set()

    async def close(self) -> None:
        for key in list(self._entries):
            self._drop(key)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------------
    def _set_spec(self, runtime: _Runtime, spec: Mapping[str, Any], generation: int) -> None:
        self._unindex(runtime)
        runtime.generation = generation
        try:
            runtime.spec, runtime.spec_error = parse_connection_spec(spec), None
        except (KeyError, ValueError) as exc:
            runtime.spec, runtime.spec_error = None, str(exc)
        if runtime.spec and runtime.spec.secret_ref:
            secret_key = (runtime.ref.namespace, runtime.spec.secret_ref.name)
            self._by_secret.setdefault(secret_key, set()).add((runtime.ref.namespace, runtime.ref.name))

    def _unindex(self, runtime: _Runtime) -> None:
        if runtime.spec and runtime.spec.secret_ref:
            secret_key = (runtime.ref.namespace, runtime.spec.secret_ref.name)
            holders = self._by_secret.get(secret_key, set())
            holders.discard((runtime.ref.namespace, runtime.ref.name))
            if not holders:
                self._by_secret.pop(secret_key, None)

    def _drop(self, key: tuple[str, str]) -> None:
        runtime = self._entries.pop(key, None)
        if runtime is None:
            return
        self._unindex(runtime)
        if runtime.task is not None:
            runtime.task.cancel()
        if runtime.clients is not None:
            runtime.clients.close()
        if runtime.spec is not None:
            self._metrics.forget_connection(key[0], key[1], runtime.spec.services)

    async def _run(self, runtime: _Runtime) -> None:
        while True:
            runtime.wake.clear()
            started = time.perf_counter()
            outcome = "error"
            try:
                async with self._rounds:
                    await traced_pass(
                        self._tracer,
                        functools.partial(self._round, runtime),
                        kind=KIND,
                        namespace=runtime.ref.namespace,
                        name=runtime.ref.name,
                    )
                runtime.probed = True
                outcome = "success"
            except asyncio.CancelledError:
                raise
            except ApiException as refused:  # e.g. its namespace is being deleted: one line, no traceback
                logger.warning(
                    "probe round of %s/%s: the Kubernetes API refused a request (%s %s)",
                    runtime.ref.namespace,
                    runtime.ref.name,
                    refused.status,
                    refused.reason,
                )
            except Exception:
                logger.exception("probe round of %s/%s failed", runtime.ref.namespace, runtime.ref.name)
            finally:
                self._metrics.reconciliations.labels(kind=KIND, outcome=outcome).inc()
                self._metrics.reconcile_duration.labels(kind=KIND).observe(time.perf_counter() - started)
            interval = runtime.spec.probe_interval if runtime.spec else 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.wake.wait(), timeout=interval)

    async def _round(self, runtime: _Runtime) -> None:
        spec = runtime.spec
        if spec is None:
            message = runtime.spec_error or "spec could not be read"
            await self._write(
                runtime,
                Assessment(
                    conditions=[
                        Condition(type="Ready", status="False", reason="InvalidSpec", message=message)
                    ]
                ),
            )
            return
        try:
            clients = await self._clients(runtime, spec)
        except CredentialsError as error:
            await self._write(runtime, assess_credentials_failure(error))
            return

        identity_breaker = runtime.breaker("sts")
        ctx = ProbeContext(today=self._clock().date(), account_id=runtime.account_id)
        if "budgets" in spec.services and runtime.account_id is None:
            identity = await self._probe(runtime, clients, "sts", ctx, identity_breaker)
            if identity.healthy:
                runtime.account_id = identity.response.get("Account")
                ctx = ProbeContext(today=ctx.today, account_id=runtime.account_id)
            probes = {"sts": identity} if "sts" in spec.services else {}
        else:
            identity, probes = None, {}
        pending = [s for s in spec.services if s not in probes]
        if identity is None and "sts" not in spec.services:
            pending.append("sts")
        results = await asyncio.gather(
            *(self._probe(runtime, clients, s, ctx, runtime.breaker(s)) for s in pending)
        )
        by_service = {r.service: r for r in results}
        identity = identity or by_service["sts"]
        probes.update({s: by_service[s] for s in spec.services if s in by_service})
        if identity.healthy:
            runtime.account_id = (identity.response or {}).get("Account")
        assessment = assess_round(
            spec=spec,
            identity=identity,
            probes=probes,
            consecutive_failures={s: runtime.breaker(s).failures for s in spec.services},
            previous_services=runtime.status.get("services"),
            now=self._clock(),
            heartbeat=self._heartbeat,
        )
        await self._write(runtime, assessment)

    async def _probe(
        self,
        runtime: _Runtime,
        clients: ConnectionClients,
        service: str,
        ctx: ProbeContext,
        breaker: CircuitBreaker,
    ) -> ServiceProbe:
        result = await probe_service(clients, service, ctx=ctx, executor=self._executor, breaker=breaker)
        if not result.skipped and runtime.spec is not None and service in runtime.spec.services:
            labels = (runtime.ref.namespace, runtime.ref.name, service)
            self._metrics.aws_probe_duration.labels(*labels).observe(result.latency_ms / 1000)
            self._metrics.aws_service_up.labels(*labels).set(1 if result.healthy else 0)
        return result

    async def _clients(self, runtime: _Runtime, spec: ConnectionSpec) -> ConnectionClients:
        """Reuse the clients unless the spec or the Secret's resourceVersion changed."""
        if runtime.clients is not None and not runtime.secret_stale and runtime.clients.spec == spec:
            return runtime.clients
        secret = None
        if spec.secret_ref is not None:
            secret = await asyncio.to_thread(
                self._kube.read_secret, runtime.ref.namespace, spec.secret_ref.name
            )
        key = (spec.fingerprint, secret.resource_version if secret else None)
        if runtime.clients is not None and key == runtime.clients_key:
            runtime.secret_stale = False
            return runtime.clients
        keys = keys_from_secret(secret, spec.secret_ref) if spec.secret_ref is not None else None
        loop = asyncio.get_running_loop()
        try:
            clients = await loop.run_in_executor(
                self._executor, ConnectionClients.build, spec, keys, self.client_cache
            )
        finally:
            runtime.secret_stale = False
        if runtime.clients is not None:
            runtime.clients.close()
        runtime.clients, runtime.clients_key = clients, key
        runtime.breakers.clear()  # new credentials or endpoint: past failures say nothing about them
        return clients

    async def _write(self, runtime: _Runtime, assessment: Assessment) -> None:
        if any(c.type == "CredentialsResolved" and c.status == "False" for c in assessment.conditions):
            if runtime.clients is not None:
                runtime.clients.close()
            runtime.clients, runtime.clients_key = None, None
        written = await apply_status(
            self._kube,
            runtime.ref,
            current=runtime.status,
            generation=runtime.generation,
            assessment=assessment,
            now=self._clock(),
        )
        if written.stored is None:
            return
        runtime.status = written.stored
        if any(t.type == "Ready" for t in written.plan.transitions):
            for callback in self._subscribers:
                callback(runtime.ref.namespace, runtime.ref.name)
