"""A Bedrock test double: a real HTTP server speaking the Bedrock control plane and runtime.

moto's bedrock answers 500 to ListFoundationModels and its bedrock-runtime answers ``{}`` to
InvokeModel (no Converse, no usage), so tests that need Bedrock talk to this server instead. It
speaks the wire protocols botocore expects, so real boto3 clients (and the operator's) use it
through an ``endpoint_url`` / AwsConnection ``endpointUrl`` like any AWS endpoint:

- ``bedrock`` (control plane): ``ListFoundationModels`` (GET /foundation-models).
- ``bedrock-runtime``: ``Converse`` (POST /model/{modelId}/converse), ``ConverseStream``
  (POST /model/{modelId}/converse-stream, AWS event-stream binary framing, chunked, with the
  ``metadata`` event carrying usage) and ``ListAsyncInvokes`` (GET /async-invoke, always empty).

Requests signed for any other service (the SigV4 credential scope names it) are forwarded to
``upstream`` (moto) when one is given, so one AwsConnection can point at the double and still reach
STS, DynamoDB and the rest. Without an upstream they get 404 ``UnknownOperationException``.

Usage is deterministic: a token is a whitespace-separated word. ``inputTokens`` counts the words of
the system prompt and of every text block of every message; ``outputTokens`` counts the words of
the reply (cut to ``inferenceConfig.maxTokens``, then ``stopReason`` is ``max_tokens``).

On demand, for tests: :meth:`BedrockDouble.throttle` (the next N calls answer 429
ThrottlingException), :meth:`BedrockDouble.fail` (any status and error code),
:meth:`BedrockDouble.fail_stream` (an exception event in the middle of a stream),
:attr:`BedrockDouble.latency` (seconds before each answer) and :attr:`BedrockDouble.event_delay`
(seconds between stream events). Every request is recorded (:attr:`BedrockDouble.calls`).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_CONVERSE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
_GEO_PREFIX = re.compile(r"^(us|eu|apac|jp|au|ca|us-gov|global)\.")

DEFAULT_MODELS: tuple[str, ...] = (
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
)
"""Model ids the double knows. Converse also accepts them behind a cross-region inference profile
prefix (``us.``, ``eu.``, ``global.``...), as Bedrock does."""

DEFAULT_REPLY = "This answer comes from the Bedrock test double."


def count_tokens(text: str) -> int:
    """The double's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def encode_event(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message of the AWS event-stream framing (string headers only), CRCs included.

    Layout: total length, headers length, prelude CRC32, headers, payload, message CRC32, all
    integers big-endian. A header is name length (1 byte), name, type 7 (string), value length
    (2 bytes), value.
    """
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name + b"\x07"
        encoded += struct.pack(">H", len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


@dataclass(frozen=True)
class Call:
    """One request the double received."""

    service: str
    """Signing name from the SigV4 scope (``bedrock`` for both Bedrock APIs), ``bearer`` for a
    Bedrock API key, ``unsigned`` without Authorization."""
    operation: str | None
    """The Bedrock operation it answered, None for a forwarded or unknown request."""
    method: str
    path: str
    model_id: str | None
    body: Any
    """The parsed JSON body (None when empty or not JSON)."""
    raw_body: bytes
    """The body as received (form-encoded for query protocols such as STS)."""
    headers: dict[str, str]
    access_key_id: str | None
    region: str | None
    status: int
    at: float


@dataclass
class _Fault:
    remaining: int
    status: int
    code: str
    message: str
    operations: frozenset[str] | None


@dataclass
class _StreamFault:
    remaining: int
    exception: str
    message: str
    after_deltas: int


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that gave up (read timeout) mid-answer
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class BedrockDouble:
    """The server. ``start()`` binds 127.0.0.1 on a free port (or ``port``); ``stop()`` closes it.

    Settings may change while it runs; they apply to the next request.
    """

    upstream: str | None = None
    """Where requests for other services go (moto's URL), or None."""
    models: Sequence[str] = DEFAULT_MODELS
    reply: str | Callable[[Mapping[str, Any]], str] = DEFAULT_REPLY
    """The assistant's answer, or a function of the Converse request body that makes it."""
    latency: float = 0.0
    """Seconds added before every Bedrock answer (not to forwarded requests)."""
    event_delay: float = 0.0
    """Seconds between two events of a ConverseStream answer."""
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _stream_faults: list[_StreamFault] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Bedrock double is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> BedrockDouble:
        if self._server is not None:
            return self
        self._server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="bedrock-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> BedrockDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- behaviour on demand ----------------------------------------------------------------------
    def throttle(self, next_calls: int, *, operations: Iterable[str] | None = None) -> None:
        """The next ``next_calls`` Bedrock calls (of ``operations`` only, if given) answer HTTP 429
        ThrottlingException, as Bedrock does when a quota is exceeded."""
        self.fail(
            next_calls,
            status=429,
            code="ThrottlingException",
            message="Too many requests, please wait before trying again.",
            operations=operations,
        )

    def fail(
        self,
        next_calls: int,
        *,
        status: int,
        code: str,
        message: str = "injected by the Bedrock test double",
        operations: Iterable[str] | None = None,
    ) -> None:
        """The next ``next_calls`` matching calls answer ``status`` with error ``code``."""
        with self._lock:
            self._faults.append(
                _Fault(
                    remaining=next_calls,
                    status=status,
                    code=code,
                    message=message,
                    operations=frozenset(operations) if operations is not None else None,
                )
            )

    def fail_stream(
        self,
        next_streams: int,
        *,
        exception: str = "throttlingException",
        message: str = "Too many requests, please wait before trying again.",
        after_deltas: int = 1,
    ) -> None:
        """The next ``next_streams`` ConverseStream answers start (HTTP 200), send ``after_deltas``
        text deltas, then an ``exception`` event (a member of ConverseStreamOutput such as
        throttlingException or modelStreamErrorException) and end without usage."""
        with self._lock:
            self._stream_faults.append(
                _StreamFault(
                    remaining=next_streams, exception=exception, message=message, after_deltas=after_deltas
                )
            )

    def calls_of(self, operation: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.operation == operation]

    def services_seen(self) -> set[str]:
        with self._lock:
            return {c.service for c in self.calls}

    def forwarded(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.operation is None]

    def reset(self) -> None:
        """Forget recorded calls and pending faults."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._stream_faults.clear()

    # -- internals --------------------------------------------------------------------------------
    def _knows(self, model_id: str) -> bool:
        return model_id in self.models or _GEO_PREFIX.sub("", model_id) in self.models

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.operations is None or operation in fault.operations):
                    fault.remaining -= 1
                    return fault
            return None

    def _take_stream_fault(self) -> _StreamFault | None:
        with self._lock:
            for fault in self._stream_faults:
                if fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
            return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _reply_text(self, body: Mapping[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                scope = _SCOPE.search(auth)
                if scope:
                    service = scope.group(3)
                elif auth.lower().startswith("bearer "):
                    service = "bearer"
                else:
                    service = "unsigned"
                split = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                operation, model_id = (
                    self._operation(split.path) if service in ("bedrock", "bearer") else (None, None)
                )
                self._call = Call(
                    service=service,
                    operation=operation,
                    method=self.command,
                    path=split.path,
                    model_id=model_id,
                    body=body,
                    raw_body=raw,
                    headers=dict(self.headers.items()),
                    access_key_id=scope.group(1) if scope else None,
                    region=scope.group(2) if scope else None,
                    status=0,
                    at=time.monotonic(),
                )
                self._dispatch(operation, model_id, body, raw, split.query, scope)

            def _status(self, status: int) -> None:
                """Record the call, then start the answer: a client that got its answer finds its
                call in ``calls``."""
                double._record(dataclasses.replace(self._call, status=status))
                self.send_response(status)

            def _operation(self, path: str) -> tuple[str | None, str | None]:
                if self.command == "GET" and path == "/foundation-models":
                    return "ListFoundationModels", None
                if self.command == "GET" and path == "/async-invoke":
                    return "ListAsyncInvokes", None
                match = _CONVERSE.match(path)
                if self.command == "POST" and match:
                    op = "Converse" if match.group("op") == "converse" else "ConverseStream"
                    return op, unquote(match.group("model"))
                return None, None

            def _dispatch(
                self,
                operation: str | None,
                model_id: str | None,
                body: Any,
                raw: bytes,
                query: str,
                scope: re.Match[str] | None,
            ) -> int:
                if operation is None:
                    if double.upstream is not None:
                        return self._forward(raw)
                    return self._error(404, "UnknownOperationException", f"{self.command} {self.path}")
                fault = double._take_fault(operation)
                if double.latency:
                    time.sleep(double.latency)
                if fault is not None:
                    return self._error(fault.status, fault.code, fault.message)
                region = scope.group(2) if scope else "us-east-1"
                if operation == "ListFoundationModels":
                    return self._json(200, self._foundation_models(region, parse_qs(query)))
                if operation == "ListAsyncInvokes":
                    return self._json(200, {"asyncInvokeSummaries": []})
                assert model_id is not None
                problem = self._invalid(model_id, body)
                if problem is not None:
                    return self._error(400, "ValidationException", problem)
                if operation == "Converse":
                    return self._converse(body)
                return self._converse_stream(body)

            @staticmethod
            def _invalid(model_id: str, body: Any) -> str | None:
                if not double._knows(model_id):
                    return "The provided model identifier is invalid."
                messages = body.get("messages") if isinstance(body, dict) else None
                if not isinstance(messages, list) or not messages:
                    return "A conversation must start with a user message."
                if messages[0].get("role") != "user":
                    return "A conversation must start with a user message. Try again with a user message."
                return None

            @staticmethod
            def _foundation_models(region: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
                provider = (query.get("byProvider") or [None])[0]
                summaries = []
                for model_id in double.models:
                    name = model_id.split(".", 1)[0].capitalize()
                    if provider and provider.lower() != name.lower():
                        continue
                    summaries.append(
                        {
                            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
                            "modelId": model_id,
                            "modelName": model_id.split(".", 1)[-1],
                            "providerName": name,
                            "inputModalities": ["TEXT"],
                            "outputModalities": ["TEXT"],
                            "responseStreamingSupported": True,
                            "customizationsSupported": [],
                            "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
                            "modelLifecycle": {"status": "ACTIVE"},
                        }
                    )
                return {"modelSummaries": summaries}

            @staticmethod
            def _answer(body: Mapping[str, Any]) -> tuple[str, str, dict[str, int]]:
                texts = [s.get("text", "") for s in body.get("system") or [] if isinstance(s, dict)]
                for message in body["messages"]:
                    texts.extend(
                        c.get("text", "") for c in message.get("content") or [] if isinstance(c, dict)
                    )
                input_tokens = sum(count_tokens(t) for t in texts)
                words = double._reply_text(body).split()
                limit = (body.get("inferenceConfig") or {}).get("maxTokens")
                stop_reason = "end_turn"
                if isinstance(limit, int) and len(words) > limit:
                    words, stop_reason = words[:limit], "max_tokens"
                usage = {
                    "inputTokens": input_tokens,
                    "outputTokens": len(words),
                    "totalTokens": input_tokens + len(words),
                }
                return " ".join(words), stop_reason, usage

            def _converse(self, body: Mapping[str, Any]) -> int:
                started = time.monotonic()
                text, stop_reason, usage = self._answer(body)
                return self._json(
                    200,
                    {
                        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                        "stopReason": stop_reason,
                        "usage": usage,
                        "metrics": {
                            "latencyMs": round((time.monotonic() - started) * 1000 + double.latency * 1000)
                        },
                    },
                )

            def _converse_stream(self, body: Mapping[str, Any]) -> int:
                started = time.monotonic()
                text, stop_reason, usage = self._answer(body)
                fault = double._take_stream_fault()
                self._status(200)
                self.send_header("Content-Type", "application/vnd.amazon.eventstream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                words = text.split(" ") if text else []
                deltas = [w if i == 0 else " " + w for i, w in enumerate(words)]
                self._event("messageStart", {"role": "assistant"})
                for index, delta in enumerate(deltas):
                    if fault is not None and index >= fault.after_deltas:
                        break
                    self._event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": delta}})
                if fault is not None:
                    self._chunk(
                        encode_event(
                            {
                                ":message-type": "exception",
                                ":exception-type": fault.exception,
                                ":content-type": "application/json",
                            },
                            json.dumps({"message": fault.message}).encode(),
                        )
                    )
                    self._chunk(b"")
                    return 200
                self._event("contentBlockStop", {"contentBlockIndex": 0})
                self._event("messageStop", {"stopReason": stop_reason})
                latency_ms = round((time.monotonic() - started) * 1000 + double.latency * 1000)
                self._event("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}})
                self._chunk(b"")
                return 200

            def _event(self, event_type: str, payload: Mapping[str, Any]) -> None:
                if double.event_delay:
                    time.sleep(double.event_delay)
                headers = {
                    ":event-type": event_type,
                    ":content-type": "application/json",
                    ":message-type": "event",
                }
                self._chunk(encode_event(headers, json.dumps(payload).encode()))

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status: int, payload: Mapping[str, Any]) -> int:
                data = json.dumps(payload).encode()
                self._status(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(data)
                return status

            def _error(self, status: int, code: str, message: str) -> int:
                data = json.dumps({"message": message}).encode()
                self._status(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header(
                    "x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
                )
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(data)
                return status

            def _forward(self, raw: bytes) -> int:
                assert double.upstream is not None
                target = urlsplit(double.upstream)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=raw, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                finally:
                    conn.close()
                self._status(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return response.status

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler
