"""BudgetPolicies: one worker per budget, and the interface the HTTP API uses.

A budget's pass reads its ledger counter, queries Cost Explorer when due (budget/spend.py decides
when), evaluates the phase (budget/calc.py), writes status when it changed and tells the
IncidentPolicies that use it when the phase or action changed. It runs when the spec or the
break-glass annotation changes, when usage moves the phase, every ``ledger_refresh`` seconds (one
strongly consistent DynamoDB read, to see usage other replicas recorded), at the period's end and
when Cost Explorer is due.

Usage reports (``record_usage``) are priced and made durable in DynamoDB (budget/usage.py) before
the API answers; the budget is then re-evaluated from the counter without Cost Explorer.
Reservations (``reserve``, ``release``) are holds on the same counter, taken at routing time with
one conditional write (budget/ledger.py); the leader's ledger read releases the expired ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from opentelemetry.trace import Tracer

from incident_commander import API_GROUP
from incident_commander.aws.connection import ConnectionNotReady, ConnectionSource, ReadyConnection
from incident_commander.budget import breakdown, calc, costexplorer, ledger, pricing, spend, usage
from incident_commander.budget.model import (
    ACTION_SEVERITY,
    BudgetNotReady,
    BudgetSpec,
    BudgetState,
    IdempotencyConflict,
    InsufficientBudget,
    InvalidBudgetSpec,
    Period,
    Reservation,
    ReservationRequest,
    UnknownModel,
    UsageRecorded,
    UsageReport,
    parse_budget_spec,
)
from incident_commander.budget.spend import CostExplorerState
from incident_commander.budget.usage import LedgerReading
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition
from incident_commander.controller import Controller, Entry
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.metrics import OperatorMetrics
from incident_commander.status import Assessment
from incident_commander.telemetry.tracing import NOOP_TRACER
from incident_commander.timestamps import kubernetes_time

KIND = "BudgetPolicy"
PLURAL = "budgetpolicies"
BREAK_GLASS_ANNOTATION = f"{API_GROUP}/break-glass"
LEDGER_REFRESH = 5.0
"""Seconds between reads of the ledger counter (usage recorded by other replicas)."""
RETRY = 15.0
WARMUP_RETRY = 0.5
FIRST_PROBE_RETRY = 15.0
IDLE = 3600.0
STATUS_AFTER_USAGE = 2.0
"""Seconds between recorded usage and the status write that shows it (coalescing bursts)."""


class BudgetBackend(Protocol):
    """The budget's AWS side: the ledger and Cost Explorer (blocking calls, run in a thread).
    The seam between the controller and AWS: unit tests give the controller a fake."""

    def read_ledger(
        self, connection: ReadyConnection, *, namespace: str, budget: str, period_start: datetime
    ) -> ledger.Counter:
        """The period's counter; raises ledger.LedgerError."""
        ...

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
        """Durable before it returns; raises BudgetNotReady, IdempotencyConflict."""
        ...

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
        """One conditional write; raises ledger.NoRoom, ledger.LedgerError."""
        ...

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
        """False when the hold was already gone; raises ledger.LedgerError."""
        ...

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
        """The holds released by this call; raises ledger.LedgerError."""
        ...

    def reconcile(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        counter: ledger.Counter,
    ) -> bool:
        """Repair ``committed``; raises ledger.LedgerError."""
        ...

    def period_to_date(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        start: datetime,
        now: datetime,
    ) -> costexplorer.CostFigure:
        """Raises costexplorer.CostExplorerError."""
        ...

    def forecast_remaining(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        end: datetime,
        now: datetime,
    ) -> tuple[Decimal, str] | None: ...


class DynamoDbAndCostExplorer:
    """The real backend: the usage ledger in DynamoDB, Cost Explorer through the connection's clients."""

    def __init__(self, table: str = ledger.TABLE) -> None:
        self.table = table

    def read_ledger(
        self, connection: ReadyConnection, *, namespace: str, budget: str, period_start: datetime
    ) -> ledger.Counter:
        return ledger.read_counter(
            connection.client("dynamodb"),
            namespace=namespace,
            budget=budget,
            period_start=period_start,
            table=self.table,
        )

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
        return usage.write(
            connection.client("dynamodb"),
            namespace=namespace,
            budget=budget,
            priced=priced,
            key=key,
            table=self.table,
            reservation_id=reservation_id,
            fingerprint=fingerprint,
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
        client = connection.client("dynamodb")
        ledger.ensure_table(client, self.table)
        ledger.reserve(
            client,
            namespace=namespace,
            budget=budget,
            period_start=period_start,
            hold=hold,
            cap=cap,
            now=now,
            table=self.table,
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
        return ledger.release(
            connection.client("dynamodb"),
            namespace=namespace,
            budget=budget,
            period_start=period_start,
            reservation_id=reservation_id,
            amount=amount,
            table=self.table,
        )

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
        return ledger.expire(
            connection.client("dynamodb"),
            namespace=namespace,
            budget=budget,
            period_start=period_start,
            holds=holds,
            now=now,
            table=self.table,
        )

    def reconcile(
        self,
        connection: ReadyConnection,
        *,
        namespace: str,
        budget: str,
        period_start: datetime,
        counter: ledger.Counter,
    ) -> bool:
        return ledger.reconcile(
            connection.client("dynamodb"),
            namespace=namespace,
            budget=budget,
            period_start=period_start,
            counter=counter,
            table=self.table,
        )

    def period_to_date(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        start: datetime,
        now: datetime,
    ) -> costexplorer.CostFigure:
        return costexplorer.period_to_date(
            connection.client("ce"), query=query, period=period, start=start, now=now
        )

    def forecast_remaining(
        self,
        connection: ReadyConnection,
        *,
        query: calc.CostQuery,
        period: Period,
        end: datetime,
        now: datetime,
    ) -> tuple[Decimal, str] | None:
        return costexplorer.forecast_remaining(
            connection.clients.probe_client("ce"), query=query, period=period, end=end, now=now
        )


@dataclass(kw_only=True)
class Budget(Entry):
    spec: BudgetSpec | None = None
    spec_error: str | None = None
    cost_explorer: CostExplorerState = field(default_factory=CostExplorerState)
    ledger: LedgerReading = field(default_factory=LedgerReading)
    state: BudgetState | None = None
    notified: tuple[Any, ...] | None = None
    """(phase, active action, enforced action) the IncidentPolicies were last told about."""
    forecast: spend.Forecast | None = None
    stored: tuple[datetime, Decimal, breakdown.Breakdown] | None = None
    """(period start, reserved, breakdown) as the status shows them: a standby's view until it
    reads the counter itself."""


class BudgetController(Controller[Budget]):
    kind = KIND
    plural = PLURAL
    references = ("connectionRef",)
    condition_types = ("Ready", "BudgetExceeded")

    def __init__(
        self,
        *,
        kube: KubeApi,
        connections: ConnectionSource,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        threads: int = 32,
        table: str = ledger.TABLE,
        tracer: Tracer = NOOP_TRACER,
        ledger_refresh: float = LEDGER_REFRESH,
        backend: BudgetBackend | None = None,
        start_workers: bool = True,
    ) -> None:
        super().__init__(
            kube=kube,
            metrics=metrics,
            clock=clock,
            tracer=tracer,
            threads=threads,
            start_workers=start_workers,
        )
        self._connections = connections
        self._backend = backend or DynamoDbAndCostExplorer(table)
        self._ledger_refresh = ledger_refresh

    # -- the interface of the HTTP API -----------------------------------------------------------
    def state(self, namespace: str, name: str) -> BudgetState | None:
        budget = self.entry(namespace, name)
        return budget.state if budget else None

    async def record_usage(self, namespace: str, name: str, report: UsageReport) -> UsageRecorded:
        """Durable in DynamoDB before it returns; a repeated idempotency key (or reservation) counts
        once, and one reused for a different report raises IdempotencyConflict. A report naming a
        reservation settles it: its cost replaces the hold."""
        budget = self.entry(namespace, name)
        if budget is None:
            raise BudgetNotReady("BudgetNotFound", f"no BudgetPolicy {namespace}/{name}")
        spec = budget.spec
        if spec is None:
            raise BudgetNotReady("InvalidSpec", budget.spec_error or "spec could not be read")
        now = self.clock()
        fingerprint = report.fingerprint or usage.fingerprint(report)
        counter = budget.ledger.counter_for(calc.period_bounds(spec.period, now)[0])
        report = dataclasses.replace(
            report,
            fingerprint=fingerprint,
            task_type=usage.bounded_task_type(report.task_type, counter.by_task_type if counter else {}),
        )
        try:
            priced = usage.price(spec, report, budget=f"{namespace}/{name}", now=now)
        except UnknownModel:
            self.metrics.usage_reports.labels(outcome="rejected").inc()
            raise
        connection = self._connection(namespace, spec)
        try:
            recorded = await asyncio.get_running_loop().run_in_executor(
                self.executor,
                functools.partial(
                    self._backend.write_usage,
                    connection,
                    namespace=namespace,
                    budget=name,
                    priced=priced,
                    key=report.idempotency_key,
                    reservation_id=report.reservation_id,
                    fingerprint=fingerprint,
                ),
            )
        except IdempotencyConflict:
            self.metrics.usage_reports.labels(outcome="conflict").inc()
            raise
        self.metrics.usage_reports.labels(outcome="duplicate" if recorded.duplicate else "recorded").inc()
        if not recorded.duplicate and recorded.reservation == "settled":
            self.metrics.reservations.labels(outcome="settled").inc()
        if not recorded.duplicate:
            await self._refresh_after_usage(budget, connection, recorded.period_start)
        return UsageRecorded(
            cost=recorded.cost,
            currency=spec.currency,
            period_start=recorded.period_start,
            duplicate=recorded.duplicate,
            reservation=recorded.reservation,
            released=recorded.released,
        )

    async def reserve(self, namespace: str, name: str, request: ReservationRequest) -> Reservation | None:
        """Hold the request's estimated cost against the budget, in one conditional DynamoDB write.

        None when no such budget exists (no budget applies, as for routing). Raises
        InsufficientBudget when the hold does not fit under the cap (calc.ledger_cap), UnknownModel
        for a model without a price, BudgetNotReady when the budget or its ledger is not usable."""
        budget = self.entry(namespace, name)
        if budget is None:
            return None
        spec = budget.spec
        if spec is None:
            raise BudgetNotReady("InvalidSpec", budget.spec_error or "spec could not be read")
        state = budget.state
        if state is None:
            raise BudgetNotReady("NotEvaluated", f"BudgetPolicy {namespace}/{name} is not evaluated yet")
        now = self.clock()
        price = pricing.price_for(spec, request.model, budget=f"{namespace}/{name}")
        amount = (
            pricing.estimate(price, request.estimated_tokens)
            if request.estimated_output_tokens is None
            else pricing.converse_estimate(
                price,
                input_tokens=request.estimated_tokens,
                max_output_tokens=request.estimated_output_tokens,
            )
        )
        period = calc.period_bounds(spec.period, now)
        break_glass, _ = calc.parse_break_glass(budget.annotations.get(BREAK_GLASS_ANNOTATION), now)
        actual = budget.cost_explorer.actual if budget.cost_explorer.period == period[0] else Decimal(0)
        cap = (
            None
            if request.uncapped
            else calc.ledger_cap(spec, actual=actual, break_glass=break_glass is not None)
        )
        connection = self._connection(namespace, spec)
        counter = budget.ledger.counter_for(period[0])
        hold = ledger.Hold(
            id=ledger.new_reservation_id(period[0]),
            amount=amount,
            expires_at=math.ceil((now + spec.reservation_ttl).timestamp()),
            model=request.model,
            client=request.client or "unknown",
            task_type=usage.bounded_task_type(request.task_type, counter.by_task_type if counter else {})
            or "unspecified",
        )
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.executor,
                functools.partial(
                    self._backend.reserve,
                    connection,
                    namespace=namespace,
                    budget=name,
                    period_start=period[0],
                    hold=hold,
                    cap=cap,
                    now=now,
                ),
            )
        except ledger.NoRoom as refused:
            self.metrics.reservations.labels(outcome="refused").inc()
            seen = refused.counter
            committed = seen.committed if seen.committed is not None else seen.cost + seen.held
            raise InsufficientBudget(
                budget=name,
                remaining=max(Decimal(0), (cap or Decimal(0)) - committed),
                estimate=amount,
                currency=spec.currency,
                phase=state.phase,
            ) from None
        except ledger.LedgerError as error:
            raise BudgetNotReady("LedgerUnavailable", f"{error.reason}: {error.message}") from None
        self.metrics.reservations.labels(outcome="reserved").inc()
        return Reservation(
            id=hold.id,
            amount=amount,
            currency=spec.currency,
            period_start=period[0],
            expires_at=datetime.fromtimestamp(hold.expires_at, UTC),
            capped=cap is not None,
        )

    async def release(self, namespace: str, name: str, reservation: Reservation) -> bool:
        """Give a hold back without cost (the call it was for failed); False when it was gone."""
        budget = self.entry(namespace, name)
        if budget is None or budget.spec is None:
            return False
        connection = self._connection(namespace, budget.spec)
        try:
            released = await asyncio.get_running_loop().run_in_executor(
                self.executor,
                functools.partial(
                    self._backend.release,
                    connection,
                    namespace=namespace,
                    budget=name,
                    period_start=reservation.period_start,
                    reservation_id=reservation.id,
                    amount=reservation.amount,
                ),
            )
        except ledger.LedgerError as error:
            raise BudgetNotReady("LedgerUnavailable", f"{error.reason}: {error.message}") from None
        if released:
            self.metrics.reservations.labels(outcome="released").inc()
        return released

    def _connection(self, namespace: str, spec: BudgetSpec) -> ReadyConnection:
        try:
            return self._connections.get(namespace, spec.connection)
        except ConnectionNotReady as not_ready:
            raise BudgetNotReady(
                "ConnectionNotReady", f"AwsConnection {spec.connection}: {not_ready.reason}"
            ) from None

    def connection_changed(self, namespace: str, connection: str) -> None:
        """An AwsConnection became Ready or stopped being Ready: evaluate its budgets now."""
        self.wake_referencing("connectionRef", namespace, connection)

    # -- the controller's hooks --------------------------------------------------------------------
    def trigger(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        meta = body["metadata"]
        return (meta.get("generation"), (meta.get("annotations") or {}).get(BREAK_GLASS_ANNOTATION))

    def new_entry(self, ref: ObjectRef, body: Mapping[str, Any], status: dict[str, Any]) -> Budget:
        budget = Budget(ref=ref, body=body, status=status)
        self._set_spec(budget)
        self.status_observed(budget)
        if budget.state is not None:
            budget.notified = _published(budget.state)  # nothing changed for the policies yet
        return budget

    def triggered(self, entry: Budget) -> None:
        self._set_spec(entry)
        if not self.active:
            self.status_observed(entry)

    def status_observed(self, entry: Budget) -> None:
        """The budget's state from its status, so a restarted or standby replica enforces from
        the first request what the leader last evaluated (docs/ha.md): the Cost Explorer figure
        as stored, the ledger total never below what this replica itself has seen, and the
        current spec's thresholds, enforcement mode and break-glass."""
        spec = entry.spec
        if spec is None:
            return
        now = self.clock()
        period = calc.period_bounds(spec.period, now)
        entry.cost_explorer = spend.restore(entry.status, spec, generation=entry.generation, now=now)
        entry.forecast = spend.stored_forecast(entry.status, now) or entry.forecast
        stored = spend.stored_ledger(entry.status, period[0])
        figures = entry.status.get("spend") or {}
        if stored is not None:
            entry.ledger = usage.merged(entry.ledger, period[0], stored)
            entry.stored = (period[0], _decimal(figures.get("reserved")), breakdown.from_status(figures))
        elif entry.ledger.period != period[0]:
            return  # nothing evaluated for this period yet: no state rather than a guessed one
        previous = _published(entry.state)
        break_glass, _ = calc.parse_break_glass(entry.annotations.get(BREAK_GLASS_ANNOTATION), now)
        entry.cost_explorer = spend.rolled_over(entry.cost_explorer, period[0])
        self._evaluate(entry, spec, period, now, break_glass)
        if not self.active and _published(entry.state) != previous:
            self.notify(entry.ref.namespace, entry.ref.name)

    def forgotten(self, entry: Budget) -> None:
        self.metrics.forget_budget(entry.ref.namespace, entry.ref.name)
        if entry.state is not None:
            entry.state = None
            self.notify(entry.ref.namespace, entry.ref.name)

    async def run_pass(self, entry: Budget) -> float:
        budget, now, spec = entry, self.clock(), entry.spec
        if spec is None:
            condition = Condition(
                type="Ready", status="False", reason="InvalidSpec", message=budget.spec_error or ""
            )
            await self._write(budget, [condition], {})
            return IDLE
        if self._connections.warming_up(budget.ref.namespace, spec.connection):
            # keep the stored status until this process knows the connection
            return self.defer(budget, WARMUP_RETRY)
        if self._connections.first_probe_pending(budget.ref.namespace, spec.connection):
            return self.defer(budget, FIRST_PROBE_RETRY)  # its first Ready wakes this budget sooner
        period = calc.period_bounds(spec.period, now)
        break_glass, break_glass_problem = calc.parse_break_glass(
            budget.annotations.get(BREAK_GLASS_ANNOTATION), now
        )
        connection_problem = None
        try:
            connection: ReadyConnection | None = self._connections.get(budget.ref.namespace, spec.connection)
        except ConnectionNotReady as not_ready:
            connection, connection_problem = None, not_ready.describe()
        queried = False
        if connection is not None:
            await self._read_ledger(budget, connection, period[0], sweep=True)
            queried = await self._cost_explorer(budget, spec, connection, period, now)
        budget.cost_explorer = spend.rolled_over(budget.cost_explorer, period[0])
        state = self._evaluate(budget, spec, period, now, break_glass)

        problems: list[tuple[str, str]] = []
        if connection_problem is not None:
            problems.append(("ConnectionNotReady", connection_problem))
        if budget.ledger.error:
            problems.append(("LedgerUnavailable", ": ".join(budget.ledger.error)))
        if budget.cost_explorer.currency_problem:
            problems.append(("CurrencyMismatch", budget.cost_explorer.currency_problem))
        summary = (
            f"{calc.display(state.total)} of {spec.limit} {spec.currency} "
            f"({calc.display(state.utilization)}%), phase {state.phase}"
        )
        if break_glass is not None:
            summary += f"; break-glass until {kubernetes_time(break_glass)}"
        if break_glass_problem:
            summary += f"; {break_glass_problem}"
        cost_explorer = _cost_explorer_condition(budget.cost_explorer, spec)
        if cost_explorer.status == "False":
            summary += "; Cost Explorer unavailable, its last figure kept (see CostExplorerAvailable)"
        ready = (
            Condition(type="Ready", status="True", reason="Evaluated", message=summary)
            if not problems
            else Condition(
                type="Ready",
                status="False",
                reason=problems[0][0],
                message=("; ".join(m for _, m in problems) + f" (last known: {summary})")[:2000],
            )
        )
        exceeded = (
            Condition(type="BudgetExceeded", status="True", reason="LimitExceeded", message=summary)
            if state.phase == "Exceeded"
            else Condition(type="BudgetExceeded", status="False", reason="WithinLimit", message=summary)
        )
        fields = self._fields(budget, spec, state, now)
        await self._write(budget, [ready, exceeded, cost_explorer], fields, evaluated=queried, now=now)
        await self._publish(budget, state)

        delays = [self._ledger_refresh, (period[1] - now).total_seconds() + 0.01]
        if connection is None:
            delays.append(RETRY)
        due = spend.due(budget.cost_explorer, spec, period[0])
        if due is not None:
            delays.append((due - now).total_seconds())
        if break_glass is not None:
            delays.append((break_glass - now).total_seconds() + 0.01)
        counter = budget.ledger.counter_for(period[0])
        if counter is not None and counter.holds:  # sorted by expiry: release the first one on time
            delays.append(counter.holds[0].expires_at - now.timestamp() + 0.5)
        return max(0.05, min(delays))

    # -- internals ---------------------------------------------------------------------------------
    def _set_spec(self, budget: Budget) -> None:
        try:
            budget.spec, budget.spec_error = parse_budget_spec(budget.body.get("spec") or {}), None
        except InvalidBudgetSpec as exc:
            budget.spec, budget.spec_error = None, str(exc)

    async def _read_ledger(
        self, budget: Budget, connection: ReadyConnection, period_start: datetime, *, sweep: bool = False
    ) -> None:
        """A strongly consistent read of the counter. With ``sweep`` (the leader's pass) it also
        releases expired holds and repairs ``committed`` (ledger.reconcile), then reads again."""
        loop = asyncio.get_running_loop()
        where: dict[str, Any] = {
            "namespace": budget.ref.namespace,
            "budget": budget.ref.name,
            "period_start": period_start,
        }
        try:
            counter = await loop.run_in_executor(
                self.executor, functools.partial(self._backend.read_ledger, connection, **where)
            )
            if sweep:
                now = self.clock()
                expired = counter.expired(now)
                if expired:
                    released = await loop.run_in_executor(
                        self.executor,
                        functools.partial(self._backend.expire, connection, holds=expired, now=now, **where),
                    )
                    self.metrics.reservations.labels(outcome="expired").inc(len(released))
                if counter.drifted:
                    await loop.run_in_executor(
                        self.executor,
                        functools.partial(self._backend.reconcile, connection, counter=counter, **where),
                    )
                if expired or counter.drifted:
                    counter = await loop.run_in_executor(
                        self.executor, functools.partial(self._backend.read_ledger, connection, **where)
                    )
        except ledger.LedgerError as error:
            budget.ledger = dataclasses.replace(budget.ledger, error=(error.reason, error.message))
            return
        budget.ledger = usage.merged(budget.ledger, period_start, counter.cost, counter)

    async def _cost_explorer(
        self,
        budget: Budget,
        spec: BudgetSpec,
        connection: ReadyConnection,
        period: tuple[datetime, datetime],
        now: datetime,
    ) -> bool:
        """Query Cost Explorer when due; True when a query went out (status then records its time)."""
        query = calc.cost_query(spec.filter)
        if query.skip:
            budget.cost_explorer = spend.skipped(spec, period[0])
            return False
        due = spend.due(budget.cost_explorer, spec, period[0])
        if due is None or now < due:
            return False
        loop = asyncio.get_running_loop()
        budget.cost_explorer = spend.started(budget.cost_explorer, now)
        requests = self.metrics.cost_explorer_requests
        try:
            figure = await loop.run_in_executor(
                self.executor,
                functools.partial(
                    self._backend.period_to_date,
                    connection,
                    query=query,
                    period=spec.period,
                    start=period[0],
                    now=now,
                ),
            )
        except costexplorer.CostExplorerError as error:
            requests.labels(operation="GetCostAndUsage").inc()
            budget.cost_explorer = spend.failed(
                budget.cost_explorer, spec, now=now, reason=error.reason, message=error.message
            )
            return True
        requests.labels(operation="GetCostAndUsage").inc(figure.requests)
        budget.cost_explorer = spend.succeeded(
            budget.cost_explorer, spec, period_start=period[0], figure=figure
        )
        today = now.date()
        if spend.forecast_due(budget.cost_explorer, spec, today):
            requests.labels(operation="GetCostForecast").inc()
            forecast = await loop.run_in_executor(
                self.executor,
                functools.partial(
                    self._backend.forecast_remaining,
                    connection,
                    query=query,
                    period=spec.period,
                    end=period[1],
                    now=now,
                ),
            )
            budget.cost_explorer = spend.with_forecast(
                budget.cost_explorer, spec, today=today, forecast=forecast
            )
        return True

    def _evaluate(
        self,
        budget: Budget,
        spec: BudgetSpec,
        period: tuple[datetime, datetime],
        now: datetime,
        break_glass: datetime | None,
    ) -> BudgetState:
        budget.state = calc.evaluate(
            namespace=budget.ref.namespace,
            name=budget.ref.name,
            spec=spec,
            actual=budget.cost_explorer.actual,
            ledger=budget.ledger.for_period(period[0]),
            period=period,
            now=now,
            break_glass_until=break_glass,
        )
        counter = budget.ledger.counter_for(period[0])
        if counter is not None:
            budget.state = dataclasses.replace(
                budget.state, reserved=counter.held, breakdown=breakdown.of_counter(counter)
            )
        elif budget.stored is not None and budget.stored[0] == period[0]:
            budget.state = dataclasses.replace(
                budget.state, reserved=budget.stored[1], breakdown=budget.stored[2]
            )
        return budget.state

    def _fields(self, budget: Budget, spec: BudgetSpec, state: BudgetState, now: datetime) -> dict[str, Any]:
        actual = budget.cost_explorer.actual
        budget.forecast = spend.kept_forecast(budget.forecast, total=state.total, now=now) or spend.Forecast(
            value=spend.projected_total(budget.cost_explorer, state, now), total=state.total, at=now
        )
        forecast = budget.forecast.value
        self.metrics.set_budget(
            budget.ref.namespace,
            budget.ref.name,
            limit=float(spec.limit),
            forecast=float(forecast),
            phase=state.phase,
            utilization=float(state.utilization),
            spend={"cost_explorer": float(actual), "ledger": float(state.total - actual)},
            active_action=state.active_action,
        )
        self.metrics.set_budget_breakdown(
            budget.ref.namespace,
            budget.ref.name,
            reserved=float(state.reserved),
            breakdown=breakdown.as_floats(state.breakdown),
        )
        last_query = budget.cost_explorer.last_query
        return {
            "period": {
                "start": kubernetes_time(state.period_start),
                "end": kubernetes_time(state.period_end),
            },
            "spend": {
                "actual": calc.money(actual),
                "ledger": calc.money(state.total - actual),
                "total": calc.money(state.total),
                "forecast": calc.display(forecast),
                "currency": spec.currency,
                "reserved": calc.money(state.reserved),
                **breakdown.status_fields(state.breakdown),
            },
            "utilization": calc.display(state.utilization),
            "phase": state.phase,
            "activeAction": state.active_action or "None",
            "lastCostExplorerQuery": kubernetes_time(last_query) if last_query else None,
        }

    async def _refresh_after_usage(
        self, budget: Budget, connection: ReadyConnection, period_start: datetime
    ) -> None:
        """After a write: a consistent read of the counter, then the phase, without Cost Explorer."""
        spec = budget.spec
        if spec is None:
            return
        now = self.clock()
        period = calc.period_bounds(spec.period, now)
        if period_start != period[0]:
            return
        await self._read_ledger(budget, connection, period_start)
        previous = budget.state
        break_glass = previous.break_glass_until if previous else None
        if break_glass is not None and break_glass <= now:
            break_glass = None
        if budget.cost_explorer.period != period[0]:
            return  # the worker has not taken in the new period yet; it will
        state = self._evaluate(budget, spec, period, now, break_glass)
        if _published(state) != budget.notified:
            await self._publish(budget, state)
            self.wake(budget)  # status and Events follow within the pass
        else:
            # The spend moved but not the phase: status follows soon, one write for a burst of reports.
            self.wake(budget, within=STATUS_AFTER_USAGE)

    async def _publish(self, budget: Budget, state: BudgetState) -> None:
        key = _published(state)
        if key == budget.notified:
            return
        previous, budget.notified = budget.notified, key
        if previous is not None and previous[1] != state.active_action:
            before = ACTION_SEVERITY.get(str(previous[1]), 0)
            after = ACTION_SEVERITY.get(str(state.active_action), 0)
            enforced = state.enforced_action or "nothing"
            await self.post_event(
                budget,
                "Warning" if after > before else "Normal",
                "ThresholdCrossed" if after > before else "ThresholdCleared",
                f"utilization {calc.display(state.utilization)}%: active action "
                f"{state.active_action or 'None'} (was {previous[1] or 'None'}); enforcing {enforced}",
            )
        self.notify(budget.ref.namespace, budget.ref.name)

    async def _write(
        self,
        budget: Budget,
        conditions: list[Condition],
        fields: dict[str, Any],
        *,
        evaluated: bool = False,
        now: datetime | None = None,
    ) -> None:
        now = now or self.clock()
        await self.write_status(
            budget,
            Assessment(conditions=conditions, fields=fields),
            now=now,
            # lastEvaluated only rides along with a change or a Cost Explorer round, never alone.
            extra={"lastEvaluated": kubernetes_time(now)} if fields else None,
            force=evaluated,
        )


def _cost_explorer_condition(state: CostExplorerState, spec: BudgetSpec) -> Condition:
    """A warning, not a failure: without Cost Explorer the ledger still counts and enforces (its last
    figure stays in force), so Ready stays True (docs/budgetpolicy.md)."""
    if calc.cost_query(spec.filter).skip:
        return Condition(
            type="CostExplorerAvailable",
            status="True",
            reason="NotNeeded",
            message="the filter selects LLM spend only: the ledger alone counts",
        )
    if state.error:
        return Condition(
            type="CostExplorerAvailable",
            status="False",
            reason="CostExplorerUnavailable",
            message=(
                f"{': '.join(state.error)}; the last figure ({calc.money(state.actual)} {spec.currency}) "
                "stays in force and the ledger keeps enforcing"
            )[:2000],
        )
    return Condition(
        type="CostExplorerAvailable", status="True", reason="Available", message="Cost Explorer answered"
    )


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except ArithmeticError:
        return Decimal(0)


def _published(state: BudgetState | None) -> tuple[Any, ...] | None:
    return (state.phase, state.active_action, state.enforced_action) if state else None
