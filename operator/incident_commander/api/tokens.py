"""Short-lived JWTs for API clients: issued for a valid API key, verified on every request.

Verification pins everything an attacker could choose: the key comes from the
``kid`` header and the algorithm from that key (never from the token), so
``alg: none``, HMAC-with-the-public-key and RSA/EdDSA swaps all fail; ``exp``,
``nbf``, ``iat``, ``iss``, ``aud`` and ``sub`` are required; and a token is
only as good as the API key it was exchanged for (claim ``akid``): once that
key is revoked, or rotated out past its grace period, its tokens stop working.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from incident_commander.api.keyring import Keyring, PolicyKey
from incident_commander.api.principal import AuthFailure, Principal

MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """A policy's ``auth.jwt``."""

    issuer: str
    audience: str
    ttl: timedelta


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    token: str
    expires_at: datetime
    kid: str


def issue_token(
    principal: Principal, *, keyring: Keyring, settings: TokenSettings, now: datetime
) -> IssuedToken | None:
    """A JWT for the principal, signed with its policy's current key; None when the policy has none yet."""
    signing_key = keyring.current_signing_key((principal.namespace, principal.policy), now)
    if signing_key is None:
        return None
    issued = int(now.timestamp())
    expires = issued + int(settings.ttl.total_seconds())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": principal.client,
        "role": principal.role,
        "policy": principal.policy,
        "ns": principal.namespace,
        "akid": principal.key_id,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(
        claims, signing_key.private, algorithm=signing_key.algorithm, headers={"kid": signing_key.kid}
    )
    return IssuedToken(
        token=token, expires_at=datetime.fromtimestamp(expires, tz=now.tzinfo), kid=signing_key.kid
    )


def verify_token(
    token: str,
    *,
    keyring: Keyring,
    settings_for: Callable[[PolicyKey], TokenSettings | None],
    now: datetime,
) -> Principal | AuthFailure:
    """The principal a Bearer token authenticates, or why it does not."""
    if len(token) > MAX_TOKEN_BYTES:
        return AuthFailure(reason="malformed_token", detail="the token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return AuthFailure(reason="malformed_token", detail="the token is not a well-formed JWT")
    kid = header.get("kid")
    if not isinstance(kid, str):
        return AuthFailure(reason="unknown_kid", detail="the token names no known signing key")
    signing_key = keyring.verification_key(kid, now)
    if signing_key is None:
        return AuthFailure(reason="unknown_kid", detail="the token names no known signing key")
    if header.get("alg") != signing_key.algorithm:
        return AuthFailure(reason="algorithm_mismatch", detail="the token's algorithm is not its key's")
    policy = (signing_key.namespace, signing_key.policy)
    settings = settings_for(policy)
    if settings is None:
        return AuthFailure(reason="unknown_policy", detail="the token's policy no longer exists")
    try:
        # Times are checked below against the injected clock, not PyJWT's wall clock.
        claims = jwt.decode(
            token,
            signing_key.public,
            algorithms=[signing_key.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            options={
                "require": ["exp", "iat", "nbf", "iss", "aud", "sub"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError:
        return AuthFailure(reason="wrong_audience", detail="the token is for another audience")
    except jwt.InvalidIssuerError:
        return AuthFailure(reason="wrong_issuer", detail="the token is from another issuer")
    except jwt.InvalidSignatureError:
        return AuthFailure(reason="bad_signature", detail="the token's signature does not verify")
    except jwt.PyJWTError:
        return AuthFailure(reason="invalid_token", detail="the token is not valid")
    timing = _check_times(claims, now.timestamp())
    if timing is not None:
        return timing
    if claims.get("ns") != policy[0] or claims.get("policy") != policy[1]:
        return AuthFailure(reason="policy_mismatch", detail="the token's policy is not its key's")
    found = keyring.key_entry(str(claims.get("akid", "")))
    if found is None or found[0] != policy:
        return AuthFailure(reason="revoked_api_key", detail="the API key behind the token is no longer valid")
    entry = found[1]
    if not entry.valid_at(now) or entry.client != claims.get("sub") or entry.role != claims.get("role"):
        return AuthFailure(reason="revoked_api_key", detail="the API key behind the token is no longer valid")
    return Principal(
        namespace=policy[0],
        policy=policy[1],
        client=entry.client,
        role=entry.role,
        key_id=entry.key_id,
        method="jwt",
    )


def _check_times(claims: dict[str, object], now: float) -> AuthFailure | None:
    times = [claims.get(name) for name in ("exp", "nbf", "iat")]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        return AuthFailure(reason="invalid_token", detail="exp, nbf and iat must be numbers")
    expires, not_before, issued = (float(t) for t in times)  # type: ignore[arg-type]
    if now >= expires:
        return AuthFailure(reason="expired_token", detail="the token has expired")
    if now < not_before or now < issued:
        return AuthFailure(reason="token_not_yet_valid", detail="the token is not valid yet")
    return None
