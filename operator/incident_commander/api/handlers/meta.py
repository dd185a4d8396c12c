"""The unauthenticated routes about the API itself: its OpenAPI document and the probes."""

from __future__ import annotations

from aiohttp import web

from incident_commander.api import openapi
from incident_commander.api.context import ApiContext


async def document(request: web.Request, ctx: ApiContext) -> web.Response:
    return web.json_response(openapi.document())


async def ready(request: web.Request, ctx: ApiContext) -> web.Response:
    return web.json_response({"status": "ok"})
