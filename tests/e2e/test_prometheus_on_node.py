"""The chart's ServiceMonitor and PrometheusRule on the real node, the whole path with nothing added.

prometheus-operator v0.85.0 and Prometheus 3.5.0 (tests/prometheus/build.sh) run inside the node's
network namespace. The shared release is upgraded with the monitoring objects on (rendered because
the cluster now serves monitoring.coreos.com/v1); prometheus-operator turns them into a scrape job
and rule files; Prometheus, running that configuration, discovers the operator's pod through the
Service's EndpointSlices (kubelet, the endpoint controllers), scrapes its pod address, loads the
rules, and fires ObjectNotReady and AwsConnectionDegraded while an AwsConnection is not Ready
(every rule's ``for`` shortened to 2 s, the one change to them), until it is repaired.

The configuration is changed only where a process outside a pod must differ (tests/support/
prometheus.adapt): service discovery reads the ``prometheus`` ServiceAccount's token through a
kubeconfig, the rule files are read from where the test wrote them, $(POD_NAME) is filled in.
The ecosystem tier (tests/prometheus) checks the same objects on a kubelet-less control plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.support import InClusterMoto, Release, eventually
from tests.node.cluster import NodeCluster
from tests.support.chart import CHART, token_kubeconfig
from tests.support.kube import wait_for_condition
from tests.support.policies import apply_connection
from tests.support.prometheus import (
    PrometheusOperator,
    PrometheusServer,
    adapt,
    alerts,
    build_prometheus_operator,
    generated_config,
    generated_rule_files,
    grant_prometheus_rbac,
    prometheus_object,
    service_monitor_job,
    write_rules,
)

pytestmark = pytest.mark.timeout(1800)

MONITORING, PROMETHEUS = "monitoring", "ic"
WATCHED = "prom-node"
ALERTS = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


@dataclass
class Monitoring:
    job: str
    config: dict[str, Any]
    rule_files: dict[str, str]
    build_dir: Path


@pytest.fixture(scope="module")
def monitoring(
    node: NodeCluster, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitoring]:
    """prometheus-operator in the node's namespace, its CRDs, the release with the monitoring
    objects on, and a Prometheus object selecting them; the configuration it generates."""
    assert node.plane is not None
    kube = node.kube
    build_dir = build_prometheus_operator()
    # Server-side apply: the CRDs are too large for the last-applied annotation.
    kube.kubectl("apply", "--server-side", "-f", str(build_dir / "crds"), timeout=180)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=120s", "-f", str(build_dir / "crds"))
    operator = PrometheusOperator.start_on(
        node.plane, kube, build_dir, tmp_path_factory.mktemp("prometheus-operator"), netns=node.name
    )
    try:
        kube.kubectl("create", "namespace", MONITORING)
        grant_prometheus_rbac(kube, namespace=MONITORING, service_account="prometheus")
        pods_before = {p["metadata"]["name"] for p in release.pods()}
        release.upgrade(
            {"monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
        )
        # The Deployment is unchanged: the monitoring objects come without a rollout.
        assert {p["metadata"]["name"] for p in release.pods()} == pods_before
        kube.apply(prometheus_object(MONITORING, PROMETHEUS), MONITORING)
        job = service_monitor_job(release.namespace, release.fullname)
        config = eventually(
            lambda: (
                (c := generated_config(kube, MONITORING, PROMETHEUS))
                and any(j["job_name"] == job for j in c.get("scrape_configs", []))
                and c
            ),
            timeout=120,
            what="a generated configuration with the ServiceMonitor's job",
        )
        rule_files = eventually(
            lambda: generated_rule_files(kube, MONITORING, PROMETHEUS), timeout=60, what="the rule files"
        )
        yield Monitoring(job=job, config=config, rule_files=rule_files, build_dir=build_dir)
    finally:
        code = operator.stop()
        assert code in (0, None), f"prometheus-operator exited with {code}:\n{operator.process.log_tail()}"


def test_prometheus_discovers_and_scrapes_the_pod_and_alerts_while_a_connection_is_not_ready(
    node: NodeCluster,
    release: Release,
    moto: InClusterMoto,
    monitoring: Monitoring,
    tmp_path: Path,
) -> None:
    kube = node.kube
    kube.kubectl("create", "namespace", WATCHED)
    # From the pod, 127.0.0.1:1 is its own loopback: every probe is refused.
    apply_connection(kube, WATCHED, "http://127.0.0.1:1", name="broken", services=("sts",))
    wait_for_condition(
        kube, "awsconnection", WATCHED, "broken", status="False", timeout=120, logs=release.logs
    )

    sa = token_kubeconfig(kube, MONITORING, "prometheus", tmp_path / "prometheus.kubeconfig").kubeconfig
    rules_dir = tmp_path / "rules"
    write_rules(monitoring.rule_files, rules_dir, for_override="2s")
    config = adapt(monitoring.config, prometheus=PROMETHEUS, kubeconfig=sa, rules_dir=rules_dir)
    prometheus = PrometheusServer.start(
        monitoring.build_dir, config, tmp_path / "prometheus", netns=node.name
    )
    try:
        logs = prometheus.process.log_tail

        # Discovery through the ServiceMonitor: the pod's address from the Service's endpoints.
        (pod,) = release.ready_pods(1)

        def scraped() -> list[dict[str, Any]]:
            targets = prometheus.api("targets")["activeTargets"]
            return [t for t in targets if t["scrapePool"] == monitoring.job and t["health"] == "up"]

        (target,) = eventually(scraped, timeout=120, what=f"the operator pod scraped by {monitoring.job}")
        labels = target["labels"]
        assert (labels["namespace"], labels["service"], labels["pod"]) == (
            release.namespace,
            release.fullname,
            pod["metadata"]["name"],
        ), labels
        assert target["scrapeUrl"] == f"http://{pod['status']['podIP']}:9090/metrics", target
        assert labels["instance"] == f"{pod['status']['podIP']}:9090"

        # The scrape is whole: our families, the process collectors, and the object's conditions
        # under their own namespace label (honorLabels), not the operator pod's.
        def query(promql: str) -> list[dict[str, Any]]:
            result: list[dict[str, Any]] = prometheus.api("query", query=promql)["result"]
            return result

        eventually(
            lambda: query(f'process_resident_memory_bytes{{pod="{pod["metadata"]["name"]}"}}'),
            timeout=60,
            what="the pod's process metrics in Prometheus",
        )
        (ready,) = eventually(
            lambda: query(
                'incident_commander_status_condition{kind="AwsConnection",name="broken",'
                'condition="Ready",status="False"}'
            ),
            timeout=60,
            what="the broken connection's Ready=False series",
        )
        assert ready["metric"]["namespace"] == WATCHED and ready["value"][1] == "1", ready

        # The generated rules load, every group and rule healthy.
        def evaluated() -> list[dict[str, Any]]:
            groups: list[dict[str, Any]] = prometheus.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return groups if rules and all(r["health"] != "unknown" for r in rules) else []

        groups = eventually(evaluated, timeout=60, what="the rules evaluated")
        assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in ALERTS["groups"])
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

        # The alerts fire for the connection that is not Ready, and only for it.
        def firing(name: str) -> list[dict[str, Any]]:
            return [a for a in alerts(prometheus, name) if a["state"] == "firing"]

        not_ready = eventually(lambda: firing("ObjectNotReady"), timeout=120, what="ObjectNotReady firing")
        assert {(a["labels"]["kind"], a["labels"]["namespace"], a["labels"]["name"]) for a in not_ready} == {
            ("AwsConnection", WATCHED, "broken")
        }, not_ready
        assert not_ready[0]["annotations"]["runbook_url"].endswith("docs/alerts.md#objectnotready")
        degraded = eventually(
            lambda: firing("AwsConnectionDegraded"), timeout=120, what="AwsConnectionDegraded firing"
        )
        assert {(a["labels"]["namespace"], a["labels"]["connection"]) for a in degraded} == {
            (WATCHED, "broken")
        }

        # Repaired (moto in the cluster), the connection becomes Ready and both alerts stop.
        kube.kubectl(
            "patch",
            "awsconnection",
            "broken",
            "-n",
            WATCHED,
            "--type=merge",
            "-p",
            f'{{"spec":{{"endpointUrl":"{moto.url}"}}}}',
        )
        wait_for_condition(kube, "awsconnection", WATCHED, "broken", timeout=120, logs=release.logs)
        eventually(
            lambda: (
                not alerts(prometheus, "ObjectNotReady") and not alerts(prometheus, "AwsConnectionDegraded")
            ),
            timeout=120,
            what="the alerts resolved",
        )
        assert "Traceback" not in release.logs(pod["metadata"]["name"])
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nPrometheus log:\n{logs()}") from None
    finally:
        assert prometheus.stop() == 0, prometheus.process.log_tail()
        kube.kubectl("delete", "namespace", WATCHED, "--wait=false", check=False)
