"""The chart as users run it: helm install on a real node, the image built from the Dockerfile,
AWS (moto) reached from the pod, the examples reconciled by the in-cluster operator, helm test,
an upgrade and a pod deletion that change nothing the operator owns, readiness that means the API
is reachable, and the restricted security context and NetworkPolicy in force.

The tests share one release and run in file order: each leaves the release working for the next
(and for the modules after this one: Prometheus on the node, then several replicas).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e import support
from tests.e2e.support import InClusterMoto, Release, http_get, pod_ready
from tests.node.cluster import NodeCluster
from tests.support.chart import helm
from tests.support.kube import Kube, wait_for_condition

# The first test's setup starts the node (and builds what `make e2e` did not build beforehand).
pytestmark = pytest.mark.timeout(1800)

CLIENT = """
import sys, time, urllib.request
for attempt in range(30):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
        break
    except OSError as error:
        last = error
        time.sleep(1)
else:
    sys.exit(f"no answer in 30 attempts: {last}")
"""
"""An API client for the NetworkPolicy test, run in a pod of the image built here."""
OBJECTS = support.OBJECTS
API_KEYS = support.API_KEYS


def test_helm_install_brings_the_operator_pod_to_running_and_ready(release: Release) -> None:
    pod = release.ready_pod()
    (container,) = pod["status"]["containerStatuses"]
    assert container["image"] == support.IMAGE
    assert container["ready"] is True and container["restartCount"] == 0
    assert "Traceback" not in release.logs(pod["metadata"]["name"])


def test_pods_reach_moto_inside_the_namespace(release: Release, moto: InClusterMoto) -> None:
    """Through the Service name (cluster DNS) and kube-proxy, from the operator's own container."""
    pod = release.ready_pod()["metadata"]["name"]
    out = release.exec_python(
        pod,
        "import urllib.request, socket\n"
        f"print(socket.gethostbyname('moto.aws.svc.cluster.local'))\n"
        f"print(urllib.request.urlopen('{moto.url}/moto-api/data.json', timeout=10).status)",
    ).stdout.split()
    assert out[1] == "200", out
    service_ip = release.kube.kubectl(
        "get", "service", "moto", "-n", "aws", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert out[0] == service_ip.stdout.strip()


def test_a_name_outside_the_cluster_does_not_resolve(release: Release) -> None:
    """The cluster DNS has no upstream: nothing outside the test's namespace is reachable by name."""
    pod = release.ready_pod()["metadata"]["name"]
    result = release.exec_python(pod, "import socket\nsocket.gethostbyname('sts.amazonaws.com')", check=False)
    assert result.returncode != 0 and "gaierror" in result.stderr, result.stderr


def test_the_examples_become_ready_through_the_in_cluster_operator(kube: Kube, demo: str) -> None:
    for kind, name in OBJECTS:
        obj = kube.get(kind, demo, name)
        ready = {c["type"]: c for c in obj["status"]["conditions"]}["Ready"]
        assert ready["status"] == "True", ready
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    for secret in API_KEYS:
        assert kube.get("secret", demo, secret)["data"], secret


def test_helm_test_passes(release: Release) -> None:
    result = helm(
        release.kube, "test", release.name, "--namespace", release.namespace, "--timeout", "3m", timeout=240
    )
    assert "Phase:          Succeeded" in result.stdout or "Succeeded" in result.stdout, result.stdout


def test_restricted_security_context_holds_while_the_operator_works(release: Release, demo: str) -> None:
    """Non-root, all capabilities dropped, no privilege escalation, read-only root filesystem:
    seen from inside the running container, while the examples stay Ready."""
    pod = release.ready_pod()["metadata"]["name"]
    probe = (
        "import json, os\n"
        "lines = open('/proc/self/status').read().splitlines()\n"
        "status = dict(line.split(':\\t', 1) for line in lines if ':\\t' in line)\n"
        "def writable(path):\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        os.unlink(path)\n"
        "        return True\n"
        "    except OSError as error:\n"
        "        return error.strerror\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'euid': os.geteuid(),\n"
        "    'cap_eff': status['CapEff'].strip(), 'cap_prm': status['CapPrm'].strip(),\n"
        "    'cap_bnd': status['CapBnd'].strip(), 'no_new_privs': status['NoNewPrivs'].strip(),\n"
        "    'root': writable('/probe'), 'venv': writable('/opt/venv/probe'),\n"
        "    'tmp': writable('/tmp/probe')}))"
    )
    seen = json.loads(release.exec_python(pod, probe).stdout)
    assert (seen["uid"], seen["gid"], seen["euid"]) == (65532, 65532, 65532)
    assert seen["cap_eff"] == seen["cap_prm"] == seen["cap_bnd"] == "0000000000000000"
    assert seen["no_new_privs"] == "1"
    assert seen["root"] == seen["venv"] == "Read-only file system"
    assert seen["tmp"] is True  # the chart's emptyDir on /tmp
    for kind, name in OBJECTS:
        wait_for_condition(release.kube, kind, demo, name, timeout=60, logs=release.logs)


def test_helm_upgrade_to_a_new_tag_with_changed_values_rolls_out_without_churn(
    release: Release, demo: str
) -> None:
    old = release.ready_pod()
    release.wait_resumed(old)
    before = support.snapshot(release.kube, demo)

    release.upgrade({"image": {"tag": "e2e-next"}, "operator": {"logLevel": "DEBUG"}})

    new = release.ready_pod(not_named={old["metadata"]["name"]})
    (container,) = new["spec"]["containers"]
    assert container["image"] == "incident-commander:e2e-next"
    assert "--log-level=DEBUG" in container["args"]
    assert new["status"]["containerStatuses"][0]["image"] == support.NEXT_IMAGE
    assert (
        new["status"]["containerStatuses"][0]["imageID"] != old["status"]["containerStatuses"][0]["imageID"]
    )
    release.wait_resumed(new)
    support.assert_no_churn(before, support.snapshot(release.kube, demo))


def test_a_deleted_pod_is_replaced_and_resumes_without_churn(release: Release, demo: str) -> None:
    old = release.ready_pod()
    release.wait_resumed(old)
    before = support.snapshot(release.kube, demo)

    release.kube.kubectl(
        "delete", "pod", "-n", release.namespace, old["metadata"]["name"], "--wait=true", timeout=120
    )

    new = release.ready_pod(not_named={old["metadata"]["name"]})
    release.wait_resumed(new)
    support.assert_no_churn(before, support.snapshot(release.kube, demo))


def test_a_pod_that_cannot_reach_the_api_is_not_ready(node: NodeCluster, release: Release) -> None:
    """Cut the operator pod off from the apiserver (its packets dropped in the node's namespace:
    the same path a network partition takes); its readiness must drop, and come back once the API
    is reachable again."""
    pod = release.ready_pod()
    with support.cut_off_from_the_api(node, pod):
        # The partition is real: from inside the pod, the Kubernetes API does not answer.
        cut_off = release.exec_python(
            pod["metadata"]["name"],
            "import os, socket\n"
            "socket.create_connection((os.environ['KUBERNETES_SERVICE_HOST'],"
            " int(os.environ['KUBERNETES_SERVICE_PORT'])), timeout=5)",
            check=False,
        )
        assert cut_off.returncode != 0 and "timed out" in cut_off.stderr, cut_off.stderr
        support.eventually(
            lambda: not pod_ready(release.kube.get("pod", release.namespace, pod["metadata"]["name"])),
            timeout=90,
            what="the partitioned pod reported not Ready",
        )
        # It fails closed: its API refuses to answer from a view that may be stale.
        status, body = http_get(node, f"http://{pod['status']['podIP']}:8443/readyz")
        assert status == 503 and "has not answered" in body, (status, body)
    release.ready_pod(timeout=120)


def test_network_policy_limits_the_api_port_while_the_operator_works(
    node: NodeCluster, release: Release, demo: str
) -> None:
    """With the chart's NetworkPolicy (API port only from pods labelled as clients, in any
    namespace), a pod without the label gets no answer on the API port, a labelled one does, and
    the operator stays Ready. kube-router enforces it, as a policy-capable CNI would."""
    release.upgrade(
        {
            "networkPolicy": {
                "enabled": True,
                # Labelled pods in any namespace (a podSelector alone means the release's own).
                "apiFrom": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"e2e.incidentcommander.io/api-client": "true"}},
                    }
                ],
            }
        }
    )
    pod = release.ready_pod()
    api = f"http://{release.fullname}.{release.namespace}.svc.cluster.local:8443/readyz"

    def call_from(name: str, labels: dict[str, str]) -> subprocess.CompletedProcess[str]:
        overrides = {
            "apiVersion": "v1",
            "metadata": {"labels": labels},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": name,
                        "image": "incident-commander:e2e",
                        "imagePullPolicy": "Never",
                        # A policy reaches a new pod's address within seconds, not at once:
                        # the client tries for up to 30 s and prints the first answer's status.
                        "command": ["python", "-c", CLIENT, api],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        return release.kube.kubectl(
            "run",
            name,
            "-n",
            demo,
            "--rm",
            "-i",
            "--restart=Never",
            "--image=incident-commander:e2e",
            f"--overrides={json.dumps(overrides)}",
            "--quiet",
            check=False,
            timeout=120,
        )

    allowed = call_from("api-client", {"e2e.incidentcommander.io/api-client": "true"})
    assert allowed.returncode == 0 and allowed.stdout.strip() == "200", allowed.stdout + allowed.stderr
    denied = call_from("stranger", {})
    assert denied.returncode != 0, f"a pod outside apiFrom reached the API: {denied.stdout}"
    assert "no answer in 30 attempts" in denied.stdout + denied.stderr, denied.stdout + denied.stderr
    # The health port stays open to the kubelet, metrics to anyone: the operator keeps working.
    assert http_get(node, f"http://{pod['status']['podIP']}:9090/metrics")[0] == 200
    for kind, name in OBJECTS:
        wait_for_condition(release.kube, kind, demo, name, timeout=60, logs=release.logs)
    assert pod_ready(release.kube.get("pod", release.namespace, pod["metadata"]["name"]))
