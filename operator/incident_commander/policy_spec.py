"""An IncidentPolicy's spec as typed values. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from incident_commander.credentials.api_keys import ClientSpec
from incident_commander.credentials.signing import Algorithm
from incident_commander.durations import parse_duration
from incident_commander.storage.provisioner import StorageNames


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    connection: str
    budget: str | None
    clients: tuple[ClientSpec, ...]
    algorithm: Algorithm
    token_ttl: timedelta
    deletion_policy: str
    storage: Mapping[str, str]
    routing: Mapping[str, Any]
    detection_rate: float
    min_detection_rate: float = 0.1

    def storage_names(self, *, namespace: str, policy: str, account: str) -> StorageNames:
        """Names from the spec, or defaults derived from the namespace, the policy and the account."""
        base = f"{namespace}-{policy}"
        bucket = f"ic-{base}-{account}".lower()[:63].rstrip("-.")
        return StorageNames(
            incident_table=self.storage.get("incidentTable") or f"{base}-incidents"[:255],
            event_stream=self.storage.get("eventStream") or f"{base}-events"[:128],
            artifact_bucket=self.storage.get("artifactBucket") or bucket,
            state_machine=self.storage.get("stateMachine") or f"{base}-consensus"[:80],
            state_machine_role_arn=self.storage.get("stateMachineRoleArn")
            or f"arn:aws:iam::{account}:role/incident-commander-consensus",
        )


def parse_policy_spec(spec: Mapping[str, Any]) -> PolicySpec:
    jwt = (spec.get("auth") or {}).get("jwt") or {}
    storage = spec.get("storage") or {}
    return PolicySpec(
        connection=spec["connectionRef"]["name"],
        budget=(spec.get("budgetRef") or {}).get("name"),
        clients=tuple(
            ClientSpec(
                name=c["name"],
                role=c["role"],
                rotation_period=parse_duration(c.get("rotationPeriod", "720h")),
                grace_period=parse_duration(c.get("gracePeriod", "24h")),
            )
            for c in spec.get("apiClients") or []
        ),
        algorithm=cast(Algorithm, jwt.get("algorithm", "EdDSA")),
        token_ttl=parse_duration(jwt.get("ttl", "15m")),
        deletion_policy=storage.get("deletionPolicy", "Retain"),
        storage={k: v for k, v in storage.items() if isinstance(v, str)},
        routing=spec.get("modelRouting") or {},
        detection_rate=float((spec.get("sampling") or {}).get("detectionRate", 1.0)),
        min_detection_rate=float((spec.get("sampling") or {}).get("minDetectionRate", 0.1)),
    )
