"""The skeleton assessments: what each kind reports before its real reconciliation exists."""

from typing import Any

import kopf

from incident_commander.kinds import budgetpolicy


def body(spec: dict[str, Any]) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "x", "namespace": "ns", "generation": 1}, "spec": spec})


def test_budgetpolicy_ready_names_the_limit() -> None:
    result = budgetpolicy.assess(body({"period": "Daily", "limit": {"amount": "10.50", "currency": "USD"}}))
    assert "daily limit of 10.50 USD" in result.conditions[0].message
