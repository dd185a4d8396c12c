"""The watches that keep the API's in-memory view current: managed Secrets and the three kinds.

They are extra kopf event handlers beside the reconcilers' own (kopf runs every
handler of a resource on each event), so the API adds no watch connections of
its own and never calls the apiserver while answering a request.
"""

from __future__ import annotations

from typing import Any

import kopf

from incident_commander import API_GROUP, API_VERSION
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.credentials.issuer import LABEL_MANAGED_BY, MANAGED_BY

PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}


def register(registry: kopf.OperatorRegistry, *, keyring: Keyring, directory: Directory) -> None:
    @kopf.on.event(
        "", "v1", "secrets", registry=registry, labels={LABEL_MANAGED_BY: MANAGED_BY}, id="api-keyring"
    )
    async def managed_secret(type: str | None, body: kopf.Body, **_: Any) -> None:
        keyring.secret_event(type, body)

    for kind, plural in PLURALS.items():

        async def observe(type: str | None, body: kopf.Body, _kind: str = kind, **_: Any) -> None:
            directory.observe(_kind, type, body)

        kopf.on.event(API_GROUP, API_VERSION, plural, registry=registry, id=f"api-directory-{plural}")(
            observe
        )
