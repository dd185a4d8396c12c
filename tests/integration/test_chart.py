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
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from incident_commander.budget.calc import cost_query
from incident_commander.budget.model import parse_budget_spec
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
CRD_TYPED = {"ServiceMonitor", "PrometheusRule"}
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
    assert not any(a.startswith(("--peering", "--leader")) for a in args)
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


def test_high_availability_elects_a_leader_through_a_lease(tools: Kube) -> None:
    objects = render(tools, EVERYTHING)
    [deployment] = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert (
        f"--leader-election-id={FULLNAME}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert not [o for o in objects if "kopf" in json.dumps(o).lower()], "no kopf peering objects or CRDs"
    [pdb] = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    [policy_] = find(objects, "NetworkPolicy")
    assert policy_["spec"]["policyTypes"] == ["Ingress"]
    [state] = find(objects, "Role")
    assert ("coordination.k8s.io", "leases", ("create", "delete", "get", "list", "update"), ()) in rules(
        state
    )


def rules(role: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    return sorted(
        (group, resource, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    )


AGGREGATED = {f"{FULLNAME}-view", f"{FULLNAME}-edit"}


def operator_cluster_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ClusterRoles bound to the operator, i.e. all but the aggregated view/edit roles for users."""
    return [o for o in find(objects, "ClusterRole") if o["metadata"]["name"] not in AGGREGATED]


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


STATE_RULES = sorted(
    [
        ("", "secrets", ("get",), ("incident-commander-integrity",)),
        ("", "secrets", ("create",), ()),
    ]
)


def test_rbac_is_least_privilege(tools: Kube) -> None:
    cluster_wide = render(tools)
    [role] = find(cluster_wide, "ClusterRole", FULLNAME)
    assert rules(role) == sorted(
        [*NAMESPACED_RULES, ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), ())]
    )
    [binding] = find(cluster_wide, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ic-system"}]
    # The only Role: reading (one named Secret) and creating the integrity key in the release namespace.
    [state] = find(cluster_wide, "Role")
    assert state["metadata"]["namespace"] == "ic-system"
    assert rules(state) == STATE_RULES

    # Several replicas add Leases in the release namespace, and nothing cluster-wide.
    replicated = render(tools, {"replicaCount": 3})
    assert rules(find(replicated, "ClusterRole", FULLNAME)[0]) == rules(role)
    assert set(rules(find(replicated, "Role", f"{FULLNAME}-state")[0])) - set(STATE_RULES) == {
        ("coordination.k8s.io", "leases", ("create", "delete", "get", "list", "update"), ())
    }

    namespaced = render(tools, {"watchNamespaces": ["team-a", "team-b"]})
    assert operator_cluster_roles(namespaced) == [] and not find(namespaced, "ClusterRoleBinding")
    with_discovery = render(tools, {"watchNamespaces": ["team-a", "team-b"], "rbac.clusterDiscovery": True})
    [discovery] = operator_cluster_roles(with_discovery)
    assert rules(discovery) == [
        ("", "namespaces", ("list", "watch"), ()),
        ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), ()),
    ]
    [discovery_binding] = find(with_discovery, "ClusterRoleBinding")
    assert discovery_binding["roleRef"]["name"] == discovery["metadata"]["name"]
    roles_only = render(tools, {"watchNamespaces": ["team-a"], "rbac.clusterDiscovery": False})
    assert operator_cluster_roles(roles_only) == [] and not find(roles_only, "ClusterRoleBinding")
    roles = [r for r in find(namespaced, "Role") if r["metadata"]["namespace"] != "ic-system"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules(r) == sorted(NAMESPACED_RULES) for r in roles)
    assert [rules(r) for r in find(namespaced, "Role") if r["metadata"]["namespace"] == "ic-system"] == [
        STATE_RULES
    ]
    bindings = find(namespaced, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ic-system", "team-a", "team-b"]
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
    # LocalStack community answers Cost Explorer with 501: the kind budget must need no query
    # (the operator's own decision), while the repository example still uses Cost Explorer.
    kind_budget = parse_budget_spec(docs["BudgetPolicy"]["spec"])
    assert cost_query(kind_budget.filter).skip
    example = yaml.safe_load((REPO / "examples" / "budgetpolicy.yaml").read_text())
    assert not cost_query(parse_budget_spec(example["spec"]).filter).skip
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
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert {"NetworkPolicy", "PodDisruptionBudget", "CustomResourceDefinition"} <= kinds
    found = json.loads(cluster.kubectl("get", "-f", "-", "-o", "json", input=manifest).stdout)["items"]
    assert len(found) == len(installed), "every rendered object exists on the apiserver"
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
        "all,sa,roles,rolebindings,clusterroles,clusterrolebindings,networkpolicies,pdb",
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
        handle = OperatorProcess.start(
            sa,
            tmp_path,
            extra_args=(
                "--all-namespaces",
                f"--leader-election-id={FULLNAME}",
                f"--state-namespace={SYSTEM}",
            ),
        )
        try:
            run_scenario(sa, cluster, namespace, moto, handle)
            wait_for(
                cluster,
                "lease",
                SYSTEM,
                FULLNAME,
                lambda obj: bool((obj.get("spec") or {}).get("holderIdentity")),
                describe="the operator's leader Lease",
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
        assert can_i("get", "secrets/incident-commander-integrity", "-n", SYSTEM) == "yes"
        assert can_i("update", "secrets/incident-commander-integrity", "-n", SYSTEM) == "no"
        assert can_i("delete", "awsconnections.incidentcommander.io", "-n", watched) == "no"
        assert can_i("get", f"customresourcedefinitions.apiextensions.k8s.io/{OUR_CRDS[0]}") == "no"
        assert can_i("list", "awsconnections.incidentcommander.io", "--all-namespaces") == "no"

        sa = token_kubeconfig(cluster, SYSTEM, FULLNAME, tmp_path / "sa.kubeconfig")
        denied = sa.kubectl("get", "secret", "not-yours", "-n", other, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        assert "k=v" not in denied.stdout and "dj0=" not in denied.stdout

        handle = OperatorProcess.start(
            sa, tmp_path, extra_args=(f"--namespace={watched}", f"--state-namespace={SYSTEM}")
        )
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


# --- extension points ------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32
OPENSHIFT = {  # restricted-v2 assigns UIDs from the namespace's range: no fixed IDs in the pod
    "podSecurityContext.runAsUser": None,
    "podSecurityContext.runAsGroup": None,
    "podSecurityContext.fsGroup": None,
}
EXTENDED: dict[str, Any] = {
    "image.digest": DIGEST,
    "operator.extraArgs": ["--aws-client-cache=64", "--ledger-refresh=30s"],
    "operator.env": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    "containerSecurityContext.readOnlyRootFilesystem": True,
    "containerSecurityContext.runAsNonRoot": True,
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"custom": "yes"}},
        },
    ],
    "monitoring.serviceMonitor.enabled": True,
    "monitoring.serviceMonitor.scrapeTimeout": "15s",
    "monitoring.serviceMonitor.relabelings": [{"targetLabel": "team", "replacement": "platform"}],
    "monitoring.serviceMonitor.metricRelabelings": [
        {"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}
    ],
    "podDisruptionBudget.enabled": True,
    "podDisruptionBudget.maxUnavailable": 1,
    "replicaCount": 2,
    **OPENSHIFT,
}


def test_extension_points_render_into_valid_objects(tools: Kube) -> None:
    objects = render(tools, EXTENDED, extra=MONITORING)
    [deployment] = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == f"ghcr.io/incident-commander/incident-commander@{DIGEST}"
    assert container["args"][-2:] == ["--aws-client-cache=64", "--ledger-refresh=30s"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"} in container["env"]
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in container["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert {v["name"] for v in pod["volumes"]} >= {"tmp", "ca"}, "the chart's own volumes stay"
    # OpenShift: the fixed IDs are gone, the rest of the restricted profile stays.
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    [hook] = find(objects, "Pod")
    assert hook["spec"]["securityContext"] == pod["securityContext"]
    zone, host = pod["topologySpreadConstraints"]
    assert zone["labelSelector"] == {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}
    assert host["labelSelector"] == {"matchLabels": {"custom": "yes"}}
    [pdb] = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    [monitor] = find(objects, "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["scrapeTimeout"] == "15s"
    assert endpoint["relabelings"] == EXTENDED["monitoring.serviceMonitor.relabelings"]
    assert endpoint["metricRelabelings"] == EXTENDED["monitoring.serviceMonitor.metricRelabelings"]
    version = control_plane_version()
    for obj in objects:
        if obj["kind"] not in CRD_TYPED:
            kubernetes_validate.validate(obj, version, strict=True)


def test_defaults_keep_the_restricted_profile_and_the_tag(tools: Kube) -> None:
    objects = render(tools)
    [deployment] = find(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod["containers"]
    assert container["image"].endswith(":0.1.0") and "@" not in container["image"]
    assert "topologySpreadConstraints" not in pod
    [pdb] = find(render(tools, {"podDisruptionBudget.enabled": True}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image.digest", "latest"),
        ("operator.extraArgs", ["not-a-flag"]),
        ("monitoring.serviceMonitor.scrapeTimeout", "soon"),
        ("podDisruptionBudget.maxUnavailable", "half"),
        ("extraVolumeMounts", [{"name": "ca"}]),
        ("topologySpreadConstraints", [{"maxSkew": 1}]),
        ("rbac.aggregateClusterRoles", "yes"),
    ],
)
def test_schema_refuses_bad_extension_values(tools: Kube, key: str, value: Any) -> None:
    result = helm(
        tools, "template", RELEASE, str(CHART), "--set-json", f"{key}={json.dumps(value)}", check=False
    )
    assert result.returncode != 0 and key.split(".")[-1] in result.stderr, result.stderr


def test_aggregated_roles_render_with_their_labels(tools: Kube) -> None:
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        roles = {r["metadata"]["name"]: r for r in find(render(tools, values), "ClusterRole")}
        view, edit = roles[f"{FULLNAME}-view"], roles[f"{FULLNAME}-edit"]
        assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
        assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
        kinds = ("awsconnections", "budgetpolicies", "incidentpolicies")
        assert rules(view) == [("incidentcommander.io", k, ("get", "list", "watch"), ()) for k in kinds]
        write = ("create", "delete", "deletecollection", "patch", "update")
        assert rules(edit) == [("incidentcommander.io", k, write, ()) for k in kinds]
    off = render(tools, {"rbac.aggregateClusterRoles": False})
    assert not AGGREGATED & {r["metadata"]["name"] for r in find(off, "ClusterRole")}


def test_namespace_editors_and_viewers_get_our_kinds_through_aggregation(cluster: Kube) -> None:
    """Kubernetes' own view/edit/admin roles, bound in one namespace, cover our kinds there (the
    clusterrole-aggregation controller folds the chart's roles into them), and only there."""
    install(cluster, {})
    try:
        mine, other = new_namespace(cluster, "agg"), new_namespace(cluster, "agg")
        for user, role in (("ed", "edit"), ("vi", "view"), ("ad", "admin")):
            cluster.kubectl(
                "create",
                "rolebinding",
                f"{user}-{role}",
                f"--clusterrole={role}",
                f"--user={user}",
                "-n",
                mine,
            )

        def can_i(user: str, verb: str, resource: str, namespace: str, *extra: str) -> str:
            result = cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", namespace, "--as", user, *extra, check=False
            )
            return result.stdout.strip()

        kinds = [
            f"{k}.incidentcommander.io" for k in ("awsconnections", "budgetpolicies", "incidentpolicies")
        ]

        def aggregated() -> bool:
            return all(
                can_i("ed", "create", k, mine) == "yes" and can_i("vi", "list", k, mine) == "yes"
                for k in kinds
            )

        deadline = time.monotonic() + 60
        while not aggregated():
            assert time.monotonic() < deadline, "the built-in roles never picked up the chart's rules"
            time.sleep(0.5)
        for kind in kinds:
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"):
                assert can_i("ed", verb, kind, mine) == "yes", (verb, kind)
                assert can_i("ad", verb, kind, mine) == "yes", (verb, kind)
                assert can_i("ed", verb, kind, other) == "no", (verb, kind)
            for verb in ("get", "list", "watch"):
                assert can_i("vi", verb, kind, mine) == "yes", (verb, kind)
            for verb in ("create", "update", "patch", "delete"):
                assert can_i("vi", verb, kind, mine) == "no", (verb, kind)
            # Status belongs to the operator.
            assert can_i("ed", "patch", kind, mine, "--subresource=status") == "no"
            assert can_i("ad", "patch", kind, mine, "--subresource=status") == "no"
        # A real create as the editor, through impersonation.
        connection = (
            "apiVersion: incidentcommander.io/v1alpha1\nkind: AwsConnection\n"
            "metadata: {name: by-editor}\nspec: {region: us-east-1, services: [sts]}\n"
        )
        created = cluster.kubectl("apply", "-n", mine, "-f", "-", "--as", "ed", input=connection)
        assert "created" in created.stdout
        refused = cluster.kubectl(
            "apply",
            "-n",
            mine,
            "-f",
            "-",
            "--as",
            "vi",
            input=connection.replace("by-editor", "by-viewer"),
            check=False,
        )
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    finally:
        uninstall(cluster)


# --- CRDs managed elsewhere ------------------------------------------------------------------


def test_install_after_applying_crds_by_hand(cluster: Kube) -> None:
    """`kubectl apply -f crds/` first (GitOps, or a cluster admin), then `helm install` with the
    defaults: the chart leaves the existing CRDs to their manager instead of failing on Helm's
    ownership check, and `crds.enabled=false` installs without touching them too."""
    # Earlier installs here left the chart's own CRDs behind (resource-policy: keep): start clean.
    helm(cluster, "uninstall", RELEASE, "--namespace", SYSTEM, "--ignore-not-found", "--wait", check=False)
    cluster.kubectl("delete", "crd", *OUR_CRDS, "--ignore-not-found", "--wait=true")
    applied = cluster.kubectl("apply", "-f", str(REPO / "crds"))
    assert applied.returncode == 0
    try:
        for values in ({}, {"crds.enabled": False}):
            install(cluster, values)
            manifest = helm(cluster, "get", "manifest", RELEASE, "--namespace", SYSTEM).stdout
            assert "kind: CustomResourceDefinition" not in manifest
            for name in OUR_CRDS:
                crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
                annotations = crd["metadata"].get("annotations", {})
                assert "meta.helm.sh/release-name" not in annotations, "Helm took over a foreign CRD"
                assert "kubectl.kubernetes.io/last-applied-configuration" in annotations
            if values == {}:
                notes = helm(cluster, "get", "notes", RELEASE, "--namespace", SYSTEM).stdout
                assert "left to whoever installed them" in notes and OUR_CRDS[0] in notes
            uninstall(cluster)
            for name in OUR_CRDS:
                cluster.kubectl("get", "crd", name)
    finally:
        cluster.kubectl("delete", "-f", str(REPO / "crds"), "--wait=true", check=False)
