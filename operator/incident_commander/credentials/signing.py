"""JWT signing keys of a policy: generation, rotation and the public JWKS. Pure apart from key generation.

All of a policy's signing keys live in one Secret, written in one atomic
replace, so there is no crash window: either the rotation happened or it did
not. The previous key stays in the JWKS until ``notAfter`` = rotation time +
token ttl, when every token it signed has expired.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from incident_commander.timestamps import parse_time, precise_time

Algorithm = Literal["EdDSA", "ES256", "RS256"]
SIGNING_KEY_LIFETIME = timedelta(days=30)
"""How long a signing key signs before it is rotated (the CRD has no field for it: see docs)."""


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private_pem: str = field(repr=False)
    """Never in a repr: keys are kept on each policy's entry (CredentialsSeen), which may be printed."""
    created_at: datetime
    not_after: datetime | None = None
    """Set when the key is retired: it leaves the JWKS then."""

    @property
    def current(self) -> bool:
        return self.not_after is None

    def private_key(self) -> Any:
        return serialization.load_pem_private_key(self.private_pem.encode(), password=None)

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key().public_key()
        algorithm: Any = {"EdDSA": OKPAlgorithm, "ES256": ECAlgorithm, "RS256": RSAAlgorithm}[self.algorithm]
        jwk = dict(json.loads(algorithm.to_jwk(public)))
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return jwk

    def to_json(self) -> dict[str, Any]:
        data = {
            "kid": self.kid,
            "algorithm": self.algorithm,
            "privateKeyPem": self.private_pem,
            "createdAt": precise_time(self.created_at),
        }
        if self.not_after:
            data["notAfter"] = precise_time(self.not_after)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SigningKey:
        return cls(
            kid=data["kid"],
            algorithm=data["algorithm"],
            private_pem=data["privateKeyPem"],
            created_at=parse_time(data["createdAt"]),
            not_after=parse_time(data["notAfter"]) if data.get("notAfter") else None,
        )


def generate_signing_key(algorithm: Algorithm, now: datetime) -> SigningKey:
    key: Any
    if algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(kid=secrets.token_hex(8), algorithm=algorithm, private_pem=pem.decode(), created_at=now)


@dataclass(frozen=True, kw_only=True)
class SigningDecision:
    """The keys to store, or None when nothing needs to change."""

    keys: tuple[SigningKey, ...] | None
    reason: str | None


def plan_signing_keys(
    keys: Sequence[SigningKey],
    *,
    algorithm: Algorithm,
    token_ttl: timedelta,
    rotate_request: str | None,
    rotate_handled: str | None,
    now: datetime,
) -> SigningDecision:
    """Rotate when there is no current key, the algorithm changed, the rotate annotation changed or
    the current key is older than SIGNING_KEY_LIFETIME; drop retired keys past notAfter."""
    kept = [k for k in keys if k.not_after is None or k.not_after > now]
    current = next((k for k in kept if k.current), None)
    reason = None
    if current is None:
        reason = "Initial"
    elif current.algorithm != algorithm:
        reason = "AlgorithmChanged"
    elif rotate_request is not None and rotate_request != rotate_handled:
        reason = "RotationRequested"
    elif now - current.created_at >= SIGNING_KEY_LIFETIME:
        reason = "KeyLifetimeElapsed"
    if reason is not None:
        retired = [replace(k, not_after=now + token_ttl) if k.current else k for k in kept]
        return SigningDecision(keys=(generate_signing_key(algorithm, now), *retired), reason=reason)
    if len(kept) != len(keys):
        return SigningDecision(keys=tuple(kept), reason="RetiredKeyExpired")
    return SigningDecision(keys=None, reason=None)


def jwks(keys: Sequence[SigningKey]) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def next_due(keys: Sequence[SigningKey]) -> datetime | None:
    moments = [k.not_after for k in keys if k.not_after]
    moments += [k.created_at + SIGNING_KEY_LIFETIME for k in keys if k.current]
    return min(moments) if moments else None
