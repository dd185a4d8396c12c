"""Tracing built from OTEL_* variables, reconciliation spans, context in thread pools, botocore spans."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from incident_commander import __version__
from incident_commander.metrics import OperatorMetrics
from incident_commander.telemetry import spans, tracing
from incident_commander.telemetry.threads import ContextThreadPoolExecutor
from incident_commander.workers import ObjectWorker, PassResult

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "K8S_NAMESPACE_NAME",
    "K8S_POD_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def recorded() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter, provider
    provider.shutdown()


# -- settings from the environment -----------------------------------------------------------------


def test_nothing_is_exported_without_an_endpoint() -> None:
    assert not tracing.settings_from_env({}).enabled
    built = tracing.build_tracing({})
    assert not built.enabled and built.tracer is tracing.NOOP_TRACER and not built.botocore_instrumented
    assert not BotocoreInstrumentor().is_instrumented_by_opentelemetry
    built.shutdown()  # harmless


@pytest.mark.parametrize(
    ("environ", "protocol"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            "grpc",
        ),
    ],
)
def test_endpoint_and_protocol(environ: dict[str, str], protocol: str) -> None:
    settings = tracing.settings_from_env(environ)
    assert settings.enabled and settings.protocol == protocol


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_switched_off(environ: dict[str, str]) -> None:
    assert not tracing.settings_from_env(environ).enabled


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "zipkin"},
    ],
)
def test_unsupported_settings_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(tracing.TracingConfigError):
        tracing.settings_from_env(environ)


@pytest.mark.parametrize(("protocol", "exporter"), [("grpc", GrpcExporter), ("http/protobuf", HttpExporter)])
def test_enabled_tracing_batches_to_the_protocols_exporter(
    monkeypatch: pytest.MonkeyPatch, protocol: str, exporter: type
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    built = tracing.build_tracing(instrument_botocore=False)
    try:
        assert built.enabled and built.provider is not None
        [processor] = built.provider._active_span_processor._span_processors
        assert type(processor).__name__ == "BatchSpanProcessor"
        assert isinstance(processor._batch_processor._exporter, exporter)
    finally:
        built.shutdown()
    assert not built.enabled and built.tracer is tracing.NOOP_TRACER


def test_resource_attributes_from_the_downward_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_NAMESPACE_NAME", "ops")
    monkeypatch.setenv("K8S_POD_NAME", "ic-7d9f-abc")
    attributes = tracing.build_resource(
        {"K8S_NAMESPACE_NAME": "ops", "K8S_POD_NAME": "ic-7d9f-abc"}
    ).attributes
    assert attributes["service.name"] == "incident-commander"
    assert attributes["service.version"] == __version__
    assert attributes["k8s.namespace.name"] == "ops"
    assert attributes["k8s.pod.name"] == "ic-7d9f-abc"


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ic-prod")
    assert tracing.build_resource({}).attributes["service.name"] == "ic-prod"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,team=sre")
    attributes = tracing.build_resource({}).attributes
    assert attributes["service.name"] == "from-attributes" and attributes["team"] == "sre"


# -- reconciliation spans ----------------------------------------------------------------------------


def test_a_pass_is_a_root_span_with_the_object_and_its_outcome(
    recorded: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    tracer, exporter, _ = recorded

    async def run() -> float:
        with tracer.start_as_current_span("inside"):
            return 7.0

    async def main() -> float:
        with tracer.start_as_current_span("unrelated"):  # a pass never inherits a caller's trace
            return await spans.traced_pass(tracer, run, kind="IncidentPolicy", namespace="ns", name="p")

    assert asyncio.run(main()) == 7.0
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    reconcile, inside, unrelated = (
        by_name["reconcile IncidentPolicy"],
        by_name["inside"],
        by_name["unrelated"],
    )
    assert reconcile.parent is None and reconcile.context.trace_id != unrelated.context.trace_id
    assert inside.parent is not None and inside.parent.span_id == reconcile.context.span_id
    assert reconcile.kind is SpanKind.INTERNAL
    assert dict(reconcile.attributes or {}) == {
        "k8s.namespace.name": "ns",
        "incidentcommander.kind": "IncidentPolicy",
        "incidentcommander.name": "p",
        "incidentcommander.outcome": "success",
    }


def test_a_failing_pass_records_the_error_and_reraises(
    recorded: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    tracer, exporter, _ = recorded

    async def run() -> float:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        asyncio.run(spans.traced_pass(tracer, run, kind="BudgetPolicy", namespace="ns", name="b"))
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["incidentcommander.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_object_worker_traces_each_pass(
    recorded: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    tracer, exporter, _ = recorded
    passes = 0
    metrics = OperatorMetrics()

    async def run_pass() -> PassResult:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise ValueError("first pass fails")
        if passes == 2:
            return PassResult(delay=0.0, outcome="not_ready")
        return PassResult(delay=3600.0)

    async def main() -> None:
        worker = ObjectWorker(
            kind="IncidentPolicy",
            name="team-a/policy",
            run_pass=run_pass,
            metrics=metrics,
            gate=asyncio.Semaphore(1),
            tracer=tracer,
        )
        await asyncio.sleep(0.05)
        worker.wake()
        for _ in range(100):
            if passes >= 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        worker.cancel()

    asyncio.run(main())
    finished = exporter.get_finished_spans()
    outcomes = [(s.attributes or {}).get("incidentcommander.outcome") for s in finished]
    assert outcomes == ["error", "not_ready", "success"]
    counted = {
        outcome: metrics.registry.get_sample_value(
            "incident_commander_reconciliations_total", {"kind": "IncidentPolicy", "outcome": outcome}
        )
        for outcome in ("error", "not_ready", "success")
    }
    assert counted == {"error": 1, "not_ready": 1, "success": 1}  # the cancelled wait counts nothing
    assert all((s.attributes or {}).get("incidentcommander.name") == "policy" for s in finished)
    assert all((s.attributes or {}).get("k8s.namespace.name") == "team-a" for s in finished)


# -- context in thread pools, and botocore's spans as children -----------------------------------------


def test_context_executor_carries_context_into_threads() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="lost")

    async def seen_by(executor: ThreadPoolExecutor) -> str:
        marker.set("kept")
        return await asyncio.get_running_loop().run_in_executor(executor, marker.get)

    with ContextThreadPoolExecutor(max_workers=1) as ours, ThreadPoolExecutor(max_workers=1) as plain:
        assert asyncio.run(seen_by(ours)) == "kept"
        assert asyncio.run(seen_by(plain)) == "lost"  # why the pools need it


def test_aws_calls_in_a_pool_are_children_of_the_pass(
    recorded: tuple[trace.Tracer, InMemorySpanExporter, TracerProvider],
) -> None:
    tracer, exporter, provider = recorded
    assert tracing._instrument_botocore(provider)
    try:
        client = boto3.client(
            "sts",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",  # discard port: refused at once
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
        )

        def call() -> None:
            with contextlib.suppress(Exception):  # the refusal is expected; the span is what matters
                client.get_caller_identity()

        async def round_() -> None:
            loop = asyncio.get_running_loop()
            with ContextThreadPoolExecutor(max_workers=1) as pool:
                await loop.run_in_executor(pool, call)

        asyncio.run(spans.traced_pass(tracer, round_, kind="AwsConnection", namespace="n", name="c"))
    finally:
        BotocoreInstrumentor().uninstrument()
    finished: list[ReadableSpan] = list(exporter.get_finished_spans())
    by_name = {s.name: s for s in finished}
    aws, reconcile = by_name["STS.GetCallerIdentity"], by_name["reconcile AwsConnection"]
    assert aws.kind is SpanKind.CLIENT
    assert aws.parent is not None and aws.parent.span_id == reconcile.context.span_id
    assert aws.context.trace_id == reconcile.context.trace_id
    assert (aws.attributes or {}).get("rpc.service") == "STS"
