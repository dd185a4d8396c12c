"""The probe list is the CRD's service enum, and the docs' service table says what the probes do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import botocore.session
import yaml

from incident_commander.aws.probes import PROBES

REPO = Path(__file__).resolve().parents[3]


def services_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "awsconnection.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(spec["properties"]["services"])


def test_every_service_in_the_crd_enum_has_a_probe_and_no_probe_is_unlisted() -> None:
    schema = services_schema()
    enum = schema["items"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == set(PROBES), (
        f"enum only: {set(enum) - set(PROBES)}, probes only: {set(PROBES) - set(enum)}"
    )
    assert schema["maxItems"] >= len(enum), "a connection must be able to list every service"


def test_each_probe_names_a_real_operation_and_signing_name_of_its_service() -> None:
    """The metadata the docs and the emulator tests rely on matches botocore's service models."""
    session = botocore.session.get_session()
    for service, probe in PROBES.items():
        model = session.get_service_model(service)
        assert probe.operation in model.operation_names, (service, probe.operation)
        assert model.signing_name == probe.signing_name, service
        if probe.iam_action is not None:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", probe.iam_action), probe.iam_action


def docs_table() -> dict[str, list[str]]:
    """Rows of the service table in docs/awsconnection.md, by service."""
    text = (REPO / "docs" / "awsconnection.md").read_text()
    section = text.split("## Probes", 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_docs_service_table_matches_the_probes() -> None:
    rows = docs_table()
    assert list(rows) == list(PROBES), "one row per service, in the probes' order"
    for service, probe in PROBES.items():
        _, operation, iam, coverage, *_ = rows[service]
        assert probe.operation in operation, (service, operation)
        assert (probe.iam_action or "none") in iam, (service, iam)
        assert coverage, service
