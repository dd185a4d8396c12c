"""The LocalStack version is pinned once: tests/localstack runs localstack-core of that version
in host mode, and hack/kind/localstack.yaml runs the image of the same version."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def pinned_core() -> str:
    text = (REPO / "tests" / "localstack" / "requirements.txt").read_text()
    [version] = re.findall(r"^localstack-core(?:\[[^\]]*\])?==([0-9.]+)$", text, re.MULTILINE)
    return version


def test_kind_runs_the_localstack_version_that_the_tests_run() -> None:
    deployments = [
        d
        for d in yaml.safe_load_all((REPO / "hack" / "kind" / "localstack.yaml").read_text())
        if d["kind"] == "Deployment"
    ]
    [container] = deployments[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"localstack/localstack:{pinned_core()}"


def test_install_resolves_dependencies_as_of_a_fixed_date() -> None:
    """localstack-core leaves most dependencies open; the venv resolves them against the index of
    one day, or a later cbor2/pyOpenSSL breaks it (seen: both)."""
    text = (REPO / "tests" / "localstack" / "requirements.txt").read_text()
    assert re.search(r"^# uploaded-prior-to: \d{4}-\d{2}-\d{2}T00:00:00Z$", text, re.MULTILINE)
    assert "--uploaded-prior-to" in (REPO / "tests" / "localstack" / "install.sh").read_text()
