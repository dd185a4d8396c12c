"""The API's one middleware: CORS, errors as JSON, and request metrics.

One layer, because each costs a coroutine per request. Every answer is JSON: ``ApiError`` from a
handler, aiohttp's own 404/405/413, and anything unexpected (500, logged with its traceback, never
sent to the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from incident_commander.api.auth import RATE_HEADERS
from incident_commander.api.context import ApiContext, ApiError, error_response, route_label
from incident_commander.api.metrics import ApiMetrics
from incident_commander.api.principal import PRINCIPAL, Principal

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALWAYS_ANSWERED = frozenset({"/readyz", "/healthz", "/v1/openapi.json"})
"""Routes that answer whatever the replica's state: the probes and the API's description."""


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, If-Match",
        "Access-Control-Expose-Headers": "ETag, Location, Retry-After",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


class _RequestCounters:
    """Series cached by their label values: ``labels()`` builds and checks a key on each call,
    which is a measurable share of a fast request. The label sets are bounded (route templates,
    methods, statuses, roles), so the cache is too."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics
        self._requests: dict[tuple[str, str, int, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe(self, route: str, method: str, status: int, role: str, seconds: float) -> None:
        key = (route, method, status, role)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._metrics.requests.labels(route=route, method=method, status=str(status), role=role)
            self._requests[key] = counter
        counter.inc()
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = self._metrics.duration.labels(route)
        histogram.observe(seconds)


def build_middlewares(ctx: ApiContext) -> list[Any]:
    """One middleware (each layer costs a coroutine per request): CORS, errors as JSON, metrics.

    CORS headers go on every answer to an allowed origin, errors included, so a browser can read
    why it was refused; preflights from other origins are refused outright.
    """
    counters = _RequestCounters(ctx.metrics)

    @web.middleware
    async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        origin = request.headers.get("Origin")
        allowed = origin is not None and origin in ctx.cors_origins
        reasons = ctx.not_ready()
        if reasons and route_label(request) not in ALWAYS_ANSWERED:
            # Fail closed: answering from a view that may be stale could accept a revoked key or
            # route under a Halt. Retry another replica, or this one in a moment.
            response: web.StreamResponse = error_response(
                503, "NotReady", f"this replica is not ready: {'; '.join(reasons)}", {"Retry-After": "2"}
            )
        elif request.method == "OPTIONS" and origin is not None:
            response = (
                web.Response(status=204, headers=_cors_headers(origin))
                if allowed
                else error_response(403, "CorsDenied", "this origin is not allowed")
            )
        else:
            try:
                response = await handler(request)
            except Exception as exc:  # every failure is answered as JSON
                response = _answer_failure(request, exc, ctx)
        if allowed and origin is not None:
            response.headers.update(_cors_headers(origin))
        rate = request.get(RATE_HEADERS)
        if rate is not None:
            response.headers.update(rate)
        principal = request.get(PRINCIPAL)
        role = principal.role if isinstance(principal, Principal) else "anonymous"
        counters.observe(
            route_label(request), request.method, response.status, role, time.perf_counter() - started
        )
        return response

    return [pipeline]


def _answer_failure(request: web.Request, exc: Exception, ctx: ApiContext) -> web.StreamResponse:
    """The JSON answer to a handler's exception (called in the middleware's ``except``, not
    around the handler in a coroutine of its own: one coroutine fewer per request)."""
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.reason, exc.message, exc.headers)
        if exc.status == 408:
            response.force_close()  # the rest of a body that never came is not worth waiting for
        return response
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_response(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return error_response(
            405,
            "MethodNotAllowed",
            f"{request.method} is not allowed here",
            {"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
    if isinstance(exc, web.HTTPNotFound):
        return error_response(404, "NotFound", "no such route")
    if isinstance(exc, web.HTTPException):
        return error_response(exc.status, exc.reason.replace(" ", ""), exc.reason)
    logger.error("API request %s %s failed", request.method, route_label(request), exc_info=exc)
    return error_response(500, "InternalError", "the operator could not answer; see its log")
