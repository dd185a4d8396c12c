"""A real Prometheus (Debian's package, started here on 127.0.0.1) scrapes the operator subprocess.

The operator probes two AwsConnections (one on moto, one on a refused port) and evaluates a
BudgetPolicy whose spend is usage recorded in moto's DynamoDB ledger (the filter leaves Cost
Explorer out, so the figures are exact). Prometheus then answers PromQL for the budget and AWS-up
gauges with the expected values, loads the chart's alert rules, and has BudgetWarning pending.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident_commander.budget import calc, ledger
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.kube import Kube, wait_for, wait_for_condition
from tests.support.policies import apply_connection
from tests.support.processes import ManagedProcess, http_ok
from tests.unit.telemetry.test_metrics import documented

pytestmark = pytest.mark.integration

API = "incidentcommander.io/v1alpha1"
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "incident-commander" / "files" / "alerts.yaml"


class Prometheus:
    def __init__(self, tmp: Path, target: str) -> None:
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            if os.environ.get("CI"):
                pytest.fail("prometheus missing: .ci/run installs Debian's package")
            pytest.skip("prometheus not installed (apt-get install prometheus)")
        port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": "incident-commander", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self.url = f"http://127.0.0.1:{port}"
        self.process = ManagedProcess(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            log_path=tmp / "prometheus.log",
            env={"PATH": "/usr/bin:/bin"},
        )
        self.process.start()
        self.process.wait_until(lambda: http_ok(f"{self.url}/-/ready"), timeout=30)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql: str) -> float | None:
        result = self.api("query", query=promql)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def prometheus(operator: OperatorProcess, tmp_path: Path) -> Iterator[Prometheus]:
    target = urllib.parse.urlparse(operator.metrics_url).netloc
    server = Prometheus(tmp_path, target)
    try:
        yield server
    finally:
        server.stop()


def setup_objects(kube: Kube, namespace: str, moto_url: str) -> None:
    for name, url, services in (
        ("conn", moto_url, ["sts", "dynamodb"]),
        ("down", f"http://127.0.0.1:{free_port()}", ["sts"]),  # nothing listens there
    ):
        apply_connection(
            kube,
            namespace,
            url,
            name=name,
            services=services,
            probeInterval="30s",
            retry={"maxAttempts": 1},
            timeouts={"connect": "1s", "read": "2s"},
        )
    kube.apply(
        {
            "apiVersion": API,
            "kind": "BudgetPolicy",
            "metadata": {"name": "budget"},
            "spec": {
                "connectionRef": {"name": "conn"},
                "period": "Monthly",
                "limit": {"amount": "200.00", "currency": "USD"},
                "filter": {"services": ["Amazon Bedrock"]},  # LLM spend only: no Cost Explorer query
                "thresholds": [{"percent": 50, "action": "Notify"}, {"percent": 100, "action": "Halt"}],
            },
        },
        namespace,
    )


def record_usage(moto_url: str, namespace: str, amount: str) -> None:
    client = moto_client(moto_url, "dynamodb")
    ledger.ensure_table(client)
    start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
    ledger.record(
        client,
        namespace=namespace,
        budget="budget",
        period_start=start,
        cost=Decimal(amount),
        key=uuid.uuid4().hex,
    )


def test_prometheus_scrapes_budget_and_aws_gauges(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, prometheus: Prometheus, namespace: str
) -> None:
    ns = namespace
    setup_objects(crds, ns, moto.url)
    wait_for_condition(crds, "awsconnection", ns, "conn", timeout=60, logs=operator.logs)
    record_usage(moto.url, ns, "121.50")
    wait_for(
        crds,
        "budgetpolicy",
        ns,
        "budget",
        lambda obj: (obj.get("status") or {}).get("phase") == "Warning",
        timeout=60,
        describe="phase Warning",
        logs=operator.logs,
    )

    selector = f'namespace="{ns}",budget="budget"'
    expected = {
        f'incident_commander_budget_spend{{{selector},source="ledger"}}': 121.5,
        f'incident_commander_budget_spend{{{selector},source="cost_explorer"}}': 0.0,
        f"incident_commander_budget_limit{{{selector}}}": 200.0,
        f"incident_commander_budget_utilization_ratio{{{selector}}}": 0.6075,
        f'incident_commander_budget_phase{{{selector},phase="Warning"}}': 1.0,
        f'incident_commander_budget_phase{{{selector},phase="Ok"}}': 0.0,
        f'incident_commander_aws_service_up{{namespace="{ns}",connection="conn",service="sts"}}': 1.0,
        f'incident_commander_aws_service_up{{namespace="{ns}",connection="conn",service="dynamodb"}}': 1.0,
        f'incident_commander_aws_service_up{{namespace="{ns}",connection="down",service="sts"}}': 0.0,
        # The conditions as status says them: one series per status, 1 for the current one.
        f'incident_commander_status_condition{{kind="AwsConnection",namespace="{ns}",name="down",'
        'condition="Ready",status="False"}': 1.0,
        f'incident_commander_status_condition{{kind="AwsConnection",namespace="{ns}",name="conn",'
        'condition="Ready",status="True"}': 1.0,
        f'incident_commander_status_condition{{kind="BudgetPolicy",namespace="{ns}",name="budget",'
        'condition="Ready",status="False"}': 0.0,
    }
    deadline = time.monotonic() + 30
    seen: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        seen = {promql: prometheus.value(promql) for promql in expected}
        if seen == expected:
            break
        time.sleep(0.5)
    assert seen == expected, f"Prometheus answered {seen}\noperator log:\n{operator.logs()}"
    assert (
        prometheus.value(f'count(incident_commander_aws_probe_duration_seconds_count{{namespace="{ns}"}})')
        == 3
    )

    # The chart's alert rules load into a real Prometheus, and BudgetWarning is pending (for: 5m).
    groups = prometheus.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert len(loaded) == 9 and all(r["health"] == "ok" for r in loaded.values()), loaded
    deadline = time.monotonic() + 15
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = [a for a in prometheus.api("alerts")["alerts"] if a["labels"].get("namespace") == ns]
        if any(a["labels"]["alertname"] == "BudgetWarning" for a in alerts):
            break
        time.sleep(0.5)
    warning = [a for a in alerts if a["labels"]["alertname"] == "BudgetWarning"]
    assert warning and warning[0]["state"] == "pending" and warning[0]["labels"]["budget"] == "budget", alerts

    # Every family the live operator exposes is documented, and nothing documented is missing.
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    live = set(re.findall(r"^# TYPE (\S+) \S+$", text, re.MULTILINE))
    assert sorted(live) == sorted(documented())
    assert "_created" not in text
