"""The alert rules (promtool check and unit tests), their runbooks, and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.telemetry.test_metrics import documented

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "incident-commander"
RULES = CHART / "files" / "alerts.yaml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yaml")
DASHBOARD = CHART / "files" / "dashboards" / "incident-commander.json"
RUNBOOKS = REPO / "docs" / "alerts.md"
EXPECTED = {
    "BudgetWarning",
    "BudgetExceeded",
    "BudgetForecastOverLimit",
    "AwsConnectionDegraded",
    "ApiKeyExpiringSoon",
    "ApiKeyRotationOverdue",
    "ApiAuthFailuresHigh",
    "ReconcileErrorsHigh",
    "ObjectNotReady",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def rules() -> list[dict[str, Any]]:
    return [r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bincident_commander_\w+", expr))


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == EXPECTED, "every alert has a unit test"


def test_every_alert_has_a_runbook_section_and_uses_documented_metrics() -> None:
    headings = {
        re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
        for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.MULTILINE)
    }
    documented_names = set(documented())
    assert {r["alert"] for r in rules()} == EXPECTED
    for rule in rules():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert rule["annotations"]["runbook_url"].endswith(f"docs/alerts.md#{anchor}")
        assert anchor in headings, f"{rule['alert']}: no runbook section #{anchor}"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert metric_names(rule["expr"]) <= documented_names, rule["alert"]


def test_the_chart_includes_this_rules_file() -> None:
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert '.Files.Get "files/alerts.yaml"' in template


def test_dashboard_queries_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "incident-commander"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = {name for p in panels for t in p["targets"] for name in metric_names(t["expr"])}
    histograms = {f"{n}_bucket" for n, (kind, _) in documented().items() if kind == "histogram"}
    assert used <= set(documented()) | histograms
    for required in (
        "incident_commander_budget_spend",
        "incident_commander_budget_limit",
        "incident_commander_budget_utilization_ratio",
        "incident_commander_status_condition",
        "incident_commander_aws_service_up",
        "incident_commander_api_requests_total",
        "incident_commander_reconciliations_total",
        "incident_commander_api_key_expiry_timestamp_seconds",
    ):
        assert required in used, required
