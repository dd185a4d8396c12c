"""Telemetry of one operator process: OpenTelemetry tracing built from ``OTEL_*`` at startup.

Prometheus metrics live in :mod:`incident_commander.metrics` (and the API's in
:mod:`incident_commander.api.metrics`); this package holds the tracing pieces:
the tracer provider (:mod:`.tracing`), the reconciliation spans (:mod:`.spans`),
the API's server-span middleware (:mod:`.aiohttp`) and an executor that carries
the caller's context into its threads (:mod:`.threads`).
"""
