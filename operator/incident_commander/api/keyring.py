"""What the API verifies credentials against: every policy's key index and signing keys.

Fed by the watch on the operator's managed Secrets (the key index Secret and the
signing-key Secret of each policy), so it follows issuance, rotation and
revocation live, whichever replica or process wrote them. It holds hashes of
API keys (never their plaintext) and parsed signing keys, indexed for O(1)
lookup by key id: verifying one of 100,000 keys is a dict lookup, a SHA-256 and
a constant-time comparison.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.credentials import api_keys
from incident_commander.credentials.api_keys import KeyEntry, KeyIndex
from incident_commander.credentials.issuer import LABEL_POLICY, TYPE_KEY_INDEX, TYPE_SIGNING
from incident_commander.credentials.signing import SigningKey, jwks

logger = logging.getLogger(__name__)

PolicyKey = tuple[str, str]
"""(namespace, policy name)."""


@dataclass(frozen=True, kw_only=True)
class LoadedSigningKey:
    """A signing key with its parsed private and public halves (parsing PEM per request is slow)."""

    namespace: str
    policy: str
    key: SigningKey
    private: Any
    public: Any

    @property
    def kid(self) -> str:
        return self.key.kid

    @property
    def algorithm(self) -> str:
        return self.key.algorithm


@dataclass(frozen=True, kw_only=True)
class _IndexedKey:
    namespace: str
    policy: str
    entry: KeyEntry


class Keyring:
    """In-memory view of the managed Secrets; updated only from watch events (one event-loop thread)."""

    def __init__(self) -> None:
        self._indexes: dict[PolicyKey, KeyIndex] = {}
        self._by_key_id: dict[str, _IndexedKey] = {}
        self._signing: dict[PolicyKey, tuple[LoadedSigningKey, ...]] = {}
        self._by_kid: dict[str, LoadedSigningKey] = {}
        self._jwks: dict[PolicyKey, dict[str, Any]] = {}

    # -- fed by the Secret watch ---------------------------------------------------------------
    def secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A managed Secret was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        policy = (meta.get("labels") or {}).get(LABEL_POLICY)
        namespace = meta.get("namespace")
        if not policy or not namespace:
            return
        key = (str(namespace), str(policy))
        secret_type = body.get("type")
        deleted = event_type == "DELETED"
        try:
            if secret_type == TYPE_KEY_INDEX:
                document = None if deleted else _json_field(body, "index.json")
                self.set_index(key, None if document is None else KeyIndex.from_json(document))
            elif secret_type == TYPE_SIGNING:
                document = None if deleted else _json_field(body, "signing-keys.json")
                keys = () if document is None else tuple(SigningKey.from_json(k) for k in document["keys"])
                self.set_signing_keys(key, keys)
        except (KeyError, TypeError, ValueError) as exc:
            # An unreadable index must not keep old keys valid: forget the policy's keys of that type.
            logger.error(
                "managed Secret %s/%s is unreadable (%s); its keys are refused", *key, type(exc).__name__
            )
            if secret_type == TYPE_KEY_INDEX:
                self.set_index(key, None)
            else:
                self.set_signing_keys(key, ())

    def set_index(self, policy: PolicyKey, index: KeyIndex | None) -> None:
        old = self._indexes.pop(policy, None)
        for entry in old.entries if old else ():
            indexed = self._by_key_id.get(entry.key_id)
            if indexed is not None and (indexed.namespace, indexed.policy) == policy:
                del self._by_key_id[entry.key_id]
        if index is None:
            return
        self._indexes[policy] = index
        for entry in index.entries:
            self._by_key_id[entry.key_id] = _IndexedKey(namespace=policy[0], policy=policy[1], entry=entry)

    def set_signing_keys(self, policy: PolicyKey, keys: tuple[SigningKey, ...]) -> None:
        for loaded in self._signing.pop(policy, ()):
            self._by_kid.pop(loaded.kid, None)
        self._jwks.pop(policy, None)
        if not keys:
            return
        loaded_keys = []
        for signing_key in keys:
            private = signing_key.private_key()
            loaded = LoadedSigningKey(
                namespace=policy[0],
                policy=policy[1],
                key=signing_key,
                private=private,
                public=private.public_key(),
            )
            loaded_keys.append(loaded)
            self._by_kid[loaded.kid] = loaded
        self._signing[policy] = tuple(loaded_keys)
        self._jwks[policy] = jwks(keys)

    # -- queries -------------------------------------------------------------------------------
    def verify_api_key(self, presented: str, now: datetime) -> Principal | AuthFailure:
        key_id = api_keys.parse_key_id(presented)
        if key_id is None:
            return AuthFailure(
                reason="malformed_api_key", detail="the API key is not in the ick_<id>_<secret> form"
            )
        indexed = self._by_key_id.get(key_id)
        if indexed is None:
            # Hash anyway, so an unknown id takes as long as a known one.
            api_keys.hashes_match(presented, "0" * 64)
            return AuthFailure(reason="unknown_api_key", detail="the API key is not valid")
        entry = indexed.entry
        if not api_keys.hashes_match(presented, entry.hash):
            return AuthFailure(reason="bad_api_key", detail="the API key is not valid")
        if not entry.valid_at(now):
            reason = "revoked_api_key" if entry.state in ("Revoked", "Rotating") else "inactive_api_key"
            return AuthFailure(reason=reason, detail="the API key has been revoked")
        return Principal(
            namespace=indexed.namespace,
            policy=indexed.policy,
            client=entry.client,
            role=entry.role,
            key_id=entry.key_id,
            method="api-key",
        )

    def key_entry(self, key_id: str) -> tuple[PolicyKey, KeyEntry] | None:
        indexed = self._by_key_id.get(key_id)
        return None if indexed is None else ((indexed.namespace, indexed.policy), indexed.entry)

    def index(self, policy: PolicyKey) -> KeyIndex | None:
        return self._indexes.get(policy)

    def current_signing_key(self, policy: PolicyKey, now: datetime) -> LoadedSigningKey | None:
        for loaded in self._signing.get(policy, ()):
            if loaded.key.current:
                return loaded
        return None

    def verification_key(self, kid: str, now: datetime) -> LoadedSigningKey | None:
        """A key that may still verify tokens: current, or retired with ``notAfter`` in the future."""
        loaded = self._by_kid.get(kid)
        if loaded is None:
            return None
        if loaded.key.not_after is not None and loaded.key.not_after <= now:
            return None
        return loaded

    def jwks(self, policy: PolicyKey) -> dict[str, Any] | None:
        return self._jwks.get(policy)


def _json_field(body: Mapping[str, Any], field: str) -> Any:
    data = body.get("data") or {}
    if field not in data:
        return None
    try:
        return json.loads(base64.b64decode(data[field], validate=True))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{field} is not base64-encoded JSON") from exc
