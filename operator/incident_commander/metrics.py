"""Prometheus metrics of one operator process.

Each process owns a private CollectorRegistry (never the library's default one),
so tests and benchmarks can build several operators in one interpreter. The
registry also carries prometheus_client's process, platform and GC collectors
(memory and CPU are published targets), and no ``_created`` series: Prometheus
does not ingest them by default, and they doubled the series of every counter
and histogram.

Label cardinality is bounded: kinds, outcomes, services, phases and reasons come
from fixed vocabularies; the per-object labels (namespace plus connection, budget
or policy, and an IncidentPolicy's API client names) grow with the number of
objects only, and each object's series are removed when it is deleted (or the
client is removed from its policy). Never a key id, a token or an incident id.
docs/metrics.md lists every family; a unit test compares it with the registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from incident_commander import __version__
from incident_commander.metric_tables import GaugeTable, HistogramTable

PREFIX = "incident_commander"
BUDGET_PHASES = ("Ok", "Warning", "Critical", "Exceeded")
BUDGET_ACTIONS = ("Notify", "Downgrade", "Throttle", "Halt")
SPEND_SOURCES = ("cost_explorer", "ledger")
CONDITION_STATUSES = ("True", "False", "Unknown")
RECONCILE_OUTCOMES = ("success", "not_ready", "deferred", "error")
"""What a reconciliation pass came to (workers.PassResult): see docs/metrics.md."""
BREAKDOWN_TOP = 10
"""Entries per dimension of a budget's spend breakdown (by model, client, task type) that get
series of their own; the rest are summed under ``other`` (budget/breakdown.py)."""
INCIDENT_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
"""1 minute to 3 days: an incident's time to acknowledge or resolve (beyond: +Inf)."""
DETECTION_OUTCOMES = ("opened", "deduplicated", "sampled_out", "halted")


@dataclass(kw_only=True)
class OperatorMetrics:
    """The operator's metric families (the API adds its own, api/metrics.py, to ``registry``)."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    _api_clients: dict[tuple[str, str], set[str]] = field(default_factory=dict, init=False, repr=False)
    _conditions: dict[tuple[str, str, str], set[str]] = field(default_factory=dict, init=False, repr=False)
    _incident_severities: dict[tuple[str, str], set[str]] = field(
        default_factory=dict, init=False, repr=False
    )
    _breakdowns: dict[tuple[str, str], dict[str, set[str]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        # prometheus_client's switch is process-wide; every registry of this process wants it off.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        # The library's default collectors sit on its default registry, which we never serve.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Info(f"{PREFIX}_build", "Version of the running operator.", registry=self.registry)
        self.build_info.info({"version": __version__})
        self.reconciliations = Counter(
            f"{PREFIX}_reconciliations_total",
            "Reconciliation passes by kind and outcome (success, not_ready, deferred, error).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.status_condition = GaugeTable(
            f"{PREFIX}_status_condition",
            "1 for the status of each condition of an object (True, False, Unknown), 0 for the others.",
            ["kind", "namespace", "name", "condition", "status"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time spent in one reconciliation, by kind.",
            ["kind"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.aws_probe_duration = HistogramTable(
            f"{PREFIX}_aws_probe_duration_seconds",
            "Duration of one AWS service probe, retries included.",
            ["namespace", "connection", "service"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.aws_service_up = GaugeTable(
            f"{PREFIX}_aws_service_up",
            "1 when the service answered its last probe, else 0.",
            ["namespace", "connection", "service"],
            registry=self.registry,
        )
        self.aws_clients = Gauge(
            f"{PREFIX}_aws_clients",
            "boto3 clients alive in the operator's client cache (at most --aws-client-cache).",
            registry=self.registry,
        )
        self.aws_client_builds = Counter(
            f"{PREFIX}_aws_client_builds",
            "boto3 clients built; growing faster than connections change means the cache is too small.",
            registry=self.registry,
        )
        self.budget_limit = GaugeTable(
            f"{PREFIX}_budget_limit",
            "The budget's limit for one period, in its currency.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_forecast = GaugeTable(
            f"{PREFIX}_budget_forecast_spend",
            "Spend projected for the end of the current period, in the limit's currency.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_phase = GaugeTable(
            f"{PREFIX}_budget_phase",
            "1 for the budget's current phase (Ok, Warning, Critical, Exceeded), else 0.",
            ["namespace", "budget", "phase"],
            registry=self.registry,
        )
        self.budget_utilization = GaugeTable(
            f"{PREFIX}_budget_utilization_ratio",
            "Total spend of the current period as a fraction of the limit (1 = the limit).",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_spend = GaugeTable(
            f"{PREFIX}_budget_spend",
            "Spend of the current period by source (cost_explorer, ledger) in the limit's currency.",
            ["namespace", "budget", "source"],
            registry=self.registry,
        )
        self.budget_action = GaugeTable(
            f"{PREFIX}_budget_action_active",
            "1 for the budget's active action (highest crossed threshold), else 0.",
            ["namespace", "budget", "action"],
            registry=self.registry,
        )
        self.cost_explorer_requests = Counter(
            f"{PREFIX}_budget_cost_explorer_requests_total",
            "Cost Explorer requests made for budgets (each one is billed).",
            ["operation"],
            registry=self.registry,
        )
        self.usage_reports = Counter(
            f"{PREFIX}_budget_usage_reports_total",
            "Usage reports by outcome (recorded, duplicate, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self.budget_reserved = GaugeTable(
            f"{PREFIX}_budget_reserved_spend",
            "Amount held by unsettled reservations in the current period, in the limit's currency.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_spend_by_model = GaugeTable(
            f"{PREFIX}_budget_ledger_spend_by_model",
            "Settled LLM spend of the current period by model (the top 10, the rest as other).",
            ["namespace", "budget", "model"],
            registry=self.registry,
        )
        self.budget_spend_by_client = GaugeTable(
            f"{PREFIX}_budget_ledger_spend_by_client",
            "Settled LLM spend of the current period by API client, <policy>/<client> (top 10, other).",
            ["namespace", "budget", "client"],
            registry=self.registry,
        )
        self.budget_spend_by_task_type = GaugeTable(
            f"{PREFIX}_budget_ledger_spend_by_task_type",
            "Settled LLM spend of the current period by task type (top 10, other).",
            ["namespace", "budget", "task_type"],
            registry=self.registry,
        )
        self.reservations = Counter(
            f"{PREFIX}_budget_reservations_total",
            "Budget reservations by outcome (reserved, refused, settled, expired, released).",
            ["outcome"],
            registry=self.registry,
        )
        self.model_calls = Counter(
            f"{PREFIX}_bedrock_calls_total",
            "Bedrock calls made for /v1/converse, by operation (Converse, ConverseStream) and outcome "
            "(ok, throttled, rejected, failed).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.api_key_expiry = GaugeTable(
            f"{PREFIX}_api_key_expiry_timestamp_seconds",
            "Unix time at which the current API key of an IncidentPolicy's client expires.",
            ["namespace", "policy", "client"],
            registry=self.registry,
        )
        self.incident_time_to_acknowledge = HistogramTable(
            f"{PREFIX}_incident_time_to_acknowledge_seconds",
            "Time from opening to acknowledging an incident (MTTA), by policy and severity.",
            ["namespace", "policy", "severity"],
            registry=self.registry,
            buckets=INCIDENT_BUCKETS,
        )
        self.incident_time_to_resolve = HistogramTable(
            f"{PREFIX}_incident_time_to_resolve_seconds",
            "Time from opening to resolving an incident (MTTR), by policy and severity.",
            ["namespace", "policy", "severity"],
            registry=self.registry,
            buckets=INCIDENT_BUCKETS,
        )
        self.incidents_open = GaugeTable(
            f"{PREFIX}_incidents_open",
            "Open or acknowledged incidents, by policy and severity (counted in DynamoDB by the leader).",
            ["namespace", "policy", "severity"],
            registry=self.registry,
        )
        self.incident_detections = Counter(
            f"{PREFIX}_incident_detections_total",
            "Detections sent to POST /v1/incidents by outcome (opened, deduplicated, sampled_out, halted).",
            ["outcome"],
            registry=self.registry,
        )
        self.incident_transitions = Counter(
            f"{PREFIX}_incident_transitions_total",
            "Incident changes written (each a new version and audit entry), by action.",
            ["action"],
            registry=self.registry,
        )

    def set_budget(
        self,
        namespace: str,
        budget: str,
        *,
        limit: float,
        forecast: float,
        phase: str,
        utilization: float,
        spend: Mapping[str, float],
        active_action: str | None,
    ) -> None:
        """A budget's figures, set where its status is written. ``utilization`` is in percent, as
        ``status.spend.utilization`` says it; the metric is the ratio (Prometheus' convention)."""
        self.budget_limit.labels(namespace, budget).set(limit)
        self.budget_forecast.labels(namespace, budget).set(forecast)
        self.budget_utilization.labels(namespace, budget).set(utilization / 100)
        for source in SPEND_SOURCES:
            self.budget_spend.labels(namespace, budget, source).set(spend.get(source, 0.0))
        for known in BUDGET_PHASES:
            self.budget_phase.labels(namespace, budget, known).set(1 if known == phase else 0)
        for action in BUDGET_ACTIONS:
            self.budget_action.labels(namespace, budget, action).set(1 if action == active_action else 0)

    def set_budget_breakdown(
        self, namespace: str, budget: str, *, reserved: float, breakdown: Mapping[str, Mapping[str, float]]
    ) -> None:
        """The held amount and the spend breakdown (``model``, ``client``, ``task_type``: at most
        BREAKDOWN_TOP entries and ``other`` each); entries no longer listed are dropped."""
        self.budget_reserved.labels(namespace, budget).set(reserved)
        key = (namespace, budget)
        known = self._breakdowns.setdefault(key, {})
        for dimension, family in self._breakdown_families():
            values = breakdown.get(dimension, {})
            for gone in known.get(dimension, set()) - set(values):
                with contextlib.suppress(KeyError):
                    family.remove(namespace, budget, gone)
            for label, amount in values.items():
                family.labels(namespace, budget, label).set(amount)
            known[dimension] = set(values)

    def _breakdown_families(self) -> tuple[tuple[str, GaugeTable], ...]:
        return (
            ("model", self.budget_spend_by_model),
            ("client", self.budget_spend_by_client),
            ("task_type", self.budget_spend_by_task_type),
        )

    def forget_budget(self, namespace: str, budget: str) -> None:
        """Drop a deleted budget's series."""
        self.set_budget_breakdown(namespace, budget, reserved=0, breakdown={})
        self._breakdowns.pop((namespace, budget), None)
        for family, extras in (
            (self.budget_limit, [()]),
            (self.budget_forecast, [()]),
            (self.budget_utilization, [()]),
            (self.budget_spend, [(s,) for s in SPEND_SOURCES]),
            (self.budget_phase, [(p,) for p in BUDGET_PHASES]),
            (self.budget_action, [(a,) for a in BUDGET_ACTIONS]),
            (self.budget_reserved, [()]),
        ):
            for extra in extras:
                with contextlib.suppress(KeyError):
                    family.remove(namespace, budget, *extra)

    def set_conditions(self, kind: str, namespace: str, name: str, conditions: Mapping[str, str]) -> None:
        """An object's conditions (type -> status) as its status says them; condition types not
        listed any more are dropped. Callers pass only their kind's own condition types."""
        key = (kind, namespace, name)
        for gone in self._conditions.get(key, set()) - set(conditions):
            for status in CONDITION_STATUSES:
                with contextlib.suppress(KeyError):
                    self.status_condition.remove(kind, namespace, name, gone, status)
        for condition, current in conditions.items():
            for status in CONDITION_STATUSES:
                self.status_condition.labels(kind, namespace, name, condition, status).set(
                    1 if status == current else 0
                )
        if conditions:
            self._conditions[key] = set(conditions)
        else:
            self._conditions.pop(key, None)

    def forget_conditions(self, kind: str, namespace: str, name: str) -> None:
        """Drop a deleted object's condition series."""
        self.set_conditions(kind, namespace, name, {})

    def set_api_keys(self, namespace: str, policy: str, expiries: Mapping[str, float]) -> None:
        """The policy's clients and their current keys' expiry; clients not listed any more are dropped."""
        key = (namespace, policy)
        for client in self._api_clients.get(key, set()) - set(expiries):
            with contextlib.suppress(KeyError):
                self.api_key_expiry.remove(namespace, policy, client)
        for client, expires_at in expiries.items():
            self.api_key_expiry.labels(namespace, policy, client).set(expires_at)
        self._api_clients[key] = set(expiries)

    def forget_policy(self, namespace: str, policy: str) -> None:
        """Drop a deleted IncidentPolicy's series."""
        self.set_api_keys(namespace, policy, {})
        self._api_clients.pop((namespace, policy), None)
        self.retain_incident_severities(namespace, policy, ())
        self._incident_severities.pop((namespace, policy), None)

    def observe_incident(
        self,
        namespace: str,
        policy: str,
        severity: str,
        *,
        to_acknowledge: float | None = None,
        to_resolve: float | None = None,
    ) -> None:
        """An incident's MTTA and MTTR samples (``severity`` is one of the policy's, so bounded)."""
        self._incident_severities.setdefault((namespace, policy), set()).add(severity)
        if to_acknowledge is not None:
            self.incident_time_to_acknowledge.labels(namespace, policy, severity).observe(to_acknowledge)
        if to_resolve is not None:
            self.incident_time_to_resolve.labels(namespace, policy, severity).observe(to_resolve)

    def set_open_incidents(self, namespace: str, policy: str, counts: Mapping[str, int]) -> None:
        """Active incidents of each of the policy's severities (``counts`` has every one, zeros too)."""
        self.retain_incident_severities(namespace, policy, tuple(counts))
        self._incident_severities.setdefault((namespace, policy), set()).update(counts)
        for severity, count in counts.items():
            self.incidents_open.labels(namespace, policy, severity).set(count)

    def retain_incident_severities(self, namespace: str, policy: str, severities: tuple[str, ...]) -> None:
        """Drop the incident series of severities the policy no longer has."""
        known = self._incident_severities.get((namespace, policy), set())
        for severity in known - set(severities):
            for family in (
                self.incident_time_to_acknowledge,
                self.incident_time_to_resolve,
                self.incidents_open,
            ):
                with contextlib.suppress(KeyError):
                    family.remove(namespace, policy, severity)
        known &= set(severities)

    def clear_open_incidents(self) -> None:
        """A replica that stops leading stops reporting what only the leader counts."""
        self.incidents_open.clear()

    def forget_connection(self, namespace: str, connection: str, services: tuple[str, ...]) -> None:
        """Drop a deleted connection's series so they do not linger as stale values."""
        for service in services:
            for family in (self.aws_probe_duration, self.aws_service_up):
                with contextlib.suppress(KeyError):
                    family.remove(namespace, connection, service)
