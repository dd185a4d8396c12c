"""The one controller skeleton every kind uses: entries by object, a worker each, status and Events.

A kind subclasses :class:`Controller` and supplies what is its own: how a watched object becomes an
entry (``new_entry``), which changes of the object call for a pass (``trigger``), and the pass
itself (``run_pass``, returning the seconds until the next pass is due). Everything else is here,
written once:

- entries keyed by (namespace, name), replaced when the uid changes (same name, new object);
- one :class:`~incident_commander.workers.ObjectWorker` per entry, woken when the trigger changes,
  when a dependency named in ``spec.<ref>.name`` changes (``wake_referencing``), or on request;
- at most ``concurrency`` passes of the kind at once;
- status writes through :func:`~incident_commander.status.apply_status` (only on change, one Event
  per cause of a condition flip) with the entry's stored status kept current;
- the object's conditions as metrics (``incident_commander_status_condition``), from the status this
  replica knows (its own writes on the leader, the leader's on a standby), dropped on deletion;
- the outcome of each pass (workers.PassResult): from the Ready condition the pass assessed, or
  ``deferred`` when the kind says it could not assess yet (``defer``);
- subscribers told when something they depend on changed (``notify``);
- ``pause``/``resume`` for a replica that loses or gains the leadership: a paused controller keeps
  following its objects but runs no pass, so it writes nothing.

Nothing here knows a kind; the kinds live in ``kinds/<kind>/``.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from opentelemetry.trace import Tracer

from incident_commander.clock import Clock, system_clock
from incident_commander.kept_objects import kept_body
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.metrics import RECONCILE_OUTCOMES, OperatorMetrics
from incident_commander.status import Assessment, StatusWrite, apply_status
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.telemetry.tracing import NOOP_TRACER
from incident_commander.workers import Dependents, ObjectKey, ObjectWorker, PassResult

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Entry:
    """What a controller keeps of one object between its watch events."""

    ref: ObjectRef
    body: Mapping[str, Any]
    """The latest watched object without status (kept_objects.kept_body): metadata and spec."""
    status: dict[str, Any]
    """What this operator last wrote (or found at first sight)."""
    trigger: tuple[Any, ...] = ()
    """The parts of the object whose change calls for a pass (see ``Controller.trigger``)."""
    worker: ObjectWorker | None = None
    assessed_ready: str | None = None
    """The Ready status the running pass assessed (None: none yet)."""
    deferred: bool = False
    """The running pass could not assess the object yet (``Controller.defer``)."""

    @property
    def key(self) -> ObjectKey:
        return (self.ref.namespace, self.ref.name)

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 0)

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.body["metadata"].get("annotations") or {}


E = TypeVar("E", bound=Entry)


class Controller(abc.ABC, Generic[E]):
    kind: ClassVar[str]
    plural: ClassVar[str]
    references: ClassVar[tuple[str, ...]] = ()
    """``spec.<ref>.name`` fields naming objects this kind depends on (see ``wake_referencing``)."""
    condition_types: ClassVar[tuple[str, ...]] = ("Ready",)
    """The condition types this kind writes: the ones exported as metrics (others a status may
    carry, written by someone else, are not, so the series stay bounded)."""
    concurrency: ClassVar[int] = 8
    """Passes of this kind at once. A pass is mostly CPU (botocore, the GIL): more at once only adds
    in-flight memory; at 1,000 objects 8 instead of 16 lowered the peak RSS with no loss of time."""

    def __init__(
        self,
        *,
        kube: KubeApi,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        tracer: Tracer = NOOP_TRACER,
        threads: int = 16,
        start_workers: bool = True,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.clock = clock
        self.tracer = tracer
        self.executor = ContextThreadPoolExecutor(max_workers=threads, thread_name_prefix=self.plural)
        """For the passes' blocking AWS calls (the span context follows them into the thread)."""
        self._entries: dict[ObjectKey, E] = {}
        self._dependents = Dependents(*self.references)
        self._subscribers: list[Callable[[str, str], None]] = []
        self._gate = asyncio.Semaphore(self.concurrency)
        self._active = True
        self._start_workers = start_workers
        """False: no worker runs passes; whoever built the controller runs them (unit tests)."""
        for outcome in RECONCILE_OUTCOMES:  # every outcome from zero, so rates and ratios exist
            metrics.reconciliations.labels(kind=self.kind, outcome=outcome)

    # -- what a kind supplies --------------------------------------------------------------------
    @abc.abstractmethod
    def new_entry(self, ref: ObjectRef, body: Mapping[str, Any], status: dict[str, Any]) -> E:
        """The entry for an object seen for the first time (or a new object under a known name)."""

    @abc.abstractmethod
    async def run_pass(self, entry: E) -> float:
        """One reconciliation of ``entry``; returns the seconds until the next one is due."""

    def trigger(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        """What of the object calls for a pass when it changes: its generation by default."""
        return (body["metadata"].get("generation"),)

    def triggered(self, entry: E) -> None:
        """The trigger of a known entry changed (e.g. re-read its spec); a pass follows."""

    def forgotten(self, entry: E) -> None:
        """The object is gone (or replaced): drop what the kind keeps elsewhere (metrics...)."""

    def status_observed(self, entry: E) -> None:
        """On a standby, the leader wrote a new status for ``entry`` (now in ``entry.status``)."""

    # -- fed by the watch --------------------------------------------------------------------------
    def watch_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """The kind's watch handler: listed, added and modified objects are observed; deleted ones
        are forgotten (only when the deleted object is the one known under that name)."""
        meta = body.get("metadata") or {}
        if event_type == "DELETED":
            self.forget(str(meta.get("namespace")), str(meta.get("name")), uid=meta.get("uid"))
        else:
            self.observe(body)

    def observe(self, body: Mapping[str, Any]) -> None:
        watched_status = body.get("status") or {}
        body = kept_body(body)  # without status: ours is in entry.status
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        trigger = self.trigger(body)
        entry = self._entries.get(key)
        if entry is not None and entry.ref.uid == meta["uid"]:
            self._dependents.track(key, body)
            entry.body = body
            if trigger != entry.trigger:
                entry.trigger = trigger
                self.triggered(entry)
                self.wake(entry)
            if not self._active and watched_status != entry.status:
                # A standby follows what the leader writes; the leader keeps its own record.
                entry.status = dict(watched_status)
                self.status_observed(entry)
                self._export_conditions(entry)
            return
        if entry is not None:
            self.forget(*key)
        self._dependents.track(key, body)
        ref = ObjectRef(kind=self.kind, plural=self.plural, namespace=key[0], name=key[1], uid=meta["uid"])
        entry = self.new_entry(ref, body, dict(watched_status))
        entry.trigger = trigger
        self._entries[key] = entry
        self._export_conditions(entry)
        if self._active:
            self._start(entry)

    def forget(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        entry = self._entries.get((namespace, name))
        if entry is None or (uid is not None and entry.ref.uid != uid):
            return
        del self._entries[(namespace, name)]
        self._dependents.untrack((namespace, name))
        if entry.worker is not None:
            entry.worker.cancel()
            entry.worker = None
        self.metrics.forget_conditions(self.kind, namespace, name)
        self.forgotten(entry)

    # -- the entries, for the kind and its users ---------------------------------------------------
    def entry(self, namespace: str, name: str) -> E | None:
        return self._entries.get((namespace, name))

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def wake(self, entry: E, *, within: float | None = None) -> None:
        """A pass now, or within ``within`` seconds (requests meanwhile share that one pass)."""
        if entry.worker is None:
            return
        if within is None:
            entry.worker.wake()
        else:
            entry.worker.wake_within(within)

    def wake_referencing(self, ref: str, namespace: str, name: str) -> None:
        """Wake every object of ``namespace`` whose ``spec.<ref>.name`` is ``name`` (it changed)."""
        for key in self._dependents.of(namespace, ref, name):
            entry = self._entries.get(key)
            if entry is not None:
                self.wake(entry)

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """``callback(namespace, name)`` runs on the event loop when the kind says an object changed
        in a way its users care about (``notify``)."""
        self._subscribers.append(callback)

    def notify(self, namespace: str, name: str) -> None:
        for callback in self._subscribers:
            try:
                callback(namespace, name)
            except Exception:
                logger.exception("%s subscriber failed for %s/%s", self.kind, namespace, name)

    # -- leadership --------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active

    def pause(self) -> None:
        """Stop every worker (a standby replica): the entries stay current, no pass runs."""
        self._active = False
        for entry in self._entries.values():
            if entry.worker is not None:
                entry.worker.cancel()
                entry.worker = None

    def resume(self) -> None:
        """Start a worker for every entry (this replica became the active one)."""
        self._active = True
        for entry in self._entries.values():
            if entry.worker is None:
                self._start(entry)

    async def close(self) -> None:
        for key in list(self._entries):
            self.forget(*key)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- what passes use ---------------------------------------------------------------------------
    async def write_status(
        self,
        entry: E,
        assessment: Assessment,
        *,
        now: datetime | None = None,
        extra: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> StatusWrite:
        """Write the assessed status if it differs from what is stored (see status.apply_status)."""
        written = await apply_status(
            self.kube,
            entry.ref,
            current=entry.status,
            generation=entry.generation,
            assessment=assessment,
            now=now or self.clock(),
            extra=extra,
            force=force,
        )
        if written.stored is not None:
            entry.status = written.stored
            self._export_conditions(entry)
        ready = next((c for c in assessment.conditions if c.type == "Ready"), None)
        if ready is not None:
            entry.assessed_ready = ready.status
        return written

    def defer(self, entry: E, delay: float) -> float:
        """Return from a pass that could not assess ``entry`` yet (its outcome is ``deferred``)."""
        entry.deferred = True
        return delay

    async def reconcile(self, entry: E) -> PassResult:
        """One pass and its outcome (see workers.PassResult)."""
        entry.assessed_ready, entry.deferred = None, False
        delay = await self.run_pass(entry)
        if entry.assessed_ready not in (None, "True"):
            outcome = "not_ready"
        elif entry.deferred:
            outcome = "deferred"
        else:
            outcome = "success"
        return PassResult(delay=delay, outcome=outcome)

    def _export_conditions(self, entry: E) -> None:
        statuses = {
            str(c.get("type")): str(c.get("status"))
            for c in entry.status.get("conditions") or []
            if isinstance(c, Mapping) and c.get("type") in self.condition_types
        }
        self.metrics.set_conditions(self.kind, entry.ref.namespace, entry.ref.name, statuses)

    async def post_event(self, entry: E, type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(
            self.kube.post_event, entry.ref, type_=type_, reason=reason, message=message, now=self.clock()
        )

    def _start(self, entry: E) -> None:
        if not self._start_workers:
            return
        entry.worker = ObjectWorker(
            kind=self.kind,
            name=f"{entry.ref.namespace}/{entry.ref.name}",
            run_pass=functools.partial(self.reconcile, entry),
            metrics=self.metrics,
            gate=self._gate,
            tracer=self.tracer,
        )
