"""BudgetPolicy against the real apiserver, the operator subprocess and moto in server mode.

Cost Explorer results are injected through moto's own API
(``/moto-api/static/ce/cost-and-usage-results``); Cost Explorer requests are counted at the
endpoint by the fault proxy. Usage is recorded through ``BudgetController.record_usage`` in this
process (the code the HTTP API calls) or through ``ledger.record`` (as another replica would):
both write to moto's DynamoDB, and the operator subprocess reads the ledger from there.

moto's threaded server does not make DynamoDB ``ADD`` atomic (concurrent updates of one item lose
increments; real DynamoDB serialises them per item), so these tests run moto single-threaded.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import kubernetes
import pytest

from incident_commander.aws.clients import ClientCache, ConnectionClients
from incident_commander.aws.connection import ReadyConnection
from incident_commander.aws.credentials import StaticKeys
from incident_commander.aws.spec import parse_connection_spec
from incident_commander.budget import calc, ledger
from incident_commander.budget.model import BudgetNotReady, UnknownModel, UsageReport
from incident_commander.kinds.budgetpolicy.controller import BudgetController
from incident_commander.kube_api import KubeApi
from incident_commander.metrics import OperatorMetrics
from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Kube, condition, wait_for, wait_for_condition
from tests.support.policies import apply_connection

pytestmark = pytest.mark.integration

API = "incidentcommander.io/v1alpha1"
PRICING = [{"model": "haiku", "inputPer1kTokens": "0.00025", "outputPer1kTokens": "0.00125"}]


@pytest.fixture(scope="module")
def serial_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto-serial"), serial=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(serial_moto: MotoServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(upstream=serial_moto.url, port=free_port())
    fault_proxy.start()
    yield fault_proxy
    fault_proxy.stop()


def inject_cost(moto: MotoServer, *amounts: tuple[str, str]) -> None:
    """Queue Cost Explorer answers: one result per (amount, unit), taken by the next new request."""
    results = [
        {
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": "x", "End": "y"},
                    "Total": {"UnblendedCost": {"Amount": a, "Unit": u}},
                }
            ]
        }
        for a, u in amounts
    ]
    request = urllib.request.Request(  # noqa: S310 - loopback moto
        f"{moto.url}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": results}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback moto
        assert response.status == 201


def connection(kube: Kube, namespace: str, url: str) -> None:
    apply_connection(kube, namespace, url, probeInterval="30s")
    wait_for_condition(kube, "awsconnection", namespace, "conn")


def budget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connectionRef": {"name": "conn"},
        "period": "Daily",
        "limit": {"amount": "100.00", "currency": "USD"},
        # a tag unique to the test makes its Cost Explorer request unique in moto
        "filter": {"services": ["Amazon DynamoDB", "Amazon Bedrock"], "tags": {"test": [namespace]}},
        "thresholds": [
            {"percent": 50, "action": "Notify"},
            {"percent": 80, "action": "Downgrade"},
            {"percent": 95, "action": "Throttle"},
            {"percent": 100, "action": "Halt"},
        ],
        "evaluationInterval": "10s",
        "pricing": PRICING,
    }
    body.update(spec)
    return {"apiVersion": API, "kind": "BudgetPolicy", "metadata": {"name": name}, "spec": body}


def spend(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("spend") or {})


def record_as_other_replica(url: str, namespace: str, name: str, amount: str) -> None:
    client = moto_client(url, "dynamodb")
    ledger.ensure_table(client)
    start, _ = calc.period_bounds("Daily", datetime.now(UTC))
    ledger.record(
        client,
        namespace=namespace,
        budget=name,
        period_start=start,
        cost=Decimal(amount),
        key=uuid.uuid4().hex,
    )


def test_phases_follow_spend_and_downgrade_reaches_the_incident_policy(
    crds: Kube, operator: OperatorProcess, serial_moto: MotoServer, proxy: FaultProxy, namespace: str
) -> None:
    ns = namespace
    connection(crds, ns, proxy.url)
    inject_cost(serial_moto, ("40.00", "USD"))
    crds.apply(budget("daily", ns), ns)
    crds.apply(
        {
            "apiVersion": API,
            "kind": "IncidentPolicy",
            "metadata": {"name": "pol"},
            "spec": {
                "connectionRef": {"name": "conn"},
                "budgetRef": {"name": "daily"},
                "modelRouting": {"simpleModel": "small", "complexModel": "large"},
                "sampling": {"detectionRate": 0.9, "minDetectionRate": 0.1},
                "storage": {"deletionPolicy": "Retain"},
            },
        },
        ns,
    )

    def phase(name: str) -> Any:
        return lambda o: (o.get("status") or {}).get("phase") == name

    obj = wait_for(crds, "budgetpolicy", ns, "daily", phase("Ok"), logs=operator.logs, describe="phase Ok")
    assert spend(obj)["actual"] == "40.00" and spend(obj)["currency"] == "USD"
    assert obj["status"]["activeAction"] == "None" and obj["status"]["lastCostExplorerQuery"]
    assert condition(obj, "BudgetExceeded")["status"] == "False"  # type: ignore[index]

    record_as_other_replica(serial_moto.url, ns, "daily", "15.005")  # 55.005 %
    obj = wait_for(crds, "budgetpolicy", ns, "daily", phase("Warning"), timeout=15, logs=operator.logs)
    assert spend(obj)["ledger"] == "15.005" and spend(obj)["total"] == "55.005"
    assert obj["status"]["activeAction"] == "Notify" and obj["status"]["utilization"] == "55.00"

    record_as_other_replica(serial_moto.url, ns, "daily", "25")  # 80.005 %
    obj = wait_for(crds, "budgetpolicy", ns, "daily", phase("Critical"), timeout=15, logs=operator.logs)
    assert obj["status"]["activeAction"] == "Downgrade"
    changed = time.monotonic()
    pol = wait_for(
        crds,
        "incidentpolicy",
        ns,
        "pol",
        lambda o: ((o.get("status") or {}).get("effectiveModelRouting") or {}).get("mode") == "Downgraded",
        timeout=10,
        logs=operator.logs,
        describe="Downgraded routing",
    )
    downgrade_seconds = time.monotonic() - changed
    assert pol["status"]["effectiveModelRouting"]["complexModel"] == "small"
    assert pol["status"]["effectiveSamplingRate"] == 0.5
    assert condition(pol, "BudgetApplied")["reason"] == "PhaseCritical"  # type: ignore[index]
    print(f"Downgrade visible in IncidentPolicy status {downgrade_seconds:.1f}s after the budget's phase")

    record_as_other_replica(serial_moto.url, ns, "daily", "20")  # 100.005 %
    obj = wait_for(crds, "budgetpolicy", ns, "daily", phase("Exceeded"), timeout=15, logs=operator.logs)
    assert obj["status"]["activeAction"] == "Halt"
    assert condition(obj, "BudgetExceeded")["status"] == "True"  # type: ignore[index]
    wait_for(
        crds,
        "incidentpolicy",
        ns,
        "pol",
        lambda o: ((o.get("status") or {}).get("effectiveModelRouting") or {}).get("mode") == "Halted",
        timeout=10,
        logs=operator.logs,
    )
    # Break-glass lifts Halt (Throttle, the next crossed action, is enforced instead).
    until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    crds.kubectl("annotate", "-n", ns, "budgetpolicy", "daily", f"incidentcommander.io/break-glass={until}")
    wait_for(
        crds,
        "incidentpolicy",
        ns,
        "pol",
        lambda o: ((o.get("status") or {}).get("effectiveModelRouting") or {}).get("mode") == "Throttled",
        timeout=10,
        logs=operator.logs,
    )
    events = crds.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"ThresholdCrossed", "LimitExceeded"} <= reasons


def test_one_cost_explorer_request_per_interval_and_forecast_fallback(
    crds: Kube, operator: OperatorProcess, serial_moto: MotoServer, proxy: FaultProxy, namespace: str
) -> None:
    ns = namespace
    connection(crds, ns, proxy.url)
    inject_cost(serial_moto, ("12.50", "USD"))
    started = time.monotonic()
    crds.apply(budget("counted", ns, period="Monthly", filter={"tags": {"test": [ns]}}), ns)
    obj = wait_for(
        crds,
        "budgetpolicy",
        ns,
        "counted",
        lambda o: spend(o).get("actual") == "12.50",
        logs=operator.logs,
        describe="the injected Cost Explorer figure",
    )
    first = proxy.attempts_for("ce", since=started)
    # the first round: GetCostAndUsage and, unless today is the period's last day, one
    # GetCostForecast (moto answers 500; no retries), after which the forecast is projected
    today = datetime.now(UTC)
    last_day = (today + timedelta(days=1)).date() >= calc.period_bounds("Monthly", today)[1].date()
    assert len(first) == (1 if last_day else 2), first
    assert Decimal(spend(obj)["forecast"]) >= Decimal("12.50")
    window_start = first[0].at
    time.sleep(25)
    later = [a.at - window_start for a in proxy.attempts_for("ce", since=window_start)[len(first) :]]
    # exactly one request per 10 s interval: at about 10 s and 20 s, never closer than the interval
    assert len(later) == 2, later
    assert 9.5 <= later[0] < 12 and later[1] - later[0] >= 9.9, later


@dataclass
class StaticConnections:
    """The connection source an in-process BudgetController uses: real boto3 clients to moto."""

    ready: ReadyConnection

    def get(self, namespace: str, name: str) -> ReadyConnection:
        return self.ready

    def warming_up(self, namespace: str, name: str) -> bool:
        return False

    def first_probe_pending(self, namespace: str, name: str) -> bool:
        return False


def local_registry(kube: Kube, url: str, *, clock: Any = None) -> BudgetController:
    spec = parse_connection_spec({"region": "us-east-1", "endpointUrl": url})
    clients = ConnectionClients.build(spec, StaticKeys("testing", "testing"), ClientCache())
    ready = ReadyConnection(namespace="-", name="conn", account_id="123456789012", clients=clients)
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    api_client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    return BudgetController(
        kube=KubeApi(api_client), connections=StaticConnections(ready), metrics=OperatorMetrics(), **kwargs
    )


def test_concurrent_usage_is_exact_and_survives_a_restart(
    crds: Kube, operator: OperatorProcess, serial_moto: MotoServer, namespace: str
) -> None:
    ns = namespace
    connection(crds, ns, serial_moto.url)
    # Bedrock only: no Cost Explorer query at all, spend is the ledger
    crds.apply(budget("llm", ns, filter={"services": ["Amazon Bedrock"]}, period="Monthly"), ns)
    wait_for_condition(crds, "budgetpolicy", ns, "llm", logs=operator.logs)
    body = crds.get("budgetpolicy", ns, "llm")
    rng = random.Random(7)  # noqa: S311 - test data
    reports = [
        UsageReport(
            model="haiku",
            input_tokens=rng.randint(1, 5000),
            output_tokens=rng.randint(0, 2000),
            incident_id=None,
            idempotency_key=f"r-{i}",
            reported_at=datetime.now(UTC),
        )
        for i in range(900)
    ]
    retried = [reports[i] for i in range(0, 900, 9)]  # 100 retries with the same key: 1,000 reports
    expected = sum(
        (
            calc.usage_cost(
                calc.Price(input_per_1k=Decimal("0.00025"), output_per_1k=Decimal("0.00125")),
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
            )
            for r in reports
        ),
        Decimal(0),
    )

    async def run() -> tuple[int, int]:
        queue: asyncio.Queue[UsageReport] = asyncio.Queue()
        for report in reports + retried:
            queue.put_nowait(report)
        holder = {"registry": local_registry(crds, serial_moto.url)}
        holder["registry"].observe(body)
        duplicates = failures = 0

        async def client() -> None:
            nonlocal duplicates, failures
            while not queue.empty():
                report = queue.get_nowait()
                while True:  # a client retries with the same idempotency key until it gets an answer
                    try:
                        result = await holder["registry"].record_usage(ns, "llm", report)
                        duplicates += result.duplicate
                        break
                    except (BudgetNotReady, RuntimeError, asyncio.CancelledError):
                        failures += 1
                        await asyncio.sleep(0.05)

        async def restart() -> None:
            while queue.qsize() > 500:
                await asyncio.sleep(0.01)
            old = holder["registry"]
            await old.close()  # the operator dies mid-stream: in-flight reports fail or get lost
            new = local_registry(crds, serial_moto.url)
            new.observe(body)
            holder["registry"] = new

        await asyncio.gather(restart(), *(client() for _ in range(20)))
        with pytest.raises(UnknownModel):
            await holder["registry"].record_usage(ns, "llm", replace(reports[0], model="x"))
        await holder["registry"].close()
        return duplicates, failures

    started = time.monotonic()
    duplicates, failures = asyncio.run(run())
    elapsed = time.monotonic() - started
    start, _ = calc.period_bounds("Monthly", datetime.now(UTC))
    stored = ledger.read(
        moto_client(serial_moto.url, "dynamodb"), namespace=ns, budget="llm", period_start=start
    )
    print(
        f"1,000 reports from 20 clients in {elapsed:.1f}s; "
        f"{duplicates} duplicates; {failures} failed attempts"
    )
    assert stored == expected, (stored, expected)
    assert duplicates >= 100
    # the operator process (which never saw a report) shows the same exact figure
    wait_for(
        crds,
        "budgetpolicy",
        ns,
        "llm",
        lambda o: Decimal(spend(o).get("ledger", "0")) == expected,
        timeout=15,
        logs=operator.logs,
        describe=f"ledger {expected}",
    )


def test_rollover_keeps_late_usage_in_its_own_period(
    crds: Kube, serial_moto: MotoServer, namespace: str
) -> None:
    ns = namespace
    now = [datetime(2031, 5, 31, 23, 59, 58, tzinfo=UTC)]
    body = budget("rolling", ns, filter={"services": ["Amazon Bedrock"]})
    body["metadata"] = {"name": "rolling", "namespace": ns, "uid": str(uuid.uuid4()), "generation": 1}

    def report(tokens: int, at: datetime, key: str) -> UsageReport:
        return UsageReport(
            model="haiku",
            input_tokens=tokens,
            output_tokens=0,
            incident_id=None,
            idempotency_key=key,
            reported_at=at,
        )

    async def run() -> None:
        registry = local_registry(crds, serial_moto.url, clock=lambda: now[0])
        registry.observe(body)  # an object only this registry knows: its status writes find nothing
        day1 = now[0]
        first = await registry.record_usage(ns, "rolling", report(4000, day1, "a"))  # 0.001
        assert first.period_start == datetime(2031, 5, 31, tzinfo=UTC) and first.cost == Decimal("0.001")
        await asyncio.sleep(0.3)
        assert registry.state(ns, "rolling").total == Decimal("0.001")  # type: ignore[union-attr]
        now[0] = datetime(2031, 6, 1, 0, 0, 1, tzinfo=UTC)  # midnight passes
        fresh = await registry.record_usage(ns, "rolling", report(8000, now[0], "b"))  # 0.002 in June 1
        late = await registry.record_usage(
            ns, "rolling", report(12000, day1, "c")
        )  # reported late for May 31
        again = await registry.record_usage(ns, "rolling", report(12000, day1, "c"))
        assert fresh.period_start == datetime(2031, 6, 1, tzinfo=UTC)
        assert late.period_start == datetime(2031, 5, 31, tzinfo=UTC) and again.duplicate
        for _ in range(50):
            state = registry.state(ns, "rolling")
            if state and state.period_start == datetime(2031, 6, 1, tzinfo=UTC):
                break
            await asyncio.sleep(0.1)
        assert state is not None and state.total == Decimal("0.002")
        assert state.period_end == datetime(2031, 6, 2, tzinfo=UTC)
        await registry.close()

    asyncio.run(run())
    client = moto_client(serial_moto.url, "dynamodb")
    day1 = ledger.read(client, namespace=ns, budget="rolling", period_start=datetime(2031, 5, 31, tzinfo=UTC))
    day2 = ledger.read(client, namespace=ns, budget="rolling", period_start=datetime(2031, 6, 1, tzinfo=UTC))
    assert (day1, day2) == (Decimal("0.004"), Decimal("0.002"))


def test_currency_mismatch_is_a_condition(
    crds: Kube, operator: OperatorProcess, serial_moto: MotoServer, namespace: str
) -> None:
    ns = namespace
    connection(crds, ns, serial_moto.url)
    inject_cost(serial_moto, ("70.00", "EUR"))
    crds.apply(budget("euro", ns), ns)
    obj = wait_for_condition(
        crds, "budgetpolicy", ns, "euro", status="False", reason="CurrencyMismatch", logs=operator.logs
    )
    message = condition(obj, "Ready")["message"]  # type: ignore[index]
    assert "EUR" in message and "USD" in message
    assert obj["status"]["phase"] == "Ok" and spend(obj)["actual"] == "0.00"
