"""One asyncio task per object: run a pass now, then again when woken or when the pass's own delay ends.

The kinds use this instead of kopf daemons or timers: an idle object costs one
sleeping task and no API calls, wake-ups come from watch events, and the pass
decides its next run (a probe interval, the next key rotation, a retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from opentelemetry.trace import Tracer

from incident_commander.metrics import OperatorMetrics
from incident_commander.telemetry.spans import traced_pass
from incident_commander.telemetry.tracing import NOOP_TRACER

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PassResult:
    """What a pass came to: when the next one is due without any event, and its outcome.

    ``outcome`` (the ``outcome`` label of ``incident_commander_reconciliations_total`` and the
    span's ``incidentcommander.outcome``): ``success`` (the pass ran to its end and the object is
    Ready, or its deletion finished), ``not_ready`` (it ran to its end and left Ready False or
    Unknown: the condition says why, and the pass scheduled its own retry), ``deferred`` (it
    assessed nothing because this process does not know enough yet, e.g. a connection right after
    a start; the stored status stands) or ``error`` (it raised; set by the worker, which retries
    after ERROR_RETRY_SECONDS)."""

    delay: float
    outcome: str = "success"


Pass = Callable[[], Awaitable[PassResult]]
"""A reconciliation pass."""

ERROR_RETRY_SECONDS = 15.0


class ObjectWorker:
    """Serialises the passes of one object; never two at once."""

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        run_pass: Pass,
        metrics: OperatorMetrics,
        gate: asyncio.Semaphore,
        tracer: Tracer = NOOP_TRACER,
    ) -> None:
        self._kind = kind
        self._name = name
        self._tracer = tracer
        self._run_pass = run_pass
        self._metrics = metrics
        self._gate = gate
        self._wake = asyncio.Event()
        self._soon: asyncio.TimerHandle | None = None
        # A task runs in a copy of the context it was created in, for its whole life. Workers are
        # created inside kopf's event handler, whose context holds the cause being handled (the
        # object's raw watch event, managedFields and all, with a patch and a logger): a copy
        # kept one such event alive per object for as long as the object exists (about 5 KB each;
        # docs/performance.md, "The census, and what it found"). The passes need nothing from it.
        self._task = asyncio.create_task(self._loop(), name=f"{kind} {name}", context=contextvars.Context())

    def wake(self) -> None:
        self._wake.set()

    def wake_within(self, seconds: float) -> None:
        """Run a pass within ``seconds``; requests made meanwhile share that one pass."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(seconds, self._wake_soon)

    def _wake_soon(self) -> None:
        self._soon = None
        self._wake.set()

    def cancel(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._task.cancel()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            started = time.perf_counter()
            delay = ERROR_RETRY_SECONDS
            outcome = "error"
            try:
                async with self._gate:
                    namespace, _, name = self._name.rpartition("/")
                    result = await traced_pass(
                        self._tracer,
                        self._run_pass,
                        kind=self._kind,
                        namespace=namespace,
                        name=name,
                        outcome=lambda done: done.outcome,
                    )
                delay, outcome = result.delay, result.outcome
            except asyncio.CancelledError:
                # Cut short (the object went away, leadership was lost, the operator stops): the
                # pass neither failed nor succeeded, so it is not counted.
                outcome = ""
                raise
            except ApiException as refused:
                # An answer from the apiserver (a namespace being deleted, a missing permission, a
                # conflict): expected in a live cluster, so one line and a retry, not a traceback.
                logger.warning(
                    "%s %s: the Kubernetes API refused a request (%s %s); retrying in %ss",
                    self._kind,
                    self._name,
                    refused.status,
                    refused.reason,
                    delay,
                )
            except Exception:
                logger.exception(
                    "%s %s: reconciliation failed; retrying in %ss", self._kind, self._name, delay
                )
            finally:
                if outcome:
                    self._metrics.reconciliations.labels(kind=self._kind, outcome=outcome).inc()
                    self._metrics.reconcile_duration.labels(kind=self._kind).observe(
                        time.perf_counter() - started
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, delay))


ObjectKey = tuple[str, str]


class Dependents:
    """Which objects name which dependency in ``spec.<ref>.name``, so a dependency's change wakes
    its dependents without scanning every object (a scan per change is quadratic when a thousand
    connections become Ready together)."""

    def __init__(self, *refs: str) -> None:
        self._refs = refs
        self._named: dict[ObjectKey, tuple[tuple[str, str], ...]] = {}
        self._by_dependency: dict[tuple[str, str, str], set[ObjectKey]] = {}

    def track(self, key: ObjectKey, body: Mapping[str, Any]) -> None:
        """The object's current references, from its latest body."""
        spec = body.get("spec") or {}
        named = tuple((ref, str(name)) for ref in self._refs if (name := (spec.get(ref) or {}).get("name")))
        if self._named.get(key) == named:
            return
        self.untrack(key)
        self._named[key] = named
        for ref, name in named:
            self._by_dependency.setdefault((key[0], ref, name), set()).add(key)

    def untrack(self, key: ObjectKey) -> None:
        for ref, name in self._named.pop(key, ()):
            dependency = (key[0], ref, name)
            users = self._by_dependency.get(dependency)
            if users is not None:
                users.discard(key)
                if not users:
                    del self._by_dependency[dependency]

    def of(self, namespace: str, ref: str, name: str) -> list[ObjectKey]:
        return sorted(self._by_dependency.get((namespace, ref, name), ()))
