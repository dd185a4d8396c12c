"""What the registries and relist trackers keep of a watched object (kept_objects.py)."""

from __future__ import annotations

import copy
from typing import Any

from incident_commander.kept_objects import LAST_APPLIED, kept_body, kept_identity


def watched_policy() -> dict[str, Any]:
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "IncidentPolicy",
        "metadata": {
            "namespace": "team-a",
            "name": "payments",
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "42",
            "labels": {"team": "a"},
            "annotations": {
                "incidentcommander.io/rotate": "now",
                LAST_APPLIED: '{"apiVersion": "incidentcommander.io/v1alpha1", "spec": {}}',
            },
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                {"manager": "incident-commander", "subresource": "status", "fieldsV1": {"f:status": {}}},
            ],
        },
        "spec": {"connectionRef": {"name": "main"}},
        "status": {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_kept_body_drops_write_bookkeeping_and_status_and_keeps_everything_read() -> None:
    body = watched_policy()
    original = copy.deepcopy(body)
    kept = kept_body(body)

    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"incidentcommander.io/rotate": "now"}
    for field in ("namespace", "name", "uid", "generation", "resourceVersion", "labels"):
        assert kept["metadata"][field] == body["metadata"][field]
    assert kept["spec"] == body["spec"] and "status" not in kept
    assert kept["apiVersion"] == body["apiVersion"] and kept["kind"] == body["kind"]
    # The watch event itself is left as kopf gave it (status too); spec is shared, not copied.
    assert body == original and body["status"]["observedGeneration"] == 3
    assert kept["spec"] is body["spec"]


def test_kept_body_of_an_object_without_annotations_or_managed_fields() -> None:
    body = {"metadata": {"namespace": "ns", "name": "n", "uid": "u"}, "spec": {}}
    assert kept_body(body) == body
    assert kept_body({}) == {"metadata": {}}


def test_kept_identity_names_the_object_and_holds_none_of_its_data() -> None:
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "incidentcommander.io/api-key",
        "metadata": {
            "namespace": "team-a",
            "name": "payments-agent",
            "uid": "u-2",
            "resourceVersion": "7",
            "labels": {"incidentcommander.io/policy": "payments"},
            "annotations": {"note": "x"},
            "managedFields": [{"manager": "incident-commander"}],
        },
        "data": {"api-key": "c2VjcmV0"},
    }
    identity = kept_identity(secret)
    metadata = dict(secret["metadata"])
    del metadata["annotations"], metadata["managedFields"]
    assert identity == {"apiVersion": "v1", "kind": "Secret", "type": secret["type"], "metadata": metadata}
    assert "c2VjcmV0" not in repr(identity)
