"""Prometheus metrics of one operator process.

Each process owns a private CollectorRegistry (never the library's default one),
so tests and benchmarks can build several operators in one interpreter.

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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from incident_commander import __version__

PREFIX = "incident_commander"
BUDGET_PHASES = ("Ok", "Warning", "Critical", "Exceeded")
BUDGET_ACTIONS = ("Notify", "Downgrade", "Throttle", "Halt")
SPEND_SOURCES = ("cost_explorer", "ledger")
INCIDENT_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
"""1 minute to 3 days: an incident's time to acknowledge or resolve (beyond: +Inf)."""
DETECTION_OUTCOMES = ("opened", "deduplicated", "sampled_out", "halted")


@dataclass(kw_only=True)
class OperatorMetrics:
    """The operator's metric families (the API adds its own, api/metrics.py, to ``registry``)."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    _api_clients: dict[tuple[str, str], set[str]] = field(default_factory=dict, init=False, repr=False)
    _incident_severities: dict[tuple[str, str], set[str]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.build_info = Info(f"{PREFIX}_build", "Version of the running operator.", registry=self.registry)
        self.build_info.info({"version": __version__})
        self.reconciliations = Counter(
            f"{PREFIX}_reconciliations_total",
            "Reconciliations by kind and outcome (success, error).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time spent in one reconciliation, by kind.",
            ["kind"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.aws_probe_duration = Histogram(
            f"{PREFIX}_aws_probe_duration_seconds",
            "Duration of one AWS service probe, retries included.",
            ["namespace", "connection", "service"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.aws_service_up = Gauge(
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
        self.budget_limit = Gauge(
            f"{PREFIX}_budget_limit",
            "The budget's limit for one period, in its currency.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_forecast = Gauge(
            f"{PREFIX}_budget_forecast_spend",
            "Spend projected for the end of the current period, in the limit's currency.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_phase = Gauge(
            f"{PREFIX}_budget_phase",
            "1 for the budget's current phase (Ok, Warning, Critical, Exceeded), else 0.",
            ["namespace", "budget", "phase"],
            registry=self.registry,
        )
        self.budget_utilization = Gauge(
            f"{PREFIX}_budget_utilization_percent",
            "Total spend of the current period in percent of the limit.",
            ["namespace", "budget"],
            registry=self.registry,
        )
        self.budget_spend = Gauge(
            f"{PREFIX}_budget_spend",
            "Spend of the current period by source (cost_explorer, ledger) in the limit's currency.",
            ["namespace", "budget", "source"],
            registry=self.registry,
        )
        self.budget_action = Gauge(
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
        self.api_key_expiry = Gauge(
            f"{PREFIX}_api_key_expiry_timestamp_seconds",
            "Unix time at which the current API key of an IncidentPolicy's client expires.",
            ["namespace", "policy", "client"],
            registry=self.registry,
        )
        self.incident_time_to_acknowledge = Histogram(
            f"{PREFIX}_incident_time_to_acknowledge_seconds",
            "Time from opening to acknowledging an incident (MTTA), by policy and severity.",
            ["namespace", "policy", "severity"],
            registry=self.registry,
            buckets=INCIDENT_BUCKETS,
        )
        self.incident_time_to_resolve = Histogram(
            f"{PREFIX}_incident_time_to_resolve_seconds",
            "Time from opening to resolving an incident (MTTR), by policy and severity.",
            ["namespace", "policy", "severity"],
            registry=self.registry,
            buckets=INCIDENT_BUCKETS,
        )
        self.incidents_open = Gauge(
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
        """A budget's figures, set where its status is written."""
        self.budget_limit.labels(namespace, budget).set(limit)
        self.budget_forecast.labels(namespace, budget).set(forecast)
        self.budget_utilization.labels(namespace, budget).set(utilization)
        for source in SPEND_SOURCES:
            self.budget_spend.labels(namespace, budget, source).set(spend.get(source, 0.0))
        for known in BUDGET_PHASES:
            self.budget_phase.labels(namespace, budget, known).set(1 if known == phase else 0)
        for action in BUDGET_ACTIONS:
            self.budget_action.labels(namespace, budget, action).set(1 if action == active_action else 0)

    def forget_budget(self, namespace: str, budget: str) -> None:
        """Drop a deleted budget's series."""
        for family, extras in (
            (self.budget_limit, [()]),
            (self.budget_forecast, [()]),
            (self.budget_utilization, [()]),
            (self.budget_spend, [(s,) for s in SPEND_SOURCES]),
            (self.budget_phase, [(p,) for p in BUDGET_PHASES]),
            (self.budget_action, [(a,) for a in BUDGET_ACTIONS]),
        ):
            for extra in extras:
                with contextlib.suppress(KeyError):
                    family.remove(namespace, budget, *extra)

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
