"""What the API knows about the cluster's objects, from the operator's own watches.

The API answers from memory: the IncidentPolicies' specs (auth settings, rate
limits, routing), and every object's Ready state for ``/v1/summary``. kopf
delivers the same watch events the reconcilers get, so this costs no API
calls and follows edits within the watch latency.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from incident_commander.api.ratelimit import Limit
from incident_commander.api.tokens import TokenSettings
from incident_commander.durations import parse_duration

logger = logging.getLogger(__name__)

KINDS = ("AwsConnection", "BudgetPolicy", "IncidentPolicy")


@dataclass(frozen=True, kw_only=True)
class PolicyView:
    """The parts of an IncidentPolicy's spec the API acts on, with the CRD's defaults."""

    namespace: str
    name: str
    token: TokenSettings
    rate_limit: Limit
    critical_severity: str | None
    simple_model: str
    complex_model: str
    complexity_threshold: float
    detection_rate: float
    min_detection_rate: float
    budget: str | None


def parse_policy_view(namespace: str, name: str, spec: Mapping[str, Any]) -> PolicyView:
    auth = spec.get("auth") or {}
    jwt = auth.get("jwt") or {}
    rate = auth.get("rateLimit") or {}
    routing = spec.get("modelRouting") or {}
    sampling = spec.get("sampling") or {}
    severities = spec.get("severities")
    if severities is None:
        critical: str | None = "critical"
    else:
        critical = str(severities[0]["name"]) if severities else None
    return PolicyView(
        namespace=namespace,
        name=name,
        token=TokenSettings(
            issuer=str(jwt.get("issuer", "incident-commander")),
            audience=str(jwt.get("audience", "incident-commander-api")),
            ttl=parse_duration(str(jwt.get("ttl", "15m"))),
        ),
        rate_limit=Limit(
            per_minute=int(rate.get("requestsPerMinute", 600)), burst=int(rate.get("burst", 60))
        ),
        critical_severity=critical,
        simple_model=str(routing.get("simpleModel", "")),
        complex_model=str(routing.get("complexModel", "")),
        complexity_threshold=float(routing.get("complexityThreshold", 0.7)),
        detection_rate=float(sampling.get("detectionRate", 1.0)),
        min_detection_rate=float(sampling.get("minDetectionRate", 0.1)),
        budget=(spec.get("budgetRef") or {}).get("name"),
    )


def ready_state(body: Mapping[str, Any]) -> str:
    """Ready, NotReady or Pending (no Ready condition for the current generation yet)."""
    status = body.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "Pending"


class Directory:
    """Objects by kind and key; the IncidentPolicies also by their parsed view."""

    def __init__(
        self,
        *,
        on_policy_deleted: Callable[[tuple[str, str]], None] = lambda key: None,
        on_policy_changed: Callable[[str, str], None] = lambda namespace, name: None,
    ) -> None:
        self._states: dict[str, dict[tuple[str, str], str]] = {kind: {} for kind in KINDS}
        self._policies: dict[tuple[str, str], PolicyView] = {}
        self._uids: dict[tuple[str, str], str] = {}
        self._on_policy_deleted = on_policy_deleted
        """Lets per-policy state elsewhere (the API's history) go with the policy."""
        self._on_policy_changed = on_policy_changed
        """Lets the keyring re-decide which Secrets it trusts when a policy's uid appears or changes."""

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._states[kind].pop(key, None)
            gone = str(meta.get("uid") or "")
            if kind == "IncidentPolicy" and (not gone or self._uids.get(key) in (None, gone)):
                self._policies.pop(key, None)
                self._uids.pop(key, None)
                self._on_policy_deleted(key)
                self._on_policy_changed(*key)
            return
        self._states[kind][key] = ready_state(body)
        if kind == "IncidentPolicy":
            uid = str(meta.get("uid") or "")
            if self._uids.get(key) != uid:
                self._uids[key] = uid
                self._on_policy_changed(*key)
            try:
                self._policies[key] = parse_policy_view(key[0], key[1], body.get("spec") or {})
            except (KeyError, TypeError, ValueError) as exc:
                # Admission normally prevents this; an unreadable policy authenticates nobody.
                logger.warning("IncidentPolicy %s/%s: spec unreadable for the API (%s)", *key, exc)
                self._policies.pop(key, None)

    def policy(self, namespace: str, name: str) -> PolicyView | None:
        return self._policies.get((namespace, name))

    def policy_uid(self, namespace: str, name: str) -> str | None:
        """The uid of the IncidentPolicy now stored under that name, as last seen."""
        return self._uids.get((namespace, name))

    def counts(self, namespace: str) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for kind, states in self._states.items():
            tally = {"Ready": 0, "NotReady": 0, "Pending": 0}
            for (ns, _), state in states.items():
                if ns == namespace:
                    tally[state] += 1
            result[kind] = tally
        return result
