"""IncidentPolicy handlers: kopf watch events feed the PolicyRegistry.

Like AwsConnection, plain watch-event handlers: the registry decides what
changed, so kopf writes no progress annotations. The policy's own Secrets
(labelled managed-by incident-commander) are watched too, so a deleted or
edited client Secret is repaired within seconds.
"""

from __future__ import annotations

from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.credentials.issuer import LABEL_MANAGED_BY, LABEL_POLICY, MANAGED_BY
from incident_commander.policies import PLURAL, PolicyRegistry
from incident_commander.relist import forget_vanished


def register(registry: kopf.OperatorRegistry, policies: PolicyRegistry) -> None:
    """Attach this kind's handlers to the operator's registry."""

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    @forget_vanished(PLURAL)
    async def policy_event(type: str, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
        if type == "DELETED":
            policies.forget(str(namespace), name)
        else:
            policies.observe(body)

    @kopf.on.event("", "v1", "secrets", registry=registry, labels={LABEL_MANAGED_BY: MANAGED_BY})
    async def policy_secret_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
        policy = labels.get(LABEL_POLICY)
        if policy:
            policies.secret_changed(str(namespace), policy)
