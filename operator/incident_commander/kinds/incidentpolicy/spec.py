"""An IncidentPolicy's spec as typed values, with the CRD's defaults, in one place. Pure.

The controller, the status and the API all read the policy through ``parse_policy_spec``. The
apiserver applies the CRD's defaults to stored objects; the same defaults are repeated here (and
only here) for objects read before defaulting (tests, older objects) and so that every reader
agrees on what an absent field means. A unit test compares them with crds/incidentpolicy.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from incident_commander.budget.enforcement import EffectiveRouting, effective_routing
from incident_commander.budget.model import BudgetState
from incident_commander.credentials.api_keys import ClientSpec
from incident_commander.credentials.signing import Algorithm
from incident_commander.durations import parse_duration
from incident_commander.storage.provisioner import SearchCollection, StorageNames, derived_collection_name

DEFAULT_ISSUER = "incident-commander"
DEFAULT_AUDIENCE = "incident-commander-api"
DEFAULT_TOKEN_TTL = "15m"  # noqa: S105 - a duration, not a secret
DEFAULT_ALGORITHM: Algorithm = "EdDSA"
DEFAULT_REQUESTS_PER_MINUTE = 600
DEFAULT_BURST = 60
DEFAULT_COMPLEXITY_THRESHOLD = 0.7
DEFAULT_DETECTION_RATE = 1.0
DEFAULT_MIN_DETECTION_RATE = 0.1
DEFAULT_ROTATION_PERIOD = "720h"
DEFAULT_GRACE_PERIOD = "24h"
DEFAULT_DELETION_POLICY = "Retain"
DEFAULT_MANAGEMENT_POLICY = "Manage"


class InvalidPolicySpec(ValueError):
    """The spec cannot be read (admission normally prevents this)."""


@dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """``spec.auth.jwt`` as the API issues and verifies tokens."""

    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    ttl: timedelta = field(default_factory=lambda: parse_duration(DEFAULT_TOKEN_TTL))


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """``spec.auth.rateLimit``: a token bucket per client."""

    per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    burst: int = DEFAULT_BURST

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True, kw_only=True)
class ModelRouting:
    simple_model: str
    complex_model: str
    complexity_threshold: float = DEFAULT_COMPLEXITY_THRESHOLD


@dataclass(frozen=True, kw_only=True)
class Severity:
    name: str
    auto_remediate: bool = False
    require_approval: bool = True
    quorum: int = 1


DEFAULT_SEVERITIES = (
    Severity(name="critical", auto_remediate=False, require_approval=True, quorum=2),
    Severity(name="high", auto_remediate=False, require_approval=True, quorum=1),
    Severity(name="low", auto_remediate=True, require_approval=False, quorum=1),
)


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """``spec.storage.searchCollection``: an optional OpenSearch Serverless collection."""

    enabled: bool = False
    name: str | None = None
    kms_key_arn: str | None = None
    vpc_endpoints: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    connection: str
    budget: str | None
    routing: ModelRouting
    clients: tuple[ClientSpec, ...] = ()
    algorithm: Algorithm = DEFAULT_ALGORITHM
    token: TokenSettings = field(default_factory=TokenSettings)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    severities: tuple[Severity, ...] = DEFAULT_SEVERITIES
    detection_rate: float = DEFAULT_DETECTION_RATE
    min_detection_rate: float = DEFAULT_MIN_DETECTION_RATE
    deletion_policy: str = DEFAULT_DELETION_POLICY
    management_policy: str = DEFAULT_MANAGEMENT_POLICY
    """Manage: create, adopt, update our state machine, delete with Delete. Observe: never create,
    change or delete; report presence and drift only."""
    storage: Mapping[str, str] = field(default_factory=dict)
    search: SearchSettings = field(default_factory=SearchSettings)

    @property
    def observe_only(self) -> bool:
        return self.management_policy == "Observe"

    @property
    def critical_severity(self) -> str | None:
        """The most severe severity (the first listed): it keeps routing under a Halt."""
        return self.severities[0].name if self.severities else None

    def severity(self, name: str) -> Severity | None:
        return next((s for s in self.severities if s.name == name), None)

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
            search=SearchCollection(
                name=self.search.name or derived_collection_name(namespace, policy),
                kms_key_arn=self.search.kms_key_arn,
                vpc_endpoints=self.search.vpc_endpoints,
            )
            if self.search.enabled
            else None,
        )


def parse_policy_spec(spec: Mapping[str, Any]) -> PolicySpec:
    """The typed spec, or InvalidPolicySpec naming what could not be read."""
    try:
        return _parse(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidPolicySpec(f"spec could not be read: {type(exc).__name__}: {exc}") from None


def _parse(spec: Mapping[str, Any]) -> PolicySpec:
    auth = spec.get("auth") or {}
    jwt = auth.get("jwt") or {}
    rate = auth.get("rateLimit") or {}
    routing = spec.get("modelRouting") or {}
    sampling = spec.get("sampling") or {}
    storage = spec.get("storage") or {}
    severities = spec.get("severities")
    search = storage.get("searchCollection") or {}
    return PolicySpec(
        connection=str(spec["connectionRef"]["name"]),
        budget=(spec.get("budgetRef") or {}).get("name"),
        routing=ModelRouting(
            simple_model=str(routing.get("simpleModel", "")),
            complex_model=str(routing.get("complexModel", "")),
            complexity_threshold=float(routing.get("complexityThreshold", DEFAULT_COMPLEXITY_THRESHOLD)),
        ),
        clients=tuple(
            ClientSpec(
                name=str(c["name"]),
                role=str(c["role"]),
                rotation_period=parse_duration(c.get("rotationPeriod", DEFAULT_ROTATION_PERIOD)),
                grace_period=parse_duration(c.get("gracePeriod", DEFAULT_GRACE_PERIOD)),
            )
            for c in spec.get("apiClients") or []
        ),
        algorithm=cast(Algorithm, jwt.get("algorithm", DEFAULT_ALGORITHM)),
        token=TokenSettings(
            issuer=str(jwt.get("issuer", DEFAULT_ISSUER)),
            audience=str(jwt.get("audience", DEFAULT_AUDIENCE)),
            ttl=parse_duration(str(jwt.get("ttl", DEFAULT_TOKEN_TTL))),
        ),
        rate_limit=RateLimit(
            per_minute=int(rate.get("requestsPerMinute", DEFAULT_REQUESTS_PER_MINUTE)),
            burst=int(rate.get("burst", DEFAULT_BURST)),
        ),
        severities=DEFAULT_SEVERITIES
        if severities is None
        else tuple(
            Severity(
                name=str(s["name"]),
                auto_remediate=bool(s.get("autoRemediate", False)),
                require_approval=bool(s.get("requireApproval", True)),
                quorum=int(s.get("quorum", 1)),
            )
            for s in severities
        ),
        detection_rate=float(sampling.get("detectionRate", DEFAULT_DETECTION_RATE)),
        min_detection_rate=float(sampling.get("minDetectionRate", DEFAULT_MIN_DETECTION_RATE)),
        deletion_policy=str(storage.get("deletionPolicy", DEFAULT_DELETION_POLICY)),
        management_policy=str(storage.get("managementPolicy", DEFAULT_MANAGEMENT_POLICY)),
        storage={k: v for k, v in storage.items() if isinstance(v, str)},
        search=SearchSettings(
            enabled=bool(search.get("enabled", False)),
            name=search.get("name") or None,
            kms_key_arn=search.get("kmsKeyArn") or None,
            vpc_endpoints=tuple(str(v) for v in search.get("vpcEndpoints") or ()),
        ),
    )


def effective_routing_for(spec: PolicySpec, budget: BudgetState | None) -> EffectiveRouting:
    """What the policy's budget (its evaluated state, None without one) does to its routing."""
    return effective_routing(
        simple_model=spec.routing.simple_model,
        complex_model=spec.routing.complex_model,
        complexity_threshold=spec.routing.complexity_threshold,
        detection_rate=spec.detection_rate,
        min_detection_rate=spec.min_detection_rate,
        state=budget,
    )
