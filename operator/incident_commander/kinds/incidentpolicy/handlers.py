"""IncidentPolicy's watch subscriptions: its own objects, and the Secrets the operator manages.

Plain watch events: the controller decides what changed, so kopf writes no progress annotations.
A deleted or edited client Secret (labelled managed-by incident-commander) wakes its policy, which
repairs it within seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_commander.credentials.issuer import LABEL_MANAGED_BY, LABEL_POLICY, MANAGED_BY
from incident_commander.kinds.incidentpolicy.controller import PLURAL, PolicyController
from incident_commander.watches import SECRETS, Watches, custom


def managed(body: Mapping[str, Any]) -> bool:
    """A Secret carrying the operator's label (anyone can set it: it only selects, never trusts)."""
    return ((body.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY


def subscribe(watches: Watches, policies: PolicyController) -> None:
    watches.subscribe(custom(PLURAL), policies.watch_event)
    watches.track_deletions(custom(PLURAL))

    def secret_event(event_type: str | None, body: Mapping[str, Any]) -> None:
        if managed(body):
            meta = body.get("metadata") or {}
            policy = (meta.get("labels") or {}).get(LABEL_POLICY)
            if policy:
                version = meta.get("resourceVersion") if event_type != "DELETED" else None
                policies.secret_changed(
                    str(meta.get("namespace")), str(policy), str(version) if version else None
                )

    watches.subscribe(SECRETS, secret_event)
    watches.track_deletions(SECRETS, managed)
