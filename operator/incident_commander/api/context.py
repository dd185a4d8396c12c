"""What every API handler depends on, injected: the context, and the error it raises.

Handlers (api/handlers/) take ``(request, ctx)``; a test builds an ``ApiContext`` with the pieces
it needs (a keyring, a directory, a fake budget) and calls one handler alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web

from incident_commander.api.directory import Directory, PolicyView
from incident_commander.api.history import History
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.api.ratelimit import FailureGuard, RateLimiter
from incident_commander.api.routing import EffectiveRoutingView
from incident_commander.api.tokens import VerifiedTokens
from incident_commander.clock import Clock, system_clock
from incident_commander.incidents.service import IncidentService
from incident_commander.telemetry.sampled_log import SampledLog

logger = logging.getLogger("incident_commander.api")

MAX_BODY_BYTES = 64 * 1024
SECURITY_LOG_LINES = 20
"""Security-event log lines per reason per minute; the rest are counted and summarised."""


class UsageRejected(Exception):
    """The budget refused a report: ``status`` is 409, 422 or 503, ``reason`` a short code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Hold:
    """A reservation taken for a routed call (budget/ledger.py holds it in DynamoDB)."""

    id: str
    amount: Decimal
    currency: str
    expires_at: datetime
    capped: bool
    """False: tracked only (no Halt to protect, or the most severe severity): it was never refusable."""


class BudgetRefused(Exception):
    """402: the request's estimate does not fit in what is left before the budget halts."""

    def __init__(
        self,
        *,
        budget: str,
        remaining: Decimal,
        estimate: Decimal,
        currency: str,
        phase: str | None,
        message: str,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.remaining = remaining
        self.estimate = estimate
        self.currency = currency
        self.phase = phase
        self.message = message


class ModelCallFailed(Exception):
    """A model call (Bedrock) failed: ``status`` and ``reason`` are the API's answer."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class ModelAnswer:
    """What a Converse call returned: the reply and the token counts the provider billed."""

    output: Mapping[str, Any]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: int | None = None


class Models(Protocol):
    """Calls to models on the caller's behalf (api/bedrock.py: Bedrock through an AwsConnection)."""

    async def converse(
        self, namespace: str, connection: str, model: str, request: Mapping[str, Any]
    ) -> ModelAnswer:
        """Raises ModelCallFailed."""
        ...

    def converse_stream(
        self, namespace: str, connection: str, model: str, request: Mapping[str, Any]
    ) -> AsyncIterator[Mapping[str, Any]]:
        """The stream's events as Bedrock names them (``contentBlockDelta``, ``messageStop``,
        ``metadata`` with the usage...); raises ModelCallFailed, before or during the stream."""
        ...


class Budgets(Protocol):
    """What the API needs of the budget engine (api/budget_bridge.py adapts it)."""

    def effective_for(self, view: PolicyView) -> EffectiveRoutingView:
        """The policy's routing under its budget's current state."""
        ...

    async def record(
        self,
        namespace: str,
        budget: str,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        incident_id: str | None,
        idempotency_key: str | None,
        reported_at: datetime,
        reservation_id: str | None = None,
        client: str | None = None,
        task_type: str | None = None,
    ) -> Mapping[str, Any]:
        """Record durably, settling the reservation it names; return the answer's fields (cost,
        currency, periodStart, duplicate, reservation). Raises UsageRejected (409 for an
        Idempotency-Key reused with another body)."""
        ...

    async def reserve(
        self,
        namespace: str,
        budget: str,
        *,
        model: str,
        estimated_tokens: int = 0,
        estimated_output_tokens: int | None = None,
        client: str | None = None,
        task_type: str | None = None,
        uncapped: bool = False,
    ) -> Hold | None:
        """Hold the estimated cost; None when no such budget exists. Raises BudgetRefused (402),
        UsageRejected (422 a model without a price, 503 budget or ledger not available)."""
        ...

    async def release(self, namespace: str, budget: str, hold: Hold) -> None:
        """Give the hold back without cost (the call failed); best effort, it expires anyway."""
        ...

    def budget_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The budget's state as JSON fields (phase, utilization, ...), None if unknown."""
        ...


@dataclass(kw_only=True)
class ApiContext:
    keyring: Keyring
    directory: Directory
    metrics: ApiMetrics
    budgets: Budgets
    clock: Clock = system_clock
    monotonic: Callable[[], float] = time.monotonic
    history: History = field(default_factory=History)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    cors_origins: frozenset[str] = frozenset()
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = 10.0
    """Seconds the whole body may take to arrive (a slow client holds a connection and a buffer)."""
    failures: FailureGuard = field(default_factory=FailureGuard)
    not_ready: Callable[[], list[str]] = list
    """Why this replica's view may not be current (readiness.Readiness.reasons); empty when it is.
    While it is not empty, every route but the probes and the OpenAPI document answers 503."""
    replicas: Callable[[], int] = lambda: 1
    """Ready replicas serving the API (leadership.Membership): each takes its share of a rate limit."""
    models: Models | None = None
    """Calls models for ``/v1/converse``; None: that route answers 503."""
    security_log: SampledLog = field(
        default_factory=lambda: SampledLog(logger, per_window=SECURITY_LOG_LINES, window=60.0)
    )
    incidents: IncidentService | None = None
    """The policies' incidents (incidents/service.py); None: the incident routes answer 503."""


class ApiError(Exception):
    """Raised by handlers; the error middleware turns it into the JSON answer."""

    def __init__(
        self, status: int, reason: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


def route_label(request: web.Request) -> str:
    """The route template (never the raw path): a bounded label for metrics and logs."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
