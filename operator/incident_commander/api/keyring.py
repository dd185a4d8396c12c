"""What the API verifies credentials against: every policy's key index and signing keys.

Fed by the watch on the operator's managed Secrets (the key index Secret and the
signing-key Secret of each policy), so it follows issuance, rotation and
revocation live, whichever replica or process wrote them. It holds hashes of
API keys (never their plaintext) and parsed signing keys, indexed for O(1)
lookup by key id: verifying one of 100,000 keys is a dict lookup, a SHA-256 and
a constant-time comparison.

Which Secrets count. Anyone allowed to create Secrets in a watched namespace can write one with
our labels and type, so neither proves anything. A Secret counts for a policy only if

1. its name is the one the operator derives for that policy (``<policy>-api-key-index``,
   ``<policy>-jwt-signing-keys``): there is at most one such object per policy;
2. its controller ownerReference is that IncidentPolicy, with the policy's *current* uid
   (a Secret left over from a deleted policy of the same name does not count);
3. its integrity seal verifies (credentials/integrity.py): only the operator can seal.

Everything else is ignored, counted in ``incident_commander_untrusted_secrets_total{reason}`` and
logged (rate-limited, never the data). Every map is keyed by (namespace, policy, id): a key id or
kid that another policy already holds is refused, not taken over, and removing a policy's keys
removes only the entries that policy put there.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from incident_commander import API_GROUP, API_VERSION
from incident_commander.api.principal import AuthFailure, Principal
from incident_commander.credentials import api_keys, integrity
from incident_commander.credentials.api_keys import KeyEntry, KeyIndex
from incident_commander.credentials.integrity import IntegrityKey, SealedFields
from incident_commander.credentials.issuer import (
    TYPE_KEY_INDEX,
    TYPE_SIGNING,
    index_secret_name,
    signing_secret_name,
)
from incident_commander.credentials.signing import SigningKey, jwks
from incident_commander.telemetry.sampled_log import SampledLog

logger = logging.getLogger(__name__)

PolicyKey = tuple[str, str]
"""(namespace, policy name)."""

SUFFIXES = {TYPE_KEY_INDEX: "-api-key-index", TYPE_SIGNING: "-jwt-signing-keys"}
DATA_FIELDS = {TYPE_KEY_INDEX: "index.json", TYPE_SIGNING: "signing-keys.json"}


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
    principal: Principal
    """Who this key authenticates: built once when the index loads, not on every request."""


@dataclass(frozen=True, kw_only=True)
class _Candidate:
    """A sealed Secret under a policy's derived name, waiting for (or holding) that policy's trust."""

    secret_uid: str
    owner_uid: str
    index: KeyIndex | None = None
    signing_keys: tuple[SigningKey, ...] = ()


class Keyring:
    """In-memory view of the managed Secrets; updated only from watch events (one event-loop thread)."""

    def __init__(
        self,
        *,
        integrity_key: Callable[[], IntegrityKey | None] = lambda: None,
        policy_uid: Callable[[str, str], str | None] = lambda _ns, _name: None,
        on_untrusted: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self._integrity_key = integrity_key
        """None until loaded: then no Secret is trusted (fail closed)."""
        self._policy_uid = policy_uid
        """The uid of the IncidentPolicy now stored under (namespace, name), from the API's directory."""
        self._on_untrusted = on_untrusted
        self._candidates: dict[tuple[str, str], _Candidate] = {}
        """By (namespace, Secret name): sealed Secrets under a derived name."""
        self._applied: dict[tuple[PolicyKey, str], _Candidate] = {}
        self._indexes: dict[PolicyKey, KeyIndex] = {}
        self._by_key_id: dict[str, _IndexedKey] = {}
        self._signing: dict[PolicyKey, dict[str, LoadedSigningKey]] = {}
        self._jwks: dict[PolicyKey, dict[str, Any]] = {}
        self._warnings = SampledLog(logger, per_window=10, window=60.0)

    # -- fed by the Secret watch ---------------------------------------------------------------
    def secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A managed Secret was listed, added, modified or deleted."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        secret_type = body.get("type")
        if not namespace or not name or secret_type not in SUFFIXES:
            return  # client API-key Secrets and others: nothing the API verifies against
        key = (namespace, name)
        policy = _policy_of(name, str(secret_type))
        if event_type == "DELETED":
            held = self._candidates.get(key)
            if held is not None and held.secret_uid == str(meta.get("uid") or held.secret_uid):
                del self._candidates[key]
            if policy is not None:
                self.refresh(namespace, policy)
            return
        candidate, reason = self._admit(namespace, name, str(secret_type), policy, body)
        if candidate is None:
            self._untrusted(reason, namespace, name)
            self._candidates.pop(key, None)
        else:
            self._candidates[key] = candidate
        if policy is not None:
            self.refresh(namespace, policy)

    def _admit(
        self, namespace: str, name: str, secret_type: str, policy: str | None, body: Mapping[str, Any]
    ) -> tuple[_Candidate | None, str]:
        """The Secret as a candidate for its policy, or why it can never be one."""
        if policy is None:
            return None, "unexpected_name"
        meta = body.get("metadata") or {}
        owner = _controller(meta, policy)
        if owner is None:
            return None, "not_controlled_by_policy"
        sealing_key = self._integrity_key()
        if sealing_key is None:
            return None, "integrity_key_unavailable"
        try:
            data = _texts(body)
        except ValueError:
            return None, "unreadable"
        fields = SealedFields(
            namespace=namespace,
            name=name,
            secret_type=secret_type,
            policy=policy,
            policy_uid=owner,
            data=data,
        )
        if not sealing_key.verify(fields, (meta.get("annotations") or {}).get(integrity.ANNOTATION)):
            return None, "bad_seal"
        try:
            document = json.loads(data[DATA_FIELDS[secret_type]])
            if secret_type == TYPE_KEY_INDEX:
                index = KeyIndex.from_json(document)
                return _Candidate(secret_uid=str(meta.get("uid") or ""), owner_uid=owner, index=index), ""
            keys = tuple(SigningKey.from_json(k) for k in document["keys"])
            return _Candidate(secret_uid=str(meta.get("uid") or ""), owner_uid=owner, signing_keys=keys), ""
        except (KeyError, TypeError, ValueError):
            return None, "unreadable"

    def _untrusted(self, reason: str, namespace: str, name: str) -> None:
        self._on_untrusted(reason)
        self._warnings.warning(
            reason,
            "Secret %s/%s is not trusted for API credentials (%s); it is ignored",
            namespace,
            name,
            reason,
        )

    def refresh(self, namespace: str, policy: str) -> None:
        """Re-decide what the policy's keys are: after one of its Secrets or the policy itself changed."""
        uid = self._policy_uid(namespace, policy)
        policy_key = (namespace, policy)
        for secret_type in SUFFIXES:
            candidate = self._candidates.get((namespace, policy + SUFFIXES[secret_type]))
            trusted = candidate if candidate is not None and uid and candidate.owner_uid == uid else None
            slot = (policy_key, secret_type)
            if trusted is not None and self._applied.get(slot) is trusted:
                continue  # unchanged: no PEM parsing on every status update of the policy
            if trusted is None:
                self._applied.pop(slot, None)
            else:
                self._applied[slot] = trusted
            if secret_type == TYPE_KEY_INDEX:
                self.set_index(policy_key, trusted.index if trusted else None)
            else:
                self.set_signing_keys(policy_key, trusted.signing_keys if trusted else ())

    # -- the lookup maps (trusted content only) --------------------------------------------------
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
            holder = self._by_key_id.get(entry.key_id)
            if holder is not None and (holder.namespace, holder.policy) != policy:
                # Key ids are 64 random bits: a clash is a copy, and the first holder keeps its key.
                self._untrusted("key_id_clash", *policy)
                continue
            self._by_key_id[entry.key_id] = _IndexedKey(
                namespace=policy[0],
                policy=policy[1],
                entry=entry,
                principal=Principal.of_key(policy, entry, "api-key"),
            )

    def set_signing_keys(self, policy: PolicyKey, keys: tuple[SigningKey, ...]) -> None:
        self._signing.pop(policy, None)
        self._jwks.pop(policy, None)
        if not keys:
            return
        loaded: dict[str, LoadedSigningKey] = {}
        for signing_key in keys:
            private = signing_key.private_key()
            loaded[signing_key.kid] = LoadedSigningKey(
                namespace=policy[0],
                policy=policy[1],
                key=signing_key,
                private=private,
                public=private.public_key(),
            )
        self._signing[policy] = loaded
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
        return indexed.principal

    def key_entry(self, key_id: str) -> tuple[PolicyKey, KeyEntry] | None:
        indexed = self._by_key_id.get(key_id)
        return None if indexed is None else ((indexed.namespace, indexed.policy), indexed.entry)

    def index(self, policy: PolicyKey) -> KeyIndex | None:
        return self._indexes.get(policy)

    def current_signing_key(self, policy: PolicyKey, now: datetime) -> LoadedSigningKey | None:
        for loaded in self._signing.get(policy, {}).values():
            if loaded.key.current:
                return loaded
        return None

    def verification_key(self, policy: PolicyKey, kid: str, now: datetime) -> LoadedSigningKey | None:
        """The policy's key ``kid`` if it may still verify tokens: current, or retired with
        ``notAfter`` in the future. Another policy's key of the same kid is never found here."""
        loaded = self._signing.get(policy, {}).get(kid)
        if loaded is None:
            return None
        if loaded.key.not_after is not None and loaded.key.not_after <= now:
            return None
        return loaded

    def jwks(self, policy: PolicyKey) -> dict[str, Any] | None:
        return self._jwks.get(policy)


def _policy_of(name: str, secret_type: str) -> str | None:
    """The policy whose derived Secret name ``name`` is, for that Secret type."""
    suffix = SUFFIXES[secret_type]
    if not name.endswith(suffix) or len(name) == len(suffix):
        return None
    policy = name[: -len(suffix)]
    derived = index_secret_name(policy) if secret_type == TYPE_KEY_INDEX else signing_secret_name(policy)
    return policy if derived == name else None


def _controller(meta: Mapping[str, Any], policy: str) -> str | None:
    """The uid in the controller ownerReference if it is the IncidentPolicy ``policy``."""
    for ref in meta.get("ownerReferences") or ():
        if (
            ref.get("controller")
            and ref.get("apiVersion") == f"{API_GROUP}/{API_VERSION}"
            and ref.get("kind") == "IncidentPolicy"
            and ref.get("name") == policy
            and ref.get("uid")
        ):
            return str(ref["uid"])
    return None


def _texts(body: Mapping[str, Any]) -> dict[str, str]:
    """The Secret's data fields as text (the seal covers exactly these)."""
    try:
        return {
            str(field): base64.b64decode(value, validate=True).decode("utf-8")
            for field, value in (body.get("data") or {}).items()
        }
    except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
        raise ValueError("the Secret's data is not base64-encoded text") from exc
