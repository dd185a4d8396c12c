"""KubeApi against the real apiserver: the calls it makes without the client's models."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime

import kubernetes
import pytest

from incident_commander.kube_api import COMPONENT, KubeApi, ObjectRef
from tests.controlplane.localcluster import free_port
from tests.support.kube import Kube


def kube_api(kube: Kube) -> KubeApi:
    return KubeApi(kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig)))


def events_of(kube: Kube, namespace: str) -> list[dict[str, object]]:
    found = json.loads(kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return list(found["items"])


def test_an_event_reads_back_as_kubectl_shows_events(kube: Kube, namespace: str) -> None:
    ref = ObjectRef(
        kind="IncidentPolicy", plural="incidentpolicies", namespace=namespace, name="p1", uid="u-1"
    )
    now = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)
    kube_api(kube).post_event(ref, type_="Warning", reason="KeyConflict", message="x" * 2000, now=now)

    (event,) = events_of(kube, namespace)
    assert event["metadata"]["name"].startswith("p1.")  # type: ignore[index]
    assert event["involvedObject"] == {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "IncidentPolicy",
        "name": "p1",
        "namespace": namespace,
        "uid": "u-1",
    }
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "KeyConflict", 1)
    assert event["message"] == "x" * 1024
    assert event["source"] == {"component": COMPONENT}
    assert (event["reportingComponent"], event["reportingInstance"]) == (COMPONENT, COMPONENT)
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-03T07:00:00Z"


def test_a_refused_or_unreachable_event_is_logged_never_raised(
    kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    api = kube_api(kube)
    missing = ObjectRef(
        kind="AwsConnection", plural="awsconnections", namespace="no-such-ns", name="c", uid="u"
    )
    now = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="incident_commander.kube_api"):
        api.post_event(missing, type_="Normal", reason="Ready", message="m", now=now)
    assert "could not post event Ready for no-such-ns/c: HTTP 404" in caplog.text

    configuration = copy.copy(api._api_client.configuration)
    configuration.host = f"https://127.0.0.1:{free_port()}"
    configuration.retries = 0
    away = KubeApi(kubernetes.client.ApiClient(configuration))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="incident_commander.kube_api"):
        away.post_event(missing, type_="Normal", reason="Ready", message="m", now=now)
    assert "could not post event Ready for no-such-ns/c:" in caplog.text


def test_no_event_is_sent_by_a_replica_that_does_not_lead(kube: Kube, namespace: str) -> None:
    api = kube_api(kube)
    fenced = KubeApi(api._api_client, writes_allowed=lambda: False)
    ref = ObjectRef(kind="AwsConnection", plural="awsconnections", namespace=namespace, name="c", uid="u")
    fenced.post_event(ref, type_="Normal", reason="Ready", message="m", now=datetime.now(UTC))
    assert events_of(kube, namespace) == []
