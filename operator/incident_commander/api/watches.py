"""The watches that keep the API's in-memory view current: managed Secrets and the three kinds.

They are extra kopf event handlers beside the reconcilers' own (kopf runs every
handler of a resource on each event), so the API adds no watch connections of
its own and never calls the apiserver while answering a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.credentials.issuer import LABEL_MANAGED_BY, MANAGED_BY
from incident_commander.kube_api import KubeApi
from incident_commander.relist import forget_vanished

logger = logging.getLogger(__name__)

PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}


def register(registry: kopf.OperatorRegistry, *, keyring: Keyring, directory: Directory) -> None:
    @kopf.on.event(
        "", "v1", "secrets", registry=registry, labels={LABEL_MANAGED_BY: MANAGED_BY}, id="api-keyring"
    )
    @forget_vanished("secrets")
    async def managed_secret(type: str | None, body: kopf.Body, **_: Any) -> None:
        keyring.secret_event(type, body)

    for kind, plural in PLURALS.items():

        async def observe(type: str | None, body: kopf.Body, _kind: str = kind, **_: Any) -> None:
            directory.observe(_kind, type, body)

        kopf.on.event(API_GROUP, API_VERSION, plural, registry=registry, id=f"api-directory-{plural}")(
            forget_vanished(plural)(observe)
        )


def initial_sync(
    kube: KubeApi, *, keyring: Keyring, directory: Directory, namespaces: Sequence[str] | None
) -> bool:
    """Load the keys and the IncidentPolicies once, before the API port opens.

    Runs in kopf's startup phase, before any watch starts, so what the watches deliver afterwards
    is never older than what this loaded. Without it a restarted operator would answer 401 to
    valid keys for the moment between opening its port and receiving the first watch events.
    A failure is logged and not fatal: the watches fill the same maps shortly after.
    """
    try:
        for body in kube.list_secret_bodies(namespaces, f"{LABEL_MANAGED_BY}={MANAGED_BY}"):
            keyring.secret_event(None, body)
        for kind, plural in PLURALS.items():
            for body in kube.list_custom_bodies(plural, namespaces):
                directory.observe(kind, None, body)
    except Exception as exc:  # the API still starts; the watches catch up
        logger.warning(
            "initial load of API credentials failed (%s); relying on the watches", type(exc).__name__
        )
        return False
    return True
