"""Whether this replica may answer from what it knows: fail closed until its view is current.

A replica's API answers from memory (keys, policies, budgets) that the watches keep current. That
memory is trustworthy only once (1) the sealing key is loaded, (2) the first listing of every
resource has been taken in, and (3) the Kubernetes API answered recently (a replica cut off from
it cannot hear of a revoked key or a Halt). Until then ``/readyz`` answers 503, so a Service sends
it no traffic, and the protected routes answer 503 with Retry-After (docs/ha.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from incident_commander.kube_api import KubeApi

logger = logging.getLogger(__name__)

STALE_AFTER = 10.0
"""Seconds without an answer from the Kubernetes API after which this replica is not ready."""
HEARTBEAT = 2.0


class Readiness:
    def __init__(
        self, *, stale_after: float = STALE_AFTER, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._stale_after = stale_after
        self._monotonic = monotonic
        self.key_loaded = False
        self.synced = False
        self._contact: float | None = None

    def contact(self) -> None:
        """The Kubernetes API just answered."""
        self._contact = self._monotonic()

    def reasons(self) -> list[str]:
        """Why this replica is not ready; empty when it is."""
        reasons = []
        if not self.key_loaded:
            reasons.append("the integrity key is not loaded")
        if not self.synced:
            reasons.append("the first listing of the cluster's objects is not done")
        if self._contact is None or self._monotonic() - self._contact > self._stale_after:
            reasons.append(f"the Kubernetes API has not answered for over {self._stale_after:g}s")
        return reasons

    @property
    def ready(self) -> bool:
        return not self.reasons()


async def heartbeat(kube: KubeApi, readiness: Readiness, *, period: float = HEARTBEAT) -> None:
    """Ask the Kubernetes API for its version every ``period`` seconds; each answer is a contact."""
    was_ready: bool | None = None
    while True:
        try:
            await asyncio.to_thread(kube.ping)
            readiness.contact()
        except Exception as exc:  # unreachable, or refusing: both mean our view may be stale
            logger.debug("Kubernetes API heartbeat failed: %s", type(exc).__name__)
        ready = readiness.ready
        if ready != was_ready:
            if ready:
                logger.info("ready: serving the API")
            else:
                logger.warning("not ready: %s", "; ".join(readiness.reasons()))
            was_ready = ready
        await asyncio.sleep(period)
