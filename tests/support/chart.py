"""Helm and ServiceAccount identities for the chart tests: render, install, and act as the chart's
ServiceAccount through a token kubeconfig (what a pod's mounted token gives the operator)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import Kube

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "incident-commander"


def helm(
    kube: Kube, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["helm", *args], capture_output=True, text=True, env=kube.env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def set_args(values: dict[str, Any]) -> list[str]:
    """``--set-json`` flags for a values mapping (exact types, lists included)."""
    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def render(
    kube: Kube,
    values: dict[str, Any] | None = None,
    *,
    release: str = "ic",
    namespace: str = "ic-system",
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """``helm template`` (CRDs and test hooks included) parsed into objects."""
    out = helm(
        kube,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        *set_args(values or {}),
        *extra,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def token_kubeconfig(admin: Kube, namespace: str, service_account: str, path: Path) -> Kube:
    """A kubeconfig authenticating as ``namespace/service_account`` with a fresh bound token
    (``kubectl create token``), for the same apiserver and CA as ``admin``."""
    token = admin.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(admin.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = f"system:serviceaccount:{namespace}:{service_account}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "cluster", "cluster": cluster}],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": user}}],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return Kube(kubeconfig=path, bin_dir=admin.bin_dir)
