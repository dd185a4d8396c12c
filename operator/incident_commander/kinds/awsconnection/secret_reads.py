"""One read of a credentials Secret for every connection that needs it at about the same time.

Connections in a namespace often share one credentials Secret. Each used to read it when it
built its clients: a thousand connections applied together made a thousand GETs of the same
Secret. A read is now held and handed to every caller that asks for the same Secret while it is
held. It stops being held when

- the Secret watch reports any event for that Secret (created, edited, deleted, or listed again
  after the watch broke): the next caller reads it afresh;
- it is older than ``max_age``: a bound on what a broken watch could leave unseen;
- the read failed: the next caller tries again;
- no connection refers to the Secret any more (``forget``): no Secret data is kept for nobody.

A caller that joined a read already under way when an event came gets that read's result; the
event also marks its connection stale and wakes it (controller.secret_event), so its next pass
reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from incident_commander.kube_api import SecretData

SecretKey = tuple[str, str]
"""(namespace, name): Secrets of different namespaces never share a read."""

MAX_AGE = 30.0
"""Seconds a read is shared at most. A thousand connections applied together start their first
rounds over about a minute at 16 at a time, so this makes two or three reads of their Secret."""


@dataclass(frozen=True)
class _Held:
    read: asyncio.Future[SecretData | None]
    started: float


class SharedSecretReads:
    def __init__(
        self,
        read: Callable[[str, str], Awaitable[SecretData | None]],
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._held: dict[SecretKey, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    async def get(self, namespace: str, name: str) -> SecretData | None:
        """The Secret's data and resourceVersion, or None when it does not exist."""
        key = (namespace, name)
        held = self._held.get(key)
        if held is None or self._clock() - held.started >= self._max_age:
            held = _Held(read=asyncio.ensure_future(self._read(namespace, name)), started=self._clock())
            self._held[key] = held
            held.read.add_done_callback(lambda done: self._drop_failed(key, done))
        # Shielded: a caller cancelled while waiting does not cancel the read the others wait for.
        return await asyncio.shield(held.read)

    def changed(self, namespace: str, name: str) -> None:
        """The watch saw the Secret change (or be listed again): later callers read it afresh."""
        self._held.pop((namespace, name), None)

    forget = changed
    """No connection refers to the Secret any more."""

    def _drop_failed(self, key: SecretKey, done: asyncio.Future[SecretData | None]) -> None:
        held = self._held.get(key)
        if held is not None and held.read is done and (done.cancelled() or done.exception() is not None):
            del self._held[key]
