"""The unauthenticated routes about the API itself: its OpenAPI document and the probes."""

from __future__ import annotations

from aiohttp import web

from incident_commander.api import openapi
from incident_commander.api.context import ApiContext


async def document(request: web.Request, ctx: ApiContext) -> web.Response:
    return web.json_response(openapi.document())


async def ready(request: web.Request, ctx: ApiContext) -> web.Response:
    """503 while this replica's view may not be current (readiness.py), so a Service skips it."""
    reasons = ctx.not_ready()
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ok"})


async def alive(request: web.Request, ctx: ApiContext) -> web.Response:
    """The process answers: the kubelet restarts it when this fails, not when the API is away."""
    return web.json_response({"status": "ok"})
