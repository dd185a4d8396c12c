"""The tracer provider of one operator process, built at startup from the standard ``OTEL_*`` variables.

Nothing is exported unless an OTLP endpoint is configured
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``): without one
the operator runs with a no-op tracer, starts no exporter thread and patches nothing.
With one, spans go through a batch processor (``OTEL_BSP_*``) to the OTLP exporter chosen
by ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or
``http/protobuf``, the default the OpenTelemetry specification recommends). The exporters
read their remaining settings (headers, timeout, certificates, compression, insecure) from
the same variables themselves, and the SDK reads ``OTEL_TRACES_SAMPLER``,
``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``.

No global state: the provider is never installed as OpenTelemetry's global one; it is
handed to the pieces that trace. The one process-wide effect is botocore's instrumentation
(it patches ``BaseClient._make_api_call``), applied only when tracing is enabled and removed
again by :meth:`Tracing.shutdown`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from incident_commander import __version__

logger = logging.getLogger(__name__)

SERVICE_NAME = "incident-commander"
NAMESPACE_ENV = "K8S_NAMESPACE_NAME"
"""Downward-API variable with the pod's namespace (the chart sets it)."""
POD_ENV = "K8S_POD_NAME"
"""Downward-API variable with the pod's name (the chart sets it)."""
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"
SHUTDOWN_FLUSH_MILLIS = 10_000

NOOP_TRACER: trace.Tracer = trace.NoOpTracer()
"""The tracer of a process that exports nothing: spans cost next to nothing and go nowhere."""


class TracingConfigError(ValueError):
    """An ``OTEL_*`` variable has a value this operator cannot honour."""


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    """What the environment asks for."""

    enabled: bool
    """True when an OTLP endpoint is configured and neither the SDK nor trace export is switched off."""
    protocol: str = DEFAULT_PROTOCOL
    """``grpc`` or ``http/protobuf``."""
    reason: str = ""
    """Why tracing is off, or where spans go; for the startup log line."""


def settings_from_env(environ: Mapping[str, str]) -> TracingSettings:
    """Read the variables that decide whether and how spans are exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings(enabled=False, reason="OTEL_SDK_DISABLED=true")
    exporters = [e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
    if exporters in ([], ["none"]):
        return TracingSettings(enabled=False, reason="OTEL_TRACES_EXPORTER=none")
    if exporters != ["otlp"]:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(exporters)}: only otlp (or none) is supported"
        )
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return TracingSettings(enabled=False, reason="no OTEL_EXPORTER_OTLP_ENDPOINT")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    ).strip()
    if protocol not in PROTOCOLS:
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}"
        )
    return TracingSettings(enabled=True, protocol=protocol, reason=f"OTLP {protocol} to {endpoint}")


def build_resource(environ: Mapping[str, str]) -> Resource:
    """service.name and .version, and the pod's namespace and name from the downward API.

    ``OTEL_SERVICE_NAME`` and a ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` win over the
    default name; the SDK merges ``OTEL_RESOURCE_ATTRIBUTES`` in."""
    attributes: dict[str, Any] = {"service.version": __version__}
    for variable, key in ((NAMESPACE_ENV, "k8s.namespace.name"), (POD_ENV, "k8s.pod.name")):
        if environ.get(variable):
            attributes[key] = environ[variable]
    resource = Resource.create(attributes)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    return resource


def new_exporter(protocol: str) -> SpanExporter:
    """The OTLP exporter for a protocol; it reads its endpoint and options from ``OTEL_*``."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


@dataclass(kw_only=True)
class Tracing:
    """The process's tracer, and the provider behind it when spans are exported."""

    tracer: trace.Tracer
    provider: TracerProvider | None = None
    botocore_instrumented: bool = False

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        """Export what is still queued, then stop the exporter; undo botocore's instrumentation."""
        if self.botocore_instrumented:
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            BotocoreInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
            self.botocore_instrumented = False
        if self.provider is not None:
            if not self.provider.force_flush(SHUTDOWN_FLUSH_MILLIS):
                logger.warning("tracing: not every span was exported within %d ms", SHUTDOWN_FLUSH_MILLIS)
            self.provider.shutdown()
            self.provider = None
            self.tracer = NOOP_TRACER


def disabled() -> Tracing:
    return Tracing(tracer=NOOP_TRACER)


def build_tracing(environ: Mapping[str, str] | None = None, *, instrument_botocore: bool = True) -> Tracing:
    """Build tracing from the environment (``os.environ`` unless given); call once at startup."""
    environ = os.environ if environ is None else environ
    settings = settings_from_env(environ)
    if not settings.enabled:
        logger.info("tracing: off (%s)", settings.reason)
        return disabled()
    provider = TracerProvider(resource=build_resource(environ))
    provider.add_span_processor(BatchSpanProcessor(new_exporter(settings.protocol)))
    tracing = Tracing(tracer=provider.get_tracer("incident_commander", __version__), provider=provider)
    if instrument_botocore:
        tracing.botocore_instrumented = _instrument_botocore(provider)
    logger.info(
        "tracing: %s%s", settings.reason, "; AWS calls traced" if tracing.botocore_instrumented else ""
    )
    return tracing


def _instrument_botocore(provider: TracerProvider) -> bool:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    instrumentor = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        return False  # someone else (opentelemetry-instrument) did; leave theirs in place
    instrumentor.instrument(tracer_provider=provider)
    return bool(instrumentor.is_instrumented_by_opentelemetry)
