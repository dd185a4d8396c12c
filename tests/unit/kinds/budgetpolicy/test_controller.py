"""The BudgetPolicy controller's decisions, with a fake Kubernetes and a fake ledger and Cost Explorer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from incident_commander.aws.connection import ReadyConnection
from incident_commander.budget import calc, ledger, usage
from incident_commander.budget.costexplorer import CostExplorerError, CostFigure
from incident_commander.budget.model import (
    BudgetNotReady,
    IdempotencyConflict,
    InsufficientBudget,
    Period,
    ReservationRequest,
    UnknownModel,
    UsageReport,
)
from incident_commander.conditions import find_condition
from incident_commander.kinds.budgetpolicy.controller import BREAK_GLASS_ANNOTATION, Budget, BudgetController
from incident_commander.metrics import OperatorMetrics
from tests.support.fake_aws import FakeConnections
from tests.support.fake_kube import FakeKube

NS = "team"
START = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class FakeBackend:
    """The ledger as counters in a dict (same rules as budget/ledger.py: a hold fits while
    committed + amount <= cap; settling replaces it; expiry needs its time to have passed), Cost
    Explorer as a figure (or an error), with call counts."""

    counters: dict[tuple[str, datetime], ledger.Counter] = field(default_factory=dict)
    figure: CostFigure | CostExplorerError = field(
        default_factory=lambda: CostFigure(amount=Decimal(0), currencies=frozenset({"USD"}), requests=1)
    )
    ce_calls: int = 0
    keys: dict[str, str | None] = field(default_factory=dict)
    """Idempotency key -> the fingerprint it was recorded with."""
    caps: list[Decimal | None] = field(default_factory=list)
    """The cap of every reservation asked for."""

    def total(self, budget: str, period_start: datetime) -> Decimal:
        return self.counters.get((budget, period_start), ledger.Counter()).cost

    def set_total(self, budget: str, period_start: datetime, total: Decimal) -> None:
        counter = self.counters.get((budget, period_start), ledger.Counter(exists=True))
        self.counters[(budget, period_start)] = replace(
            counter, exists=True, cost=total, committed=total + counter.held
        )

    def read_ledger(
        self, connection: ReadyConnection, *, namespace: str, budget: str, period_start: datetime
    ) -> ledger.Counter:
        return self.counters.get((budget, period_start), ledger.Counter())

    def write_usage(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        priced: usage.PricedReport,
        key: str | None,
        reservation_id: str | None = None,
        fingerprint: str | None = None,
    ) -> ledger.Recorded:
        for name in (key, f"reservation:{reservation_id}" if reservation_id else None):
            if name is not None and name in self.keys:
                if self.keys[name] != fingerprint:
                    raise IdempotencyConflict(name)
                return ledger.Recorded(cost=priced.cost, period_start=priced.period_start, duplicate=True)
        for name in (key, f"reservation:{reservation_id}" if reservation_id else None):
            if name is not None:
                self.keys[name] = fingerprint
        period = priced.hold_period if reservation_id and priced.hold_period else priced.period_start
        slot = (budget, period)
        counter = self.counters.get(slot, ledger.Counter(exists=True, committed=Decimal(0)))
        hold = next((h for h in counter.holds if h.id == reservation_id), None)
        if hold is None:
            slot = (budget, priced.period_start)
            counter = self.counters.get(slot, ledger.Counter(exists=True, committed=Decimal(0)))
        attribution = priced.attribution or ledger.Attribution(model="unknown")
        if hold is not None:
            attribution = ledger.attributed(attribution, hold)
        self.counters[slot] = replace(
            counter,
            exists=True,
            cost=counter.cost + priced.cost,
            committed=(counter.committed or Decimal(0)) + priced.cost - (hold.amount if hold else 0),
            holds=tuple(h for h in counter.holds if h is not hold),
            by_model=_added(counter.by_model, attribution.model, priced.cost),
            by_client=_added(counter.by_client, attribution.client, priced.cost),
            by_task_type=_added(counter.by_task_type, attribution.task_type, priced.cost),
        )
        return ledger.Recorded(
            cost=priced.cost,
            period_start=slot[1],
            duplicate=False,
            reservation=("settled" if hold else "expired") if reservation_id else None,
            released=hold.amount - priced.cost if hold else None,
        )

    def reserve(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        hold: ledger.Hold,
        cap: Decimal | None,
        now: datetime,
    ) -> None:
        self.caps.append(cap)
        slot = (budget, period_start)
        counter = self.counters.get(slot, ledger.Counter(exists=True, committed=Decimal(0)))
        committed = counter.committed or Decimal(0)
        if cap is not None and committed + hold.amount > cap:
            expired = counter.expired(now)
            if expired:
                self.expire(
                    connection,
                    namespace=namespace,
                    budget=budget,
                    period_start=period_start,
                    holds=expired,
                    now=now,
                )
                return self.reserve(
                    connection,
                    namespace=namespace,
                    budget=budget,
                    period_start=period_start,
                    hold=hold,
                    cap=cap,
                    now=now,
                )
            raise ledger.NoRoom(counter)
        self.counters[slot] = replace(
            counter, exists=True, committed=committed + hold.amount, holds=(*counter.holds, hold)
        )

    def release(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        reservation_id: str,
        amount: Decimal,
    ) -> bool:
        slot = (budget, period_start)
        counter = self.counters.get(slot, ledger.Counter())
        hold = next((h for h in counter.holds if h.id == reservation_id and h.amount == amount), None)
        if hold is None:
            return False
        self.counters[slot] = replace(
            counter,
            committed=(counter.committed or Decimal(0)) - amount,
            holds=tuple(h for h in counter.holds if h is not hold),
        )
        return True

    def expire(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        holds: Sequence[ledger.Hold],
        now: datetime,
    ) -> list[ledger.Hold]:
        return [
            h
            for h in holds
            if h.expires_at <= now.timestamp()
            and self.release(
                connection,
                namespace=namespace,
                budget=budget,
                period_start=period_start,
                reservation_id=h.id,
                amount=h.amount,
            )
        ]

    def reconcile(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        counter: ledger.Counter,
    ) -> bool:
        return False

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


def _added(values: Mapping[str, Decimal], key: str, amount: Decimal) -> dict[str, Decimal]:
    return {**values, key: values.get(key, Decimal(0)) + amount}


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
    assert again.duplicate and env.backend.total("b", START) == Decimal("8.50")
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
    env.backend.set_total("b", START, Decimal("3"))
    env.run(entry)
    env.connections.not_ready(NS, "conn", "EndpointUnreachable", "refused")
    env.run(entry)
    ready = env.condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "ConnectionNotReady"
    assert "last known: 3.00 of 10.00 USD" in ready["message"]


def test_a_cost_explorer_failure_is_a_warning_and_the_ledger_keeps_enforcing(env: Env) -> None:
    entry = env.observe()
    env.backend.set_total("b", START, Decimal("12"))
    env.backend.figure = CostExplorerError("AccessDenied", "not allowed")
    due = env.run(entry)
    ready, cost_explorer = env.condition("Ready"), env.condition("CostExplorerAvailable")
    assert (ready["status"], ready["reason"]) == ("True", "Evaluated")
    assert "Cost Explorer unavailable" in ready["message"]
    assert (cost_explorer["status"], cost_explorer["reason"]) == ("False", "CostExplorerUnavailable")
    assert "AccessDenied" in cost_explorer["message"] and "ledger keeps enforcing" in cost_explorer["message"]
    assert env.controller.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    assert "CostExplorerUnavailable" in env.kube.reasons(), "a Warning Event when it flips"
    assert due <= 300
    env.backend.figure = CostFigure(amount=Decimal(0), currencies=frozenset({"USD"}), requests=1)
    env.now[0] += timedelta(minutes=6)
    env.run(entry)
    assert env.condition("CostExplorerAvailable")["status"] == "True"


def test_break_glass_lifts_a_halt_until_its_time(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.backend.set_total("b", START, Decimal("12"))
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

    backend.set_total("b", START, Decimal("9.00"))
    asyncio.run(report_here())
    assert standby.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    # The leader's next status still shows its older figure: the standby does not go back.
    standby.observe(
        {**body(filter={"services": ["Amazon Bedrock"]}), "status": {**leader_status, "lastEvaluated": "x"}}
    )
    assert standby.state(NS, "b").enforced_action == "Halt"  # type: ignore[union-attr]
    assert [w for w in kube.writes if "patch_status" in w] == [], "a standby writes no status"
    asyncio.run(standby.close())


# -- reservations ----------------------------------------------------------------------------------


def reserve(env: Env, tokens: int, **request: Any) -> Any:
    return asyncio.run(
        env.controller.reserve(NS, "b", ReservationRequest(model="haiku", estimated_tokens=tokens, **request))
    )


def test_a_reservation_holds_the_estimate_until_it_is_settled(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.run(entry)
    first = reserve(env, 4000, client="p/agent", task_type="triage")  # $4.00 of the $10.00 cap
    second = reserve(env, 4000)
    assert first.amount == Decimal("4.00") and first.capped and first.currency == "USD"
    assert first.expires_at == env.now[0] + timedelta(minutes=10)  # the default reservationTTL
    with pytest.raises(InsufficientBudget) as refused:
        reserve(env, 4000)
    assert (refused.value.remaining, refused.value.estimate, refused.value.phase) == (
        Decimal("2.00"),
        Decimal("4.00"),
        "Ok",
    )
    assert env.backend.caps == [Decimal("10.00")] * 3, "the cap is the Halt threshold's share of the limit"
    settled = asyncio.run(
        env.controller.record_usage(NS, "b", replace(report(1000, key="k"), reservation_id=first.id))
    )
    assert (settled.cost, settled.reservation, settled.released) == (
        Decimal("1.00"),
        "settled",
        Decimal("3.00"),
    )
    assert reserve(env, 4000).amount == Decimal("4.00"), "what the settlement released fits again"
    counter = env.backend.counters[("b", START)]
    assert (counter.cost, counter.committed, counter.held) == (
        Decimal("1.00"),
        Decimal("9.00"),
        Decimal("8.00"),
    )
    assert counter.by_task_type == {"triage": Decimal("1.00")}, "the route's task type, from the hold"
    assert second is not None


def test_unsettled_holds_expire_after_their_ttl_on_a_controlled_clock(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]}, reservationTTL="1m")
    env.run(entry)
    held = reserve(env, 8000)
    assert held.expires_at == env.now[0] + timedelta(minutes=1)
    with pytest.raises(InsufficientBudget):
        reserve(env, 4000)
    delay = env.run(entry)
    assert delay <= 60.5, "the worker wakes when the first hold expires"
    assert env.status()["spend"]["reserved"] == "8.00"
    env.now[0] += timedelta(seconds=59)
    env.run(entry)
    assert env.backend.counters[("b", START)].held == Decimal("8.00"), "not before its time"
    env.now[0] += timedelta(seconds=2)
    env.run(entry)  # the leader's pass releases it
    counter = env.backend.counters[("b", START)]
    assert (counter.held, counter.committed, counter.cost) == (Decimal(0), Decimal(0), Decimal(0))
    assert env.status()["spend"]["reserved"] == "0.00"
    expired = env.controller.metrics.registry.get_sample_value(
        "incident_commander_budget_reservations_total", {"outcome": "expired"}
    )
    assert expired == 1
    assert reserve(env, 4000).amount == Decimal("4.00")
    late = asyncio.run(env.controller.record_usage(NS, "b", replace(report(500), reservation_id=held.id)))
    assert (late.reservation, late.cost) == ("expired", Decimal("0.50")), "a late report still counts, once"
    assert env.backend.counters[("b", START)].cost == Decimal("0.50")


def test_holds_are_only_tracked_when_nothing_would_halt(env: Env) -> None:
    def caps_for(**spec: Any) -> Decimal | None:
        entry = env.observe(filter={"services": ["Amazon Bedrock"]}, **spec)
        env.run(entry)
        env.backend.caps.clear()
        held = reserve(env, 50_000)  # far beyond the limit
        assert held is not None and held.amount == Decimal("50")
        return env.backend.caps[0]

    assert caps_for(enforcement="Monitor") is None
    assert caps_for(thresholds=[{"percent": 80, "action": "Downgrade"}]) is None
    until = (env.now[0] + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = env.observe(filter={"services": ["Amazon Bedrock"]}, annotations={BREAK_GLASS_ANNOTATION: until})
    env.run(entry)
    env.backend.caps.clear()
    reserve(env, 50_000)
    assert env.backend.caps == [None], "break-glass lifts Halt, so nothing refuses"
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.run(entry)
    env.backend.caps.clear()
    assert reserve(env, 50_000, uncapped=True).capped is False, "the most severe severity is never refused"
    with pytest.raises(InsufficientBudget):
        reserve(env, 50_000)


def test_the_cap_leaves_room_for_cost_explorer_spend_and_uses_the_halt_threshold(env: Env) -> None:
    entry = env.observe(thresholds=[{"percent": 50, "action": "Notify"}, {"percent": 120, "action": "Halt"}])
    env.backend.figure = CostFigure(amount=Decimal("3"), currencies=frozenset({"USD"}), requests=1)
    env.run(entry)
    reserve(env, 1)
    assert env.backend.caps == [Decimal("9.00")], "120 % of 10.00, minus 3.00 from Cost Explorer"


def test_reservations_the_budget_cannot_take_are_refused_clearly(env: Env) -> None:
    assert asyncio.run(env.controller.reserve(NS, "absent", ReservationRequest(model="haiku"))) is None
    entry = env.observe(filter={"services": ["Amazon Bedrock"]}, defaultPricing=False)
    with pytest.raises(BudgetNotReady, match="NotEvaluated"):
        reserve(env, 10)
    env.run(entry)
    with pytest.raises(UnknownModel, match="no price"):
        asyncio.run(env.controller.reserve(NS, "b", ReservationRequest(model="mystery", estimated_tokens=10)))
    with pytest.raises(UnknownModel):
        (
            asyncio.run(
                env.controller.reserve(
                    NS,
                    "b",
                    ReservationRequest(model="anthropic.claude-haiku-4-5-20251001-v1:0", estimated_tokens=10),
                )
            ),
            "defaults are off",
        )
    env.connections.not_ready(NS, "conn", "Throttled", "slow down")
    with pytest.raises(BudgetNotReady, match="ConnectionNotReady"):
        reserve(env, 10)


def test_default_prices_cover_current_bedrock_models(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]}, limit={"amount": "1000.00"})
    env.run(entry)
    listed = asyncio.run(
        env.controller.reserve(
            NS, "b", ReservationRequest(model="global.anthropic.claude-sonnet-5-5", estimated_tokens=1000)
        )
    )
    regional = asyncio.run(
        env.controller.reserve(
            NS, "b", ReservationRequest(model="us.anthropic.claude-sonnet-5-5", estimated_tokens=1000)
        )
    )
    assert listed is not None and listed.amount == Decimal("0.01"), "1,000 tokens at $10 per million output"
    assert regional is not None and regional.amount == Decimal("0.011"), "geographic endpoints cost 10 % more"


def test_an_idempotency_key_reused_for_another_report_is_a_conflict(env: Env) -> None:
    entry = env.observe(filter={"services": ["Amazon Bedrock"]})
    env.run(entry)
    asyncio.run(env.controller.record_usage(NS, "b", report(1000, key="same")))
    again = asyncio.run(env.controller.record_usage(NS, "b", report(1000, key="same")))
    assert again.duplicate
    with pytest.raises(IdempotencyConflict, match="already used for a different report"):
        asyncio.run(env.controller.record_usage(NS, "b", report(7000, key="same")))
    with pytest.raises(IdempotencyConflict):
        asyncio.run(
            env.controller.record_usage(
                NS, "b", report(1000, key="same", model="global.anthropic.claude-haiku-4-5-20251001-v1:0")
            )
        )
    assert env.backend.total("b", START) == Decimal("1.00")


def test_status_shows_holds_and_the_spend_breakdown_as_fixed_point_strings(env: Env) -> None:
    entry = env.observe(
        filter={"services": ["Amazon Bedrock"]},
        pricing=[
            {"model": "haiku", "inputPer1kTokens": "1.00", "outputPer1kTokens": "1.00"},
            {"model": "sonnet", "inputPer1kTokens": "3.00", "outputPer1kTokens": "15.00"},
        ],
    )
    env.run(entry)
    assert env.status()["utilization"] == "0.00" and env.status()["spend"]["ledger"] == "0.00"
    reserve(env, 500)
    for tokens, model, client, task in ((1000, "haiku", "p/a", "triage"), (100, "sonnet", "p/b", "diagnose")):
        usage_report = replace(report(tokens, model=model), client=client, task_type=task)
        asyncio.run(env.controller.record_usage(NS, "b", usage_report))
    for index in range(25):  # more task types than the breakdown keeps
        usage_report = replace(report(1), task_type=f"kind-{index:02d}")
        asyncio.run(env.controller.record_usage(NS, "b", usage_report))
    env.run(entry)
    figures = env.status()["spend"]
    assert figures["reserved"] == "0.50"
    assert figures["ledger"] == "1.325" and figures["total"] == "1.325"
    assert figures["byModel"] == {"haiku": "1.025", "sonnet": "0.30"}
    assert figures["byClient"] == {"p/a": "1.00", "p/b": "0.30", "unknown": "0.025"}
    by_task = figures["byTaskType"]
    assert len(by_task) == 11 and by_task["triage"] == "1.00" and by_task["diagnose"] == "0.30"
    # kept: triage, diagnose, kind-00..07; other: kind-08..17 (in the ledger) + kind-18..24 (never kept)
    assert Decimal(by_task["other"]) == Decimal("0.017"), "the top 10 and the rest as other"
    counter = env.backend.counters[("b", START)]
    assert len(counter.by_task_type) == 21, "20 task types kept per period, then other"
    state = env.controller.state(NS, "b")
    assert state is not None and state.reserved == Decimal("0.50")
    gauge = env.controller.metrics.registry.get_sample_value(
        "incident_commander_budget_ledger_spend_by_model", {"namespace": NS, "budget": "b", "model": "sonnet"}
    )
    assert gauge == pytest.approx(0.3)
