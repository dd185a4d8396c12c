"""A server span per API request, continuing the caller's W3C trace context.

The middleware is the API's outermost one, so the span covers authentication, rate
limiting, the handler and the error answers. It takes the tracer from the application
(``app[TRACER_KEY]``, set by the operator at startup; without it the middleware traces
nothing) and the parent from the ``traceparent``/``tracestate`` headers with the W3C
propagator itself, not with OpenTelemetry's global propagator.

Attributes follow the HTTP semantic conventions: ``http.request.method``, ``http.route``
(the route template, never the raw path), ``url.scheme`` and ``http.response.status_code``;
5xx answers set the span's status to ERROR.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from incident_commander.api.context import route_label
from incident_commander.api.principal import PRINCIPAL
from incident_commander.telemetry.tracing import NOOP_TRACER

TRACER_KEY = web.AppKey("incident_commander_tracer", trace.Tracer)
PROPAGATOR = TraceContextTextMapPropagator()
ROLE = "incidentcommander.role"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
    tracer = request.app.get(TRACER_KEY, NOOP_TRACER)
    route = route_label(request)
    with tracer.start_as_current_span(
        f"{request.method} {route}",
        context=PROPAGATOR.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route, "url.scheme": request.scheme},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # aiohttp's way of answering 404, 405, ...: not an error as such
            status = exc.status
            raise
        except Exception as exc:
            span.record_exception(exc)
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            role = getattr(request.get(PRINCIPAL), "role", None)
            if isinstance(role, str):
                span.set_attribute(ROLE, role)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))


def instrument(app: web.Application, tracer: trace.Tracer) -> None:
    """Trace every request of ``app`` (before it starts): the span middleware goes first, outermost."""
    app[TRACER_KEY] = tracer
    app.middlewares.insert(0, server_span)
