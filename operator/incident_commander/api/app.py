"""The API as an aiohttp application: authentication, scope, roles, rate limits, then the handlers.

Every answer is JSON. Errors are ``{"error": <Reason>, "message": <text>}`` with
the status the OpenAPI document lists for the route: 400 malformed or invalid
body, 401 no or invalid credential (with ``WWW-Authenticate``), 403 a valid
credential that lacks the role or acts on another policy, 404, 413 body too
large, 415 not JSON, 422 a well-formed report the budget cannot price, 429 rate
limited (with ``Retry-After``), 402 routing refused while the budget is halted,
503 the budget ledger is unavailable. Security events (401, 403, 429) are
logged as one line without any credential, and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from incident_commander.api import bodies, openapi
from incident_commander.api.directory import Directory, PolicyView
from incident_commander.api.history import History
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.api.principal import PRINCIPAL, AuthFailure, Principal
from incident_commander.api.ratelimit import FailureGuard, RateLimiter, retry_after_header
from incident_commander.api.routing import (
    HALT_STATUS,
    EffectiveRoutingView,
    RouteRefused,
    RouteRequest,
    decide_route,
)
from incident_commander.api.tokens import (
    SignatureCheckDeferred,
    TokenSettings,
    VerifiedTokens,
    issue_token,
    verify_token,
)
from incident_commander.clock import Clock, system_clock
from incident_commander.credentials.api_keys import format_time
from incident_commander.telemetry.sampled_log import SampledLog

logger = logging.getLogger(__name__)

REALM = 'realm="incident-commander"'
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
"""Nesting levels a body may have (ours have three); deeper is refused with 400."""
MAX_JSON_DIGITS = 40
"""Digits a JSON number may have; Python refuses to parse integers past 4,300 digits with an
error that is not a JSON error, and nothing we accept needs more than 40."""
SECURITY_LOG_LINES = 20
"""Security-event log lines per reason per minute; the rest are counted and summarised."""


class UsageRejected(Exception):
    """The usage sink refused a report: ``status`` is 409, 422 or 503, ``reason`` a short code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class UsageSink(Protocol):
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
    ) -> Mapping[str, Any]:
        """Record durably; return the answer's fields (cost, currency, periodStart, duplicate)."""
        ...


class BudgetView(Protocol):
    def budget_status(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The budget's state as JSON fields (phase, utilization, ...), None if unknown."""
        ...


EffectiveFor = Callable[[PolicyView], EffectiveRoutingView]


@dataclass(kw_only=True)
class ApiContext:
    keyring: Keyring
    directory: Directory
    metrics: ApiMetrics
    effective_for: EffectiveFor
    usage: UsageSink | None = None
    budgets: BudgetView | None = None
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
    security_log: SampledLog = field(
        default_factory=lambda: SampledLog(logger, per_window=SECURITY_LOG_LINES, window=60.0)
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# -- authentication ------------------------------------------------------------------------------


def _challenge(error: str | None, *, api_key_only: bool) -> str:
    bearer = f"Bearer {REALM}" + (f', error="{error}"' if error else "")
    return f"ApiKey {REALM}" if api_key_only else f"{bearer}, ApiKey {REALM}"


def authenticate(
    request: web.Request, ctx: ApiContext, *, api_key_only: bool
) -> tuple[Principal, PolicyView]:
    header = request.headers.get("Authorization")
    if not header:
        raise _unauthenticated(
            request, ctx, AuthFailure(reason="missing_credentials", detail="no credentials"), api_key_only
        )
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    now = ctx.clock()
    remote = request.remote or "-"
    result: Principal | AuthFailure
    if scheme.lower() == "apikey" and credential:
        result = ctx.keyring.verify_api_key(credential, now)
    elif scheme.lower() == "bearer" and credential and not api_key_only:
        standing = ctx.failures.may_verify(remote, ctx.monotonic())
        try:
            result = verify_token(
                credential,
                keyring=ctx.keyring,
                settings_for=lambda p: _token_settings(ctx, p),
                now=now,
                cache=ctx.verified_tokens,
                may_check_signature=standing.allowed,
            )
        except SignatureCheckDeferred:
            ctx.metrics.auth_deferred.inc()
            _security_log(request, ctx, "authentication_deferred", "too_many_failures", None)
            raise ApiError(
                429,
                "TooManyFailedAuthentications",
                "too many failed authentications from this address; exchange an API key for a "
                "token, or retry later",
                headers={"Retry-After": retry_after_header(standing.retry_after)},
            ) from None
    else:
        expected = "ApiKey" if api_key_only else "Bearer or ApiKey"
        result = AuthFailure(
            reason="malformed_header", detail=f"the Authorization header must use {expected}"
        )
    if isinstance(result, AuthFailure):
        ctx.failures.failed(remote, ctx.monotonic())
        raise _unauthenticated(request, ctx, result, api_key_only)
    view = ctx.directory.policy(result.namespace, result.policy)
    if view is None:
        raise _unauthenticated(
            request,
            ctx,
            AuthFailure(reason="unknown_policy", detail="the credential's policy no longer exists"),
            api_key_only,
        )
    return result, view


def _token_settings(ctx: ApiContext, policy: tuple[str, str]) -> TokenSettings | None:
    view = ctx.directory.policy(*policy)
    return None if view is None else view.token


def _unauthenticated(
    request: web.Request, ctx: ApiContext, failure: AuthFailure, api_key_only: bool
) -> ApiError:
    ctx.metrics.auth_failures.labels(reason=failure.reason).inc()
    _security_log(request, ctx, "authentication_failed", failure.reason, None)
    error = None if failure.reason == "missing_credentials" else "invalid_token"
    return ApiError(
        401,
        "Unauthorized",
        f"authentication failed: {failure.detail}",
        headers={"WWW-Authenticate": _challenge(error, api_key_only=api_key_only)},
    )


def _forbidden(
    request: web.Request, ctx: ApiContext, principal: Principal, reason: str, message: str
) -> ApiError:
    ctx.metrics.auth_failures.labels(reason=reason).inc()
    _security_log(request, ctx, "forbidden", reason, principal)
    return ApiError(403, "Forbidden", message)


def _security_log(
    request: web.Request, ctx: ApiContext, event: str, reason: str, principal: Principal | None
) -> None:
    """One line per security event (what, why, where from; never a key, token or header value),
    at most SECURITY_LOG_LINES per reason per minute: the metrics count every one."""
    who = f"{principal.namespace}/{principal.policy}/{principal.client}" if principal else "-"
    ctx.security_log.warning(
        f"{event}:{reason}",
        "security_event=%s reason=%s method=%s route=%s remote=%s principal=%s",
        event,
        reason,
        request.method,
        _route_label(request),
        request.remote or "-",
        who,
    )


def _route_label(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


# -- middlewares -----------------------------------------------------------------------------------


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


class _RequestCounters:
    """Label children cached by their label values: ``labels()`` validates and locks on each call,
    which is a measurable share of a fast request. The label sets are bounded (route templates,
    methods, statuses, roles), so the cache is too."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics
        self._requests: dict[tuple[str, str, int, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe(self, route: str, method: str, status: int, role: str, seconds: float) -> None:
        key = (route, method, status, role)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._metrics.requests.labels(route=route, method=method, status=str(status), role=role)
            self._requests[key] = counter
        counter.inc()
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = self._metrics.duration.labels(route=route)
        histogram.observe(seconds)


def build_middlewares(ctx: ApiContext) -> list[Any]:
    """One middleware (each layer costs a coroutine per request): CORS, errors as JSON, metrics.

    CORS headers go on every answer to an allowed origin, errors included, so a browser can read
    why it was refused; preflights from other origins are refused outright.
    """
    counters = _RequestCounters(ctx.metrics)

    @web.middleware
    async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        origin = request.headers.get("Origin")
        allowed = origin is not None and origin in ctx.cors_origins
        response: web.StreamResponse
        if request.method == "OPTIONS" and origin is not None:
            response = (
                web.Response(status=204, headers=_cors_headers(origin))
                if allowed
                else error_response(403, "CorsDenied", "this origin is not allowed")
            )
        else:
            response = await _answer(request, handler, ctx)
        if allowed and origin is not None:
            response.headers.update(_cors_headers(origin))
        principal = request.get(PRINCIPAL)
        role = principal.role if isinstance(principal, Principal) else "anonymous"
        counters.observe(
            _route_label(request), request.method, response.status, role, time.perf_counter() - started
        )
        return response

    return [pipeline]


async def _answer(request: web.Request, handler: Handler, ctx: ApiContext) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.reason, error.message, error.headers)
        if error.status == 408:
            response.force_close()  # the rest of a body that never came is not worth waiting for
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            405,
            "MethodNotAllowed",
            f"{request.method} is not allowed here",
            {"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
    except web.HTTPNotFound:
        return error_response(404, "NotFound", "no such route")
    except web.HTTPException as exc:
        return error_response(exc.status, exc.reason.replace(" ", ""), exc.reason)
    except Exception:
        logger.exception("API request %s %s failed", request.method, _route_label(request))
        return error_response(500, "InternalError", "the operator could not answer; see its log")


# -- helpers for handlers --------------------------------------------------------------------------


async def read_json(request: web.Request, ctx: ApiContext) -> Any:
    if request.content_length is not None and request.content_length > ctx.max_body_bytes:
        raise ApiError(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    if request.content_type != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "the body must be application/json")
    try:
        async with asyncio.timeout(ctx.body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408, "RequestTimeout", f"the body did not arrive within {ctx.body_timeout:g}s"
        ) from None
    if len(raw) > ctx.max_body_bytes:
        raise ApiError(413, "PayloadTooLarge", f"the body exceeds {ctx.max_body_bytes} bytes")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """JSON as the API accepts it, or ApiError 400: never a 500, whatever the bytes.

    Refused: invalid JSON, NaN and Infinity, numbers of more than MAX_JSON_DIGITS digits, and
    nesting deeper than MAX_JSON_DEPTH (the parser's recursion is caught too, for depths it cannot
    even reach).
    """
    try:
        data = json.loads(
            raw, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant
        )
    except RecursionError:
        raise ApiError(400, "MalformedJson", f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "MalformedJson", f"the body is not valid JSON at line {exc.lineno} column {exc.colno}"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        message = str(exc) if isinstance(exc, _JsonRefused) else "the body is not valid JSON"
        raise ApiError(400, "MalformedJson", message) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "MalformedJson", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


class _JsonRefused(ValueError):
    """Valid JSON that the API refuses to take in (its message is the answer's)."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _JsonRefused(f"the body has a number of more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_JSON_DIGITS + 8:  # digits, a sign, a point and an exponent
        raise _JsonRefused(f"the body has a number of more than {MAX_JSON_DIGITS} digits")
    return float(text)


def _no_constant(text: str) -> Any:
    raise _JsonRefused(f"the body has {text}, which is not a JSON number")


def _depth(data: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(value, dict):
            stack.extend((item, level + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, level + 1) for item in value)
    return deepest


def admit(
    request: web.Request,
    ctx: ApiContext,
    *,
    minimum: str,
    api_key_only: bool = False,
    cost: Callable[[PolicyView], float] | None = None,
) -> tuple[Principal, PolicyView]:
    """Authenticate, check the role and charge the client's rate limit."""
    principal, view = authenticate(request, ctx, api_key_only=api_key_only)
    request[PRINCIPAL] = principal
    if not principal.has_role(minimum):
        raise _forbidden(
            request,
            ctx,
            principal,
            "insufficient_role",
            f"role {principal.role} may not do this; {minimum} or above may",
        )
    verdict = ctx.limiter.take(
        principal.rate_key, view.rate_limit, ctx.monotonic(), cost(view) if cost else 1.0
    )
    if not verdict.allowed:
        ctx.metrics.rate_limited.labels(route=_route_label(request)).inc()
        _security_log(request, ctx, "rate_limited", "token_bucket_empty", principal)
        raise ApiError(
            429,
            "TooManyRequests",
            f"rate limit of {view.rate_limit.per_minute}/min (burst {view.rate_limit.burst}) exceeded",
            headers={"Retry-After": retry_after_header(verdict.retry_after)},
        )
    return principal, view


def require_scope(
    request: web.Request, ctx: ApiContext, principal: Principal, namespace: str, policy: str
) -> None:
    if not principal.may_act_on(namespace, policy):
        raise _forbidden(
            request, ctx, principal, "out_of_scope", "this credential may only act on its own policy"
        )


def effective_json(routing: EffectiveRoutingView) -> dict[str, Any]:
    return {
        "mode": routing.mode,
        "simpleModel": routing.simple_model,
        "complexModel": routing.complex_model,
        "complexityThreshold": routing.complexity_threshold,
        "samplingRate": routing.sampling_rate,
        "budgetPhase": routing.budget_phase,
    }


# -- handlers ----------------------------------------------------------------------------------------


def build_api_app(ctx: ApiContext) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        principal, view = admit(request, ctx, minimum="viewer", api_key_only=True)
        issued = issue_token(principal, keyring=ctx.keyring, settings=view.token, now=ctx.clock())
        if issued is None:
            raise ApiError(
                503,
                "SigningKeyUnavailable",
                "the policy has no signing key yet; retry shortly",
                headers={"Retry-After": "5"},
            )
        return web.json_response(
            {
                "token": issued.token,
                "tokenType": "Bearer",
                "expiresIn": int(view.token.ttl.total_seconds()),
                "expiresAt": format_time(issued.expires_at),
                "kid": issued.kid,
            }
        )

    async def jwks(request: web.Request) -> web.Response:
        # The same answer for a policy that does not exist (an empty key set), so this public,
        # unauthenticated route does not tell who has which IncidentPolicy.
        document = ctx.keyring.jwks((request.match_info["namespace"], request.match_info["policy"]))
        return web.json_response(document or {"keys": []}, headers={"Cache-Control": "public, max-age=60"})

    async def route(request: web.Request) -> web.Response:
        effective: list[EffectiveRoutingView] = []

        def cost(view: PolicyView) -> float:
            # Under the budget's Throttle action each routing request costs 1/factor tokens.
            effective.append(ctx.effective_for(view))
            return 1.0 / max(effective[0].throttle_factor, 1e-6)

        principal, view = admit(request, ctx, minimum="responder", cost=cost)
        body = _parse(bodies.parse_route_body, await read_json(request, ctx))
        require_scope(request, ctx, principal, principal.namespace, body.policy)
        decision = decide_route(
            RouteRequest(
                policy=body.policy,
                task_type=body.task_type,
                complexity=body.complexity,
                estimated_tokens=body.estimated_tokens,
                severity=body.severity,
            ),
            effective[0],
            critical_severity=view.critical_severity,
        )
        key = (principal.namespace, principal.policy)
        entry = {
            "at": ctx.clock(),
            "client": principal.client,
            "taskType": body.task_type,
            "complexity": body.complexity,
            "severity": body.severity,
        }
        phase = decision.budget_phase or "None"
        if isinstance(decision, RouteRefused):
            ctx.metrics.route_decisions.labels(outcome="refused", budget_phase=phase).inc()
            ctx.history.record(key, "refusal", {**entry, "reason": decision.reason})
            return web.json_response(
                {"error": decision.reason, "message": decision.message, "budgetPhase": decision.budget_phase},
                status=HALT_STATUS,
            )
        ctx.metrics.route_decisions.labels(outcome="routed", budget_phase=phase).inc()
        ctx.history.record(key, "decision", {**entry, "model": decision.model, "reason": decision.reason})
        return web.json_response(
            {
                "model": decision.model,
                "reason": decision.reason,
                "budgetPhase": decision.budget_phase,
                "samplingRate": decision.sampling_rate,
            }
        )

    async def usage(request: web.Request) -> web.Response:
        principal, view = admit(request, ctx, minimum="responder")
        body = _parse(bodies.parse_usage_body, await read_json(request, ctx))
        require_scope(request, ctx, principal, principal.namespace, body.policy)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise ApiError(400, "InvalidIdempotencyKey", "Idempotency-Key must be 1 to 200 characters long")
        if view.budget is None:
            raise ApiError(
                409, "NoBudget", f"IncidentPolicy {view.name} has no budgetRef: usage has nowhere to go"
            )
        if ctx.usage is None:
            raise ApiError(
                503, "LedgerUnavailable", "the usage ledger is not available", headers={"Retry-After": "5"}
            )
        try:
            recorded = await ctx.usage.record(
                principal.namespace,
                view.budget,
                model=body.model,
                input_tokens=body.input_tokens,
                output_tokens=body.output_tokens,
                incident_id=body.incident_id,
                idempotency_key=idempotency_key,
                reported_at=ctx.clock(),
            )
        except UsageRejected as rejected:
            headers = {"Retry-After": "5"} if rejected.status == 503 else None
            raise ApiError(rejected.status, rejected.reason, rejected.message, headers=headers) from None
        ctx.history.record(
            (principal.namespace, principal.policy),
            "usage",
            {
                "at": ctx.clock(),
                "client": principal.client,
                "model": body.model,
                "cost": recorded.get("cost"),
            },
        )
        status = 200 if recorded.get("duplicate") else 201
        return web.json_response({"budget": view.budget, **recorded}, status=status)

    async def policy(request: web.Request) -> web.Response:
        principal, _ = admit(request, ctx, minimum="viewer")
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        require_scope(request, ctx, principal, namespace, name)
        view = ctx.directory.policy(namespace, name)
        if view is None:
            raise ApiError(404, "NotFound", f"IncidentPolicy {namespace}/{name} not found")
        index = ctx.keyring.index((namespace, name))
        now = ctx.clock()
        keys = [
            {
                "client": e.client,
                "role": e.role,
                "keyId": e.key_id,
                "state": e.state if e.state != "Rotating" or e.valid_at(now) else "Expired",
                "issuedAt": format_time(e.issued_at),
                "expiresAt": format_time(e.expires_at),
            }
            for e in (index.entries if index else ())
            if e.state != "Pending"
        ]
        return web.json_response(
            {
                "namespace": namespace,
                "name": name,
                "effectiveRouting": effective_json(ctx.effective_for(view)),
                "budget": _budget_json(ctx, namespace, view.budget),
                "rateLimit": {
                    "requestsPerMinute": view.rate_limit.per_minute,
                    "burst": view.rate_limit.burst,
                },
                "apiKeys": keys,
            }
        )

    async def summary(request: web.Request) -> web.Response:
        principal, view = admit(request, ctx, minimum="viewer")
        key = (principal.namespace, principal.policy)
        index = ctx.keyring.index(key)
        states: dict[str, int] = {"Active": 0, "Rotating": 0, "Revoked": 0}
        now = ctx.clock()
        for entry in index.entries if index else ():
            if entry.state == "Rotating" and not entry.valid_at(now):
                states["Revoked"] += 1
            elif entry.state in states:
                states[entry.state] += 1
        counts = ctx.history.counts(key)
        return web.json_response(
            {
                "namespace": principal.namespace,
                "policy": principal.policy,
                "objects": ctx.directory.counts(principal.namespace),
                "apiKeys": states,
                "budget": _budget_json(ctx, principal.namespace, view.budget),
                "routing": {"decisions": counts.get("decision", 0), "refusals": counts.get("refusal", 0)},
                "usageReports": counts.get("usage", 0),
                "recent": ctx.history.recent(key, 10),
            }
        )

    async def history(request: web.Request) -> web.Response:
        principal, _ = admit(request, ctx, minimum="viewer")
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise ApiError(400, "InvalidQuery", "limit must be an integer from 1 to 100")
        key = (principal.namespace, principal.policy)
        return web.json_response(
            {"namespace": key[0], "policy": key[1], "entries": ctx.history.recent(key, int(raw))}
        )

    async def spec(_: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=build_middlewares(ctx), client_max_size=ctx.max_body_bytes)
    app.router.add_post("/v1/token", token)
    app.router.add_get("/v1/jwks/{namespace}/{policy}", jwks)
    app.router.add_post("/v1/route", route)
    app.router.add_post("/v1/usage", usage)
    app.router.add_get("/v1/policies/{namespace}/{name}", policy)
    app.router.add_get("/v1/summary", summary)
    app.router.add_get("/v1/history", history)
    app.router.add_get("/v1/openapi.json", spec)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/healthz", ready)
    return app


def _parse(parser: Callable[[Any], Any], data: Any) -> Any:
    try:
        return parser(data)
    except bodies.BodyError as exc:
        raise ApiError(400, "InvalidBody", str(exc)) from None


def _budget_json(ctx: ApiContext, namespace: str, budget: str | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    found = ctx.budgets.budget_status(namespace, budget) if ctx.budgets is not None else None
    return {"name": budget, **(found or {"phase": None})}
