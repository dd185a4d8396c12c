"""Several replicas in pods (docs/ha.md): the shared release scaled out to three with helm.

One pod leads (it holds the Lease named after the release), every pod is Ready and serves the API
from its own view, and only the leader reconciles. Deleting the leader pod (SIGTERM: it releases
the Lease) or killing its process (SIGKILL: the Lease must expire) hands over to another pod, with
no key lost and no status churn; the failover times are measured and printed. A pod cut off from
the Kubernetes API is not Ready, so the Service sends its traffic to the other two.

Runs after test_chart_on_node.py and test_prometheus_on_node.py (file order), on the same release
and the examples in ``demo``; it leaves the release at three replicas.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import support
from tests.e2e.support import Release, eventually, http_get, pod_ready
from tests.node.cluster import NodeCluster
from tests.support.kube import wait_for_condition

pytestmark = pytest.mark.timeout(1800)

REPLICAS = 3
LEASE_DURATION, RETRY_PERIOD = 15.0, 2.0
"""The operator's defaults (the chart sets no --leader-elect-timing)."""
VIEWER_KEY = "production-dashboard-api-key"


def lease(release: Release) -> dict[str, Any]:
    return release.kube.get("lease", release.namespace, release.fullname)


def holder_pod(release: Release) -> str | None:
    """The pod whose replica holds the Lease (an identity is the pod's name plus a random suffix)."""
    identity = (lease(release).get("spec") or {}).get("holderIdentity")
    return str(identity).rsplit("-", 1)[0] if identity else None


def members(release: Release) -> list[str]:
    """The replicas' membership Leases (one per ready replica, named after its identity)."""
    out = release.kube.kubectl(
        "get",
        "leases",
        "-n",
        release.namespace,
        "-l",
        f"incidentcommander.io/member-of={release.fullname}",
        "-o",
        "json",
    ).stdout
    return sorted(str(item["spec"]["holderIdentity"]) for item in json.loads(out)["items"])


def api_key(release: Release) -> str:
    secret = release.kube.get("secret", support.DEMO, VIEWER_KEY)
    return base64.b64decode(secret["data"]["apiKey"]).decode()


def policy_read(node: NodeCluster, base: str, key: str) -> tuple[int, str]:
    return http_get(
        node, f"{base}/v1/policies/{support.DEMO}/production", headers={"Authorization": f"ApiKey {key}"}
    )


def reconciliations(release: Release, pod: dict[str, Any]) -> float:
    """Every pass the pod's operator counted, whatever the outcome."""
    text = release.metrics(pod)
    pattern = r"^incident_commander_reconciliations_total\{[^}]*\} (\S+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, flags=re.MULTILINE))


def sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of one series in a Prometheus exposition, or None."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def ready_endpoints(node: NodeCluster, release: Release) -> list[str]:
    """The addresses the Service sends traffic to: its EndpointSlices' ready endpoints."""
    out = node.kube.kubectl(
        "get",
        "endpointslices",
        "-n",
        release.namespace,
        "-l",
        f"kubernetes.io/service-name={release.fullname}",
        "-o",
        "json",
    ).stdout
    return sorted(
        address
        for item in json.loads(out)["items"]
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    )


CLIENT = """
import json, sys, urllib.error, urllib.request
statuses = []
for _ in range(int(sys.argv[3])):
    request = urllib.request.Request(sys.argv[1], headers={"Authorization": "ApiKey " + sys.argv[2]})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            statuses.append(response.status)
    except urllib.error.HTTPError as error:
        statuses.append(error.code)
print(json.dumps(statuses))
"""
"""Requests through the Service, each on a new connection (kube-proxy picks an endpoint per
connection), from a pod: the way the API's clients reach it."""


@pytest.fixture(scope="module")
def client_pod(release: Release, demo: str) -> Iterator[str]:
    """A long-running pod of the image built here, labelled as an API client (the release's
    NetworkPolicy, on since test_chart_on_node.py, admits only those to the API port)."""
    name = "e2e-api-client"
    release.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"e2e.incidentcommander.io/api-client": "true"}},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "client",
                        "image": "incident-commander:e2e",
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", "import time; time.sleep(86400)"],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        },
        demo,
    )
    release.kube.kubectl(
        "wait", "--for=condition=Ready", f"pod/{name}", "-n", demo, "--timeout=120s", timeout=150
    )
    yield name
    release.kube.kubectl("delete", "pod", name, "-n", demo, "--wait=false", check=False)


def through_service(release: Release, client: str, key: str, count: int) -> list[int]:
    """``count`` reads of the example policy through the release's Service, from ``client``."""
    url = (
        f"http://{release.fullname}.{release.namespace}.svc.cluster.local:8443"
        f"/v1/policies/{support.DEMO}/production"
    )
    out = release.kube.kubectl(
        "exec", "-n", support.DEMO, client, "--", "python", "-c", CLIENT, url, key, str(count), timeout=120
    ).stdout
    statuses: list[int] = json.loads(out.strip().splitlines()[-1])
    return statuses


def wait_for_new_leader(release: Release, old: str, candidates: set[str], *, timeout: float) -> float:
    """Seconds from now until a pod of ``candidates`` (not ``old``) holds the Lease."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        holder = holder_pod(release)
        if holder is not None and holder != old and holder in candidates:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"no new leader among {sorted(candidates)} within {timeout}s: {lease(release)}")


def test_three_replicas_elect_one_leader_and_every_pod_serves(
    node: NodeCluster, release: Release, demo: str, client_pod: str
) -> None:
    """helm upgrade to replicaCount 3 (with a PDB): three Ready pods, one Lease holder, three
    members, the API answered by every pod and through the Service, only the leader reconciling,
    and nothing the operator owns changed by the scale-out."""
    (old,) = release.ready_pods(1)
    release.wait_resumed(old)
    before = support.snapshot(release.kube, demo)

    release.upgrade({"replicaCount": REPLICAS, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}})

    pods = release.ready_pods(REPLICAS, not_named={old["metadata"]["name"]}, timeout=300)
    names = {p["metadata"]["name"] for p in pods}
    for pod in pods:
        assert f"--leader-election-id={release.fullname}" in pod["spec"]["containers"][0]["args"]
    leader_name = eventually(
        lambda: holder_pod(release) in names and holder_pod(release), timeout=60, what="a leader"
    )
    eventually(
        lambda: {m.rsplit("-", 1)[0] for m in members(release)} == names,
        timeout=60,
        what="a membership Lease for each of the three pods",
    )
    leader = next(p for p in pods if p["metadata"]["name"] == leader_name)
    release.wait_resumed(leader)

    key = api_key(release)
    for pod in pods:
        base = f"http://{pod['status']['podIP']}:8443"
        assert http_get(node, f"{base}/readyz")[0] == 200, pod["metadata"]["name"]
        status, body = policy_read(node, base, key)
        assert status == 200, (pod["metadata"]["name"], body)
        assert json.loads(body)["name"] == "production"
    assert through_service(release, client_pod, key, 12) == [200] * 12

    # Only the leader reconciles; the standbys follow its status (their condition series agree).
    time.sleep(3)
    for pod in pods:
        passes = reconciliations(release, pod)
        if pod is leader:
            assert passes > 0
        else:
            assert passes == 0, f"standby {pod['metadata']['name']} ran {passes} passes"
        ready = {"kind": "IncidentPolicy", "namespace": demo, "name": "production", "condition": "Ready"}
        seen = {
            status: sample(
                release.metrics(pod), "incident_commander_status_condition", {**ready, "status": status}
            )
            for status in ("True", "False", "Unknown")
        }
        assert seen == {"True": 1.0, "False": 0.0, "Unknown": 0.0}, (pod["metadata"]["name"], seen)
    support.assert_no_churn(before, support.snapshot(release.kube, demo))


def test_deleting_the_leader_pod_hands_over_within_a_retry_period(
    node: NodeCluster, release: Release, demo: str
) -> None:
    """``kubectl delete pod`` of the leader: SIGTERM, it releases the Lease, a standby leads at
    once; the Deployment replaces the pod; no key lost, no status churn."""
    pods = release.ready_pods(REPLICAS)
    leader = holder_pod(release)
    assert leader is not None
    before = support.snapshot(release.kube, demo)
    others = {p["metadata"]["name"] for p in pods} - {leader}

    release.kube.kubectl("delete", "pod", "-n", release.namespace, leader, "--wait=false")
    took = wait_for_new_leader(release, leader, others, timeout=60)
    print(f"\nfailover after kubectl delete pod of the leader: {took:.1f}s")
    assert took <= RETRY_PERIOD + 8, took  # about one retry period; slack for a loaded machine

    new_pods = release.ready_pods(REPLICAS, not_named={leader}, timeout=300)
    new_leader = next(p for p in new_pods if p["metadata"]["name"] == holder_pod(release))
    release.wait_resumed(new_leader)
    key = api_key(release)
    for pod in new_pods:
        assert policy_read(node, f"http://{pod['status']['podIP']}:8443", key)[0] == 200
    support.assert_no_churn(before, support.snapshot(release.kube, demo))


def test_killing_the_leader_process_hands_over_once_the_lease_expires(
    node: NodeCluster, release: Release, demo: str
) -> None:
    """SIGKILL of the leader's container: nothing releases the Lease, a standby takes over once it
    has seen no renewal for the lease duration; the kubelet restarts the container as a standby."""
    pods = release.ready_pods(REPLICAS)
    leader = holder_pod(release)
    assert leader is not None
    before = support.snapshot(release.kube, demo)
    (pod,) = [p for p in pods if p["metadata"]["name"] == leader]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    others = {p["metadata"]["name"] for p in pods} - {leader}

    node.ctr("tasks", "kill", "--signal", "SIGKILL", container)
    took = wait_for_new_leader(release, leader, others, timeout=90)
    print(f"\nfailover after SIGKILL of the leader's process: {took:.1f}s")
    # The Lease must expire first: at most lease duration + retry period, plus a loaded machine.
    assert RETRY_PERIOD <= took <= LEASE_DURATION + RETRY_PERIOD + 10, took

    def restarted() -> bool:
        current = release.kube.get("pod", release.namespace, leader)
        return pod_ready(current) and current["status"]["containerStatuses"][0]["restartCount"] >= 1

    eventually(restarted, timeout=180, what=f"{leader} restarted and Ready again")
    pods = release.ready_pods(REPLICAS)
    assert holder_pod(release) != leader, "the restarted replica stands by"
    new_leader = next(p for p in pods if p["metadata"]["name"] == holder_pod(release))
    release.wait_resumed(new_leader)
    support.assert_no_churn(before, support.snapshot(release.kube, demo))


def test_a_replica_cut_off_from_the_api_gets_no_traffic(
    node: NodeCluster, release: Release, demo: str, client_pod: str
) -> None:
    """The leader loses the apiserver (its packets dropped): it steps down and a connected standby
    leads; it is not Ready (its view may be stale), the Service's endpoints drop it, and every
    request through the Service is answered by a current replica. Healed, it is Ready again as a
    standby."""
    pods = release.ready_pods(REPLICAS)
    leader = holder_pod(release)
    assert leader is not None
    (cut,) = [p for p in pods if p["metadata"]["name"] == leader]
    others = {p["metadata"]["name"] for p in pods} - {leader}
    other_ips = sorted(p["status"]["podIP"] for p in pods if p["metadata"]["name"] != leader)
    before = support.snapshot(release.kube, demo)
    key = api_key(release)
    with support.cut_off_from_the_api(node, cut):
        cut_at = time.monotonic()
        took = wait_for_new_leader(release, leader, others, timeout=90)
        print(f"\nfailover after the leader lost the apiserver: {took:.1f}s")
        eventually(
            lambda: not pod_ready(release.kube.get("pod", release.namespace, leader)),
            timeout=90,
            what="the cut-off pod reported not Ready",
        )
        eventually(
            lambda: ready_endpoints(node, release) == other_ips, timeout=30, what="the endpoints without it"
        )
        print(f"cut-off pod out of the Service after {time.monotonic() - cut_at:.1f}s")
        # Its own API fails closed; through the Service every answer comes from a current replica.
        status, body = policy_read(node, f"http://{cut['status']['podIP']}:8443", key)
        assert status == 503 and "NotReady" in body, (status, body)
        assert through_service(release, client_pod, key, 20) == [200] * 20
        # It knows it does not lead: it writes nothing (its Lease renewals time out and it steps
        # down within the renew deadline, long before it is taken out of the Service).
        whole_log = release.kube.kubectl("logs", "-n", release.namespace, leader, check=False).stdout
        assert "is no longer the leader" in whole_log, release.logs(leader)
    pods = release.ready_pods(REPLICAS, timeout=180)
    assert ready_endpoints(node, release) == sorted(p["status"]["podIP"] for p in pods)
    assert holder_pod(release) != leader
    assert through_service(release, client_pod, key, 6) == [200] * 6
    for kind, name in support.OBJECTS:
        wait_for_condition(release.kube, kind, demo, name, timeout=60, logs=release.logs)
    support.assert_no_churn(before, support.snapshot(release.kube, demo))
