"""A span per reconciliation pass.

Each pass is the root of its own trace (a pass is started by a watch event or a timer,
not by a request), with the object as attributes. Work the pass does on threads
(``asyncio.to_thread``, or a :class:`~incident_commander.telemetry.threads.ContextThreadPoolExecutor`)
runs in the pass's context, so botocore's spans become its children.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

NAMESPACE = "k8s.namespace.name"
KIND = "incidentcommander.kind"
NAME = "incidentcommander.name"
OUTCOME = "incidentcommander.outcome"

T = TypeVar("T")


def _succeeded(_: object) -> str:
    return "success"


async def traced_pass(
    tracer: trace.Tracer,
    run: Callable[[], Awaitable[T]],
    *,
    kind: str,
    namespace: str,
    name: str,
    outcome: Callable[[T], str] = _succeeded,
) -> T:
    """Run one reconciliation pass inside a span ``reconcile <kind>``; re-raise what it raises.

    ``incidentcommander.outcome`` is what ``outcome`` makes of the pass's result (``success``,
    ``not_ready``, ``deferred``: workers.PassResult), ``error`` (with the exception recorded and
    the span's status ERROR) or ``cancelled`` (the object went away or the operator stops)."""
    with tracer.start_as_current_span(
        f"reconcile {kind}",
        context=otel_context.Context(),
        kind=SpanKind.INTERNAL,
        attributes={NAMESPACE: namespace, KIND: kind, NAME: name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            result = await run()
        except asyncio.CancelledError:
            span.set_attribute(OUTCOME, "cancelled")
            raise
        except Exception as exc:
            span.set_attribute(OUTCOME, "error")
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        span.set_attribute(OUTCOME, outcome(result))
        return result
