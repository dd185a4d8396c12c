"""``POST /v1/token`` (an API key for a JWT) and ``GET /v1/jwks/{namespace}/{policy}``."""

from __future__ import annotations

from aiohttp import web

from incident_commander.api.auth import admit, authenticate, charge, unauthenticated
from incident_commander.api.context import ApiContext, ApiError
from incident_commander.api.directory import PolicyView
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.api.tokens import issue_token
from incident_commander.timestamps import precise_time


async def token(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="viewer", api_key_only=True)
    return _issued(ctx, principal, view)


async def refresh(request: web.Request, ctx: ApiContext) -> web.Response:
    """A new token for a valid one, without the API key: while the key behind it is the client's
    current one. A revoked key, or one rotated out (even inside its grace period), gets 401: the
    client must exchange its new key, so rotation reaches every client."""
    principal, view = authenticate(request, ctx)
    if principal.method != "jwt":
        failure = AuthFailure(
            reason="refresh_needs_token", detail="refresh a Bearer token; exchange API keys at /v1/token"
        )
        raise unauthenticated(request, ctx, failure, api_key_only=False)
    found = ctx.keyring.key_entry(principal.key_id)
    if found is None or found[1].state != "Active":
        failure = AuthFailure(
            reason="key_rotated_out",
            detail="the API key behind the token is no longer current; use the new key",
        )
        raise unauthenticated(request, ctx, failure, api_key_only=False)
    charge(request, ctx, principal, view)
    return _issued(ctx, principal, view)


def _issued(ctx: ApiContext, principal: Principal, view: PolicyView) -> web.Response:
    issued = issue_token(principal, keyring=ctx.keyring, settings=view.spec.token, now=ctx.clock())
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
            "expiresIn": int(view.spec.token.ttl.total_seconds()),
            "expiresAt": precise_time(issued.expires_at),
            "kid": issued.kid,
        }
    )


async def jwks(request: web.Request, ctx: ApiContext) -> web.Response:
    # The same answer for a policy that does not exist (an empty key set), so this public,
    # unauthenticated route does not tell who has which IncidentPolicy.
    document = ctx.keyring.jwks((request.match_info["namespace"], request.match_info["policy"]))
    return web.json_response(document or {"keys": []}, headers={"Cache-Control": "public, max-age=60"})
