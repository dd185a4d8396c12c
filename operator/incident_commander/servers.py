"""The operator pod's own HTTP endpoints: Prometheus metrics and the API port.

They run as aiohttp apps inside kopf's event loop, so there are no extra threads
to stop and shutdown is ordered by kopf's cleanup handlers.
"""

from __future__ import annotations

import logging
import ssl
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


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server-side TLS from a mounted certificate (e.g. a cert-manager Secret); TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(kw_only=True)
class HttpServers:
    """The metrics and API servers of one operator process."""

    config: OperatorConfig
    metrics: OperatorMetrics
    api: web.Application
    _runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self) -> None:
        """Listen on the configured ports; a port of 0 disables that server."""
        tls = None
        if self.config.tls_cert_file and self.config.tls_key_file:
            tls = tls_context(self.config.tls_cert_file, self.config.tls_key_file)
        for name, port, app, context in (
            ("metrics", self.config.metrics_port, metrics_app(self.metrics), None),
            ("api", self.config.api_port, self.api, tls),
        ):
            if port == 0:
                continue
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.config.bind_address, port, ssl_context=context).start()
            self._runners.append(runner)
            scheme = "https" if context else "http"
            logger.info("%s server listening on %s://%s:%d", name, scheme, self.config.bind_address, port)

    async def stop(self) -> None:
        """Close the listeners and finish requests in flight."""
        while self._runners:
            await self._runners.pop().cleanup()
