"""The Helm chart: lint, render and schema-validate, install into a real apiserver, run the operator
under the chart's ServiceAccount (the RBAC proof), and uninstall.

These tests start their own control plane: the session's operator (tests/conftest.py) watches every
namespace with admin credentials and would reconcile the objects here too, hiding any permission the
chart's RBAC lacks. Pods never run there (no kubelet), so nothing waits on the Deployment; the
operator runs as a local process authenticated as the chart's ServiceAccount instead.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.controlplane.localcluster import LocalControlPlane, build_binaries
from tests.support.chart import CHART, REPO, find, helm, render, set_args, token_kubeconfig
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.kube import Kube, wait_for, wait_for_condition
from tests.support.policies import client_key, policy, setup_connection, verifies

pytestmark = pytest.mark.integration

RELEASE = "ic"
SYSTEM = "ic-system"
FULLNAME = "ic-incident-commander"
SA = f"system:serviceaccount:{SYSTEM}:{FULLNAME}"
OUR_CRDS = [
    "awsconnections.incidentcommander.io",
    "budgetpolicies.incidentcommander.io",
    "incidentpolicies.incidentcommander.io",
]
# Kinds whose schemas are CRDs, not part of Kubernetes' OpenAPI: checked separately below.
CRD_TYPED = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}
MONITORING = ("--api-versions", "monitoring.coreos.com/v1")
EVERYTHING: dict[str, Any] = {
    "replicaCount": 2,
    "networkPolicy.enabled": True,
    "podDisruptionBudget.enabled": True,
    "monitoring.serviceMonitor.enabled": True,
    "monitoring.prometheusRule.enabled": True,
    "monitoring.dashboard.enabled": True,
    "serviceAccount.annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ic"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-cluster-wide": EVERYTHING,
    "everything-namespaced": {**EVERYTHING, "watchNamespaces": ["team-a", "team-b"]},
    "namespaced-single": {"watchNamespaces": ["team-a"], "crds.enabled": False},
}


def control_plane_version() -> str:
    go_mod = (REPO / "tests" / "controlplane" / "go.mod").read_text()
    match = re.search(r"k8s\.io/kubernetes v(1\.\d+)\.\d+", go_mod)
    assert match
    return f"{match.group(1)}.0"


@pytest.fixture(scope="module")
def tools() -> Kube:
    """helm and kubectl of the control plane's bin dir, for commands that need no cluster."""
    return Kube(kubeconfig=Path("/nonexistent/kubeconfig"), bin_dir=build_binaries())


@pytest.fixture(scope="module")
def cluster() -> Iterator[Kube]:
    external = os.environ.get("IC_TEST_KUBECONFIG")
    if external:
        bin_dir = os.environ.get("IC_TEST_BIN_DIR")
        yield Kube(kubeconfig=Path(external), bin_dir=Path(bin_dir) if bin_dir else None)
        return
    with LocalControlPlane(bin_dir=build_binaries()) as plane:
        kube = Kube(kubeconfig=plane.kubeconfig, bin_dir=plane.bin_dir)
        kube.kubectl("create", "namespace", SYSTEM)
        yield kube


def install(kube: Kube, values: dict[str, Any]) -> None:
    # A release left by a failed test would make this one fail for the wrong reason.
    helm(kube, "uninstall", RELEASE, "--namespace", SYSTEM, "--ignore-not-found", "--wait", check=False)
    helm(kube, "install", RELEASE, str(CHART), "--namespace", SYSTEM, *set_args(values), timeout=180)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in OUR_CRDS))


def uninstall(kube: Kube) -> None:
    helm(kube, "uninstall", RELEASE, "--namespace", SYSTEM, "--wait", "--timeout=60s")


def new_namespace(kube: Kube, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", name)
    return name


# --- lint and render ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(tools: Kube, name: str) -> None:
    result = helm(tools, "lint", "--strict", str(CHART), *set_args(VALUE_SETS[name]))
    assert "0 chart(s) failed" in result.stdout


def test_schema_errors_fail_the_render(tools: Kube) -> None:
    result = helm(tools, "template", RELEASE, str(CHART), "--set", "replicaCount=0", check=False)
    assert result.returncode != 0 and "replicaCount" in result.stderr
    result = helm(tools, "template", RELEASE, str(CHART), "--set", "operatr.logLevel=INFO", check=False)
    assert result.returncode != 0 and "operatr" in result.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_validate_against_the_control_planes_kubernetes_schemas(
    tools: Kube, name: str
) -> None:
    version = control_plane_version()
    objects = render(tools, VALUE_SETS[name], extra=MONITORING)
    checked = []
    for obj in objects:
        if obj["kind"] in CRD_TYPED:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked.append(obj["kind"])
    assert {"Deployment", "Service", "ServiceAccount"} <= set(checked)


def test_the_validator_is_not_vacuous(tools: Kube) -> None:
    [deployment] = find(render(tools), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, control_plane_version(), strict=True)


def test_deployment_is_restricted_and_probed(tools: Kube) -> None:
    objects = render(tools, {"serviceAccount.annotations": {"eks.amazonaws.com/role-arn": "arn:x"}})
    [deployment] = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == FULLNAME
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api", "scheme": "HTTP"}
    args = container["args"]
    assert "--all-namespaces" in args and f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in args
    assert f"--api-port={ports['api']}" in args and f"--metrics-port={ports['metrics']}" in args
    assert not any(a.startswith("--peering") for a in args)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    [service] = find(objects, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "metrics": "metrics",
        "api": "api",
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    [account] = find(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:x"}
    assert not find(objects, "NetworkPolicy") and not find(objects, "PodDisruptionBudget")
    [hook] = find(objects, "Pod")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_high_availability_uses_kopf_peering(tools: Kube) -> None:
    objects = render(tools, EVERYTHING)
    [deployment] = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert f"--peering={FULLNAME}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert find(objects, "ClusterKopfPeering", FULLNAME)
    assert find(objects, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    [pdb] = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    [policy_] = find(objects, "NetworkPolicy")
    assert policy_["spec"]["policyTypes"] == ["Ingress"]
    namespaced = render(tools, {**EVERYTHING, "watchNamespaces": ["team-a", "team-b"]})
    assert sorted(o["metadata"]["namespace"] for o in find(namespaced, "KopfPeering")) == ["team-a", "team-b"]
    assert not find(namespaced, "ClusterKopfPeering")


def rules(role: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    return sorted(
        (group, resource, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    )


NAMESPACED_RULES = [
    ("", "events", ("create",), ()),
    ("", "secrets", ("create", "delete", "get", "list", "update", "watch"), ()),
    *[
        ("incidentcommander.io", f"{plural}", ("list", "patch", "watch"), ())
        for plural in ("awsconnections", "budgetpolicies", "incidentpolicies")
    ],
    *[
        ("incidentcommander.io", f"{plural}/status", ("patch",), ())
        for plural in ("awsconnections", "budgetpolicies", "incidentpolicies")
    ],
]


def test_rbac_is_least_privilege(tools: Kube) -> None:
    cluster_wide = render(tools)
    [role] = find(cluster_wide, "ClusterRole")
    assert rules(role) == sorted(
        [*NAMESPACED_RULES, ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), ())]
    )
    [binding] = find(cluster_wide, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ic-system"}]
    assert not find(cluster_wide, "Role")

    peered = find(render(tools, {"replicaCount": 3}), "ClusterRole")[0]
    assert set(rules(peered)) - set(rules(role)) == {
        ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), ()),
        ("kopf.dev", "clusterkopfpeerings", ("patch",), (FULLNAME,)),
    }

    namespaced = render(tools, {"watchNamespaces": ["team-a", "team-b"]})
    assert not find(namespaced, "ClusterRole") and not find(namespaced, "ClusterRoleBinding")
    with_discovery = render(tools, {"watchNamespaces": ["team-a", "team-b"], "rbac.clusterDiscovery": True})
    [discovery] = find(with_discovery, "ClusterRole")
    assert rules(discovery) == [
        ("", "namespaces", ("list", "watch"), ()),
        ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), ()),
    ]
    [discovery_binding] = find(with_discovery, "ClusterRoleBinding")
    assert discovery_binding["roleRef"]["name"] == discovery["metadata"]["name"]
    roles_only = render(tools, {"watchNamespaces": ["team-a"], "rbac.clusterDiscovery": False})
    assert not find(roles_only, "ClusterRole") and not find(roles_only, "ClusterRoleBinding")
    roles = find(namespaced, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules(r) == sorted(NAMESPACED_RULES) for r in roles)
    bindings = find(namespaced, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for obj in cluster_wide + namespaced:
        for rule in obj.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_monitoring_objects_need_the_api_and_the_switch(tools: Kube) -> None:
    switched_on = {"monitoring.serviceMonitor.enabled": True, "monitoring.prometheusRule.enabled": True}
    kinds = {"ServiceMonitor", "PrometheusRule"}
    assert not kinds & {o["kind"] for o in render(tools, switched_on)}, "API absent: nothing rendered"
    assert not kinds & {o["kind"] for o in render(tools, {}, extra=MONITORING)}, "API present, switch off"
    objects = render(tools, switched_on, extra=MONITORING)
    assert kinds <= {o["kind"] for o in objects}
    forced = render(tools, {**switched_on, "monitoring.forceRender": True})
    assert kinds <= {o["kind"] for o in forced}
    [monitor] = find(objects, "ServiceMonitor")
    [service] = find(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert all(e["honorLabels"] for e in monitor["spec"]["endpoints"])  # keep our `namespace` label
    [rule] = find(objects, "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert alerts and all(r["expr"] and r["annotations"]["runbook_url"] for r in alerts)


def test_dashboard_ships_as_a_sidecar_configmap_only_when_enabled(tools: Kube) -> None:
    assert not find(render(tools), "ConfigMap")
    [config_map] = find(render(tools, {"monitoring.dashboard.enabled": True}), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["incident-commander.json"])
    source = json.loads((CHART / "files" / "dashboards" / "incident-commander.json").read_text())
    assert shipped == source and shipped["panels"]


def test_templated_crds_are_the_crds_dir_plus_the_keep_policy(tools: Kube) -> None:
    rendered = {o["metadata"]["name"]: o for o in find(render(tools), "CustomResourceDefinition")}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        copy = rendered[source["metadata"]["name"]]
        assert copy["metadata"]["annotations"].pop("helm.sh/resource-policy") == "keep"
        if not copy["metadata"]["annotations"]:
            del copy["metadata"]["annotations"]
        assert json.loads(json.dumps(copy)) == json.loads(json.dumps(source)), path.name
    assert not set(OUR_CRDS) & {o["metadata"]["name"] for o in render(tools, {"crds.enabled": False})}


def test_kind_values_and_examples_point_at_localstack(tools: Kube) -> None:
    objects = render(tools, extra=("--values", str(REPO / "hack" / "kind" / "values-kind.yaml")))
    [deployment] = find(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "incident-commander:dev" and container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    localstack = "http://localstack.localstack.svc.cluster.local:4566"
    assert env["AWS_ENDPOINT_URL"] == localstack
    examples = tools.kubectl(
        "kustomize", "--load-restrictor=LoadRestrictionsNone", str(REPO / "hack" / "kind" / "examples")
    ).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(examples)}
    assert set(docs) == {"Secret", "AwsConnection", "BudgetPolicy", "IncidentPolicy"}
    assert docs["AwsConnection"]["spec"]["endpointUrl"] == localstack
    assert "ce" not in docs["AwsConnection"]["spec"]["services"]
    for manifest in yaml.safe_load_all((REPO / "hack" / "kind" / "localstack.yaml").read_text()):
        kubernetes_validate.validate(manifest, control_plane_version(), strict=True)


# --- install into the real apiserver --------------------------------------------------------


def test_install_is_accepted_and_uninstall_leaves_only_the_crds(cluster: Kube) -> None:
    teams = [new_namespace(cluster, "team"), new_namespace(cluster, "team")]
    values = {**EVERYTHING, "watchNamespaces": teams}
    install(cluster, values)
    manifest = helm(cluster, "get", "manifest", RELEASE, "--namespace", SYSTEM).stdout
    installed = [d for d in yaml.safe_load_all(manifest) if d]
    kinds = {d["kind"] for d in installed}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "KopfPeering"} <= kinds
    assert {"NetworkPolicy", "PodDisruptionBudget", "CustomResourceDefinition"} <= kinds
    found = json.loads(cluster.kubectl("get", "-f", "-", "-o", "json", input=manifest).stdout)["items"]
    assert len(found) == len(installed), "every rendered object exists on the apiserver"
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
    )
    notes = helm(cluster, "get", "notes", RELEASE, "--namespace", SYSTEM).stdout
    assert "kubectl get awsconnections" in notes and ", ".join(teams) in notes

    uninstall(cluster)
    left = json.loads(
        cluster.kubectl("get", "-f", "-", "-o", "json", "--ignore-not-found", input=manifest).stdout
        or '{"items": []}'
    )["items"]
    assert sorted(o["metadata"]["name"] for o in left) == sorted(OUR_CRDS)
    assert all(o["kind"] == "CustomResourceDefinition" for o in left)
    leftovers = cluster.kubectl(
        "get",
        "all,sa,roles,rolebindings,clusterroles,clusterrolebindings,networkpolicies,pdb,kopfpeerings",
        "-A",
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    ).stdout
    assert leftovers.strip() == ""


def forbidden_lines(log: str) -> list[str]:
    """Log lines of refused requests: the operator must never hit a permission it lacks."""
    pattern = re.compile(r"forbidden|\b403\b|not enough permissions|unauthorized", re.IGNORECASE)
    return [line for line in log.splitlines() if pattern.search(line)]


def run_scenario(kube: Kube, admin: Kube, namespace: str, moto: MotoServer, handle: OperatorProcess) -> None:
    """The main scenarios of the other issues (an AwsConnection against moto becomes Ready, an
    IncidentPolicy issues API-key Secrets), applied by an admin, reconciled by the SA operator."""
    setup_connection(admin, namespace, moto, logs=handle.logs)
    admin.apply(policy("prod", namespace, [{"name": "agent", "role": "responder"}]), namespace)
    wait_for_condition(admin, "incidentpolicy", namespace, "prod", timeout=60, logs=handle.logs)
    key = client_key(admin, namespace, "prod", "agent")
    assert verifies(admin, namespace, "prod", key["apiKey"])
    events = admin.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "incident-commander" in events, "the operator could post its Events"


def test_operator_under_the_cluster_wide_service_account(
    cluster: Kube, moto: MotoServer, tmp_path: Path
) -> None:
    install(cluster, {"replicaCount": 2})
    try:
        sa = token_kubeconfig(cluster, SYSTEM, FULLNAME, tmp_path / "sa.kubeconfig")
        assert sa.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout == SA
        namespace = new_namespace(cluster, "wide")
        handle = OperatorProcess.start(sa, tmp_path, extra_args=("--all-namespaces", f"--peering={FULLNAME}"))
        try:
            run_scenario(sa, cluster, namespace, moto, handle)
            wait_for(
                cluster,
                "clusterkopfpeering",
                "",
                FULLNAME,
                lambda obj: bool(obj.get("status")),
                describe="the operator's peer entry",
                logs=handle.logs,
            )
        finally:
            code = handle.stop()
        log = handle.process.log_text()
        assert code == 0, handle.logs()
        assert forbidden_lines(log) == []
    finally:
        uninstall(cluster)


def test_namespaced_install_grants_nothing_outside_the_watched_namespaces(
    cluster: Kube, moto: MotoServer, tmp_path: Path
) -> None:
    watched, other = new_namespace(cluster, "watched"), new_namespace(cluster, "other")
    install(cluster, {"watchNamespaces": [watched]})
    try:
        cluster.kubectl("create", "secret", "generic", "not-yours", "-n", other, "--from-literal=k=v")

        def can_i(*args: str) -> str:
            result = cluster.kubectl("auth", "can-i", *args, "--as", SA, check=False)
            return result.stdout.strip()

        assert can_i("get", "secrets", "-n", watched) == "yes"
        assert can_i("create", "secrets", "-n", watched) == "yes"
        assert can_i("get", "secrets", "-n", other) == "no"
        assert can_i("list", "secrets", "--all-namespaces") == "no"
        assert can_i("patch", "awsconnections.incidentcommander.io", "-n", other) == "no"
        assert can_i("get", f"namespaces/{other}") == "no"
        assert can_i("get", "secrets", "-n", SYSTEM) == "no"
        assert can_i("delete", "awsconnections.incidentcommander.io", "-n", watched) == "no"
        assert can_i("get", f"customresourcedefinitions.apiextensions.k8s.io/{OUR_CRDS[0]}") == "no"
        assert can_i("list", "awsconnections.incidentcommander.io", "--all-namespaces") == "no"

        sa = token_kubeconfig(cluster, SYSTEM, FULLNAME, tmp_path / "sa.kubeconfig")
        denied = sa.kubectl("get", "secret", "not-yours", "-n", other, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        assert "k=v" not in denied.stdout and "dj0=" not in denied.stdout

        handle = OperatorProcess.start(sa, tmp_path, extra_args=(f"--namespace={watched}",))
        try:
            run_scenario(sa, cluster, watched, moto, handle)
        finally:
            code = handle.stop()
        assert code == 0, handle.logs()
        assert forbidden_lines(handle.process.log_text()) == []
    finally:
        uninstall(cluster)


def test_helm_test_hook_checks_readiness_and_metrics(tools: Kube) -> None:
    """The hook cannot run without a kubelet; check what it would ask of the Service."""
    objects = render(tools, {"service.apiPort": 8443, "service.metricsPort": 9090})
    [hook] = find(objects, "Pod")
    script = hook["spec"]["containers"][0]["command"][-1]
    assert f"http://{FULLNAME}.ic-system.svc" in script
    assert (
        ':8443/readyz"' in script and ':9090/metrics"' in script and "incident_commander_build_info" in script
    )
    assert hook["spec"]["securityContext"]["runAsNonRoot"] is True
    compile(script, "hook", "exec")
    # The hook pod must not match the Service's selector, or the Service may route the hook's
    # own requests to it (the e2e tier's `helm test` would then fail at random).
    [service] = find(objects, "Service")
    selector = service["spec"]["selector"].items()
    assert not selector <= hook["metadata"]["labels"].items()


def test_api_tls_from_a_secret(tools: Kube) -> None:
    objects = render(tools, {"api.tls.secretName": "ic-api-tls"})
    [deployment] = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--tls-cert-file=/etc/incident-commander/tls/tls.crt" in container["args"]
    assert "--tls-key-file=/etc/incident-commander/tls/tls.key" in container["args"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["api-tls"]["mountPath"] == "/etc/incident-commander/tls" and mounts["api-tls"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["api-tls"]["secret"]["secretName"] == "ic-api-tls"
    [hook] = find(objects, "Pod")
    assert f'"https://{FULLNAME}.ic-system.svc:8443/readyz"' in hook["spec"]["containers"][0]["command"][-1]
    kubernetes_validate.validate(deployment, control_plane_version(), strict=True)
