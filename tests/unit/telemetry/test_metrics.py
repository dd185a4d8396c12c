"""The operator's metric families: documented, named by Prometheus' conventions, bounded in cardinality.

The registry is built the way ``operator_app.build_registry`` builds it: OperatorMetrics, the API's
metrics and the budget engine's gauges, all on one private registry.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import time
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
from incident_commander.kinds.awsconnection.controller import ConnectionController
from incident_commander.kinds.budgetpolicy.controller import BudgetController
from incident_commander.kinds.incidentpolicy.controller import PolicyController
from incident_commander.metrics import BUDGET_PHASES, OperatorMetrics
from incident_commander.servers import metrics_app
from tests.support.budgets import NoBudgets

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "metrics.md"
OBJECTS = 1000
SERVICES = ("sts", "dynamodb", "s3", "kinesis", "stepfunctions", "ce")
CLIENTS = ("agent", "dashboard", "oncall")
CONDITIONS = {
    "AwsConnection": ConnectionController.condition_types,
    "BudgetPolicy": BudgetController.condition_types,
    "IncidentPolicy": PolicyController.condition_types,
}
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
    """Family name -> type, from the text exposition's TYPE lines."""
    text = generate_latest(operator.metrics.registry).decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def documented() -> dict[str, tuple[str, list[str]]]:
    rows = re.findall(
        r"^\| `((?:incident_commander|process|python)_\w+)` \| (\w+)[^|]* \| ([^|]*) \|",
        DOC.read_text(),
        re.MULTILINE,
    )
    return {name: (kind, re.findall(r"`(\w+)`", labels)) for name, kind, labels in rows}


OWN = "incident_commander_"
"""Our families; ``process_*`` and ``python_*`` are prometheus_client's standard collectors."""


def test_docs_list_every_family_with_its_type_and_labels(operator: Operator) -> None:
    docs = documented()
    live = exposed(operator)
    assert sorted(docs) == sorted(live), "docs/metrics.md and the registry disagree"
    assert {name: kind for name, (kind, _) in docs.items()} == live
    populate(operator, 1)
    api, m = operator.api, operator.metrics
    api.requests.labels(route="/v1/route", method="POST", status="200", role="responder").inc()
    api.duration.labels("/v1/route").observe(0.01)
    api.auth_failures.labels(reason="unknown_api_key").inc()
    api.rate_limited.labels(route="/v1/route").inc()
    api.untrusted_secrets.labels(reason="bad_seal").inc()
    api.route_decisions.labels(outcome="routed", budget_phase="Ok").inc()
    m.cost_explorer_requests.labels(operation="GetCostAndUsage").inc()
    m.usage_reports.labels(outcome="recorded").inc()
    m.reservations.labels(outcome="reserved").inc()
    m.model_calls.labels(operation="Converse", outcome="ok").inc()
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
        if not name.startswith(OWN):
            assert name.startswith(("process_", "python_")), name
            continue
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
        m.set_budget_breakdown(ns, name, reserved=1.5, breakdown=BREAKDOWN)
        m.set_api_keys(ns, name, {client: 1.9e9 + i for client in CLIENTS})
        for kind, types in CONDITIONS.items():
            m.set_conditions(kind, ns, name, dict.fromkeys(types, "False" if i % 2 else "True"))
            m.reconciliations.labels(kind=kind, outcome="success").inc()
            m.reconcile_duration.labels(kind=kind).observe(0.01)


def forget(operator: Operator, count: int, prefix: str = "obj") -> None:
    """Delete the objects through the registries' own deletion paths."""
    for i in range(count):
        ns, name = f"ns-{i % 50}", f"{prefix}-{i}"
        operator.metrics.forget_connection(ns, name, SERVICES)  # ConnectionController.forgotten calls this
        operator.metrics.forget_budget(ns, name)  # BudgetController.forgotten calls this
        operator.metrics.forget_policy(ns, name)  # PolicyController.forgotten calls this
        for kind in CONDITIONS:
            operator.metrics.forget_conditions(kind, ns, name)  # Controller.forget calls this


PER_SERVICE = 16  # histogram: 12 buckets + +Inf + _count + _sum; up: 1
BREAKDOWN = {
    "model": {"anthropic.claude-sonnet-5-5": 2.0, "anthropic.claude-haiku-4-5-20251001-v1:0": 0.5},
    "client": {"p/agent": 2.0, "p/oncall": 0.5},
    "task_type": {"triage": 1.0, "diagnose": 1.0, "other": 0.5},
}
PER_BUDGET = 14 + 7  # spend 2, limit 1, forecast 1, utilisation 1, phase 4, action 4, reserved 1; breakdown 7
PER_CLIENT = 1
PER_CONDITION = 3  # True, False, Unknown


def test_series_grow_linearly_with_objects_and_shrink_back_on_deletion(operator: Operator) -> None:
    baseline = operator.series()
    populate(operator, 1)
    one = operator.series()
    conditions = PER_CONDITION * sum(len(types) for types in CONDITIONS.values())
    per_object = len(SERVICES) * PER_SERVICE + PER_BUDGET + len(CLIENTS) * PER_CLIENT + conditions
    fixed = one - baseline - per_object
    populate(operator, OBJECTS)
    # The bound: the fixed series (build info, reconciliations by kind and outcome, ...) plus, for each
    # object, 16 per AWS service, 21 per budget (14 and its breakdown), 1 per API client and 3 per
    # condition type of each kind -- nothing else grows.
    assert operator.series() == baseline + fixed + OBJECTS * per_object
    assert OBJECTS * per_object == 147_000
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
    m.set_budget_breakdown("ns", "b", reserved=1, breakdown={"model": {"a": 1.0, "b": 2.0}})
    m.set_budget_breakdown("ns", "b", reserved=0, breakdown={"model": {"b": 3.0}})
    by_model = "incident_commander_budget_ledger_spend_by_model"
    assert m.registry.get_sample_value(by_model, {"namespace": "ns", "budget": "b", "model": "a"}) is None
    assert m.registry.get_sample_value(by_model, {"namespace": "ns", "budget": "b", "model": "b"}) == 3.0
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


def test_no_created_series_and_the_standard_collectors(operator: Operator) -> None:
    populate(operator, 2)
    operator.api.requests.labels(route="/v1/route", method="POST", status="200", role="responder").inc()
    text = generate_latest(operator.metrics.registry).decode()
    assert "_created" not in text
    names = exposed(operator)
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= set(names)


def test_conditions_follow_the_status_and_go_with_the_object(operator: Operator) -> None:
    m = operator.metrics

    def value(condition: str, status: str) -> float | None:
        labels = {"kind": "IncidentPolicy", "namespace": "ns", "name": "p"}
        return m.registry.get_sample_value(
            "incident_commander_status_condition", {**labels, "condition": condition, "status": status}
        )

    m.set_conditions("IncidentPolicy", "ns", "p", {"Ready": "False", "BudgetApplied": "True"})
    assert [value("Ready", s) for s in ("True", "False", "Unknown")] == [0, 1, 0]
    m.set_conditions("IncidentPolicy", "ns", "p", {"Ready": "True"})  # budgetRef removed
    assert [value("Ready", s) for s in ("True", "False", "Unknown")] == [1, 0, 0]
    assert value("BudgetApplied", "True") is None
    m.forget_conditions("IncidentPolicy", "ns", "p")
    assert 'name="p"' not in generate_latest(m.registry).decode()


def test_metrics_endpoint_negotiates_openmetrics_and_gzip(operator: Operator) -> None:
    operator.metrics.reconciliations.labels(kind="AwsConnection", outcome="success").inc()

    async def scrape() -> list[tuple[str, str | None, str]]:
        async with TestClient(TestServer(metrics_app(operator.metrics), host="127.0.0.1")) as client:
            seen = []
            for headers in (
                {"Accept-Encoding": "identity"},
                {
                    # What Prometheus 3 sends.
                    "Accept": "application/openmetrics-text;version=1.0.0;q=0.6,"
                    "text/plain;version=0.0.4;q=0.3",
                    "Accept-Encoding": "identity",
                },
                {"Accept-Encoding": "gzip"},
            ):
                response = await client.get("/metrics", headers=headers, auto_decompress=False)
                raw = await response.read()
                encoding = response.headers.get("Content-Encoding")
                body = gzip.decompress(raw) if encoding == "gzip" else raw
                seen.append((response.headers["Content-Type"], encoding, body.decode()))
            return seen

    (text_type, plain, text), (om_type, _, om), (_, gzipped, zipped) = asyncio.run(scrape())
    assert text_type.startswith("text/plain; version=0.0.4") and plain is None
    assert 'incident_commander_reconciliations_total{kind="AwsConnection",outcome="success"} 1.0' in text
    assert om_type.startswith("application/openmetrics-text; version=1.0.0")
    assert om.endswith("# EOF\n")
    assert "# TYPE incident_commander_reconciliations counter" in om
    assert "_created" not in om
    assert gzipped == "gzip"
    ours = 'incident_commander_reconciliations_total{kind="AwsConnection",outcome="success"} 1.0'
    assert ours in zipped  # process_* values move between scrapes; the families are the same
    assert re.findall(r"^# TYPE .*$", zipped, re.M) == re.findall(r"^# TYPE .*$", text, re.M)


PER_SEVERITY = 27  # two histograms (10 buckets + +Inf + _count + _sum) and the open gauge


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


def test_a_scrape_does_not_hold_up_the_event_loop(operator: Operator) -> None:
    """The exposition of thousands of series is written on a thread: the loop (API, probes,
    watches) keeps running while it is. A thousand objects of each kind: with the tables writing
    their own lines, 300 made a scrape so short (0.2 s) that the machine's own scheduling gaps
    under load came near a third of it."""
    populate(operator, 1000)

    async def scrape_while_ticking() -> tuple[float, float]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def tick() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async with TestClient(TestServer(metrics_app(operator.metrics), host="127.0.0.1")) as client:
            ticker = asyncio.create_task(tick())
            started = time.monotonic()
            response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
            body = await response.read()
            took = time.monotonic() - started
            stop.set()
            await ticker
        assert b'name="obj-999"' in body
        return took, max(gaps)

    took, longest_gap = asyncio.run(scrape_while_ticking())
    # On the loop, the longest gap is the whole scrape (0.34 of 0.37 s when tried): half is the line.
    assert longest_gap < max(0.15, took / 2), (took, longest_gap)
