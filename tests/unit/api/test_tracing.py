"""The API's server span: W3C context from the caller, route template, status, outermost position."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from incident_commander.api import tracing as traced_http
from incident_commander.api.app import build_api_app
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from tests.support.budgets import NoBudgets

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def recorded() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def serve(app: web.Application, requests: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await requests(client)

    asyncio.run(main())


def small_app() -> web.Application:
    async def item(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def broken(_: web.Request) -> web.Response:
        return web.json_response({"error": "InternalError"}, status=503)

    app = web.Application()
    app.router.add_get("/items/{id}", item)
    app.router.add_get("/broken", broken)
    return app


def test_a_request_continues_the_callers_trace(recorded: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = recorded
    app = small_app()
    traced_http.instrument(app, tracer)

    async def requests(client: TestClient[Any, Any]) -> None:
        response = await client.get("/items/incident-123", headers={"traceparent": TRACEPARENT})
        assert response.status == 200

    serve(app, requests)
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /items/{id}" and span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/items/{id}",
        "url.scheme": "http",
        "http.response.status_code": 200,
    }


def test_without_traceparent_a_new_trace_starts_and_5xx_is_an_error(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = recorded
    app = small_app()
    traced_http.instrument(app, tracer)

    async def requests(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/broken")).status == 503
        assert (await client.get("/nowhere/at/all")).status == 404

    serve(app, requests)
    broken, missing = exporter.get_finished_spans()
    assert broken.parent is None and broken.status.status_code is StatusCode.ERROR
    assert missing.name == "GET unmatched" and missing.status.status_code is StatusCode.UNSET
    assert (missing.attributes or {})["http.response.status_code"] == 404


def test_the_api_app_gets_an_outermost_span_per_request(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = recorded
    ctx = ApiContext(
        keyring=Keyring(),
        directory=Directory(),
        metrics=ApiMetrics(CollectorRegistry()),
        budgets=NoBudgets(),
    )
    app = build_api_app(ctx)
    traced_http.instrument(app, tracer)
    assert app.middlewares[0] is traced_http.server_span

    async def requests(client: TestClient[Any, Any]) -> None:
        response = await client.get("/v1/policies/team-a/secret-policy", headers={"traceparent": TRACEPARENT})
        assert response.status == 401  # answered by the API's own error handling, inside the span

    serve(app, requests)
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /v1/policies/{namespace}/{name}"
    assert (span.attributes or {})["http.response.status_code"] == 401
    assert format(span.context.trace_id, "032x") == TRACE_ID


def test_an_app_without_a_tracer_is_left_alone() -> None:
    app = small_app()
    assert traced_http.server_span not in app.middlewares
