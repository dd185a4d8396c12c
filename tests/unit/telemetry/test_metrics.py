"""The operator's metric families: documented, named by Prometheus' conventions, bounded in cardinality.

The registry is built the way ``operator_app.build_registry`` builds it: OperatorMetrics, the API's
metrics and the budget engine's gauges, all on one private registry.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from incident_commander.api.app import build_api_app
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.metrics import BUDGET_PHASES, OperatorMetrics
from tests.support.budgets import NoBudgets

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "metrics.md"
OBJECTS = 1000
SERVICES = ("sts", "dynamodb", "s3", "kinesis", "stepfunctions", "ce")
CLIENTS = ("agent", "dashboard", "oncall")
FORBIDDEN_LABELS = {
    "key_id",
    "keyid",
    "kid",
    "token",
    "jti",
    "incident",
    "incident_id",
    "path",
    "url",
    "user",
}


class Operator:
    def __init__(self) -> None:
        self.metrics = OperatorMetrics()
        self.api = ApiMetrics(self.metrics.registry)

    def series(self) -> int:
        """Samples in the exposition, as Prometheus would store them (one series each)."""
        text = generate_latest(self.metrics.registry).decode()
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


@pytest.fixture
def operator() -> Iterator[Operator]:
    yield Operator()


def exposed(operator: Operator) -> dict[str, str]:
    """Family name -> type, from the text exposition's TYPE lines (without prometheus_client's
    ``_created`` companions of counters and histograms)."""
    text = generate_latest(operator.metrics.registry).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    return {name: kind for name, kind in types.items() if not name.endswith("_created")}


def documented() -> dict[str, tuple[str, list[str]]]:
    rows = re.findall(
        r"^\| `(incident_commander_\w+)` \| (\w+)[^|]* \| ([^|]*) \|", DOC.read_text(), re.MULTILINE
    )
    return {name: (kind, re.findall(r"`(\w+)`", labels)) for name, kind, labels in rows}


def test_docs_list_every_family_with_its_type_and_labels(operator: Operator) -> None:
    docs = documented()
    live = exposed(operator)
    assert sorted(docs) == sorted(live), "docs/metrics.md and the registry disagree"
    assert {name: kind for name, (kind, _) in docs.items()} == live
    populate(operator, 1)
    api, m = operator.api, operator.metrics
    api.requests.labels(route="/v1/route", method="POST", status="200", role="responder").inc()
    api.duration.labels(route="/v1/route").observe(0.01)
    api.auth_failures.labels(reason="unknown_api_key").inc()
    api.rate_limited.labels(route="/v1/route").inc()
    api.untrusted_secrets.labels(reason="bad_seal").inc()
    api.route_decisions.labels(outcome="routed", budget_phase="Ok").inc()
    m.cost_explorer_requests.labels(operation="GetCostAndUsage").inc()
    m.usage_reports.labels(outcome="recorded").inc()
    m.observe_incident("ns", "p", "critical", to_acknowledge=30, to_resolve=600)
    m.set_open_incidents("ns", "p", {"critical": 1})
    m.incident_detections.labels(outcome="opened").inc()
    m.incident_transitions.labels(action="open").inc()
    for family in operator.metrics.registry.collect():
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        [name] = [n for n in docs if n in (family.name, family.name + "_total", family.name + "_info")]
        assert labels == set(docs[name][1]), f"labels of {name}"


def test_names_follow_prometheus_conventions(operator: Operator) -> None:
    for name, kind in exposed(operator).items():
        assert name.startswith("incident_commander_"), name
        assert re.fullmatch(r"[a-z_]+", name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations in seconds"
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days)(_|$)", name), f"{name}: base units"
    for _, (_, labels) in documented().items():
        assert not FORBIDDEN_LABELS & {label.lower() for label in labels}


# -- cardinality with 1,000 objects -------------------------------------------------------------------


def populate(operator: Operator, count: int, prefix: str = "obj") -> None:
    """Drive the metrics as 1,000 connections, budgets and policies would, through their own setters."""
    m = operator.metrics
    for i in range(count):
        ns, name = f"ns-{i % 50}", f"{prefix}-{i}"
        for service in SERVICES:
            m.aws_probe_duration.labels(ns, name, service).observe(0.02)
            m.aws_service_up.labels(ns, name, service).set(1)
        m.set_budget(
            ns,
            name,
            limit=100,
            forecast=40,
            phase="Ok",
            utilization=12.5,
            spend={"cost_explorer": 10, "ledger": 2.5},
            active_action=None,
        )
        m.set_api_keys(ns, name, {client: 1.9e9 + i for client in CLIENTS})
        for kind in ("AwsConnection", "BudgetPolicy", "IncidentPolicy"):
            m.reconciliations.labels(kind=kind, outcome="success").inc()
            m.reconcile_duration.labels(kind=kind).observe(0.01)


def forget(operator: Operator, count: int, prefix: str = "obj") -> None:
    """Delete the objects through the registries' own deletion paths."""
    for i in range(count):
        ns, name = f"ns-{i % 50}", f"{prefix}-{i}"
        operator.metrics.forget_connection(ns, name, SERVICES)  # ConnectionController.forgotten calls this
        operator.metrics.forget_budget(ns, name)  # BudgetController.forgotten calls this
        operator.metrics.forget_policy(ns, name)  # PolicyController.forgotten calls this


PER_SERVICE = 17  # histogram: 12 buckets + +Inf + _count + _sum + _created; up: 1
PER_BUDGET = 13  # spend 2, limit 1, forecast 1, utilisation 1, phase 4, action 4
PER_CLIENT = 1


def test_series_grow_linearly_with_objects_and_shrink_back_on_deletion(operator: Operator) -> None:
    baseline = operator.series()
    populate(operator, 1)
    one = operator.series()
    fixed = one - baseline - (len(SERVICES) * PER_SERVICE + PER_BUDGET + len(CLIENTS) * PER_CLIENT)
    populate(operator, OBJECTS)
    per_object = len(SERVICES) * PER_SERVICE + PER_BUDGET + len(CLIENTS) * PER_CLIENT
    # The bound: the fixed series (build info, reconciliations by kind and outcome, ...) plus, for each
    # object, 17 per AWS service, 13 per budget and 1 per API client -- nothing else grows.
    assert operator.series() == baseline + fixed + OBJECTS * per_object
    assert OBJECTS * per_object == 118_000
    forget(operator, OBJECTS)
    assert operator.series() == baseline + fixed


def test_removed_clients_and_phases_do_not_linger(operator: Operator) -> None:
    m = operator.metrics
    m.set_api_keys("ns", "p", {"a": 1.0, "b": 2.0})
    m.set_api_keys("ns", "p", {"b": 3.0})
    expiry = "incident_commander_api_key_expiry_timestamp_seconds"
    assert m.registry.get_sample_value(expiry, {"namespace": "ns", "policy": "p", "client": "a"}) is None
    assert m.registry.get_sample_value(expiry, {"namespace": "ns", "policy": "p", "client": "b"}) == 3.0
    m.set_budget(
        "ns",
        "b",
        limit=100,
        forecast=120,
        phase="Exceeded",
        utilization=120,
        spend={"ledger": 120},
        active_action="Halt",
    )
    values = {
        phase: m.registry.get_sample_value(
            "incident_commander_budget_phase", {"namespace": "ns", "budget": "b", "phase": phase}
        )
        for phase in BUDGET_PHASES
    }
    assert values == {"Ok": 0, "Warning": 0, "Critical": 0, "Exceeded": 1}
    m.forget_budget("ns", "b")
    m.forget_policy("ns", "p")
    text = generate_latest(m.registry).decode()
    assert 'budget="b"' not in text and 'policy="p"' not in text


def test_api_requests_to_1000_distinct_paths_add_no_series(operator: Operator) -> None:
    ctx = ApiContext(
        keyring=Keyring(),
        directory=Directory(),
        metrics=operator.api,
        budgets=NoBudgets(),
    )

    async def send(count: int, offset: int) -> None:
        async with TestClient(TestServer(build_api_app(ctx), host="127.0.0.1")) as client:
            for i in range(offset, offset + count):
                paths: list[tuple[str, dict[str, Any]]] = [
                    (f"/v1/policies/ns-{i}/policy-{i}", {}),
                    (f"/v1/jwks/ns-{i}/policy-{i}", {}),
                    (f"/v1/incidents/{i}", {}),
                    ("/v1/summary", {"Authorization": f"ApiKey icak_{i:032d}"}),
                ]
                for path, headers in paths:
                    await client.get(path, headers=headers)

    asyncio.run(send(10, 0))
    after_ten = operator.series()
    asyncio.run(send(OBJECTS, 10))
    assert operator.series() == after_ten
    text = generate_latest(operator.metrics.registry).decode()
    assert "policy-5" not in text and "icak_" not in text
    assert not re.search(r"/v1/incidents/\d", text), "a raw path became a label (templates are fine)"


PER_SEVERITY = 29  # two histograms (10 buckets + +Inf + _count + _sum + _created) and the open gauge


def test_incident_series_are_per_policy_severity_and_go_with_the_severity_or_policy(
    operator: Operator,
) -> None:
    m = operator.metrics
    baseline = operator.series()
    severities = ("critical", "high", "low")
    for i in range(OBJECTS):
        for severity in severities:
            m.observe_incident(f"ns-{i % 50}", f"p-{i}", severity, to_acknowledge=12.0, to_resolve=900.0)
        m.set_open_incidents(f"ns-{i % 50}", f"p-{i}", dict.fromkeys(severities, 2))
    assert operator.series() == baseline + OBJECTS * len(severities) * PER_SEVERITY
    m.retain_incident_severities("ns-0", "p-0", ("critical",))  # two severities left the spec
    assert operator.series() == baseline + (OBJECTS * len(severities) - 2) * PER_SEVERITY
    for i in range(OBJECTS):
        m.forget_policy(f"ns-{i % 50}", f"p-{i}")
    assert operator.series() == baseline
    m.set_open_incidents("ns", "p", {"critical": 3})
    m.clear_open_incidents()  # a replica that stops leading
    assert (
        m.registry.get_sample_value(
            "incident_commander_incidents_open", {"namespace": "ns", "policy": "p", "severity": "critical"}
        )
        is None
    )
