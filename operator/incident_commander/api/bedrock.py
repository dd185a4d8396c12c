"""Amazon Bedrock Converse on a caller's behalf, through its IncidentPolicy's AwsConnection.

The connection's ``bedrock-runtime`` client is used as is: its region, endpoint override
(``spec.endpointUrl``: a test double, a VPC endpoint), credentials and botocore retries (throttled
calls are retried ``spec.retry.maxAttempts`` times before an error reaches the caller). Calls block,
so they run on a pool of this module's own: a model call takes seconds, and the default pool is
shared with everything else. Failures become ``ModelCallFailed`` with the status the API answers:

| Bedrock says | API answer |
| --- | --- |
| ThrottlingException, ServiceQuotaExceededException, TooManyRequests | 429 ``ModelThrottled``, Retry-After |
| ModelNotReadyException, ServiceUnavailableException | 503 ``ModelUnavailable``, Retry-After |
| ValidationException, ResourceNotFoundException (an unknown model id) | 422 ``ModelRequestRejected`` |
| AccessDeniedException, bad credentials | 502 ``ModelAccessDenied`` |
| ModelTimeoutException, a timeout | 504 ``ModelTimeout`` |
| anything else | 502 ``ModelCallFailed`` |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from incident_commander.api.context import ModelAnswer, ModelCallFailed
from incident_commander.aws.connection import ConnectionNotReady, ConnectionSource, ReadyConnection
from incident_commander.aws.errors import classify
from incident_commander.metrics import OperatorMetrics

THREADS = 32
"""Model calls (and streams) running at once; more wait for a thread."""
THROTTLED = frozenset(
    {"throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception", "throttling"}
)
UNAVAILABLE = frozenset({"modelnotreadyexception", "serviceunavailableexception", "internalserverexception"})
REJECTED = frozenset({"validationexception", "resourcenotfoundexception", "modelerrorexception"})
TIMEOUT = frozenset({"modeltimeoutexception"})


def failure(operation: str, exc: BaseException) -> tuple[ModelCallFailed, str]:
    """The API's answer to a failed call, and the metric outcome. Pure."""
    error = classify(exc)
    code = error.code.lower()
    message = f"Bedrock {operation}: {error.code}: {error.message}"[:1000]
    if code in THROTTLED:
        return ModelCallFailed(429, "ModelThrottled", message, retry_after=2), "throttled"
    if code in UNAVAILABLE:
        return ModelCallFailed(503, "ModelUnavailable", message, retry_after=5), "failed"
    if code in REJECTED:
        return ModelCallFailed(422, "ModelRequestRejected", message), "rejected"
    if code in TIMEOUT or error.reason == "Timeout":
        return ModelCallFailed(504, "ModelTimeout", message), "failed"
    if error.reason == "AccessDenied" or error.is_credentials:
        return ModelCallFailed(502, "ModelAccessDenied", message), "failed"
    if error.reason == "Throttled":
        return ModelCallFailed(429, "ModelThrottled", message, retry_after=2), "throttled"
    return ModelCallFailed(502, "ModelCallFailed", message), "failed"


class BedrockModels:
    """api/context.Models over Bedrock Converse and ConverseStream."""

    def __init__(
        self, connections: ConnectionSource, metrics: OperatorMetrics, *, threads: int = THREADS
    ) -> None:
        self._connections = connections
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bedrock")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def converse(
        self, namespace: str, connection: str, model: str, request: Mapping[str, Any]
    ) -> ModelAnswer:
        client = self._ready(namespace, connection).client("bedrock-runtime")
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(
                self._executor, lambda: client.converse(modelId=model, **request)
            )
        except Exception as exc:
            raise self._failed("Converse", exc) from None
        usage = response.get("usage") or {}
        if not isinstance(usage.get("inputTokens"), int) or not isinstance(usage.get("outputTokens"), int):
            self._metrics.model_calls.labels(operation="Converse", outcome="failed").inc()
            raise ModelCallFailed(502, "ModelCallFailed", "Bedrock Converse answered without token usage")
        self._metrics.model_calls.labels(operation="Converse", outcome="ok").inc()
        return ModelAnswer(
            output=response.get("output") or {},
            stop_reason=str(response.get("stopReason") or ""),
            input_tokens=usage["inputTokens"],
            output_tokens=usage["outputTokens"],
            latency_ms=(response.get("metrics") or {}).get("latencyMs"),
        )

    async def converse_stream(
        self, namespace: str, connection: str, model: str, request: Mapping[str, Any]
    ) -> AsyncIterator[Mapping[str, Any]]:
        client = self._ready(namespace, connection).client("bedrock-runtime")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = False

        def put(kind: str, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        def pump() -> None:
            try:
                stream = client.converse_stream(modelId=model, **request)["stream"]
                try:
                    for event in stream:
                        put("event", event)
                        if stop:
                            break
                finally:
                    stream.close()
                put("end", None)
            except Exception as exc:
                put("error", exc)

        pumping = loop.run_in_executor(self._executor, pump)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "event":
                    yield item
                elif kind == "error":
                    raise self._failed("ConverseStream", item) from None
                else:
                    break
            self._metrics.model_calls.labels(operation="ConverseStream", outcome="ok").inc()
        finally:
            stop = True
            with contextlib.suppress(Exception):
                await pumping

    def _ready(self, namespace: str, connection: str) -> ReadyConnection:
        try:
            return self._connections.get(namespace, connection)
        except ConnectionNotReady as not_ready:
            raise ModelCallFailed(503, "ConnectionNotReady", not_ready.describe(), retry_after=5) from None

    def _failed(self, operation: str, exc: BaseException) -> ModelCallFailed:
        failed, outcome = failure(operation, exc)
        self._metrics.model_calls.labels(operation=operation, outcome=outcome).inc()
        return failed
