"""A small HTTP proxy in front of moto that injects faults, per AWS service, and records attempts.

Faults: ``refuse`` (the listener is closed: connection refused), ``slow`` (answers
after ``delay`` seconds), ``throttle-json`` (400 ThrottlingException, JSON
protocols), ``throttle-query`` (400 Throttling, query/XML protocols such as STS),
``throttle-429`` and ``throttle-503`` (those statuses with the protocol's error body), ``reset`` (the
connection is closed without an answer: with ``stop()`` an endpoint that is down even for clients
holding pooled keep-alive connections). The AWS service of a
request is read from its SigV4 credential scope; a fault keyed ``<service>:<operation>`` (for
example ``dynamodb:TransactWriteItems``) applies to that operation of a JSON-protocol service only.
"""

from __future__ import annotations

import http.client
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")

_THROTTLE_QUERY = (
    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>"
)


@dataclass(frozen=True)
class Attempt:
    service: str
    at: float
    fault: str | None
    operation: str = ""
    """The JSON protocols' operation (``X-Amz-Target``: TransactWriteItems, PutRecord, ...); empty
    for the others."""
    body: bytes = field(default=b"", repr=False)
    """The request's body, so a test can tell its call from another of the same operation."""


class _QuietServer(ThreadingHTTPServer):
    """Clients that give up (timeouts, the operator's own cancellations) reset connections mid-answer;
    that is what the slow and reset faults provoke, so it is not worth a traceback on stderr."""

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class FaultProxy:
    upstream: str
    port: int
    faults: dict[str, str] = field(default_factory=dict)
    delay: float = 3.0
    attempts: list[Attempt] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = _SCOPE.search(self.headers.get("Authorization", ""))
                service = match.group(1) if match else "unknown"
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                with proxy._lock:
                    fault = (
                        proxy.faults.get(f"{service}:{operation}")
                        or proxy.faults.get(service)
                        or proxy.faults.get("*")
                    )
                    proxy.attempts.append(
                        Attempt(
                            service=service, at=time.monotonic(), fault=fault, operation=operation, body=body
                        )
                    )
                if fault == "reset":
                    self.close_connection = True
                    return None
                if fault == "slow":
                    time.sleep(proxy.delay)
                if fault == "throttle-json":
                    return self._reply(
                        400,
                        b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
                        "application/x-amz-json-1.1",
                    )
                if fault == "throttle-query":
                    return self._reply(400, _THROTTLE_QUERY, "text/xml")
                if fault in ("throttle-429", "throttle-503"):
                    status = int(fault[-3:])
                    if self.headers.get("X-Amz-Target"):
                        code = b"ThrottlingException" if status == 429 else b"ServiceUnavailableException"
                        return self._reply(
                            status,
                            b'{"__type":"' + code + b'","message":"slow down"}',
                            "application/x-amz-json-1.1",
                        )
                    code = b"Throttling" if status == 429 else b"ServiceUnavailable"
                    return self._reply(status, _THROTTLE_QUERY.replace(b"Throttling", code), "text/xml")
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                target = urlsplit(proxy.upstream)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

            def _reply(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the listener: new connections are refused until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_fault(self, service: str, fault: str | None) -> None:
        with self._lock:
            if fault is None:
                self.faults.pop(service, None)
            else:
                self.faults[service] = fault

    def attempts_for(self, service: str, since: float = 0.0, containing: bytes = b"") -> list[Attempt]:
        """Attempts of ``service``, or of one operation of it (``dynamodb:TransactWriteItems``),
        whose body contains ``containing`` (an incident's id, say: the operator's background sweep
        may make the same call for another one at the same time)."""
        name, _, operation = service.partition(":")
        with self._lock:
            return [
                a
                for a in self.attempts
                if a.service == name
                and a.at >= since
                and (not operation or a.operation == operation)
                and containing in a.body
            ]
