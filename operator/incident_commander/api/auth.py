"""Who is calling, and may they: authentication, roles, scope, rate limits, security events.

A handler calls ``authenticate`` (API key or JWT, to a principal and its policy), then
``require_role``, ``charge`` (the client's token bucket, with the request's own cost) and, for
routes naming a policy, ``require_scope``. Each refusal raises an ApiError, counts in the metrics
and logs one security-event line (rate-limited; never a key, token or header value).
"""

from __future__ import annotations

from aiohttp import web

from incident_commander.api.context import ApiContext, ApiError, route_label
from incident_commander.api.directory import PolicyView
from incident_commander.api.principal import PRINCIPAL, AuthFailure, Principal
from incident_commander.api.ratelimit import ratelimit_headers, retry_after_header, share
from incident_commander.api.tokens import SignatureCheckDeferred, verify_token
from incident_commander.kinds.incidentpolicy.spec import TokenSettings

REALM = 'realm="incident-commander"'
RATE_HEADERS = web.RequestKey("rate_headers", dict[str, str])
"""The RateLimit fields of a request that was charged, for the middleware to add to the answer."""


def challenge(error: str | None, *, api_key_only: bool) -> str:
    bearer = f"Bearer {REALM}" + (f', error="{error}"' if error else "")
    return f"ApiKey {REALM}" if api_key_only else f"{bearer}, ApiKey {REALM}"


def authenticate(
    request: web.Request, ctx: ApiContext, *, api_key_only: bool = False
) -> tuple[Principal, PolicyView]:
    """The caller and its policy, or a 401 (a 429 when its address failed too often)."""
    header = request.headers.get("Authorization")
    if not header:
        raise unauthenticated(
            request, ctx, AuthFailure(reason="missing_credentials", detail="no credentials"), api_key_only
        )
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    now = ctx.clock()
    scheme = scheme.lower()
    result: Principal | AuthFailure
    if scheme == "apikey" and credential:
        result = ctx.keyring.verify_api_key(credential, now)
    elif scheme == "bearer" and credential and not api_key_only:
        standing = ctx.failures.may_verify(request.remote or "-", ctx.monotonic())
        try:
            result = verify_token(
                credential,
                keyring=ctx.keyring,
                settings_for=lambda policy: token_settings(ctx, policy),
                now=now,
                cache=ctx.verified_tokens,
                may_check_signature=standing.allowed,
            )
        except SignatureCheckDeferred:
            ctx.metrics.auth_deferred.inc()
            security_log(request, ctx, "authentication_deferred", "too_many_failures", None)
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
        ctx.failures.failed(request.remote or "-", ctx.monotonic())
        raise unauthenticated(request, ctx, result, api_key_only)
    view = ctx.directory.policy(result.namespace, result.policy)
    if view is None:
        raise unauthenticated(
            request,
            ctx,
            AuthFailure(reason="unknown_policy", detail="the credential's policy no longer exists"),
            api_key_only,
        )
    request[PRINCIPAL] = result
    return result, view


def token_settings(ctx: ApiContext, policy: tuple[str, str]) -> TokenSettings | None:
    view = ctx.directory.policy(*policy)
    return None if view is None else view.spec.token


def require_role(request: web.Request, ctx: ApiContext, principal: Principal, minimum: str) -> None:
    if not principal.has_role(minimum):
        raise forbidden(
            request,
            ctx,
            principal,
            "insufficient_role",
            f"role {principal.role} may not do this; {minimum} or above may",
        )


def charge(
    request: web.Request, ctx: ApiContext, principal: Principal, view: PolicyView, cost: float = 1.0
) -> None:
    """Take ``cost`` tokens from the client's bucket (the policy's ``auth.rateLimit``) or answer 429."""
    limit = share(view.spec.rate_limit, ctx.replicas())
    verdict = ctx.limiter.take(principal.rate_key, limit, ctx.monotonic(), cost)
    headers = ratelimit_headers(limit, verdict)
    if not verdict.allowed:
        ctx.metrics.rate_limited.labels(route=route_label(request)).inc()
        security_log(request, ctx, "rate_limited", "token_bucket_empty", principal)
        raise ApiError(
            429,
            "TooManyRequests",
            f"rate limit of {limit.per_minute}/min (burst {limit.burst}) exceeded",
            headers={"Retry-After": retry_after_header(verdict.retry_after), **headers},
        )
    request[RATE_HEADERS] = headers


def admit(
    request: web.Request, ctx: ApiContext, *, minimum: str, api_key_only: bool = False
) -> tuple[Principal, PolicyView]:
    """Authenticate, check the role and charge one token: what most routes need."""
    principal, view = authenticate(request, ctx, api_key_only=api_key_only)
    require_role(request, ctx, principal, minimum)
    charge(request, ctx, principal, view)
    return principal, view


def require_scope(
    request: web.Request, ctx: ApiContext, principal: Principal, namespace: str, policy: str
) -> None:
    if not principal.may_act_on(namespace, policy):
        raise forbidden(
            request, ctx, principal, "out_of_scope", "this credential may only act on its own policy"
        )


def unauthenticated(
    request: web.Request, ctx: ApiContext, failure: AuthFailure, api_key_only: bool
) -> ApiError:
    ctx.metrics.auth_failures.labels(reason=failure.reason).inc()
    security_log(request, ctx, "authentication_failed", failure.reason, None)
    error = None if failure.reason == "missing_credentials" else "invalid_token"
    return ApiError(
        401,
        "Unauthorized",
        f"authentication failed: {failure.detail}",
        headers={"WWW-Authenticate": challenge(error, api_key_only=api_key_only)},
    )


def forbidden(
    request: web.Request, ctx: ApiContext, principal: Principal, reason: str, message: str
) -> ApiError:
    ctx.metrics.auth_failures.labels(reason=reason).inc()
    security_log(request, ctx, "forbidden", reason, principal)
    return ApiError(403, "Forbidden", message)


def security_log(
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
        route_label(request),
        request.remote or "-",
        who,
    )
