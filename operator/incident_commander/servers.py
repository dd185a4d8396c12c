"""The operator pod's own HTTP endpoints: Prometheus metrics and the API port.

They run as aiohttp apps inside kopf's event loop, so there are no extra threads
to stop and shutdown is ordered by kopf's cleanup handlers.

The API port faces clients that may be slow or hostile, and it shares the process and the event
loop with the reconcilers, so it is bounded (docs/api.md, "Server limits"):

- ``--api-idle-timeout`` (10 s): a connection must send a complete request head within this long
  of opening (or of its previous answer), else it is closed. aiohttp's keep-alive timer runs from
  the connection's start and is not reset by partial data, so it doubles as the header-read
  timeout: a client dribbling half a header cannot keep its connection.
- the body must arrive within ``--api-idle-timeout`` too (408 otherwise; see api/app.py);
- at most ``--api-max-connections`` (512) connections: beyond, new ones get a 503 and are closed;
- request line and header fields of at most 4 KiB each, at most 32 header fields.

With ``--tls-cert-file``/``--tls-key-file`` the API speaks HTTPS, and follows the files: a
renewed certificate (cert-manager updating the mounted Secret) is served to new connections within
``TLS_RELOAD_INTERVAL``, without a restart (``ReloadingTls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder

from incident_commander.api.metrics import ApiMetrics
from incident_commander.config import OperatorConfig
from incident_commander.metric_tables import exposition_of
from incident_commander.metrics import OperatorMetrics

logger = logging.getLogger(__name__)

MAX_LINE_SIZE = 4096
MAX_FIELD_SIZE = 4096
"""Bytes per header field: a Bearer token is capped at 2 KiB (api/tokens.py); 4 KiB leaves room."""
MAX_HEADERS = 32
LINGERING_TIME = 1.0
"""Seconds spent reading (and discarding) the unread rest of a body after an early answer (413,
401...), so the client sees the answer: aiohttp's 10 s would let a slow body hold the connection."""
_REFUSAL_BODY = json.dumps(
    {"error": "TooManyConnections", "message": "the API has too many open connections; retry"}
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class _Refusal(asyncio.Protocol):
    """Answers 503 and closes: a connection over the cap costs no parser and no buffer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


class ConnectionCap:
    """Protocol factory in front of aiohttp's: at most ``limit`` connections at once."""

    def __init__(self, server: web.Server, limit: int, on_refused: Callable[[], None]) -> None:
        self._server = server
        self._limit = limit
        self._on_refused = on_refused

    def open_connections(self) -> int:
        return len(self._server.connections)

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open_connections() >= self._limit:
            self._on_refused()
            return _Refusal()
        return self._server()


def metrics_app(metrics: OperatorMetrics) -> web.Application:
    """``/metrics``: the text format or OpenMetrics as the scraper's ``Accept`` asks, gzip when its
    ``Accept-Encoding`` allows, ``?name[]=`` filters.

    What prometheus_client's own aiohttp handler does, but the exposition is written on a thread:
    with a few thousand objects it takes a large fraction of a second (docs/performance.md,
    "Scrapes"), and on the event loop it would hold up the API, the probes and the watches for
    as long. The per-object families write their own lines (metric_tables.exposition_of)."""

    async def scrape(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(",".join(request.headers.getall(hdrs.ACCEPT, [])))
        names = request.query.getall("name[]", [])
        body = await asyncio.to_thread(exposition_of, metrics.registry, encoder, names)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()
        return response

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app


TLS_RELOAD_INTERVAL = 10.0
"""Seconds between looks at the certificate files. The kubelet takes up to a minute or more to
update a mounted Secret; a look costs two small file reads."""


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Server-side TLS from a mounted certificate (e.g. a cert-manager Secret); TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class ReloadingTls:
    """A server TLS context that follows its certificate and key files.

    The listener keeps one context for its lifetime, so a reload cannot replace it; instead the
    listener's context hands every new handshake to the current one (OpenSSL's server-name
    callback runs for every ClientHello, with or without SNI). A new pair is loaded into a fresh
    context and swapped in only once it loaded whole: a half-updated pair (a new certificate with
    the old key) is refused, logged, and the previous certificate stays in service until the files
    change again. Connections already open keep the certificate they were made with."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self._files = (Path(cert_file), Path(key_file))
        self._seen = self._fingerprint()
        self.current = tls_context(cert_file, key_file)
        """The context new handshakes use."""
        self.reloads = 0
        self.context = tls_context(cert_file, key_file)
        """The listener's context (its own certificate is the one loaded at start)."""
        self.context.sni_callback = self._select

    def _select(self, connection: ssl.SSLObject, _server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = self.current

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self._files:
            digest.update(path.read_bytes())
            digest.update(b"\0")
        return digest.hexdigest()

    def check(self) -> bool:
        """Load the files again if their content changed; True when a new certificate is in use."""
        try:
            seen = self._fingerprint()
        except OSError as missing:  # between a Secret's old and new files: look again later
            logger.warning("TLS files unreadable (%s); serving the previous certificate", missing.strerror)
            return False
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            self.current = tls_context(str(self._files[0]), str(self._files[1]))
        except (OSError, ssl.SSLError) as broken:
            logger.warning(
                "TLS files %s and %s changed but do not load (%s); serving the previous certificate",
                *self._files,
                broken,
            )
            return False
        self.reloads += 1
        logger.info("TLS certificate reloaded from %s", self._files[0])
        return True

    async def follow(self, interval: float) -> None:
        """Look at the files every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never let a reload problem stop the API
                logger.exception("checking the TLS files failed")


@dataclass(kw_only=True)
class HttpServers:
    """The metrics and API servers of one operator process."""

    config: OperatorConfig
    metrics: OperatorMetrics
    api: web.Application
    api_metrics: ApiMetrics | None = None
    liveness_port: int = 0
    """The liveness port as bound (the configured one, or the free one picked for port 0)."""
    tls_reload_interval: float = TLS_RELOAD_INTERVAL
    tls: ReloadingTls | None = None
    """The API's TLS, once started with a certificate."""
    _runners: list[web.AppRunner] = field(default_factory=list)
    _listeners: list[asyncio.Server] = field(default_factory=list)
    _tls_follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on the configured ports; a metrics or API port of 0 disables that server, a
        liveness port of 0 takes any free port."""
        await self._liveness()
        tls = None
        if self.config.tls_cert_file and self.config.tls_key_file:
            self.tls = ReloadingTls(self.config.tls_cert_file, self.config.tls_key_file)
            tls = self.tls.context
            self._tls_follower = asyncio.create_task(
                self.tls.follow(self.tls_reload_interval), name="TLS reload"
            )
        if self.config.metrics_port:
            runner = web.AppRunner(metrics_app(self.metrics), access_log=None)
            await self._listen("metrics", runner, self.config.metrics_port, None, None)
        if self.config.api_port:
            runner = web.AppRunner(
                self.api,
                access_log=None,
                keepalive_timeout=self.config.api_idle_timeout,
                max_line_size=MAX_LINE_SIZE,
                max_field_size=MAX_FIELD_SIZE,
                max_headers=MAX_HEADERS,
                lingering_time=LINGERING_TIME,
            )
            await self._listen("api", runner, self.config.api_port, tls, self.config.api_max_connections)

    async def _liveness(self) -> None:
        """``/healthz`` for the kubelet: the process and its event loop answer. Not the API's
        readiness: a replica cut off from Kubernetes is not ready, but restarting it would not help."""
        url = urlsplit(self.config.liveness_endpoint)

        async def alive(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get(url.path or "/healthz", alive)
        runner = web.AppRunner(app, access_log=None)
        self.liveness_port = await self._listen(
            "liveness", runner, url.port or 0, None, None, host=url.hostname or self.config.bind_address
        )

    async def _listen(
        self,
        name: str,
        runner: web.AppRunner,
        port: int,
        context: ssl.SSLContext | None,
        cap: int | None,
        *,
        host: str | None = None,
    ) -> int:
        await runner.setup()
        self._runners.append(runner)
        assert runner.server is not None
        factory: Callable[[], asyncio.BaseProtocol] = runner.server
        if cap is not None:
            metrics = self.api_metrics
            capped = ConnectionCap(
                runner.server,
                cap,
                on_refused=metrics.connections_refused.inc if metrics else (lambda: None),
            )
            if metrics is not None:
                metrics.connections.set_function(capped.open_connections)
            factory = capped
        host = host or self.config.bind_address
        listener = await asyncio.get_running_loop().create_server(factory, host, port, ssl=context)
        self._listeners.append(listener)
        bound = int(listener.sockets[0].getsockname()[1]) if listener.sockets else port
        scheme = "https" if context else "http"
        logger.info("%s server listening on %s://%s:%d", name, scheme, host, bound)
        return bound

    async def stop(self) -> None:
        """Close the listeners and finish requests in flight."""
        if self._tls_follower is not None:
            self._tls_follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tls_follower
            self._tls_follower = None
        while self._listeners:
            self._listeners.pop().close()
        while self._runners:
            await self._runners.pop().cleanup()
