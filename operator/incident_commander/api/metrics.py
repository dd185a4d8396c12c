"""The API's Prometheus metrics, on the operator's own registry.

Labels are bounded: the route template (never the raw path), the method, the
status code, the caller's role and a failure reason from a fixed vocabulary.
Never a key id, a client name, a token or an incident id.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from incident_commander.metric_tables import CounterTable, HistogramTable

PREFIX = "incident_commander_api"


class ApiMetrics:
    def route_decided(self, outcome: str, phase: str) -> None:
        """Count one routing answer. The series is kept (``labels()`` builds and checks its key on
        every call, a measurable share of a routing request); outcomes and phases are few."""
        child = self._decisions.get((outcome, phase))
        if child is None:
            child = self._decisions[(outcome, phase)] = self.route_decisions.labels(
                outcome=outcome, budget_phase=phase
            )
        child.inc()

    def __init__(self, registry: CollectorRegistry) -> None:
        # Tables, not the library's Counter and Histogram, for what every request updates: the
        # library's observe walks the buckets in Python and each update takes a lock per value
        # it touches, a measurable share of a fast request (docs/performance.md, fifth session).
        self.requests = CounterTable(
            f"{PREFIX}_requests_total",
            "API requests by route template, method, status code and caller role.",
            ["route", "method", "status", "role"],
            registry=registry,
        )
        self.duration = HistogramTable(
            f"{PREFIX}_request_duration_seconds",
            "Time to answer an API request, by route template.",
            ["route"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures_total",
            "Refused credentials (401) and refused actions (403), by reason.",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited_total",
            "Requests refused with 429 by the per-client token bucket, by route template.",
            ["route"],
            registry=registry,
        )
        self.route_decisions = CounterTable(
            f"{PREFIX}_route_decisions_total",
            "Answers of /v1/route by outcome (routed, refused) and budget phase.",
            ["outcome", "budget_phase"],
            registry=registry,
        )
        self._decisions: dict[tuple[str, str], Any] = {}
        self.untrusted_secrets = Counter(
            f"{PREFIX}_untrusted_secrets_total",
            "Secrets with the operator's labels that the API does not trust, by reason (wrong name, "
            "not controlled by the policy, bad integrity seal, unreadable, id clash).",
            ["reason"],
            registry=registry,
        )
        self.auth_deferred = Counter(
            f"{PREFIX}_auth_deferred_total",
            "Bearer tokens refused with 429 without a signature check: their address failed too often.",
            registry=registry,
        )
        self.connections = Gauge(
            f"{PREFIX}_open_connections",
            "Open connections to the API port.",
            registry=registry,
        )
        self.connections_refused = Counter(
            f"{PREFIX}_connections_refused_total",
            "Connections to the API port closed at once because --api-max-connections were open.",
            registry=registry,
        )
