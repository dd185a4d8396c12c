"""One watch per resource, fanned out to everything that follows it.

kopf runs every handler of a resource on each event; the operator registers exactly one per
resource (the three kinds and Secrets) and dispatches from it to the subscribers: the kind's
controller, the API's directory and keyring, the kinds that depend on Secrets. So there is one
relist tracker per resource (relist.py: deletions missed while a watch was broken become DELETED
events for every subscriber), one place to add a subscriber, and one handler to read.

The handlers only observe: they never patch the object, so kopf writes no progress annotation
and adds no finalizer, and every replica may run them (the API's view must be current on every
replica, active or standby; see docs/ha.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.kube_api import KubeApi
from incident_commander.relist import VanishedObjects

logger = logging.getLogger(__name__)

EventHandler = Callable[[str | None, Mapping[str, Any]], None]
"""``handler(event_type, body)``: ``None`` for a listed object, ``ADDED``, ``MODIFIED``, ``DELETED``."""


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str


SECRETS = Resource("", "v1", "secrets")


def custom(plural: str) -> Resource:
    """One of our kinds."""
    return Resource(API_GROUP, API_VERSION, plural)


class Watches:
    def __init__(self) -> None:
        self._handlers: dict[Resource, list[EventHandler]] = {}
        self._track: dict[Resource, Callable[[Mapping[str, Any]], bool]] = {}
        self._trackers: dict[Resource, VanishedObjects] = {}

    def subscribe(self, resource: Resource, handler: EventHandler) -> None:
        self._handlers.setdefault(resource, []).append(handler)

    def track_deletions(
        self, resource: Resource, when: Callable[[Mapping[str, Any]], bool] = lambda body: True
    ) -> None:
        """Hear of objects deleted while the watch was broken, for the objects ``when`` accepts
        (e.g. only the operator's own Secrets, not every Secret in the cluster)."""
        self._track[resource] = when

    def dispatch(self, resource: Resource, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Every subscriber hears of the event; one failing does not keep it from the others."""
        for handler in self._handlers.get(resource, ()):
            try:
                handler(event_type, body)
            except Exception:
                meta = body.get("metadata") or {}
                logger.exception(
                    "%s event for %s/%s failed in %s",
                    resource.plural,
                    meta.get("namespace"),
                    meta.get("name"),
                    getattr(handler, "__qualname__", handler),
                )

    async def initial_sync(
        self, kube: KubeApi, *, namespaces: Sequence[str] | None, secret_selector: str
    ) -> bool:
        """List every subscribed resource once (in a thread) and dispatch it (on the loop).

        Runs in kopf's startup phase, before any watch starts, so what the watches deliver
        afterwards is never older than what this loaded. Without it a restarted operator would
        answer 401 to valid keys, and route without its budgets, for the moment between opening
        its API port and receiving the first watch events. Our kinds first (the keyring needs the
        policies' uids), then the Secrets matching ``secret_selector``. A failure is logged and not
        fatal: the watches deliver the same objects shortly after, and readiness waits for them.
        """

        def list_all() -> list[tuple[Resource, list[dict[str, Any]]]]:
            listed = [
                (resource, kube.list_custom_bodies(resource.plural, namespaces))
                for resource in self._handlers
                if resource.group == API_GROUP
            ]
            if SECRETS in self._handlers:
                listed.append((SECRETS, kube.list_secret_bodies(namespaces, secret_selector)))
            return listed

        try:
            listed = await asyncio.to_thread(list_all)
        except Exception as exc:
            logger.warning("initial listing failed (%s); relying on the watches", type(exc).__name__)
            return False
        for resource, bodies in listed:
            for body in bodies:
                self.dispatch(resource, None, body)
        return True

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """One kopf event handler per subscribed resource; call once, after every subscription."""
        for resource in self._handlers:
            self._register(registry, resource)

    def _register(self, registry: kopf.OperatorRegistry, resource: Resource) -> None:
        track = self._track.get(resource)

        async def deleted(body: Mapping[str, Any]) -> None:
            self.dispatch(resource, "DELETED", body)

        async def on_event(type: str | None, body: kopf.Body, **_: Any) -> None:
            if track is not None and track(body):
                tracker = self._trackers.get(resource)
                if tracker is None:  # created on the event loop, on first use
                    tracker = self._trackers[resource] = VanishedObjects(
                        plural=resource.plural, on_deleted=deleted
                    )
                tracker.event(type, body)
            self.dispatch(resource, type, body)

        kopf.on.event(
            resource.group,
            resource.version,
            resource.plural,
            registry=registry,
            id=f"watch-{resource.plural}",
        )(on_event)
