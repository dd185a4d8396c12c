"""Valid baseline objects of each kind, which tests mutate into the cases they need."""

from __future__ import annotations

import copy
from typing import Any

API_VERSION = "incidentcommander.io/v1alpha1"


def aws_connection(name: str = "conn", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"region": "us-east-1", "services": ["sts"]}
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "AwsConnection", "metadata": {"name": name}, "spec": body}


def budget_policy(name: str = "budget", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connectionRef": {"name": "conn"},
        "period": "Monthly",
        "limit": {"amount": "100.00", "currency": "USD"},
        "thresholds": [{"percent": 50, "action": "Notify"}, {"percent": 100, "action": "Halt"}],
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "BudgetPolicy", "metadata": {"name": name}, "spec": body}


def incident_policy(name: str = "policy", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connectionRef": {"name": "conn"},
        "modelRouting": {"simpleModel": "small", "complexModel": "large", "complexityThreshold": 0.5},
        "apiClients": [{"name": "agent", "role": "responder"}],
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "IncidentPolicy", "metadata": {"name": name}, "spec": body}


def without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    """A copy of ``obj`` with the field at ``path`` removed."""
    result = copy.deepcopy(obj)
    node = result
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return result
