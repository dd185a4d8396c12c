"""AwsConnection handlers: kopf watch events feed the ConnectionRegistry, which probes.

Plain watch-event handlers (not kopf's change handlers) are enough here: the
registry compares generations itself, so kopf stores no progress annotations
and adds no finalizer to AwsConnections. Secrets are watched too, filtered down
to the ones some connection references, so a created or edited Secret
re-resolves its connections within seconds.
"""

from __future__ import annotations

from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.connections import PLURAL, ConnectionRegistry
from incident_commander.relist import forget_vanished

KIND = "AwsConnection"


def register(registry: kopf.OperatorRegistry, connections: ConnectionRegistry) -> None:
    """Attach this kind's handlers to the operator's registry."""

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    @forget_vanished(PLURAL)
    async def connection_event(
        type: str, body: kopf.Body, name: str, namespace: str | None, **_: Any
    ) -> None:
        if type == "DELETED":
            connections.forget(str(namespace), name)
        else:
            connections.observe(body)

    def referenced(name: str, namespace: str | None, **_: Any) -> bool:
        return connections.references_secret(str(namespace), name)

    @kopf.on.event("", "v1", "secrets", registry=registry, when=referenced)
    async def secret_event(name: str, namespace: str | None, **_: Any) -> None:
        connections.secret_changed(str(namespace), name)
