"""Static checks of crds/: one file per kind, a description on every field, the shared conventions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"
KINDS = {
    "awsconnection.yaml": "AwsConnection",
    "budgetpolicy.yaml": "BudgetPolicy",
    "incidentpolicy.yaml": "IncidentPolicy",
}


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((CRDS / name).read_text()))


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_one_file_per_kind() -> None:
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(KINDS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_field_has_a_description(name: str) -> None:
    schema = load(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [path for path, node in walk(schema, "") if path != ".metadata" and not node.get("description")]
    assert missing == []


@pytest.mark.parametrize("name", sorted(KINDS))
def test_conventions(name: str) -> None:
    crd = load(name)
    spec = crd["spec"]
    assert spec["group"] == "incidentcommander.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == KINDS[name]
    assert "incidentcommander" in spec["names"]["categories"] and spec["names"]["shortNames"]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Ready" and columns[-1] == "Age" and len(columns) >= 3
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert "observedGeneration" in status
    condition = status["conditions"]["items"]
    assert set(condition["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert "observedGeneration" in condition["properties"]
