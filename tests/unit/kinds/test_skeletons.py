"""The skeleton assessments: what each kind reports before its real reconciliation exists."""

from typing import Any

import kopf

from incident_commander.kinds import budgetpolicy, incidentpolicy


def body(spec: dict[str, Any]) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "x", "namespace": "ns", "generation": 1}, "spec": spec})


def test_budgetpolicy_ready_names_the_limit() -> None:
    result = budgetpolicy.assess(body({"period": "Daily", "limit": {"amount": "10.50", "currency": "USD"}}))
    assert "daily limit of 10.50 USD" in result.conditions[0].message


def test_incidentpolicy_reports_spec_routing_and_sampling_in_force() -> None:
    spec = {
        "modelRouting": {"simpleModel": "s", "complexModel": "c", "complexityThreshold": 0.4},
        "sampling": {"detectionRate": 0.8, "minDetectionRate": 0.1},
        "apiClients": [{"name": "a"}, {"name": "b"}],
    }
    result = incidentpolicy.assess(body(spec))
    assert result.fields["effectiveSamplingRate"] == 0.8
    assert result.fields["effectiveModelRouting"] == {
        "mode": "Normal",
        "simpleModel": "s",
        "complexModel": "c",
        "complexityThreshold": 0.4,
    }
    assert "2 API client(s)" in result.conditions[0].message
