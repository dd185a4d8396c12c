"""Static checks of the packaging files: the chart's CRD copies, its values schema, the
Dockerfile (hadolint), the kind scripts (shellcheck) and the kind configuration. No cluster and
no helm needed; tests/integration/test_chart.py renders and installs the chart."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "incident-commander"
KIND = REPO / "hack" / "kind"
BIN = Path(sys.executable).parent


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def schema() -> dict[str, Any]:
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def test_chart_crds_are_byte_identical_copies_of_crds_dir() -> None:
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    assert copies == sources, "run `make chart-crds` (cp crds/*.yaml charts/incident-commander/files/crds/)"
    stale = [
        name
        for name in sources
        if (CHART / "files" / "crds" / name).read_bytes() != (REPO / "crds" / name).read_bytes()
    ]
    assert stale == [], f"chart copies differ from crds/: {stale}; run `make chart-crds`"


def test_chart_versions_follow_the_package() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"


@pytest.mark.parametrize(
    "values", [CHART / "values.yaml", KIND / "values-kind.yaml"], ids=["default", "kind"]
)
def test_values_files_satisfy_the_schema(values: Path) -> None:
    jsonschema.validate(load_yaml(values), schema())


@pytest.mark.parametrize(
    "bad",
    [
        {"replicaCount": 0},
        {"typo": True},
        {"operator": {"logFormat": "xml"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
        {"monitoring": {"serviceMonitor": {"enabled": "yes"}}},
        {"podDisruptionBudget": {"minAvailable": "half"}},
        {"podDisruptionBudget": {"maxUnavailable": "half"}},
        {"image": {"repository": "x", "digest": "latest"}},
        {"monitoring": {"serviceMonitor": {"scrapeTimeout": "soon"}}},
        {"monitoring": {"serviceMonitor": {"relabelings": "drop"}}},
        {"operator": {"extraArgs": ["no-dashes"]}},
        {"extraVolumeMounts": [{"name": "ca"}]},
        {"topologySpreadConstraints": [{"maxSkew": 1}]},
        {"rbac": {"aggregateClusterRoles": "yes"}},
    ],
)
def test_schema_rejects_invalid_values(bad: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())


def test_schema_accepts_the_extension_points() -> None:
    jsonschema.validate(
        {
            "image": {"repository": "x", "digest": "sha256:" + "0" * 64},
            "podSecurityContext": {"runAsNonRoot": True},
            "containerSecurityContext": {"readOnlyRootFilesystem": True},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
            ],
            "operator": {"extraArgs": ["--aws-client-cache=64"], "env": [{"name": "A", "value": "b"}]},
            "extraVolumes": [{"name": "ca", "configMap": {"name": "ca"}}],
            "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}],
            "monitoring": {
                "serviceMonitor": {
                    "scrapeTimeout": "10s",
                    "relabelings": [{"targetLabel": "team", "replacement": "sre"}],
                    "metricRelabelings": [{"action": "drop", "regex": "x"}],
                }
            },
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
            "rbac": {"aggregateClusterRoles": False},
        },
        schema(),
    )


def test_every_value_in_values_yaml_is_described_by_the_schema() -> None:
    """additionalProperties: false all the way down, so a typo in -f values.yaml fails the install."""

    def walk(node: dict[str, Any], path: str) -> list[str]:
        missing = []
        if node.get("type") == "object" and "properties" in node:
            if node.get("additionalProperties") is not False:
                missing.append(path or "<root>")
            for key, child in node["properties"].items():
                missing.extend(walk(child, f"{path}.{key}"))
        return missing

    assert walk(schema(), "") == []


def test_dockerfile_is_clean_under_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(bases) == 2, "multi-stage: a build stage and a runtime stage"
    # Both stages on one base, chosen by a build argument whose default is the official slim image
    # (hack/image/build.sh passes a debootstrap-made base instead).
    assert bases == ["${BASE_IMAGE}", "${BASE_IMAGE}"], bases
    [default] = [line.split("=", 1)[1] for line in lines if line.startswith("ARG BASE_IMAGE=")]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", default), default
    assert lines.index(f"ARG BASE_IMAGE={default}") < lines.index("FROM ${BASE_IMAGE} AS build")
    user = [line for line in lines if line.startswith("USER ")][-1]
    assert user == "USER 65532:65532"
    assert lines[-1] == 'ENTRYPOINT ["incident-commander", "run"]'
    text = (REPO / "Dockerfile").read_text()
    for label in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{label}=" in text
    # Only the runtime dependencies, from the lock file with every hash checked; then the package
    # itself without resolving anything more, and without its test extra.
    assert "COPY requirements.lock" in text
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-deps --no-build-isolation ." in text and "[test]" not in text
    # Debian's base-passwd (in every Debian-based image) already has a group `operator`: the
    # image's own account must not collide with a name the base may carry.
    account = re.search(r"groupadd --system --gid 65532 (\S+)", text)
    assert account and account.group(1) not in DEBIAN_BASE_PASSWD_NAMES, account
    assert "COPY --from=build /opt/venv /opt/venv" in text


DEBIAN_BASE_PASSWD_NAMES = {
    "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man",
    "proxy", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip",
    "www-data", "backup", "operator", "list", "irc", "src", "gnats", "shadow", "utmp", "video",
    "sasl", "plugdev", "staff", "games", "users", "nogroup", "nobody",
}  # fmt: skip
"""Users and groups of Debian's base-passwd (/usr/share/base-passwd/{passwd,group}.master)."""


def test_requirements_lock_pins_every_dependency_with_hashes() -> None:
    """requirements.lock (``make lock``) covers pyproject.toml: every runtime dependency and the
    build backend at a version the specifier allows, every entry with at least one hash."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (REPO / "requirements.lock").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+)(?: ;[^\\]*)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M
    )
    pinned = {canonicalize_name(name): version for name, version, _hashes in entries}
    assert len(entries) == len(re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)), "an entry without hashes"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pinned, f"{spec.name} missing from requirements.lock: run `make lock`"
        assert spec.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.lock pins {spec.name}=={pinned[name]}, outside {spec.specifier}: run `make lock`"
        )


def test_chart_security_context_matches_the_image_user() -> None:
    values = load_yaml(CHART / "values.yaml")
    pod = values["podSecurityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (65532, 65532, 65532)
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = values["containerSecurityContext"]
    assert container == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "USER 65532:65532" in (REPO / "Dockerfile").read_text()


def test_shell_scripts_are_clean_under_shellcheck() -> None:
    scripts = sorted(KIND.glob("*.sh"))
    assert {p.name for p in scripts} >= {"kind-up.sh", "kind-e2e.sh", "kind-down.sh", "common.sh"}
    scripts += [
        REPO / "hack" / "image" / "build.sh",
        REPO / "tests" / "node" / "install-packages.sh",
        REPO / "tests" / "controlplane" / "build.sh",
    ]
    result = subprocess.run(
        [str(BIN / "shellcheck"), "-x", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kind_config_matches_the_control_plane_and_localstack() -> None:
    config = load_yaml(REPO / "kind-config.yaml")
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [node] = config["nodes"]
    go_mod = (REPO / "tests" / "controlplane" / "go.mod").read_text()
    minor = re.search(r"k8s\.io/kubernetes v1\.(\d+)\.", go_mod)
    assert minor and node["image"].startswith(f"kindest/node:v1.{minor.group(1)}.")
    [mapping] = node["extraPortMappings"]
    services = [
        d for d in yaml.safe_load_all((KIND / "localstack.yaml").read_text()) if d["kind"] == "Service"
    ]
    [port] = services[0]["spec"]["ports"]
    assert mapping["containerPort"] == port["nodePort"] and mapping["listenAddress"] == "127.0.0.1"


def test_makefile_has_the_kind_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target, script in (
        ("kind-up", "kind-up.sh"),
        ("kind-e2e", "kind-e2e.sh"),
        ("kind-down", "kind-down.sh"),
    ):
        assert re.search(rf"^{target}:.*\n\tbash hack/kind/{script}$", makefile, re.MULTILINE), target
