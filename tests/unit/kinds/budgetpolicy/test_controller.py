"""The BudgetPolicy controller's decisions, with a fake Kubernetes and a fake ledger and Cost Explorer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from incident_commander.aws.connection import ReadyConnection
from incident_commander.budget import calc, ledger, usage
from incident_commander.budget.costexplorer import CostExplorerError, CostFigure
from incident_commander.budget.model import BudgetNotReady, Period, UnknownModel, UsageReport
from incident_commander.conditions import find_condition
from incident_commander.kinds.budgetpolicy.controller import BREAK_GLASS_ANNOTATION, Budget, BudgetController
from incident_commander.metrics import OperatorMetrics
from tests.support.fake_aws import FakeConnections
from tests.support.fake_kube import FakeKube

NS = "team"
START = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class FakeBackend:
    """The ledger as a dict of totals, Cost Explorer as a figure (or an error), with call counts."""

    totals: dict[tuple[str, datetime], Decimal] = field(default_factory=dict)
    figure: CostFigure | CostExplorerError = field(
        default_factory=lambda: CostFigure(amount=Decimal(0), currencies=frozenset({"USD"}), requests=1)
    )
    ce_calls: int = 0
    keys: set[str] = field(default_factory=set)

    def read_ledger(
        self, connection: ReadyConnection, *, namespace: str, budget: str, period_start: datetime
    ) -> Decimal:
        return self.totals.get((budget, period_start), Decimal(0))

    def write_usage(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        priced: usage.PricedReport,
        key: str | None,
    ) -> ledger.Recorded:
        if key is not None and key in self.keys:
            return ledger.Recorded(cost=priced.cost, period_start=priced.period_start, duplicate=True)
        if key is not None:
            self.keys.add(key)
        slot = (budget, priced.period_start)
        self.totals[slot] = self.totals.get(slot, Decimal(0)) + priced.cost
        return ledger.Recorded(cost=priced.cost, period_start=priced.period_start, duplicate=False)

    def period_to_date(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        start: datetime,
        now: datetime,
    ) -> CostFigure:
        self.ce_calls += 1
        if isinstance(self.figure, CostExplorerError):
            raise self.figure
        return self.figure

    def forecast_remaining(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        end: datetime,
        now: datetime,
    ) -> tuple[Decimal, str] | None:
        return None


@dataclass
class Env:
    kube: FakeKube
    connections: FakeConnections
    backend: FakeBackend
    controller: BudgetController
    now: list[datetime]
    notified: list[tuple[str, str]]

    def observe(self, **changes: Any) -> Budget:
        self.controller.observe(body(**changes))
        entry = self.controller.entry(NS, "b")
        assert entry is not None
        return entry

    def run(self, entry: Budget) -> float:
        return asyncio.run(self.controller.run_pass(entry))

    def status(self) -> dict[str, Any]:
        return self.kube.statuses[("budgetpolicies", NS, "b")]

    def condition(self, type_: str) -> dict[str, Any]:
        found = find_condition(self.status().get("conditions"), type_)
        assert found is not None, self.status()
        return dict(found)


def body(*, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": NS, "name": "b", "uid": "uid-b", "generation": 1}
    if annotations:
        meta["annotations"] = annotations
    return {
        "metadata": meta,
        "spec": {
            "connectionRef": {"name": "conn"},
            "period": "Monthly",
            "limit": {"amount": "10.00", "currency": "USD"},
            "thresholds": [{"percent": 80, "action": "Downgrade"}, {"percent": 100, "action": "Halt"}],
            "evaluationInterval": "1h",
            "pricing": [{"model": "haiku", "inputPer1kTokens": "1.00", "outputPer1kTokens": "1.00"}],
            **spec,
        },
    }


@pytest.fixture
def env() -> Iterator[Env]:
    kube, connections, backend = FakeKube(), FakeConnections(), FakeBackend()
    now = [START + timedelta(days=3)]
    controller = BudgetController(
        start_workers=False,  # the tests run the passes themselves
        kube=kube,  # type: ignore[arg-type]
        connections=connections,
        metrics=OperatorMetrics(),
        clock=lambda: now[0],
        backend=backend,
    )
    notified: list[tuple[str, str]] = []
    controller.subscribe(lambda ns, name: notified.append((ns, name)))
    connections.ready(NS)
    yield Env(
        kube=kube, connections=connections, backend=backend, controller=controller, now=now, notified=notified
    )
    asyncio.run(controller.close())


def report(tokens: int, key: str | None = None, model: str = "haiku") -> UsageReport:
    return UsageReport(
        model=model,
        input_tokens=tokens,
        output_tokens=0,
        incident_id=None,
        idempotency_key=key,
        reported_at=START + timedelta(days=3),
    )


def test_a_first_pass_evaluates_and_queries_cost_explorer_once(env: Env) -> None:
    entry = env.observe()
    env.backend.figure = CostFigure(amount=Decimal("2.50"), currencies=frozenset({"USD"}), requests=1)
    env.run(entry)
    assert env.condition("Ready")["reason"] == "Evaluated"
    assert env.status()["phase"] == "Ok" and env.status()["spend"]["actual"] == "2.50"
    assert env.status()["lastCostExplorerQuery"] and env.backend.ce_calls == 1
    assert env.notified == [(NS, "b")]  # the first state reaches the policies
    env.now[0] += timedelta(minutes=10)
    env.run(entry)
    assert env.backend.ce_calls == 1, "not due again before evaluationInterval"


def test_usage_crossing_a_threshold_publishes_and_posts_an_event(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})  # ledger only: no Cost Explorer
    env.run(entry)
    env.notified.clear()
    recorded = asyncio.run(env.controller.record_usage(NS, "b", report(8500, key="k1")))
    assert recorded.cost == Decimal("8.50") and not recorded.duplicate
    assert env.controller.state(NS, "b").phase == "Critical"  # type: ignore[union-attr]
    assert env.notified == [(NS, "b")]
    assert "ThresholdCrossed" in env.kube.reasons()
    again = asyncio.run(env.controller.record_usage(NS, "b", report(8500, key="k1")))
    assert again.duplicate and env.backend.totals[("b", START)] == Decimal("8.50")
    assert env.backend.ce_calls == 0


def test_reports_the_budget_cannot_take_are_refused_clearly(env: Env) -> None:
    env.observe()
    with pytest.raises(UnknownModel):
        asyncio.run(env.controller.record_usage(NS, "b", report(10, model="mystery")))
    with pytest.raises(BudgetNotReady, match="BudgetNotFound"):
        asyncio.run(env.controller.record_usage(NS, "nope", report(10)))
    env.connections.not_ready(NS, "conn", "Throttled", "slow down")
    with pytest.raises(BudgetNotReady, match="ConnectionNotReady"):
        asyncio.run(env.controller.record_usage(NS, "b", report(10)))


def test_a_connection_that_is_not_ready_keeps_the_last_figures_and_says_why(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.backend.totals[("b", START)] = Decimal("3")
    env.run(entry)
    env.connections.not_ready(NS, "conn", "EndpointUnreachable", "refused")
    env.run(entry)
    ready = env.condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "ConnectionNotReady"
    assert "last known: 3.00 of 10.00 USD" in ready["message"]


def test_a_cost_explorer_failure_is_reported_and_retried_sooner(env: Env) -> None:
    entry = env.observe()
    env.backend.figure = CostExplorerError("AccessDenied", "not allowed")
    due = env.run(entry)
    assert env.condition("Ready")["reason"] == "CostExplorerUnavailable"
    assert due <= 300


def test_break_glass_lifts_a_halt_until_its_time(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.backend.totals[("b", START)] = Decimal("12")
    env.run(entry)
    assert env.controller.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    until = (env.now[0] + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = env.observe(filter={"services": ["Amazon Bedrock"]}, annotations={BREAK_GLASS_ANNOTATION: until})
    due = env.run(entry)
    # Halt is lifted; the strongest crossed action below it still applies.
    assert env.controller.state(NS, "b").enforced_action == "Downgrade"  # type: ignore[union-attr]
    assert due <= 3600.01


def test_an_invalid_spec_is_a_condition(env: Env) -> None:
    entry = env.observe(limit={"amount": "not a number"})
    env.run(entry)
    assert env.condition("Ready")["reason"] == "InvalidSpec"


def test_a_deleted_budget_tells_its_users(env: Env) -> None:
    entry = env.observe()
    env.run(entry)
    env.notified.clear()
    env.controller.forget(NS, "b")
    assert env.notified == [(NS, "b")] and env.controller.state(NS, "b") is None


def test_a_restart_takes_over_the_cost_explorer_figure_from_status(env: Env) -> None:
    entry = env.observe()
    env.backend.figure = CostFigure(amount=Decimal("4"), currencies=frozenset({"USD"}), requests=1)
    env.run(entry)
    restarted = BudgetController(
        start_workers=False,
        kube=env.kube,  # type: ignore[arg-type]
        connections=env.connections,
        metrics=OperatorMetrics(),
        clock=lambda: env.now[0],
        backend=env.backend,
    )
    restarted.observe({**body(), "status": env.status()})
    writes = len(env.kube.writes)
    again = restarted.entry(NS, "b")
    assert again is not None
    asyncio.run(restarted.run_pass(again))
    assert env.backend.ce_calls == 1, "a restart does not buy another Cost Explorer request"
    assert env.kube.writes[writes:] == [], "and writes nothing when nothing changed"
    asyncio.run(restarted.close())


def test_a_standby_enforces_what_the_leaders_status_says_and_its_own_recorded_usage() -> None:
    kube, connections, backend = FakeKube(), FakeConnections(), FakeBackend()
    now = START + timedelta(days=3)
    connections.ready(NS)
    standby = BudgetController(
        kube=kube,  # type: ignore[arg-type]
        connections=connections,
        metrics=OperatorMetrics(),
        clock=lambda: now,
        backend=backend,
    )
    standby.pause()
    leader_status = {
        "observedGeneration": 1,
        "period": {"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
        "spend": {"actual": "0", "ledger": "9.00", "total": "9.00"},
        "lastCostExplorerQuery": "2026-12-03T23:00:00Z",
    }
    standby.observe({**body(filter={"services": ["Amazon Bedrock"]}), "status": leader_status})
    state = standby.state(NS, "b")
    assert state is not None and state.phase == "Critical" and state.enforced_action == "Downgrade"

    async def report_here() -> None:
        await standby.record_usage(NS, "b", report(2000, key="on-the-standby"))

    backend.totals[("b", START)] = Decimal("9.00")
    asyncio.run(report_here())
    assert standby.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    # The leader's next status still shows its older figure: the standby does not go back.
    standby.observe(
        {**body(filter={"services": ["Amazon Bedrock"]}), "status": {**leader_status, "lastEvaluated": "x"}}
    )
    assert standby.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    assert [w for w in kube.writes if "patch_status" in w] == [], "a standby writes no status"
    asyncio.run(standby.close())
