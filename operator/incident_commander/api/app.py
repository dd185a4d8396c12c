"""The API as an aiohttp application: the routes, their handlers, and the middleware.

Every answer is JSON. Errors are ``{"error": <Reason>, "message": <text>}`` with
the status the OpenAPI document lists for the route: 400 malformed or invalid
body, 401 no or invalid credential (with ``WWW-Authenticate``), 403 a valid
credential that lacks the role or acts on another policy, 404, 408 a body that
did not arrive in time, 413 body too large, 415 not JSON, 422 a well-formed
report the budget cannot price, 429 rate limited (with ``Retry-After``), 402
routing refused while the budget is halted, 503 the budget ledger is
unavailable. Security events (401, 403, 429) are logged as one line without any
credential (rate-limited), and counted.

The handlers live in api/handlers/, one module per concern, each taking the request and the
injected ``ApiContext`` (api/context.py); authentication and the rest of admission are in
api/auth.py, body reading in api/bodies.py, the middleware in api/middleware.py.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Protocol

from aiohttp import web

from incident_commander.api.context import ApiContext
from incident_commander.api.handlers import converse, credentials, incidents, meta, reads, routing, usage
from incident_commander.api.middleware import build_middlewares


class ContextHandler(Protocol):
    """A route's handler: the request and the API's context, by these names (``ctx`` is bound by
    keyword)."""

    def __call__(self, request: web.Request, ctx: ApiContext) -> Awaitable[web.StreamResponse]: ...


ROUTES: tuple[tuple[str, str, ContextHandler], ...] = (
    ("POST", "/v1/token", credentials.token),
    ("POST", "/v1/token/refresh", credentials.refresh),
    ("GET", "/v1/jwks/{namespace}/{policy}", credentials.jwks),
    ("POST", "/v1/route", routing.route),
    ("POST", "/v1/usage", usage.usage),
    ("POST", "/v1/converse", converse.converse),
    ("POST", "/v1/converse/stream", converse.converse_stream),
    ("GET", "/v1/policies/{namespace}/{name}", reads.policy),
    ("GET", "/v1/summary", reads.summary),
    ("GET", "/v1/history", reads.history),
    ("POST", "/v1/incidents", incidents.open_incident),
    ("GET", "/v1/incidents", incidents.list_incidents),
    ("GET", "/v1/incidents/{id}", incidents.get_incident),
    ("GET", "/v1/incidents/{id}/audit", incidents.audit),
    ("POST", "/v1/incidents/{id}/acknowledge", incidents.acknowledge),
    ("POST", "/v1/incidents/{id}/resolve", incidents.resolve),
    ("POST", "/v1/incidents/{id}/close", incidents.close),
    ("POST", "/v1/incidents/{id}/artifacts", incidents.attach),
    ("GET", "/v1/incidents/{id}/artifacts/{artifact}", incidents.artifact),
    ("POST", "/v1/incidents/{id}/proposals", incidents.propose),
    ("GET", "/v1/incidents/{id}/proposals/{proposal}", incidents.proposal),
    ("POST", "/v1/incidents/{id}/proposals/{proposal}/approve", incidents.approve),
    ("POST", "/v1/incidents/{id}/proposals/{proposal}/refuse", incidents.refuse),
    ("GET", "/v1/openapi.json", meta.document),
    ("GET", "/readyz", meta.ready),
    ("GET", "/healthz", meta.alive),
)
"""Every route: method, path template, handler. Adding a route is one line here (and the
OpenAPI document, api/openapi.py, which a test compares with this table)."""


def build_api_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=build_middlewares(ctx), client_max_size=ctx.max_body_bytes)
    for method, path, handler in ROUTES:
        # A partial, not a wrapping coroutine: one coroutine fewer per request.
        app.router.add_route(method, path, partial(handler, ctx=ctx))
    return app
