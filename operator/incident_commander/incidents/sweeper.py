"""The leader's sweep of every policy's incidents: what requests leave undone, it finishes.

A request publishes its change and tells the state machine itself; the sweep is for what a crash
or a timeout leaves behind, found through the table's ``by-status`` index (the outbox and
unsettled proposals carry marker statuses there, so a sweep of a quiet policy is two empty
queries): events still in an outbox, proposals whose workflow was never started or told, proposals
past their timeout. Every ``COUNT_EVERY`` sweeps of a policy it also counts active incidents per
severity for the ``incident_commander_incidents_open`` gauge (only the leader reports it, so the
gauge is not multiplied by the number of replicas).

A quiet policy is swept less and less often (``Schedule``): at 1,000 policies a sweep of each
every 15 s cost 65 % of a core while nothing happened (bench/results, 2026-12-02). Its first
sweep after the replica starts leading is at once; a policy with anything pending, or one whose
incidents this replica just changed, is swept every interval; after k quiet sweeps in a row, every
2^k intervals, up to ``QUIET_LIMIT`` (5 minutes by default). What another replica's crash leaves in
an outbox is published by the next writer or reader of that incident at once, else within that
limit.

It runs only on the leader (started and stopped with leadership), but nothing breaks when two
replicas sweep at once: each step is idempotent (store.py, service.settle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from incident_commander.incidents.model import IncidentError
from incident_commander.incidents.service import IncidentService, Target
from incident_commander.telemetry.sampled_log import SampledLog

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 15.0
"""Seconds between sweeps: the longest a crash leaves events unpublished or a decision
unrecorded when no one reads the incident. Each sweep costs two index queries per policy."""
COUNT_EVERY = 4
"""Sweeps of a policy between counts of its active incidents."""
QUIET_LIMIT = 20
"""The longest wait, in intervals, between sweeps of a quiet policy (5 minutes by default)."""


@dataclass
class _Pace:
    quiet: int = 0
    """Sweeps in a row that found nothing pending."""
    due: int = 0
    """The tick of the next sweep."""
    sweeps: int = 0


@dataclass
class Schedule:
    """Which policies a tick sweeps: pure bookkeeping, unit-tested (tests/unit/incidents)."""

    limit: int = QUIET_LIMIT
    paces: dict[tuple[str, str], _Pace] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)

    def due(self, key: tuple[str, str], tick: int) -> bool:
        pace = self.paces.get(key)
        return pace is None or key in self.touched or tick >= pace.due

    def count_due(self, key: tuple[str, str], every: int) -> bool:
        """Every ``every``-th sweep, and every sweep of a policy that is being swept less often
        (its incidents may change through other replicas: the gauge is at most one wait old)."""
        pace = self.paces.get(key)
        return pace is None or pace.quiet >= 2 or pace.sweeps % every == 0

    def swept(self, key: tuple[str, str], tick: int, *, pending: bool) -> None:
        pace = self.paces.setdefault(key, _Pace())
        busy = pending or key in self.touched
        self.touched.discard(key)
        pace.quiet = 0 if busy else pace.quiet + 1
        pace.due = tick + min(2**pace.quiet, self.limit)
        pace.sweeps += 1

    def retain(self, keys: set[tuple[str, str]]) -> None:
        """Forget policies that are gone."""
        for key in set(self.paces) - keys:
            del self.paces[key]
        self.touched &= keys


class IncidentSweeper:
    def __init__(
        self,
        service: IncidentService,
        targets: Callable[[], list[Target]],
        *,
        interval: float = SWEEP_INTERVAL,
        count_every: int = COUNT_EVERY,
        quiet_limit: int = QUIET_LIMIT,
    ) -> None:
        self._service = service
        self._targets = targets
        self._interval = interval
        self._count_every = count_every
        self._quiet_limit = quiet_limit
        self._schedule = Schedule(limit=quiet_limit)
        self._task: asyncio.Task[None] | None = None
        self._log = SampledLog(logger, per_window=10, window=60.0)
        service.written = self.touch

    def touch(self, namespace: str, policy: str) -> None:
        """This replica changed one of the policy's incidents: sweep it at the next tick."""
        self._schedule.touched.add((namespace, policy))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            # A new leadership sweeps every policy at once: another replica may have crashed.
            self._schedule = Schedule(limit=self._quiet_limit)
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="incident sweeper")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._service.metrics.clear_open_incidents()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        tick = 0
        while True:
            await self.sweep_once(tick)
            tick += 1
            await asyncio.sleep(self._interval)

    async def sweep_once(self, tick: int = 0) -> None:
        targets = self._targets()
        self._schedule.retain({(t.namespace, t.name) for t in targets})
        for target in targets:
            key = (target.namespace, target.name)
            if not self._schedule.due(key, tick):
                continue
            count = self._schedule.count_due(key, self._count_every)
            try:
                done = await self._service.sweep(target, count=count)
            except IncidentError as failure:
                self._log.warning(
                    f"{target.namespace}/{target.name}",
                    "incident sweep of %s/%s: %s",
                    target.namespace,
                    target.name,
                    failure.message,
                )
                continue
            except Exception:
                logger.exception("incident sweep of %s/%s failed", target.namespace, target.name)
                continue
            pending = bool(done["published"] or done["settled"] or done["unsettled"])
            self._schedule.swept(key, tick, pending=pending)
            if done["published"] or done["settled"]:
                logger.info(
                    "incident sweep of %s/%s: published %d event(s), settled %d proposal(s)",
                    target.namespace,
                    target.name,
                    done["published"],
                    done["settled"],
                )
