"""Several replicas: one leads (runs the controllers), every one serves the API (docs/ha.md).

``LeaderElector`` is the Kubernetes way (client-go's leaderelection, on a coordination.k8s.io
Lease): the leader renews the Lease every ``retry_period``; the others only read it, and take it
over when it has not been renewed for ``lease_duration`` as observed on their own clock (no clock
skew between nodes matters). A leader that cannot renew for ``renew_deadline`` steps down before
anyone may take over (``renew_deadline < lease_duration``), and steps down at once on shutdown by
releasing the Lease, so a rolling update hands over in about a second.

``Membership`` lets each ready replica be counted: every replica keeps a Lease of its own (label
``incidentcommander.io/member-of=<election>``) while it is ready, and counts the others' that are
not expired. The API divides each client's rate limit by that count, so N replicas behind one
Service give the configured rate in total (api/ratelimit.py). This Lease is the one object a
standby replica writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from incident_commander.clock import Clock, system_clock
from incident_commander.kube_api import AlreadyExists, Conflict, KubeApi
from incident_commander.timestamps import parse_time_or_none

logger = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
MEMBER_LABEL = "incidentcommander.io/member-of"


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with six fractional digits, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class Timing:
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    @property
    def request_timeout(self) -> float:
        """Seconds a Lease request may take to connect, and again to answer: a quarter of the
        renew deadline (2.5 s by default), so even a round of two requests to an apiserver that
        stopped answering (a partition dropping packets) ends within the deadline and the leader
        steps down in time, instead of waiting minutes for TCP to give up."""
        return max(0.5, self.renew_deadline / 4)


class LeaderElector:
    def __init__(
        self,
        kube: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        timing: Timing = Timing(),
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._timing = timing
        self._clock = clock
        self._monotonic = monotonic
        self._leading = False
        self._renewed = 0.0
        """When this replica last renewed (its own monotonic clock)."""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.holder: str | None = None
        """The identity holding the Lease, as last read."""

    @property
    def leading(self) -> bool:
        return self._leading

    def may_write(self) -> bool:
        """Leading, with a renewal younger than the renew deadline: a leader that was paused (a
        stopped process, a long GC) writes nothing until it has renewed again, even before its
        election loop runs and notices it lost the Lease."""
        return self._leading and self._monotonic() - self._renewed < self._timing.renew_deadline

    async def run(self) -> None:
        """Acquire, renew, step down, retry: until cancelled (then release when leading)."""
        try:
            while True:
                try:
                    held = await asyncio.to_thread(self._try_acquire_or_renew)
                except Exception as exc:  # the apiserver away: a leader keeps leading until its deadline
                    logger.warning(
                        "leader election: %s (%s)", type(exc).__name__, getattr(exc, "reason", exc)
                    )
                    held = False
                now = self._monotonic()
                if held:
                    self._renewed = now
                    if not self._leading:
                        self._set_leading(True)
                elif self._leading and now - self._renewed >= self._timing.renew_deadline:
                    logger.warning(
                        "leader election: could not renew for %.0fs; stepping down", now - self._renewed
                    )
                    self._set_leading(False)
                await asyncio.sleep(self._timing.retry_period)
        except asyncio.CancelledError:
            if self._leading:
                self._set_leading(False)
                await asyncio.to_thread(self._release)
            raise

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        logger.info(
            "%s the leader of %s/%s", "became" if leading else "is no longer", self.namespace, self.name
        )
        (self._on_started if leading else self._on_stopped)()

    def _try_acquire_or_renew(self) -> bool:
        """One round (blocking). Writes only to renew its own hold or to take an expired Lease."""
        now = self._clock()
        lease = self._kube.get_lease(self.namespace, self.name, timeout=self._timing.request_timeout)
        duration = math.ceil(self._timing.lease_duration)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": micro_time(now),
                    "renewTime": micro_time(now),
                    "leaseTransitions": 0,
                },
            }
            try:
                self._kube.create_lease(self.namespace, body, timeout=self._timing.request_timeout)
            except AlreadyExists:
                return False
            self.holder = self.identity
            return True
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or None
        self.holder = holder
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        if holder and holder != self.identity:
            expiry = float(spec.get("leaseDurationSeconds") or duration)
            if self._monotonic() - self._observed_at < expiry:
                return False  # held by a live leader
        taking_over = holder != self.identity
        spec.update(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": duration,
                "renewTime": micro_time(now),
            }
        )
        if taking_over:
            spec["acquireTime"] = micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        try:
            self._kube.replace_lease(
                self.namespace, self.name, {**lease, "spec": spec}, timeout=self._timing.request_timeout
            )
        except Conflict:
            return False
        if taking_over:
            logger.info("took over Lease %s/%s from %s", self.namespace, self.name, holder or "nobody")
        self.holder = self.identity
        return True

    def _release(self) -> None:
        """Step down for a quick hand-over: an empty holder lets the next replica take it at once."""
        try:
            timeout = self._timing.request_timeout
            lease = self._kube.get_lease(self.namespace, self.name, timeout=timeout)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
            self._kube.replace_lease(self.namespace, self.name, {**lease, "spec": spec}, timeout=timeout)
        except Exception as exc:
            logger.warning(
                "could not release Lease %s/%s (%s)", self.namespace, self.name, type(exc).__name__
            )


class Membership:
    """This replica's own Lease while it is ready, and the count of ready replicas."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        namespace: str,
        election: str,
        identity: str,
        ready: Callable[[], bool],
        timing: Timing = Timing(),
        clock: Clock = system_clock,
    ) -> None:
        self._kube = kube
        self.namespace = namespace
        self.election = election
        self.identity = identity
        self._ready = ready
        self._timing = timing
        self._clock = clock
        self._name = f"{election}-member-{identity}"[:253]
        self.live: frozenset[str] = frozenset()
        """The identities of the ready replicas (their Leases' holders), as of the last round."""

    @property
    def members(self) -> int:
        """Ready replicas, this one included when it is ready; never less than 1."""
        return max(1, len(self.live))

    async def run(self) -> None:
        try:
            while True:
                try:
                    self.live = await asyncio.to_thread(self._round)
                except Exception as exc:
                    logger.warning("membership: %s (%s)", type(exc).__name__, getattr(exc, "reason", exc))
                await asyncio.sleep(self._timing.retry_period)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._leave)
            raise

    def _round(self) -> frozenset[str]:
        now = self._clock()
        if self._ready():
            self._renew(now)
        else:
            self._leave()
        selector = f"{MEMBER_LABEL}={self.election}"
        live: set[str] = set()
        for lease in self._kube.list_leases(self.namespace, selector, timeout=self._timing.request_timeout):
            spec = lease.get("spec") or {}
            renewed = parse_time_or_none(spec.get("renewTime"))
            duration = float(spec.get("leaseDurationSeconds") or self._timing.lease_duration)
            if renewed is not None and (now - renewed).total_seconds() < duration:
                live.add(str(spec.get("holderIdentity") or lease.get("metadata", {}).get("name")))
        return frozenset(live)

    def _renew(self, now: datetime) -> None:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self._timing.lease_duration),
            "renewTime": micro_time(now),
        }
        timeout = self._timing.request_timeout
        lease = self._kube.get_lease(self.namespace, self._name, timeout=timeout)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self._name,
                    "namespace": self.namespace,
                    "labels": {MEMBER_LABEL: self.election},
                },
                "spec": spec,
            }
            with contextlib.suppress(AlreadyExists):  # our own, from a round that timed out
                self._kube.create_lease(self.namespace, body, timeout=timeout)
            return
        with contextlib.suppress(Conflict):  # renewed by an earlier round meanwhile
            self._kube.replace_lease(self.namespace, self._name, {**lease, "spec": spec}, timeout=timeout)

    def _leave(self) -> None:
        self._kube.delete_lease(self.namespace, self._name, timeout=self._timing.request_timeout)
