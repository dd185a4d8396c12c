"""The leader's sweep of every policy's incidents: what requests leave undone, it finishes.

A request publishes its change and tells the state machine itself; the sweep is for what a crash
or a timeout leaves behind, found through the table's ``by-status`` index (the outbox and
unsettled proposals carry marker statuses there, so a sweep of a quiet policy is three small
queries with the count): events still in an outbox, proposals whose workflow was never started or
told, proposals past their timeout. Every sweep also counts active incidents per severity for the
``incident_commander_incidents_open`` gauge (only the leader reports it, so the
gauge is not multiplied by the number of replicas).

A quiet policy is swept rarely (``Schedule``): at 1,000 policies a sweep of each every 15 s cost
65 % of a core while nothing happened, and one every 5 minutes still 7 % (bench/results,
2026-12-02). What needs a sweep is known:

- every policy, when this replica starts leading and when another replica leaves (its membership
  Lease expired or was deleted): either may have crashed between a write and its publication;
- a policy with anything pending (an event in an outbox, an open proposal) or whose incidents this
  replica has just changed (a publish that failed here is then found at the next tick): every
  interval;
- a quiet policy while other replicas serve the API: every ``QUIET_LIMIT`` intervals (5 minutes by
  default), since their writes are not seen here and a publish they failed waits for a sweep;
- a quiet policy while this replica is the only one: every ``ALONE_LIMIT`` intervals (1 hour),
  only as a last resort: nothing but this replica writes its incidents. So a standalone operator
  (no leader election) does not sweep at first sight a table it created itself
  (``created_here``): only it can have written there.

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
"""Seconds between ticks: a policy with anything pending, or just written here, is swept at each.
A sweep costs three index queries (the outbox, the proposals, the count)."""
QUIET_LIMIT = 20
"""The wait, in intervals, between sweeps of a quiet policy while other replicas serve the API
(5 minutes by default)."""
ALONE_LIMIT = 240
"""The wait, in intervals, between sweeps of a quiet policy while this replica is the only one
(1 hour by default)."""


@dataclass
class _Pace:
    due: int = 0
    """The tick of the next sweep."""


@dataclass
class Schedule:
    """Which policies a tick sweeps: pure bookkeeping, unit-tested (tests/unit/incidents)."""

    limit: int = QUIET_LIMIT
    """Intervals between sweeps of a quiet policy."""
    paces: dict[tuple[str, str], _Pace] = field(default_factory=dict)
    touched: set[tuple[str, str]] = field(default_factory=set)

    def due(self, key: tuple[str, str], tick: int) -> bool:
        pace = self.paces.get(key)
        return pace is None or key in self.touched or tick >= pace.due

    def swept(self, key: tuple[str, str], tick: int, *, pending: bool) -> None:
        pace = self.paces.setdefault(key, _Pace())
        busy = pending or key in self.touched
        self.touched.discard(key)
        pace.due = tick + (1 if busy else self.limit)

    def shorten(self, limit: int, tick: int) -> None:
        """A new, shorter wait: no policy waits beyond it from ``tick`` on."""
        if limit < self.limit:
            for pace in self.paces.values():
                pace.due = min(pace.due, tick + limit)
        self.limit = limit

    def sweep_all(self) -> None:
        """Every policy at the next tick (a replica left: it may have crashed mid-write)."""
        for pace in self.paces.values():
            pace.due = 0

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
        quiet_limit: int = QUIET_LIMIT,
        alone_limit: int = ALONE_LIMIT,
        members: Callable[[], frozenset[str]] = frozenset,
        created_here: Callable[[Target], bool] = lambda target: False,
    ) -> None:
        """``members``: the identities of the live replicas (membership Leases); empty or just this
        one when it runs alone. ``created_here``: whether this process created the policy's table."""
        self._service = service
        self._targets = targets
        self._interval = interval
        self._quiet_limit = quiet_limit
        self._alone_limit = alone_limit
        self._members = members
        self._created_here = created_here
        self._seen_members: frozenset[str] = frozenset()
        self._schedule = Schedule(limit=alone_limit)
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
            self._schedule = Schedule(limit=self._alone_limit)
            self._seen_members = self._members()
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

    def _follow_members(self, tick: int) -> None:
        members = self._members()
        left = self._seen_members - members
        if left:
            logger.info("incident sweep: replica(s) %s left; sweeping every policy", ", ".join(sorted(left)))
            self._schedule.sweep_all()
        self._seen_members = members
        self._schedule.shorten(self._quiet_limit if len(members) > 1 else self._alone_limit, tick)

    async def sweep_once(self, tick: int = 0) -> None:
        self._follow_members(tick)
        targets = self._targets()
        self._schedule.retain({(t.namespace, t.name) for t in targets})
        for target in targets:
            key = (target.namespace, target.name)
            if (
                key not in self._schedule.paces
                and len(self._seen_members) <= 1
                and self._created_here(target)
            ):
                self._schedule.swept(key, tick, pending=False)  # nothing to find: at 1,000 new
                continue  # policies these first sweeps were 3,000 queries while converging
            if not self._schedule.due(key, tick):
                continue
            try:
                done = await self._service.sweep(target, count=True)
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
