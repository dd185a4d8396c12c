"""kubectl and the Kubernetes API for tests, against the local control plane or any kubeconfig."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GROUP = "incidentcommander.io"
VERSION = "v1alpha1"
PLURALS = {
    "AwsConnection": "awsconnections",
    "BudgetPolicy": "budgetpolicies",
    "IncidentPolicy": "incidentpolicies",
}


@dataclass
class Kube:
    """A kubeconfig plus the directory holding kubectl and helm."""

    kubeconfig: Path
    bin_dir: Path | None

    @property
    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        if self.bin_dir is not None:
            path = f"{self.bin_dir}{os.pathsep}{path}"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(
        self, manifest: Mapping[str, Any] | str, namespace: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(dict(manifest))
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        return dict(json.loads(out))

    def get_or_none(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return dict(json.loads(result.stdout)) if result.returncode == 0 else None


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def wait_for(
    kube: Kube,
    kind: str,
    namespace: str,
    name: str,
    predicate: Callable[[Mapping[str, Any]], bool],
    *,
    timeout: float = 30,
    describe: str = "the expected state",
    logs: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Poll until the object satisfies ``predicate``; on timeout fail with the object and the operator log."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        last = kube.get_or_none(kind, namespace, name)
        if last is not None and predicate(last):
            return last
        time.sleep(0.25)
    dump = yaml.safe_dump(last) if last else "(object not found)"
    log_tail = logs() if logs else "(no operator log)"
    raise AssertionError(
        f"{kind} {namespace}/{name} did not reach {describe} within {timeout}s.\n"
        f"--- object ---\n{dump}\n--- operator log (tail) ---\n{log_tail}"
    )


def wait_for_condition(
    kube: Kube,
    kind: str,
    namespace: str,
    name: str,
    type_: str = "Ready",
    status: str = "True",
    *,
    reason: str | None = None,
    current_generation: bool = True,
    timeout: float = 30,
    logs: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Wait for a condition (optionally with a reason) describing the object's current generation."""

    def satisfied(obj: Mapping[str, Any]) -> bool:
        cond = condition(obj, type_)
        if cond is None or cond.get("status") != status:
            return False
        if reason is not None and cond.get("reason") != reason:
            return False
        if current_generation:
            return bool((obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"])
        return True

    what = f"{type_}={status}" + (f" (reason {reason})" if reason else "")
    return wait_for(kube, kind, namespace, name, satisfied, timeout=timeout, describe=what, logs=logs)


def load_documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs
