"""The registry of BudgetPolicies: one worker per budget, and the interface the HTTP API uses.

A budget's worker runs a pass when its spec or break-glass annotation changes, when usage moves
its phase, every ``ledger_refresh`` seconds (one strongly consistent DynamoDB read, to see usage
other replicas recorded: short with several replicas, long when this process records it all), at
the period's end, and when Cost Explorer is due. Cost Explorer is queried only when
``lastCostExplorerQuery + evaluationInterval`` has passed (that time survives restarts in status),
or at once when the inputs of the figure (connection, period, filter) changed. Status is written
only when it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from opentelemetry.trace import Tracer
from prometheus_client import Counter, Gauge

from incident_commander import API_GROUP
from incident_commander.budget import calc, costexplorer, ledger
from incident_commander.budget.model import (
    ACTION_SEVERITY,
    BudgetNotReady,
    BudgetSpec,
    BudgetState,
    InvalidBudgetSpec,
    UnknownModel,
    UsageRecorded,
    UsageReport,
    parse_budget_spec,
)
from incident_commander.clock import Clock, system_clock
from incident_commander.conditions import Condition, utc_timestamp
from incident_commander.connections import ConnectionNotReady, ReadyConnection
from incident_commander.kept_objects import kept_body
from incident_commander.kinds.reconciliation import Assessment, apply_status
from incident_commander.kube_api import KubeApi, ObjectRef
from incident_commander.metrics import PREFIX, OperatorMetrics
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.telemetry.tracing import NOOP_TRACER
from incident_commander.workers import Dependents, ObjectWorker, wake_referencing

logger = logging.getLogger(__name__)

KIND = "BudgetPolicy"
PLURAL = "budgetpolicies"
BREAK_GLASS_ANNOTATION = f"{API_GROUP}/break-glass"
LEDGER_REFRESH = 5.0
"""Seconds between reads of the ledger counter (usage recorded by other replicas)."""
RETRY = 15.0
WARMUP_RETRY = 0.5
FIRST_PROBE_RETRY = 15.0
PASS_CONCURRENCY = 8
"""Budgets evaluated at once; as for IncidentPolicies (policies.PASS_CONCURRENCY)."""
STATUS_AFTER_USAGE = 2.0
"""Seconds between recorded usage and the status write that shows it (coalescing bursts)."""
CE_RETRY_MAX = timedelta(minutes=5)
FUTURE_SKEW = timedelta(minutes=5)


class ConnectionSource(Protocol):
    def get(self, namespace: str, name: str) -> ReadyConnection: ...

    def warming_up(self, namespace: str, name: str) -> bool: ...
    def first_probe_pending(self, namespace: str, name: str) -> bool: ...


@dataclass(kw_only=True)
class _Budget:
    ref: ObjectRef
    body: Mapping[str, Any]
    """The latest watched object without status (kept_objects.kept_body): metadata and spec."""
    status: dict[str, Any]
    """What this operator last wrote (or found at first sight)."""
    trigger: tuple[Any, ...]
    spec: BudgetSpec | None = None
    spec_error: str | None = None
    worker: ObjectWorker | None = None
    actual: Decimal = Decimal(0)
    actual_period: datetime | None = None
    actual_inputs: tuple[Any, ...] | None = None
    currency_problem: str | None = None
    last_ce_query: datetime | None = None
    ce_error: tuple[str, str] | None = None
    ce_retry_at: datetime | None = None
    forecast: tuple[date, tuple[Any, ...], Decimal | None] | None = None
    ledger: Decimal = Decimal(0)
    ledger_period: datetime | None = None
    ledger_error: tuple[str, str] | None = None
    state: BudgetState | None = None
    notified: tuple[Any, ...] | None = None


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


class BudgetRegistry:
    def __init__(
        self,
        *,
        kube: KubeApi,
        connections: ConnectionSource,
        metrics: OperatorMetrics,
        clock: Clock = system_clock,
        ledger_threads: int = 32,
        table: str = ledger.TABLE,
        tracer: Tracer = NOOP_TRACER,
        ledger_refresh: float = LEDGER_REFRESH,
    ) -> None:
        self._kube = kube
        self._tracer = tracer
        self._connections = connections
        self._metrics = metrics
        self._clock = clock
        self._table = table
        self._ledger_refresh = ledger_refresh
        self._budgets: dict[tuple[str, str], _Budget] = {}
        self._dependents = Dependents("connectionRef")
        self._subscribers: list[Callable[[str, str], None]] = []
        self._gate = asyncio.Semaphore(PASS_CONCURRENCY)
        self._executor = ContextThreadPoolExecutor(max_workers=ledger_threads, thread_name_prefix="budget")
        registry = metrics.registry
        self.utilization = Gauge(
            f"{PREFIX}_budget_utilization_percent",
            "Total spend of the current period in percent of the limit.",
            ["namespace", "budget"],
            registry=registry,
        )
        self.spend = Gauge(
            f"{PREFIX}_budget_spend",
            "Spend of the current period by source (cost_explorer, ledger) in the limit's currency.",
            ["namespace", "budget", "source"],
            registry=registry,
        )
        self.action = Gauge(
            f"{PREFIX}_budget_action_active",
            "1 for the budget's active action (highest crossed threshold), else 0.",
            ["namespace", "budget", "action"],
            registry=registry,
        )
        self.ce_requests = Counter(
            f"{PREFIX}_budget_cost_explorer_requests_total",
            "Cost Explorer requests made for budgets (each one is billed).",
            ["operation"],
            registry=registry,
        )
        self.usage_reports = Counter(
            f"{PREFIX}_budget_usage_reports_total",
            "Usage reports by outcome (recorded, duplicate, rejected).",
            ["outcome"],
            registry=registry,
        )

    # -- the interface of the HTTP API -----------------------------------------------------------
    def state(self, namespace: str, name: str) -> BudgetState | None:
        budget = self._budgets.get((namespace, name))
        return budget.state if budget else None

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """``callback(namespace, budget)`` runs on the event loop whenever a budget's phase, active
        or enforced action changes."""
        self._subscribers.append(callback)

    async def record_usage(self, namespace: str, name: str, report: UsageReport) -> UsageRecorded:
        """Durable in DynamoDB before it returns; a repeated idempotency key counts once."""
        budget = self._budgets.get((namespace, name))
        if budget is None:
            raise BudgetNotReady("BudgetNotFound", f"no BudgetPolicy {namespace}/{name}")
        spec = budget.spec
        if spec is None:
            raise BudgetNotReady("InvalidSpec", budget.spec_error or "spec could not be read")
        price = spec.pricing.get(report.model)
        if price is None:
            self.usage_reports.labels(outcome="rejected").inc()
            raise UnknownModel(report.model, f"{namespace}/{name}")
        if report.input_tokens < 0 or report.output_tokens < 0:
            raise ValueError("token counts must not be negative")
        now = self._clock()
        reported_at = min(report.reported_at, now) if report.reported_at <= now + FUTURE_SKEW else now
        period_start, _ = calc.period_bounds(spec.period, reported_at)
        cost = calc.usage_cost(price, input_tokens=report.input_tokens, output_tokens=report.output_tokens)
        try:
            connection = self._connections.get(namespace, spec.connection)
        except ConnectionNotReady as not_ready:
            raise BudgetNotReady(
                "ConnectionNotReady", f"AwsConnection {spec.connection}: {not_ready.reason}"
            ) from None
        client = connection.client("dynamodb")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, ledger.ensure_table, client, self._table)
            recorded = await loop.run_in_executor(
                self._executor,
                functools.partial(
                    ledger.record,
                    client,
                    namespace=namespace,
                    budget=name,
                    period_start=period_start,
                    cost=cost,
                    key=report.idempotency_key,
                    table=self._table,
                ),
            )
        except ledger.LedgerError as error:
            raise BudgetNotReady("LedgerUnavailable", f"{error.reason}: {error.message}") from None
        self.usage_reports.labels(outcome="duplicate" if recorded.duplicate else "recorded").inc()
        if not recorded.duplicate:
            await self._refresh_after_usage(budget, client, recorded.period_start)
        return UsageRecorded(
            cost=recorded.cost,
            currency=spec.currency,
            period_start=recorded.period_start,
            duplicate=recorded.duplicate,
        )

    # -- fed by watch events ----------------------------------------------------------------------
    def observe(self, body: Mapping[str, Any]) -> None:
        watched_status = body.get("status") or {}
        body = kept_body(body)  # without status: ours is in budget.status
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        annotations = meta.get("annotations") or {}
        trigger = (meta.get("generation"), annotations.get(BREAK_GLASS_ANNOTATION))
        budget = self._budgets.get(key)
        if budget is not None and budget.ref.uid == meta["uid"]:
            self._dependents.track(key, body)
            budget.body = body
            if trigger != budget.trigger:
                budget.trigger = trigger
                self._set_spec(budget)
                assert budget.worker is not None
                budget.worker.wake()
            return
        if budget is not None:
            self.forget(*key)
        self._dependents.track(key, body)
        budget = _Budget(
            ref=ObjectRef(kind=KIND, plural=PLURAL, namespace=key[0], name=key[1], uid=meta["uid"]),
            body=body,
            status=dict(watched_status),
            trigger=trigger,
        )
        self._set_spec(budget)
        self._restore(budget)
        self._budgets[key] = budget
        budget.worker = ObjectWorker(
            kind=KIND,
            name=f"{key[0]}/{key[1]}",
            run_pass=functools.partial(self._pass, budget),
            metrics=self._metrics,
            gate=self._gate,
            tracer=self._tracer,
        )

    def connection_changed(self, namespace: str, connection: str) -> None:
        """An AwsConnection became Ready or stopped being Ready: evaluate its budgets now."""
        wake_referencing(self._budgets, self._dependents, namespace, "connectionRef", connection)

    def forget(self, namespace: str, name: str) -> None:
        self._dependents.untrack((namespace, name))
        budget = self._budgets.pop((namespace, name), None)
        if budget is None:
            return
        if budget.worker is not None:
            budget.worker.cancel()
        self._metrics.forget_budget(namespace, name)
        for family, extra in (
            (self.utilization, [()]),
            (self.spend, [("cost_explorer",), ("ledger",)]),
            (self.action, [(a,) for a in ACTION_SEVERITY]),
        ):
            for labels in extra:
                with contextlib.suppress(KeyError):
                    family.remove(namespace, name, *labels)
        if budget.state is not None:
            budget.state = None
            self._notify(namespace, name)

    async def close(self) -> None:
        for key in list(self._budgets):
            budget = self._budgets.pop(key)
            if budget.worker is not None:
                budget.worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------------
    def _set_spec(self, budget: _Budget) -> None:
        try:
            budget.spec, budget.spec_error = parse_budget_spec(budget.body.get("spec") or {}), None
        except InvalidBudgetSpec as exc:
            budget.spec, budget.spec_error = None, str(exc)

    def _restore(self, budget: _Budget) -> None:
        """Take over the last Cost Explorer figure from status, so a restart does not query again.

        Only when status describes the current generation (so the filter it was queried with is
        the current one) and the current period."""
        status, spec = budget.status, budget.spec
        generation = budget.body["metadata"].get("generation")
        if spec is None or status.get("observedGeneration") != generation:
            return
        queried = _parse_time(status.get("lastCostExplorerQuery"))
        start = _parse_time((status.get("period") or {}).get("start"))
        actual = (status.get("spend") or {}).get("actual")
        if queried is None or start is None or actual is None:
            return
        if start != calc.period_bounds(spec.period, self._clock())[0]:
            return
        try:
            budget.actual = Decimal(str(actual))
        except InvalidOperation:
            return
        budget.actual_period, budget.actual_inputs, budget.last_ce_query = (
            start,
            spec.cost_explorer_inputs,
            queried,
        )

    async def _pass(self, budget: _Budget) -> float:
        now = self._clock()
        spec = budget.spec
        if spec is None:
            await self._write(
                budget,
                [
                    Condition(
                        type="Ready", status="False", reason="InvalidSpec", message=budget.spec_error or ""
                    )
                ],
                {},
            )
            return 3600.0
        if self._connections.warming_up(budget.ref.namespace, spec.connection):
            return WARMUP_RETRY  # keep the stored status until this process knows the connection
        if self._connections.first_probe_pending(budget.ref.namespace, spec.connection):
            return FIRST_PROBE_RETRY  # its first Ready wakes this budget sooner
        period = calc.period_bounds(spec.period, now)
        break_glass, break_glass_problem = calc.parse_break_glass(
            (budget.body["metadata"].get("annotations") or {}).get(BREAK_GLASS_ANNOTATION), now
        )
        try:
            connection: ReadyConnection | None = self._connections.get(budget.ref.namespace, spec.connection)
        except ConnectionNotReady as not_ready:
            connection = None
            connection_problem = (
                f"AwsConnection {spec.connection} is not ready ({not_ready.reason}): {not_ready.message}"
            )
        queried = False
        if connection is not None:
            await self._read_ledger(budget, connection.client("dynamodb"), period[0])
            queried = await self._cost_explorer(budget, spec, connection, period, now)
        elif budget.ledger_period != period[0]:
            budget.ledger, budget.ledger_period = Decimal(0), period[0]
        if budget.actual_period != period[0]:
            # A new period: its Cost Explorer figure waits for the next due query (rollover does
            # not buy an extra request); until then only the ledger counts.
            budget.actual, budget.actual_period = Decimal(0), period[0]
        state = self._evaluate(budget, spec, period, now, break_glass)

        problems: list[tuple[str, str]] = []
        if connection is None:
            problems.append(("ConnectionNotReady", connection_problem))
        if budget.ledger_error:
            problems.append(("LedgerUnavailable", ": ".join(budget.ledger_error)))
        if budget.currency_problem:
            problems.append(("CurrencyMismatch", budget.currency_problem))
        if budget.ce_error:
            problems.append(("CostExplorerUnavailable", ": ".join(budget.ce_error)))
        summary = (
            f"{calc.display(state.total)} of {spec.limit} {spec.currency} "
            f"({calc.display(state.utilization)}%), phase {state.phase}"
        )
        if break_glass is not None:
            summary += f"; break-glass until {utc_timestamp(break_glass)}"
        if break_glass_problem:
            summary += f"; {break_glass_problem}"
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
        await self._write(budget, [ready, exceeded], fields, evaluated=queried, now=now)
        await self._publish(budget, state)

        delays = [self._ledger_refresh, (period[1] - now).total_seconds() + 0.01]
        if connection is None:
            delays.append(RETRY)
        due = self._ce_due(budget, spec, period)
        if due is not None:
            delays.append((due - now).total_seconds())
        if break_glass is not None:
            delays.append((break_glass - now).total_seconds() + 0.01)
        return max(0.05, min(delays))

    def _ce_due(
        self, budget: _Budget, spec: BudgetSpec, period: tuple[datetime, datetime]
    ) -> datetime | None:
        if calc.cost_query(spec.filter).skip:
            return None
        if budget.actual_inputs != spec.cost_explorer_inputs or budget.last_ce_query is None:
            return budget.ce_retry_at or period[0]
        due = budget.last_ce_query + spec.evaluation_interval
        return max(due, budget.ce_retry_at) if budget.ce_retry_at else due

    async def _read_ledger(self, budget: _Budget, client: Any, period_start: datetime) -> None:
        loop = asyncio.get_running_loop()
        try:
            value = await loop.run_in_executor(
                self._executor,
                functools.partial(
                    ledger.read,
                    client,
                    namespace=budget.ref.namespace,
                    budget=budget.ref.name,
                    period_start=period_start,
                    table=self._table,
                ),
            )
        except ledger.LedgerError as error:
            budget.ledger_error = (error.reason, error.message)
            return
        budget.ledger_error = None
        self._merge_ledger(budget, period_start, value)

    @staticmethod
    def _merge_ledger(budget: _Budget, period_start: datetime, value: Decimal) -> None:
        """Counters only grow within a period, so the largest snapshot read is the freshest."""
        if budget.ledger_period != period_start:
            if budget.ledger_period is not None and period_start < budget.ledger_period:
                return  # a late report for an earlier period: it does not move the current figure
            budget.ledger, budget.ledger_period = value, period_start
        else:
            budget.ledger = max(budget.ledger, value)

    async def _cost_explorer(
        self,
        budget: _Budget,
        spec: BudgetSpec,
        connection: ReadyConnection,
        period: tuple[datetime, datetime],
        now: datetime,
    ) -> bool:
        query = calc.cost_query(spec.filter)
        if query.skip:
            budget.actual, budget.actual_period, budget.actual_inputs = (
                Decimal(0),
                period[0],
                spec.cost_explorer_inputs,
            )
            budget.ce_error = budget.currency_problem = None
            return False
        due = self._ce_due(budget, spec, period)
        if due is None or now < due:
            return False
        loop = asyncio.get_running_loop()
        client = connection.client("ce")
        budget.last_ce_query = now
        try:
            figure = await loop.run_in_executor(
                self._executor,
                functools.partial(
                    costexplorer.period_to_date,
                    client,
                    query=query,
                    period=spec.period,
                    start=period[0],
                    now=now,
                ),
            )
        except costexplorer.CostExplorerError as error:
            self.ce_requests.labels(operation="GetCostAndUsage").inc()
            budget.ce_error = (error.reason, error.message)
            budget.ce_retry_at = now + min(spec.evaluation_interval, CE_RETRY_MAX)
            if budget.actual_inputs != spec.cost_explorer_inputs:
                budget.actual = Decimal(0)
            return True
        self.ce_requests.labels(operation="GetCostAndUsage").inc(figure.requests)
        budget.ce_error, budget.ce_retry_at = None, None
        budget.actual_period, budget.actual_inputs = period[0], spec.cost_explorer_inputs
        foreign = sorted(figure.currencies - {spec.currency})
        if foreign:
            budget.currency_problem = (
                f"Cost Explorer reports {', '.join(foreign)} but the limit is in {spec.currency}; "
                "Cost Explorer spend is left out until they match"
            )
            budget.actual = Decimal(0)
        else:
            budget.currency_problem = None
            budget.actual = figure.amount
        today = now.date()
        if (
            budget.forecast is None
            or budget.forecast[0] != today
            or budget.forecast[1] != spec.cost_explorer_inputs
        ):
            self.ce_requests.labels(operation="GetCostForecast").inc()
            forecast = await loop.run_in_executor(
                self._executor,
                functools.partial(
                    costexplorer.forecast_remaining,
                    connection.clients.probe_client("ce"),
                    query=query,
                    period=spec.period,
                    end=period[1],
                    now=now,
                ),
            )
            remaining = forecast[0] if forecast is not None and forecast[1] == spec.currency else None
            budget.forecast = (today, spec.cost_explorer_inputs, remaining)
        return True

    def _evaluate(
        self,
        budget: _Budget,
        spec: BudgetSpec,
        period: tuple[datetime, datetime],
        now: datetime,
        break_glass: datetime | None,
    ) -> BudgetState:
        state = calc.evaluate(
            namespace=budget.ref.namespace,
            name=budget.ref.name,
            spec=spec,
            actual=budget.actual,
            ledger=budget.ledger if budget.ledger_period == period[0] else Decimal(0),
            period=period,
            now=now,
            break_glass_until=break_glass,
        )
        budget.state = state
        return state

    def _forecast(self, budget: _Budget, state: BudgetState, now: datetime) -> Decimal:
        window = {"start": state.period_start, "end": state.period_end, "now": now}
        remaining = budget.forecast[2] if budget.forecast and budget.forecast[0] == now.date() else None
        ce_part = (
            budget.actual + remaining if remaining is not None else calc.project(budget.actual, **window)
        )
        return ce_part + calc.project(state.total - budget.actual, **window)

    def _fields(self, budget: _Budget, spec: BudgetSpec, state: BudgetState, now: datetime) -> dict[str, Any]:
        ns, name = budget.ref.namespace, budget.ref.name
        self.utilization.labels(ns, name).set(float(state.utilization))
        self.spend.labels(ns, name, "cost_explorer").set(float(budget.actual))
        self.spend.labels(ns, name, "ledger").set(float(state.total - budget.actual))
        for action in ACTION_SEVERITY:
            self.action.labels(ns, name, action).set(1 if state.active_action == action else 0)
        forecast = self._forecast(budget, state, now)
        self._metrics.set_budget(
            ns, name, limit=float(spec.limit), forecast=float(forecast), phase=state.phase
        )
        return {
            "period": {"start": utc_timestamp(state.period_start), "end": utc_timestamp(state.period_end)},
            "spend": {
                "actual": str(budget.actual),
                "ledger": str(state.total - budget.actual),
                "total": str(state.total),
                "forecast": calc.display(forecast),
                "currency": spec.currency,
            },
            "utilization": calc.display(state.utilization),
            "phase": state.phase,
            "activeAction": state.active_action or "None",
            "lastCostExplorerQuery": utc_timestamp(budget.last_ce_query) if budget.last_ce_query else None,
        }

    async def _refresh_after_usage(self, budget: _Budget, client: Any, period_start: datetime) -> None:
        """After a write: a consistent read of the counter, then the phase, without Cost Explorer."""
        spec = budget.spec
        if spec is None:
            return
        now = self._clock()
        period = calc.period_bounds(spec.period, now)
        if period_start != period[0]:
            return
        await self._read_ledger(budget, client, period_start)
        previous = budget.state
        break_glass = previous.break_glass_until if previous else None
        if break_glass is not None and break_glass <= now:
            break_glass = None
        if budget.actual_period != period[0]:
            return  # the worker has not taken in the new period yet; it will
        state = self._evaluate(budget, spec, period, now, break_glass)
        assert budget.worker is not None
        if self._key(state) != budget.notified:
            await self._publish(budget, state)
            budget.worker.wake()  # status and Events follow within the pass
        else:
            # The spend moved but not the phase: status follows soon, one write for a burst of reports.
            budget.worker.wake_within(STATUS_AFTER_USAGE)

    @staticmethod
    def _key(state: BudgetState | None) -> tuple[Any, ...] | None:
        return (state.phase, state.active_action, state.enforced_action) if state else None

    async def _publish(self, budget: _Budget, state: BudgetState) -> None:
        key = self._key(state)
        if key == budget.notified:
            return
        previous = budget.notified
        budget.notified = key
        if previous is not None and previous[1] != state.active_action:
            before = ACTION_SEVERITY.get(str(previous[1]), 0)
            after = ACTION_SEVERITY.get(str(state.active_action), 0)
            enforced = state.enforced_action or "nothing"
            await self._event(
                budget,
                "Warning" if after > before else "Normal",
                "ThresholdCrossed" if after > before else "ThresholdCleared",
                f"utilization {calc.display(state.utilization)}%: active action "
                f"{state.active_action or 'None'} (was {previous[1] or 'None'}); enforcing {enforced}",
            )
        self._notify(budget.ref.namespace, budget.ref.name)

    def _notify(self, namespace: str, name: str) -> None:
        for callback in self._subscribers:
            try:
                callback(namespace, name)
            except Exception:
                logger.exception("budget subscriber failed for %s/%s", namespace, name)

    async def _write(
        self,
        budget: _Budget,
        conditions: list[Condition],
        fields: dict[str, Any],
        *,
        evaluated: bool = False,
        now: datetime | None = None,
    ) -> None:
        now = now or self._clock()
        written = await apply_status(
            self._kube,
            budget.ref,
            current=budget.status,
            generation=int(budget.body["metadata"].get("generation") or 0),
            assessment=Assessment(conditions=conditions, fields=fields),
            now=now,
            # lastEvaluated only rides along with a change or a Cost Explorer round, never alone.
            extra={"lastEvaluated": utc_timestamp(now)} if fields else None,
            force=evaluated,
        )
        if written.stored is not None:
            budget.status = written.stored

    async def _event(self, budget: _Budget, type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(
            self._kube.post_event, budget.ref, type_=type_, reason=reason, message=message, now=self._clock()
        )
