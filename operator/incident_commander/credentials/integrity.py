"""Integrity seals on the Secrets the API trusts: only the operator can make a valid one.

Why: the key index and the signing-key Secret live in the policy's namespace, where anyone
allowed to create (or patch, or delete and recreate) Secrets could otherwise plant an index
holding their own API key, or a signing key of their own, and mint admin tokens. Labels, names
and ownerReferences are all chosen by whoever writes the Secret, so none of them proves who
wrote it. A seal does: an HMAC-SHA256, under a key that only the operator holds (a Secret in the
operator's own namespace), over everything that makes the Secret what it is: its namespace and
name, its type, the policy and that policy's uid, and every data field. A Secret copied into
another namespace, moved to another policy, kept across a delete-and-recreate of the policy, or
edited in any field no longer matches its seal.

The seal is written in the same write as the data (an annotation), so there is no crash window
between the two. Pure apart from ``generate_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from incident_commander.kube_api import KubeApi

ANNOTATION = "incidentcommander.io/integrity"
"""The annotation holding a managed Secret's seal: ``v1:<hex>``."""

KEY_SECRET_NAME = "incident-commander-integrity"  # noqa: S105 - a Secret name, not a secret
"""The Secret, in the operator's own namespace, holding the sealing key."""

KEY_FIELD = "key"
KEY_BYTES = 32
VERSION = "v1"


@dataclass(frozen=True, kw_only=True)
class SealedFields:
    """What a seal covers: the Secret's identity, its owner and its data."""

    namespace: str
    name: str
    secret_type: str
    policy: str
    policy_uid: str
    data: Mapping[str, str]

    def message(self) -> bytes:
        """A canonical encoding: JSON with sorted keys, so the same fields always give the same bytes."""
        return json.dumps(
            [
                VERSION,
                self.namespace,
                self.name,
                self.secret_type,
                self.policy,
                self.policy_uid,
                sorted(self.data.items()),
            ],
            separators=(",", ":"),
        ).encode()


class IntegrityKey:
    """The operator's sealing key. Its bytes never leave this object (no repr, no str)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"an integrity key needs at least {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "IntegrityKey(<redacted>)"

    def seal(self, fields: SealedFields) -> str:
        digest = hmac.new(self._key, fields.message(), hashlib.sha256).hexdigest()
        return f"{VERSION}:{digest}"

    def verify(self, fields: SealedFields, seal: str | None) -> bool:
        """Constant-time comparison with the seal these fields should carry."""
        if not seal:
            return False
        return hmac.compare_digest(self.seal(fields).encode(), seal.encode())


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class IntegrityKeyUnavailable(Exception):
    """The sealing key is not loaded (yet): nothing is sealed, and nothing sealed is trusted."""


class IntegrityKeyHolder:
    """The process's sealing key once loaded; the issuer and the keyring ask it on every use."""

    def __init__(self, key: IntegrityKey | None = None) -> None:
        self._key = key

    def get(self) -> IntegrityKey | None:
        return self._key

    def require(self) -> IntegrityKey:
        if self._key is None:
            raise IntegrityKeyUnavailable("the operator's integrity key is not loaded yet")
        return self._key

    def load(self, kube: KubeApi, namespace: str) -> None:
        """Read the key from its Secret in ``namespace``, creating it on the operator's first start.

        Blocking. Every replica and every restart reads the same key, so Secrets sealed by one
        are trusted by all. Deleting that Secret makes every sealed Secret untrusted: the policies'
        keys are then reissued (docs/api.md, "Trusted Secrets")."""
        raw = kube.read_or_create_secret_field(namespace, KEY_SECRET_NAME, KEY_FIELD, generate_key())
        self._key = IntegrityKey(raw)
