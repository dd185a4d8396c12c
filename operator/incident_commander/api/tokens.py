"""Short-lived JWTs for API clients: issued for a valid API key, verified on every request.

Verification pins everything an attacker could choose: the key comes from the
token's policy (its ``ns`` and ``policy`` claims) and ``kid`` header, so another
policy's key can never be picked, and the algorithm from that key (never from the token), so
``alg: none``, HMAC-with-the-public-key and RSA/EdDSA swaps all fail; ``exp``,
``nbf``, ``iat``, ``iss``, ``aud`` and ``sub`` are required; and a token is
only as good as the API key it was exchanged for (claim ``akid``): once that
key is revoked, or rotated out past its grace period, its tokens stop working.

Cost: every check that needs no cryptography runs before the signature check (size, header,
the policy's key, the algorithm, the times, the API key behind the token), so a forged token
that is wrong in any of those costs microseconds. The remaining forgeries are the only ones
that buy a signature check; the API bounds those per remote address (api/ratelimit.py).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from incident_commander.api.keyring import Keyring, LoadedSigningKey, PolicyKey
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.kinds.incidentpolicy.spec import TokenSettings

MAX_TOKEN_BYTES = 2048
"""Our tokens are about 500 bytes (EdDSA) to 800 bytes (RS256); anything longer is refused unread."""


class SignatureCheckDeferred(Exception):
    """The token would need a signature check that the caller does not allow now (too many failures)."""


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


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
"""An unpadded base64url segment (RFC 7515 section 2); our issuer never pads."""


def _segment(segment: str) -> bytes | None:
    """The bytes of one canonical base64url segment, or None."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    # Canonical only: with trailing bits set, several texts would decode to the same bytes.
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=") == segment.encode() else None


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A compact JWS's header and claims, unverified, or None when it is not well-formed.

    What PyJWT's parse accepts (canonical base64url, JSON objects, a string ``kid``), except
    padding, ``crit`` and a ``b64`` header other than true (a detached payload), none of which
    our issuer writes; a header or claims nested past the parser's recursion are refused too.
    One regular expression per segment: PyJWT (2.15) tests each character of every segment in a
    Python loop, and was called twice (header, then claims): refusing a forged token without a
    signature check took about 100 µs here, 15 times a malformed one (20 µs now). The signature
    check still goes through PyJWT, which parses the token its own way.
    """
    segments = token.split(".")
    if len(segments) != 3 or _segment(segments[2]) is None:
        return None
    decoded: list[dict[str, Any]] = []
    for segment in segments[:2]:
        raw = _segment(segment) if segment else None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        decoded.append(value)
    header, claims = decoded
    if "crit" in header or header.get("b64", True) is not True or not isinstance(header.get("kid", ""), str):
        return None
    return header, claims


@dataclass(frozen=True, kw_only=True)
class _Verified:
    claims: dict[str, Any]
    signing_key: LoadedSigningKey
    settings: TokenSettings


class VerifiedTokens:
    """Tokens whose signature and issuer/audience already verified, so a client re-using its token
    does not pay for the signature check on every request.

    Only what cannot change for the same token string is cached (the signature verified over
    exactly these bytes, and their claims). Everything that can change is re-checked on every hit:
    the signing key must still be the same loaded key and not past ``notAfter``, the policy's
    issuer and audience unchanged, the times valid now, and the API key behind the token valid
    now. Bounded, least recently used out first.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._max = max_entries

    def get(self, token: str) -> _Verified | None:
        found = self._entries.get(token)
        if found is not None:
            self._entries.move_to_end(token)
        return found

    def put(self, token: str, verified: _Verified) -> None:
        self._entries[token] = verified
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def verify_token(
    token: str,
    *,
    keyring: Keyring,
    settings_for: Callable[[PolicyKey], TokenSettings | None],
    now: datetime,
    cache: VerifiedTokens | None = None,
    may_check_signature: bool = True,
) -> Principal | AuthFailure:
    """The principal a Bearer token authenticates, or why it does not. Raises SignatureCheckDeferred
    when only a signature check is left and ``may_check_signature`` is False."""
    if len(token) > MAX_TOKEN_BYTES:
        return AuthFailure(reason="malformed_token", detail="the token is too long")
    if cache is not None:
        hit = cache.get(token)
        if hit is not None:
            policy = (hit.signing_key.namespace, hit.signing_key.policy)
            current = keyring.verification_key(policy, hit.signing_key.kid, now)
            if current is hit.signing_key and settings_for(policy) == hit.settings:
                return _authorize(hit.claims, policy, keyring, now)
    parts = unverified_parts(token)
    if parts is None:
        return AuthFailure(reason="malformed_token", detail="the token is not a well-formed JWT")
    header, unverified = parts
    kid, namespace, policy_name = header.get("kid"), unverified.get("ns"), unverified.get("policy")
    if not isinstance(kid, str) or not isinstance(namespace, str) or not isinstance(policy_name, str):
        return AuthFailure(reason="unknown_kid", detail="the token names no known signing key")
    policy = (namespace, policy_name)
    signing_key = keyring.verification_key(policy, kid, now)
    if signing_key is None:
        return AuthFailure(reason="unknown_kid", detail="the token names no known signing key")
    if header.get("alg") != signing_key.algorithm:
        return AuthFailure(reason="algorithm_mismatch", detail="the token's algorithm is not its key's")
    settings = settings_for(policy)
    if settings is None:
        return AuthFailure(reason="unknown_policy", detail="the token's policy no longer exists")
    # Everything that fails without cryptography fails here: the answer is the same one the
    # checks after the signature would give, so nothing is revealed by answering early.
    early = _authorize(unverified, policy, keyring, now)
    if isinstance(early, AuthFailure):
        return early
    if not may_check_signature:
        raise SignatureCheckDeferred
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
    if cache is not None:
        cache.put(token, _Verified(claims=claims, signing_key=signing_key, settings=settings))
    return _authorize(claims, policy, keyring, now)


def _authorize(
    claims: dict[str, Any], policy: PolicyKey, keyring: Keyring, now: datetime
) -> Principal | AuthFailure:
    """The checks that depend on time and on the API key's state: run on every request."""
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
    return Principal.of_key(policy, entry, "jwt")


def _check_times(claims: dict[str, Any], now: float) -> AuthFailure | None:
    expires, not_before, issued = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    for value in (expires, not_before, issued):
        if type(value) not in (int, float):  # bool is not a time either
            return AuthFailure(reason="invalid_token", detail="exp, nbf and iat must be numbers")
    if now >= expires:  # type: ignore[operator]
        return AuthFailure(reason="expired_token", detail="the token has expired")
    if now < not_before or now < issued:  # type: ignore[operator]
        return AuthFailure(reason="token_not_yet_valid", detail="the token is not valid yet")
    return None
