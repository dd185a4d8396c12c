"""prometheus-operator and Prometheus (both built by tests/prometheus/build.sh), as processes on
loopback against a test control plane: the operator turns ServiceMonitors and PrometheusRules into
a Prometheus configuration, and a real Prometheus runs that configuration."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.controlplane.localcluster import LocalControlPlane, free_port
from tests.support.kube import Kube
from tests.support.processes import ManagedProcess, http_ok

HERE = Path(__file__).resolve().parents[1] / "prometheus"
MODULE = "github.com/prometheus-operator/prometheus-operator"


def build_prometheus_operator() -> Path:
    """Build (or reuse) prometheus-operator; the directory holds the binary and ``crds/``."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True, timeout=3600
    )
    return Path(out.stdout.strip().splitlines()[-1])


def module_dir() -> Path:
    """The pinned prometheus-operator module in the Go module cache (examples, RBAC)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", MODULE],
        cwd=HERE,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=readonly"},
    )
    return Path(out.stdout.strip())


@dataclass
class PrometheusOperator:
    """prometheus-operator authenticated as user ``prometheus-operator`` with upstream's ClusterRole."""

    process: ManagedProcess
    url: str

    @classmethod
    def start(
        cls,
        build_dir: Path,
        log_dir: Path,
        *,
        server: str,
        ca_file: str,
        cert_file: str,
        key_file: str,
        netns: str | None = None,
    ) -> PrometheusOperator:
        """Run against ``server`` with a client certificate (prometheus-operator reads no kubeconfig;
        out of a cluster it takes the apiserver URL and TLS files). ``netns``: run inside that
        network namespace (the node tier's), where the apiserver listens."""
        port = free_port()
        process = ManagedProcess(
            "prometheus-operator",
            [
                *in_netns(netns),
                str(build_dir / "prometheus-operator"),
                f"--apiserver={server}",
                f"--ca-file={ca_file}",
                f"--cert-file={cert_file}",
                f"--key-file={key_file}",
                f"--web.listen-address=127.0.0.1:{port}",
                # Only written into the StatefulSet it generates; nothing here pulls it.
                "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.85.0",
                "--log-level=info",
            ],
            log_path=log_dir / "prometheus-operator.log",
            env={"PATH": "/usr/bin:/bin", "GOGC": "30"},
        )
        process.start()
        url = f"http://127.0.0.1:{port}"
        if netns is None:
            process.wait_until(lambda: http_ok(f"{url}/healthz"), timeout=120)
        else:
            process.wait_until(lambda: _netns_http_ok(netns, f"{url}/healthz"), timeout=120)
        return cls(process=process, url=url)

    @classmethod
    def start_on(
        cls,
        plane: LocalControlPlane,
        admin: Kube,
        build_dir: Path,
        log_dir: Path,
        *,
        netns: str | None = None,
    ) -> PrometheusOperator:
        """On the local control plane, as user ``prometheus-operator`` bound to upstream's
        ClusterRole; ``netns``: the plane's network namespace (the node tier's), to run in."""
        grant_operator_rbac(admin, user="prometheus-operator")
        plane.pki.issue("prometheus-operator", common_name="prometheus-operator")
        return cls.start(
            build_dir,
            log_dir,
            server=plane.server,
            ca_file=plane.pki.path("ca.crt"),
            cert_file=plane.pki.path("prometheus-operator.crt"),
            key_file=plane.pki.path("prometheus-operator.key"),
            netns=netns,
        )

    def stop(self) -> int | None:
        return self.process.stop()


def in_netns(netns: str | None) -> list[str]:
    """argv prefix running a command in a named network namespace (nsenter, not `ip netns exec`,
    so mounts stay shared: see shared/notes/real-node.md)."""
    return [] if netns is None else ["nsenter", f"--net=/var/run/netns/{netns}", "--"]


def _netns_http_ok(netns: str, url: str) -> bool:
    probe = (
        "import sys,urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)"
    )
    result = subprocess.run(
        [*in_netns(netns), "python3", "-c", probe, url], capture_output=True, timeout=10, check=False
    )
    return result.returncode == 0


def grant_operator_rbac(admin: Kube, *, user: str) -> None:
    """prometheus-operator's upstream ClusterRole (from the pinned module), bound to ``user``."""
    rbac = module_dir() / "example" / "rbac" / "prometheus-operator"
    admin.kubectl("apply", "-f", str(rbac / "prometheus-operator-cluster-role.yaml"))
    admin.kubectl(
        "create",
        "clusterrolebinding",
        "prometheus-operator",
        "--clusterrole=prometheus-operator",
        f"--user={user}",
    )


def grant_prometheus_rbac(admin: Kube, *, namespace: str, service_account: str) -> None:
    """Prometheus' upstream ClusterRole (list/watch services, endpoints, endpointslices, pods),
    bound to a ServiceAccount, as kube-prometheus does for prometheus-k8s."""
    role = module_dir() / "example" / "rbac" / "prometheus" / "prometheus-cluster-role.yaml"
    admin.kubectl("apply", "-f", str(role))
    admin.kubectl("create", "serviceaccount", service_account, "-n", namespace)
    admin.kubectl(
        "create",
        "clusterrolebinding",
        f"prometheus-{namespace}-{service_account}",
        "--clusterrole=prometheus",
        f"--serviceaccount={namespace}:{service_account}",
    )


def generated_config(kube: Kube, namespace: str, prometheus: str) -> dict[str, Any] | None:
    """The configuration prometheus-operator generated for Prometheus ``prometheus`` (its Secret
    ``prometheus-<name>``, key ``prometheus.yaml.gz``), or None while there is none."""
    result = kube.kubectl(
        "get", "secret", f"prometheus-{prometheus}", "-n", namespace, "-o", "json", check=False
    )
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout).get("data") or {}
    if "prometheus.yaml.gz" not in data:
        return None
    return dict(yaml.safe_load(gzip.decompress(base64.b64decode(data["prometheus.yaml.gz"]))))


def generated_rule_files(kube: Kube, namespace: str, prometheus: str) -> dict[str, str]:
    """The rule files prometheus-operator generated (ConfigMaps ``prometheus-<name>-rulefiles-N``)."""
    out = kube.kubectl("get", "configmap", "-n", namespace, "-o", "json").stdout
    files: dict[str, str] = {}
    for item in json.loads(out)["items"]:
        if item["metadata"]["name"].startswith(f"prometheus-{prometheus}-rulefiles-"):
            files.update(item.get("data") or {})
    return files


@dataclass
class PrometheusServer:
    """Prometheus running a configuration file, on a loopback port."""

    process: ManagedProcess
    url: str
    netns: str | None = None

    @classmethod
    def start(
        cls, build_dir: Path, config: dict[str, Any], work_dir: Path, *, netns: str | None = None
    ) -> PrometheusServer:
        """``build_dir``: where tests/prometheus/build.sh put ``prometheus``."""
        work_dir.mkdir(parents=True, exist_ok=True)
        config_path = work_dir / "prometheus.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        process = ManagedProcess(
            "prometheus",
            [
                *in_netns(netns),
                str(build_dir / "prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=info",
            ],
            log_path=work_dir / "prometheus.log",
            env={"PATH": "/usr/bin:/bin", "HOME": str(work_dir)},
        )
        process.start()
        url = f"http://127.0.0.1:{port}"
        if netns is None:
            process.wait_until(lambda: http_ok(f"{url}/-/ready"), timeout=60)
        else:
            process.wait_until(lambda: _netns_http_ok(netns, f"{url}/-/ready"), timeout=60)
        return cls(process=process, url=url, netns=netns)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{path}{query}"
        if self.netns is None:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                body = json.loads(response.read())
        else:
            fetch = (
                "import sys,urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
            )
            out = subprocess.run(
                [*in_netns(self.netns), "python3", "-c", fetch, url],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            )
            body = json.loads(out.stdout)
        assert body["status"] == "success", body
        return body["data"]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of Prometheus' own series ``name`` matching ``labels`` (from its /metrics)."""
        url = f"{self.url}/metrics"
        if self.netns is None:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
                text = response.read().decode()
        else:
            fetch = (
                "import sys,urllib.request; "
                "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
            )
            text = subprocess.run(
                [*in_netns(self.netns), "python3", "-c", fetch, url],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def stop(self) -> int | None:
        return self.process.stop()


# -- what the tiers share: the Prometheus object, the generated configuration run outside a pod ----

PROMETHEUS_VERSION = "v3.5.0"
"""The Prometheus that tests/prometheus/build.sh builds (the one prometheus-operator v0.85.0 depends
on); prometheus-operator generates configuration for this version. Debian's prometheus (2.42) is
built without Kubernetes service discovery and refuses the generated configuration."""


def service_monitor_job(namespace: str, fullname: str) -> str:
    """The scrape job prometheus-operator makes of the chart's ServiceMonitor (its first endpoint)."""
    return f"serviceMonitor/{namespace}/{fullname}/0"


def prometheus_object(namespace: str, name: str) -> dict[str, Any]:
    """A Prometheus selecting every ServiceMonitor and PrometheusRule, as kube-prometheus' does
    for its own namespace; scrape and evaluation intervals short for the test."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": PROMETHEUS_VERSION,
            "serviceAccountName": "prometheus",
            "serviceMonitorSelector": {},
            "serviceMonitorNamespaceSelector": {},
            "ruleSelector": {},
            "ruleNamespaceSelector": {},
            "scrapeInterval": "5s",
            "evaluationInterval": "1s",
        },
    }


def adapt(
    config: dict[str, Any],
    *,
    prometheus: str,
    kubeconfig: Path,
    rules_dir: Path,
    extra_jobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The generated configuration, changed only where a process outside a pod needs it: service
    discovery reads a kubeconfig (a pod would use its mounted token), the rule files are where the
    test wrote them (a pod mounts the ConfigMaps), and $(POD_NAME) and $(SHARD) are filled in (the
    config reloader does that in a pod, from the environment: replica prometheus-<name>-0, shard 0)."""
    text = yaml.safe_dump(config, sort_keys=False)
    text = text.replace("$(POD_NAME)", f"prometheus-{prometheus}-0").replace("$(SHARD)", "0")
    adapted = dict(yaml.safe_load(text))
    for job in adapted.get("scrape_configs", []):
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = str(kubeconfig)
    adapted["rule_files"] = [str(rules_dir / "*.yaml")]
    adapted["scrape_configs"] = [*adapted.get("scrape_configs", []), *(extra_jobs or [])]
    return adapted


def write_rules(files: dict[str, str], rules_dir: Path, *, for_override: str | None = None) -> None:
    """The generated rule files; ``for_override`` shortens every alert's `for` (10m and 15m in the
    chart) so that a firing alert fits in a test."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if for_override is not None:
            doc = yaml.safe_load(text)
            for group in doc["groups"]:
                for rule in group["rules"]:
                    if "for" in rule:
                        rule["for"] = for_override
            text = yaml.safe_dump(doc, sort_keys=False)
        (rules_dir / name).write_text(text)


def alerts(prometheus: PrometheusServer, name: str) -> list[dict[str, Any]]:
    """Prometheus' active alerts (pending or firing) named ``name``."""
    return [a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == name]
