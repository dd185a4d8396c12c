"""Helpers of the e2e tier: moto behind a Service, the chart's release, the operator's pods, and a
snapshot of what must not churn (conditions, Secrets, Events) across a rollout."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.node.cluster import CLUSTER_DOMAIN, NODE_IP, NodeCluster
from tests.support.chart import CHART, helm
from tests.support.kube import Kube

IMAGE = "docker.io/library/incident-commander:e2e"
"""The image built from the Dockerfile, as the CRI names ``incident-commander:e2e``."""
NEXT_IMAGE = "docker.io/library/incident-commander:e2e-next"
"""What ``helm upgrade`` rolls out to: the same layers with another label, so another image ID."""
KINDS = ("AwsConnection", "BudgetPolicy", "IncidentPolicy")
MOTO_PORT = 4566
DEMO = "demo"
"""The namespace examples/ are applied to (the ``demo`` fixture)."""
OBJECTS = [
    ("awsconnection", "emulator"),
    ("budgetpolicy", "platform-monthly"),
    ("incidentpolicy", "production"),
]
API_KEYS = [f"production-{client}-api-key" for client in ("triage-agent", "dashboard", "platform-admin")]


def http_get(
    node: NodeCluster, url: str, *, timeout: float = 5, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET from inside the node's network namespace (where pod and Service addresses live)."""

    def get() -> tuple[int, str]:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - test-made namespace
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - test-made namespace
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode(errors="replace")

    result: tuple[int, str] = node.in_netns(get)
    return result


@contextlib.contextmanager
def cut_off_from_the_api(node: NodeCluster, pod: dict[str, Any]) -> Iterator[None]:
    """A network partition between ``pod`` and the apiserver: its packets to the ``kubernetes``
    Service (and to the apiserver's port directly) are dropped, in the node namespace's ``raw``
    table, before kube-proxy's DNAT. Dropped, not refused: connections hang, as when a link or a
    node's network goes away. Not in the filter table's INPUT chain: kube-router moves its own jump
    to the top of INPUT on every sync (30 s here), and its chain accepts pod traffic, which undid a
    REJECT inserted there within half a minute."""
    assert node.plane is not None
    service = node.kube.kubectl(
        "get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    source = pod["status"]["podIP"]
    rules = [
        ["PREROUTING", "-s", source, "-d", service, "-p", "tcp", "--dport", "443", "-j", "DROP"],
        ["PREROUTING", "-s", source, "-p", "tcp", "--dport", str(node.plane.apiserver_port), "-j", "DROP"],
    ]
    for rule in rules:
        node.run("iptables", "-t", "raw", "-I", *rule)
    try:
        yield
    finally:
        for rule in rules:
            node.run("iptables", "-t", "raw", "-D", *rule, check=False)


def eventually(check: Callable[[], Any], *, timeout: float, interval: float = 1.0, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (AssertionError, OSError, subprocess.SubprocessError, ValueError) as error:
            last = error
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"not {what} within {timeout}s (last: {last!r})")


@dataclass
class InClusterMoto:
    """moto in server mode inside the node's namespace, on the node's address, and a Service
    ``moto.aws`` in front of it (an EndpointSlice pointing at the node): what pods use."""

    node: NodeCluster
    url: str = f"http://moto.aws.svc.{CLUSTER_DOMAIN}:{MOTO_PORT}"
    direct_url: str = f"http://{NODE_IP}:{MOTO_PORT}"

    @classmethod
    def start(cls, node: NodeCluster, log_dir: Path) -> InClusterMoto:
        del log_dir  # the node keeps every component's log in its work directory
        node.spawn(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", str(MOTO_PORT)],
            env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
        )
        server = cls(node=node)
        node.wait(
            "moto",
            lambda: http_get(node, f"{server.direct_url}/moto-api/data.json", timeout=2)[0] == 200,
            timeout=90,
        )
        node.kube.kubectl("create", "namespace", "aws")
        node.kube.apply(
            "\n---\n".join(
                yaml.safe_dump(doc)
                for doc in (
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": "moto"},
                        "spec": {"ports": [{"name": "http", "port": MOTO_PORT, "protocol": "TCP"}]},
                    },
                    {
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {"name": "moto-node", "labels": {"kubernetes.io/service-name": "moto"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                        "ports": [{"name": "http", "port": MOTO_PORT, "protocol": "TCP"}],
                    },
                )
            ),
            "aws",
        )
        return server

    def stop(self) -> None:
        process = self.node.processes.get("moto")
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@dataclass
class Release:
    """The chart's release ``ic`` in ``ic-system``, with the image built here."""

    node: NodeCluster
    values_dir: Path
    name: str = "ic"
    namespace: str = "ic-system"
    values: dict[str, Any] = field(
        default_factory=lambda: {
            "image": {"repository": "incident-commander", "tag": "e2e", "pullPolicy": "Never"},
            "operator": {
                "logFormat": "text",
                # The default credential chain must never reach out of the namespace.
                "env": [{"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}],
            },
        }
    )

    @property
    def kube(self) -> Kube:
        return self.node.kube

    @property
    def fullname(self) -> str:
        """The chart's fullname: the release name when it contains the chart's name."""
        return self.name if "incident-commander" in self.name else f"{self.name}-incident-commander"

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/name=incident-commander,app.kubernetes.io/instance={self.name}"

    def _values_file(self) -> Path:
        path = self.values_dir / "values.yaml"
        path.write_text(yaml.safe_dump(self.values))
        return path

    def install(self) -> None:
        helm(
            self.kube,
            "install",
            self.name,
            str(CHART),
            "--namespace",
            self.namespace,
            "--create-namespace",
            "--values",
            str(self._values_file()),
            "--wait",
            "--timeout",
            "5m",
            timeout=400,
        )

    def upgrade(self, changes: dict[str, Any]) -> None:
        """``helm upgrade`` with ``changes`` merged into the values (deep merge)."""
        _merge(self.values, changes)
        helm(
            self.kube,
            "upgrade",
            self.name,
            str(CHART),
            "--namespace",
            self.namespace,
            "--values",
            str(self._values_file()),
            "--wait",
            "--timeout",
            "5m",
            timeout=400,
        )

    def pods(self) -> list[dict[str, Any]]:
        """The operator's pods (not the ``helm test`` pod), terminating ones included."""
        out = self.kube.kubectl("get", "pods", "-n", self.namespace, "-l", self.selector, "-o", "json").stdout
        return list(json.loads(out)["items"])

    def ready_pods(
        self, count: int, *, timeout: float = 180, not_named: set[str] | frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """Exactly ``count`` operator pods, all Running and Ready, none terminating, none of them
        named in ``not_named`` (the pods a rollout or a deletion replaced). With ``replicaCount``
        above 1 (kopf peering) this is where a multi-replica test starts."""

        def all_ready() -> list[dict[str, Any]] | None:
            pods = self.pods()
            if len(pods) != count or any(p["metadata"]["name"] in not_named for p in pods):
                return None
            if any(p["metadata"].get("deletionTimestamp") or not pod_ready(p) for p in pods):
                return None
            return pods

        result: list[dict[str, Any]] = eventually(
            all_ready, timeout=timeout, what=f"{count} Ready operator pod(s), none of {sorted(not_named)}"
        )
        return result

    def ready_pod(
        self, *, timeout: float = 180, not_named: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The single operator pod once it runs, is Ready and is the only one left."""
        (pod,) = self.ready_pods(1, timeout=timeout, not_named=not_named)
        return pod

    def logs(self, pod: str | None = None) -> str:
        target = pod or f"deployment/{self.fullname}"
        result = self.kube.kubectl("logs", "-n", self.namespace, target, "--tail=80", check=False)
        return result.stdout + result.stderr

    def exec_python(self, pod: str, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Python in the operator container (the image's own interpreter)."""
        return self.kube.kubectl(
            "exec", "-n", self.namespace, pod, "-c", "operator", "--", "python", "-c", code, check=check
        )

    def metrics(self, pod: dict[str, Any]) -> str:
        status, body = http_get(self.node, f"http://{pod['status']['podIP']}:9090/metrics")
        assert status == 200, status
        return body

    def wait_resumed(self, pod: dict[str, Any], *, timeout: float = 120) -> None:
        """Until the pod's operator has reconciled every kind at least once (its metrics say so)."""

        def resumed() -> bool:
            text = self.metrics(pod)
            return all(reconciliations(text, kind) >= 1 for kind in KINDS)

        eventually(resumed, timeout=timeout, what=f"{pod['metadata']['name']} reconciling every kind")


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def reconciliations(metrics_text: str, kind: str) -> float:
    labels = rf'[^}}]*kind="{kind}"[^}}]*outcome="success"[^}}]*'
    pattern = rf"^incident_commander_reconciliations_total\{{{labels}\}} (\S+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, metrics_text, flags=re.MULTILINE))


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


# -- what must not churn ----------------------------------------------------------------------------


def snapshot(kube: Kube, namespace: str) -> dict[str, Any]:
    """Conditions (with transition times) and generations of the three kinds, the state of each
    policy's AWS resources (Created stays Created), the data of every Secret the operator made or
    read, and the Events posted so far, in ``namespace``."""
    objects = json.loads(
        kube.kubectl(
            "get", "awsconnections,budgetpolicies,incidentpolicies", "-n", namespace, "-o", "json"
        ).stdout
    )["items"]
    secrets = json.loads(kube.kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"]
    events = json.loads(kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return {
        "conditions": {
            f"{o['kind']}/{o['metadata']['name']}": sorted(
                (c["type"], c["status"], c.get("reason"), c.get("lastTransitionTime"))
                for c in (o.get("status") or {}).get("conditions") or []
            )
            for o in objects
        },
        "observed": {
            f"{o['kind']}/{o['metadata']['name']}": (o.get("status") or {}).get("observedGeneration")
            for o in objects
        },
        "storage": {
            f"{o['kind']}/{o['metadata']['name']}": sorted(
                (r.get("kind"), r.get("name"), r.get("state")) for r in (o.get("status") or {})["storage"]
            )
            for o in objects
            if "storage" in (o.get("status") or {})
        },
        "secrets": {s["metadata"]["name"]: s.get("data") or {} for s in secrets},
        # Each Event by its own name: a second Event with the same reason is a second flip.
        "events": sorted(
            (
                e["involvedObject"]["kind"],
                e["involvedObject"]["name"],
                e.get("reason"),
                e.get("count") or 1,
                e["metadata"]["name"],
            )
            for e in events
        ),
    }


def assert_no_churn(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Every difference at once: changed conditions, generations, lost or rewritten Secrets, new Events."""
    problems = []
    churned = {
        name: {"before": conditions, "after": after["conditions"].get(name)}
        for name, conditions in before["conditions"].items()
        if after["conditions"].get(name) != conditions
    }
    if churned:
        problems.append(f"conditions changed (status churn):\n{yaml.safe_dump(churned)}")
    if after["observed"] != before["observed"]:
        problems.append(f"observedGeneration changed: {before['observed']} -> {after['observed']}")
    if after["storage"] != before["storage"]:
        problems.append(f"storage state changed: {before['storage']} -> {after['storage']}")
    lost = sorted(name for name in before["secrets"] if name not in after["secrets"])
    if lost:
        problems.append(f"Secrets lost: {lost}")
    rewritten = sorted(
        name
        for name, data in before["secrets"].items()
        if name in after["secrets"] and after["secrets"][name] != data
    )
    if rewritten:
        problems.append(f"Secrets rewritten: {rewritten}")
    new_events = sorted(set(after["events"]) - set(before["events"]))
    if new_events:
        problems.append(f"new Events (kind, name, reason, count, event), condition flips: {new_events}")
    assert not problems, "\n".join(problems)


def iter_examples(moto_url: str) -> Iterator[str]:
    """examples/ as applied here: the AwsConnection's endpoint is the in-cluster moto Service."""
    for path in sorted((CHART.parents[1] / "examples").glob("*.yaml")):
        yield path.read_text().replace("http://127.0.0.1:4566", moto_url)
