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

from incident_commander.kinds.incidentpolicy.spec import InvalidPolicySpec, PolicySpec, parse_policy_spec

logger = logging.getLogger(__name__)

KINDS = ("AwsConnection", "BudgetPolicy", "IncidentPolicy")


@dataclass(frozen=True, kw_only=True)
class PolicyView:
    """An IncidentPolicy as the API knows it: its identity and its typed spec."""

    namespace: str
    name: str
    spec: PolicySpec


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
                spec = parse_policy_spec(body.get("spec") or {})
                self._policies[key] = PolicyView(namespace=key[0], name=key[1], spec=spec)
            except InvalidPolicySpec as exc:
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
