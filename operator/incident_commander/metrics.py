"""Prometheus metrics of one operator process.

Each process owns a private CollectorRegistry (never the library's default one),
so tests and benchmarks can build several operators in one interpreter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from incident_commander import __version__

PREFIX = "incident_commander"


@dataclass(kw_only=True)
class OperatorMetrics:
    """The metric families; label values are kinds and outcomes only, never object names of unbounded sets."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

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

    def forget_connection(self, namespace: str, connection: str, services: tuple[str, ...]) -> None:
        """Drop a deleted connection's series so they do not linger as stale values."""
        for service in services:
            for family in (self.aws_probe_duration, self.aws_service_up):
                with contextlib.suppress(KeyError):
                    family.remove(namespace, connection, service)
