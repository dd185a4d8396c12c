"""The chart's ServiceMonitor and PrometheusRule as the Prometheus Operator consumes them.

prometheus-operator v0.85.0 (built from the Go module proxy, tests/prometheus/build.sh) runs
against a local control plane with its own CRDs and upstream's RBAC; the chart is installed with
`monitoring.serviceMonitor.enabled` and `monitoring.prometheusRule.enabled` (rendered because the
cluster serves monitoring.coreos.com/v1, not forced); a `Prometheus` object selects them. The
operator generates the Prometheus configuration (Secret `prometheus-<name>`) and rule files
(ConfigMaps `prometheus-<name>-rulefiles-N`). Prometheus 3.5.0, built from the same Go module
(Debian's 2.42 has no Kubernetes service discovery), then runs that configuration.

What Prometheus cannot do on the kubelet-less control plane: discover the operator's pod. Its
target comes from the Service's Endpoints(lices), which need a running pod (kubelet) and the
endpoint controllers, and Endpoints may not point at loopback. So here:
- the generated ServiceMonitor job runs with service discovery through the API (kubeconfig of the
  `prometheus` ServiceAccount) and finds nothing, which the test pins;
- the alert is proven with the generated rules against the operator's real metrics, scraped by one
  added job on loopback that copies the generated job's scrape settings.
The whole path on a real node (the pod discovered through the ServiceMonitor, scraped, the rules
loaded, the alerts firing) is tests/e2e/test_prometheus_on_node.py, in the e2e tier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane.localcluster import LocalControlPlane, build_binaries, free_port
from tests.support.chart import CHART, helm, set_args, token_kubeconfig
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, wait_for_condition
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

pytestmark = pytest.mark.integration

RELEASE, SYSTEM, FULLNAME = "ic", "ic-system", "ic-incident-commander"
MONITORING, PROMETHEUS = "monitoring", "ic"
JOB = service_monitor_job(SYSTEM, FULLNAME)
ALERTS = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def install_chart(kube: Kube, extra: dict[str, Any] | None = None) -> None:
    values = {
        "monitoring.serviceMonitor.enabled": True,
        "monitoring.prometheusRule.enabled": True,
        **(extra or {}),
    }
    helm(
        kube,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        SYSTEM,
        "--create-namespace",
        *set_args(values),
        timeout=300,
    )


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, logs: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s\n{logs()}")
        time.sleep(0.5)


@dataclass
class Stack:
    plane: LocalControlPlane
    kube: Kube
    operator: PrometheusOperator
    build_dir: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    build_dir = build_prometheus_operator()
    tmp = tmp_path_factory.mktemp("prometheus-operator")
    with LocalControlPlane(bin_dir=build_binaries()) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=plane.bin_dir)
        # Server-side apply: the CRDs are too large for the last-applied annotation.
        kube.kubectl("apply", "--server-side", "-f", str(build_dir / "crds"), timeout=180)
        kube.kubectl("wait", "--for=condition=Established", "--timeout=120s", "-f", str(build_dir / "crds"))
        operator = PrometheusOperator.start_on(plane, kube, build_dir, tmp)
        try:
            kube.kubectl("create", "namespace", MONITORING)
            grant_prometheus_rbac(kube, namespace=MONITORING, service_account="prometheus")
            install_chart(kube)
            kube.apply(prometheus_object(MONITORING, PROMETHEUS), MONITORING)
            yield Stack(plane=plane, kube=kube, operator=operator, build_dir=build_dir)
        finally:
            code = operator.stop()
            assert code in (0, None), (
                f"prometheus-operator exited with {code}:\n{operator.process.log_tail()}"
            )


def test_the_chart_becomes_prometheus_configuration_and_rules(stack: Stack) -> None:
    kube, logs = stack.kube, stack.operator.process.log_tail
    # The chart rendered both objects because the cluster serves monitoring.coreos.com/v1.
    manifest = helm(kube, "get", "manifest", RELEASE, "--namespace", SYSTEM).stdout
    assert "kind: ServiceMonitor" in manifest and "kind: PrometheusRule" in manifest

    config = wait_until(
        lambda: (
            (c := generated_config(kube, MONITORING, PROMETHEUS))
            and any(j["job_name"] == JOB for j in c.get("scrape_configs", []))
            and c
        ),
        timeout=120,
        what="a generated configuration with the ServiceMonitor's job",
        logs=logs,
    )
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    [sd] = job["kubernetes_sd_configs"]
    assert sd["role"] in ("endpoints", "endpointslice")
    assert sd["namespaces"]["names"] == [SYSTEM]
    assert job["honor_labels"] is True, "our series keep their object's namespace label"
    assert job["metrics_path"] == "/metrics" and job["scrape_interval"] == "30s"
    keeps = {
        (tuple(r.get("source_labels", [])), r.get("regex"))
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    port = "endpoint_port_name" if sd["role"] == "endpoints" else "endpointslice_port_name"
    label = "__meta_kubernetes_service_label_app_kubernetes_io_"
    present = "__meta_kubernetes_service_labelpresent_app_kubernetes_io_"
    # The ServiceMonitor's selector (the chart's selector labels) and its port, nothing else.
    assert keeps == {
        ((f"{label}instance", f"{present}instance"), f"({RELEASE});true"),
        ((f"{label}name", f"{present}name"), "(incident-commander);true"),
        ((f"__meta_kubernetes_{port}",), "metrics"),
        # prometheus-operator's sharding (one shard here; the config reloader fills in $(SHARD)).
        (("__tmp_hash", "__tmp_disable_sharding"), "$(SHARD);|.+;.+"),
    }, job["relabel_configs"]

    files = wait_until(
        lambda: generated_rule_files(kube, MONITORING, PROMETHEUS),
        timeout=60,
        what="the generated rule files",
        logs=logs,
    )
    [(name, text)] = [(n, t) for n, t in files.items() if n.startswith(f"{SYSTEM}-{FULLNAME}-")]
    assert yaml.safe_load(text)["groups"] == ALERTS["groups"], f"{name} differs from files/alerts.yaml"
    assert config["rule_files"] == [f"/etc/prometheus/rules/prometheus-{PROMETHEUS}-rulefiles-0/*.yaml"]


def test_prometheus_runs_the_generated_configuration_and_the_degraded_alert_fires(
    stack: Stack, tmp_path: Path
) -> None:
    kube = stack.kube
    config = wait_until(
        lambda: (
            (c := generated_config(kube, MONITORING, PROMETHEUS))
            and any(j["job_name"] == JOB for j in c.get("scrape_configs", []))
            and c
        ),
        timeout=120,
        what="the generated configuration",
    )
    files = wait_until(lambda: generated_rule_files(kube, MONITORING, PROMETHEUS), timeout=60, what="rules")
    sa_kubeconfig = token_kubeconfig(
        kube, MONITORING, "prometheus", tmp_path / "prometheus.kubeconfig"
    ).kubeconfig

    moto = MotoServer.start(tmp_path)
    operator = OperatorProcess.start(kube, tmp_path)
    try:
        namespace = "prom-alert"
        kube.kubectl("create", "namespace", namespace)
        apply_connection(kube, namespace, moto.url, name="healthy", services=("sts", "s3"))
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        apply_connection(kube, namespace, closed, name="broken", services=("sts", "s3"))
        wait_for_condition(kube, "awsconnection", namespace, "healthy", timeout=90, logs=operator.logs)
        wait_for_condition(
            kube, "awsconnection", namespace, "broken", status="False", timeout=90, logs=operator.logs
        )

        # Until the node tier runs the chart's pod, the operator process is scraped on loopback by
        # one added job carrying the generated job's scrape settings.
        [generated_job] = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
        loopback_job = {
            "job_name": "incident-commander-loopback",
            "honor_labels": generated_job["honor_labels"],
            "metrics_path": generated_job["metrics_path"],
            "scheme": generated_job.get("scheme", "http"),
            "scrape_interval": "1s",
            "static_configs": [{"targets": [operator.metrics_url.split("/")[2]]}],
        }
        rules_dir = tmp_path / "rules"
        write_rules(files, rules_dir, for_override="2s")
        adapted = adapt(
            config,
            prometheus=PROMETHEUS,
            kubeconfig=sa_kubeconfig,
            rules_dir=rules_dir,
            extra_jobs=[loopback_job],
        )
        prometheus = PrometheusServer.start(stack.build_dir, adapted, tmp_path / "prometheus")
        try:
            logs = prometheus.process.log_tail

            # The generated rules load, every group and rule healthy.
            def evaluated_groups() -> list[dict[str, Any]]:
                groups = prometheus.api("rules")["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return groups if rules and all(r["health"] != "unknown" for r in rules) else []

            groups = wait_until(evaluated_groups, timeout=30, what="rules evaluated", logs=logs)
            assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in ALERTS["groups"])
            assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

            # Service discovery of the generated job talks to the API as the prometheus
            # ServiceAccount (it sees the chart's Service) and finds no target: the Service has no
            # endpoints without a running pod and the endpoint controllers (the node tier's part).
            def sd_saw_the_service() -> bool:
                return (
                    prometheus.metric("prometheus_sd_kubernetes_events_total", event="add", role="service")
                    > 0
                )

            wait_until(sd_saw_the_service, timeout=60, what="service discovery seeing the Service", logs=logs)
            assert prometheus.metric("prometheus_sd_discovered_targets", config=JOB) == 0
            assert "forbidden" not in prometheus.process.log_text().lower(), logs()
            assert kube.kubectl("get", "endpointslices", "-n", SYSTEM, "-o", "name").stdout.strip() == ""
            assert not [t for t in prometheus.api("targets")["activeTargets"] if t["scrapePool"] == JOB]

            # The loopback job scrapes the operator; the alert fires for the broken connection only.
            def firing() -> list[dict[str, Any]]:
                return [a for a in alerts(prometheus, "AwsConnectionDegraded") if a["state"] == "firing"]

            fired = wait_until(firing, timeout=90, what="AwsConnectionDegraded firing", logs=logs)
            assert {(a["labels"]["namespace"], a["labels"]["connection"]) for a in fired} == {
                (namespace, "broken")
            }
            assert fired[0]["annotations"]["runbook_url"].endswith("#awsconnectiondegraded")

            # Repaired, the connection becomes Ready and the alert stops.
            kube.kubectl(
                "patch",
                "awsconnection",
                "broken",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                f'{{"spec":{{"endpointUrl":"{moto.url}"}}}}',
            )
            wait_for_condition(kube, "awsconnection", namespace, "broken", timeout=90, logs=operator.logs)
            wait_until(
                lambda: not alerts(prometheus, "AwsConnectionDegraded"),
                timeout=90,
                what="AwsConnectionDegraded resolved",
                logs=logs,
            )
        finally:
            assert prometheus.stop() == 0, prometheus.process.log_tail()
    finally:
        assert operator.stop() == 0, operator.logs()
        moto.stop()
