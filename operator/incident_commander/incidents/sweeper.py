"""The leader's sweep of every policy's incidents: what requests leave undone, it finishes.

A request publishes its change and tells the state machine itself; the sweep is for what a crash
or a timeout leaves behind, found through the table's ``by-status`` index (the outbox and
unsettled proposals carry marker statuses there, so a sweep of a quiet policy is two empty
queries): events still in an outbox, proposals whose workflow was never started or told, proposals
past their timeout. Every ``COUNT_EVERY`` sweeps it also counts active incidents per severity for
the ``incident_commander_incidents_open`` gauge (only the leader reports it, so the gauge is not
multiplied by the number of replicas).

It runs only on the leader (started and stopped with leadership), but nothing breaks when two
replicas sweep at once: each step is idempotent (store.py, service.settle).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from incident_commander.incidents.model import IncidentError
from incident_commander.incidents.service import IncidentService, Target
from incident_commander.telemetry.sampled_log import SampledLog

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 15.0
"""Seconds between sweeps: the longest a crash leaves events unpublished or a decision
unrecorded when no one reads the incident. Each sweep costs two index queries per policy."""
COUNT_EVERY = 4
"""Sweeps between counts of active incidents (the gauge is a minute old at most)."""


class IncidentSweeper:
    def __init__(
        self,
        service: IncidentService,
        targets: Callable[[], list[Target]],
        *,
        interval: float = SWEEP_INTERVAL,
        count_every: int = COUNT_EVERY,
    ) -> None:
        self._service = service
        self._targets = targets
        self._interval = interval
        self._count_every = count_every
        self._task: asyncio.Task[None] | None = None
        self._log = SampledLog(logger, per_window=10, window=60.0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
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
        sweeps = 0
        while True:
            await self.sweep_once(count=sweeps % self._count_every == 0)
            sweeps += 1
            await asyncio.sleep(self._interval)

    async def sweep_once(self, *, count: bool = True) -> None:
        for target in self._targets():
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
            if done["published"] or done["settled"]:
                logger.info(
                    "incident sweep of %s/%s: published %d event(s), settled %d proposal(s)",
                    target.namespace,
                    target.name,
                    done["published"],
                    done["settled"],
                )
