"""``POST /v1/token`` (an API key for a JWT) and ``GET /v1/jwks/{namespace}/{policy}``."""

from __future__ import annotations

from aiohttp import web

from incident_commander.api.auth import admit
from incident_commander.api.context import ApiContext, ApiError
from incident_commander.api.tokens import issue_token
from incident_commander.timestamps import precise_time


async def token(request: web.Request, ctx: ApiContext) -> web.Response:
    principal, view = admit(request, ctx, minimum="viewer", api_key_only=True)
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
