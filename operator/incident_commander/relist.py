"""Objects deleted while a watch was broken: kopf lists again after 410 Gone but sends no DELETED.

When a watch cannot resume (its resourceVersion was compacted away, or the apiserver's watch
cache restarted), kopf lists the resource again and replays every listed object as an event of
type ``None``. An object deleted in between is simply absent from that list: no handler hears of
its deletion, so in-memory state (the API's keys and policies, the registries' workers and
connections) would keep it forever. A deleted IncidentPolicy's API keys would keep verifying.

``VanishedObjects`` (one per watched resource, see watches.py) remembers the objects seen; a
listing event for an object it already knew means a new listing is under way; once listing events
have stopped for ``SETTLE`` seconds, every object known before the listing and not listed again is
read back (one GET each); if it is gone (404, or a new object under the same name) the resource's
subscribers get ``type="DELETED"`` with the identity of the last body seen (kind, Secret type,
namespace, name, uid, labels: what they need of a deleted object, never a Secret's data), as if
the watch had delivered it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from incident_commander import API_GROUP, API_VERSION
from incident_commander.kept_objects import kept_identity
from incident_commander.kube_api import load_api_client

logger = logging.getLogger(__name__)

SETTLE = 5.0
"""Seconds without listing events after which a listing is taken as complete."""

Key = tuple[str, str]


class _Reader:
    """One API client for every sweep, built on first use (no side effects at import)."""

    _api: client.ApiClient | None = None

    @classmethod
    def uid(cls, plural: str, namespace: str, name: str) -> str | None:
        """The uid of the object now stored under that name, or None when there is none."""
        if cls._api is None:
            cls._api = load_api_client()
        try:
            if plural == "secrets":
                obj: Any = client.CoreV1Api(cls._api).read_namespaced_secret(name, namespace)
                return str(obj.metadata.uid)
            found: Any = client.CustomObjectsApi(cls._api).get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name
            )
            return str(found["metadata"]["uid"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


class VanishedObjects:
    """What one handler has seen of one resource, and the sweep after each listing."""

    def __init__(
        self,
        *,
        plural: str,
        on_deleted: Callable[[Mapping[str, Any]], Awaitable[None]],
        read_uid: Callable[[str, str, str], str | None] = _Reader.uid,
        settle: float = SETTLE,
    ) -> None:
        self._plural = plural
        self._on_deleted = on_deleted
        self._read_uid = read_uid
        self._settle = settle
        self._known: dict[Key, Mapping[str, Any]] = {}
        self._unlisted: set[Key] | None = None
        self._last_listed = 0.0
        self._sweep: asyncio.Task[None] | None = None

    def event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if type_ == "DELETED":
            self._known.pop(key, None)
            return
        if type_ is None:
            if self._unlisted is None and key in self._known:
                self._unlisted = set(self._known)  # a listing again: who is missing from it?
            self._last_listed = asyncio.get_running_loop().time()
            if self._unlisted is not None and (self._sweep is None or self._sweep.done()):
                self._sweep = asyncio.create_task(self._sweep_when_listed(), name=f"relist {self._plural}")
        if self._unlisted is not None:
            self._unlisted.discard(key)
        self._known[key] = kept_identity(body)

    async def _sweep_when_listed(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self._last_listed + self._settle - loop.time()) > 0:
            await asyncio.sleep(wait)
        candidates, self._unlisted = self._unlisted or set(), None
        for key in sorted(candidates):
            body = self._known.get(key)
            if body is None:
                continue
            uid = (body.get("metadata") or {}).get("uid")
            try:
                current = await asyncio.to_thread(self._read_uid, self._plural, *key)
            except Exception as exc:  # the apiserver is away again: the next listing sweeps
                logger.warning("could not check %s %s/%s after a relist: %s", self._plural, *key, exc)
                continue
            if current == uid or self._known.get(key) is not body:
                continue
            logger.info("%s %s/%s was deleted while the watch was broken", self._plural, *key)
            del self._known[key]
            try:
                await self._on_deleted(body)
            except Exception:
                logger.exception("handling the deletion of %s %s/%s failed", self._plural, *key)
