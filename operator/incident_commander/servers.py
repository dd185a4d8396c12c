"""The operator pod's own HTTP endpoints: Prometheus metrics and the API port.

They run as aiohttp apps inside kopf's event loop, so there are no extra threads
to stop and shutdown is ordered by kopf's cleanup handlers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from incident_commander.config import OperatorConfig
from incident_commander.metrics import OperatorMetrics

logger = logging.getLogger(__name__)


def metrics_app(metrics: OperatorMetrics) -> web.Application:
    """``/metrics`` in the Prometheus text format."""

    async def serve_metrics(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app


def api_app() -> web.Application:
    """The API port. For now it answers the readiness probe; the API routes join it later."""

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_get("/healthz", ready)
    return app


@dataclass(kw_only=True)
class HttpServers:
    """The metrics and API servers of one operator process."""

    config: OperatorConfig
    metrics: OperatorMetrics
    _runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self) -> None:
        """Listen on the configured ports; a port of 0 disables that server."""
        for name, port, app in (
            ("metrics", self.config.metrics_port, metrics_app(self.metrics)),
            ("api", self.config.api_port, api_app()),
        ):
            if port == 0:
                continue
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.config.bind_address, port).start()
            self._runners.append(runner)
            logger.info("%s server listening on %s:%d", name, self.config.bind_address, port)

    async def stop(self) -> None:
        """Close the listeners and finish requests in flight."""
        while self._runners:
            await self._runners.pop().cleanup()
