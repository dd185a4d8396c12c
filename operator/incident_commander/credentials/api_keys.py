"""API keys: their format, their hashes, and the plan that issues, rotates and revokes them. Pure.

A key looks like ``ick_<keyId>_<secret>``: a recognisable prefix (secret scanners
can match it), a public key id, and 256 random bits (URL-safe base64). The
operator stores only ``sha256(key)``; a 256-bit secret needs no pepper or slow
hash, since nothing short of the key itself can be guessed.

Where things live
-----------------
- The client's Secret ``<policy>-<client>-api-key`` holds the plaintext of the
  client's newest key, and nothing else knows it.
- The policy's key index (a Secret ``<policy>-api-key-index``, operator-owned)
  holds one entry per key: id, client, role, hash, times and a state.

Order of writes, and why a crash at any instant is safe
-------------------------------------------------------
Issuing (first key or rotation) is three writes, each atomic:

1. index: add the new entry as ``Pending`` (an intent: the verifier ignores it);
2. the client's Secret: write the new key (the plaintext now exists durably);
3. index: the new entry becomes ``Active`` and the previous Active one, if any,
   becomes ``Rotating`` until ``graceUntil`` (both in the same write).

If the operator dies after 1, the Pending entry has no Secret holding its id,
and the next reconciliation drops it (the plaintext died with the process, so
nobody can hold that key). If it dies after 2, the Secret holds the Pending id,
and the next reconciliation finishes step 3. Hence: a Secret's key always has an
entry in the index; an Active entry always has its Secret (it became Active only
after the Secret was written); and a client has two valid keys only while the
older one is Rotating. Revocation flips entries to ``Revoked`` in the index
*before* a removed client's Secret is deleted, so a crash in between leaves a
Secret whose key is already refused, and the next pass deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from incident_commander.timestamps import parse_time, precise_time

KEY_PREFIX = "ick"
KeyState = Literal["Pending", "Active", "Rotating", "Revoked"]
REVOKED_KEPT = timedelta(days=7)
"""How long revoked entries stay in the index, so the API can say "revoked" rather than "unknown"."""


@dataclass(frozen=True, kw_only=True)
class IssuedKey:
    """A freshly generated key; ``plaintext`` goes to the client's Secret only."""

    key_id: str
    plaintext: str

    @property
    def hash(self) -> str:
        return hash_key(self.plaintext)


def generate_key() -> IssuedKey:
    key_id = secrets.token_hex(8)
    return IssuedKey(key_id=key_id, plaintext=f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}")


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def fingerprint(key_hash: str) -> str:
    """A short, public handle of a key: the first 12 hex digits of its hash."""
    return f"sha256:{key_hash[:12]}"


def parse_key_id(plaintext: str) -> str | None:
    """The key id of a well-formed key, else None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1]


def hashes_match(plaintext: str, expected_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_key(plaintext), expected_hash)


@dataclass(frozen=True, kw_only=True)
class KeyEntry:
    """One key in a policy's index."""

    key_id: str
    client: str
    role: str
    hash: str
    issued_at: datetime
    expires_at: datetime
    state: KeyState
    grace_until: datetime | None = None
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "keyId": self.key_id,
            "client": self.client,
            "role": self.role,
            "hash": self.hash,
            "issuedAt": precise_time(self.issued_at),
            "expiresAt": precise_time(self.expires_at),
            "state": self.state,
        }
        if self.grace_until:
            data["graceUntil"] = precise_time(self.grace_until)
        if self.revoked_at:
            data["revokedAt"] = precise_time(self.revoked_at)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyEntry:
        return cls(
            key_id=data["keyId"],
            client=data["client"],
            role=data["role"],
            hash=data["hash"],
            issued_at=parse_time(data["issuedAt"]),
            expires_at=parse_time(data["expiresAt"]),
            state=data["state"],
            grace_until=parse_time(data["graceUntil"]) if data.get("graceUntil") else None,
            revoked_at=parse_time(data["revokedAt"]) if data.get("revokedAt") else None,
        )

    def valid_at(self, now: datetime) -> bool:
        """Whether the verifier accepts this key now."""
        if self.state == "Active":
            return True
        return self.state == "Rotating" and self.grace_until is not None and now < self.grace_until


@dataclass(frozen=True, kw_only=True)
class KeyIndex:
    """The policy's key index, as stored."""

    entries: tuple[KeyEntry, ...] = ()
    rotate_handled: str | None = None
    """The last value of the rotate annotation that was acted upon."""
    rotation_queue: tuple[str, ...] = ()
    """Clients still to rotate for that annotation value (so a crash mid-way resumes, not restarts)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "rotateHandled": self.rotate_handled,
            "rotationQueue": list(self.rotation_queue),
            "keys": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> KeyIndex:
        if not data:
            return cls()
        return cls(
            entries=tuple(KeyEntry.from_json(e) for e in data.get("keys", [])),
            rotate_handled=data.get("rotateHandled"),
            rotation_queue=tuple(data.get("rotationQueue") or ()),
        )

    def for_client(self, client: str, *states: KeyState) -> list[KeyEntry]:
        return [e for e in self.entries if e.client == client and (not states or e.state in states)]

    def replace_entries(self, entries: Sequence[KeyEntry]) -> KeyIndex:
        return replace(self, entries=tuple(entries))


def verify_key(plaintext: str, index: KeyIndex, now: datetime) -> KeyEntry | None:
    """The entry a presented key authenticates as, or None. The key id only selects the entry;
    the hash comparison is constant-time, and only Active or in-grace Rotating keys verify."""
    key_id = parse_key_id(plaintext)
    if key_id is None:
        return None
    for entry in index.entries:
        if entry.key_id == key_id:
            return entry if hashes_match(plaintext, entry.hash) and entry.valid_at(now) else None
    return None


@dataclass(frozen=True, kw_only=True)
class ClientSpec:
    name: str
    role: str
    rotation_period: timedelta
    grace_period: timedelta


@dataclass(frozen=True, kw_only=True)
class ClientSecret:
    """What the client's Secret says about its key (never the key's value)."""

    key_id: str | None
    role: str | None


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ResolvePending:
    """Finish (Secret holds the id) or drop (it does not) a Pending entry left by a crash."""

    client: str
    key_id: str
    activate: bool


@dataclass(frozen=True, kw_only=True)
class Issue:
    client: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Revoke:
    key_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, kw_only=True)
class DeleteSecret:
    client: str


@dataclass(frozen=True, kw_only=True)
class StartRotation:
    """Record a new value of the rotate annotation and queue every client for rotation."""

    request: str
    clients: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Prune:
    key_ids: tuple[str, ...]


Step = ResolvePending | StartRotation | Issue | Revoke | DeleteSecret | Prune


def next_step(
    *,
    clients: Sequence[ClientSpec],
    index: KeyIndex,
    secrets_by_client: Mapping[str, ClientSecret],
    rotate_request: str | None,
    now: datetime,
) -> Step | None:
    """The single next write that moves the state towards the spec, or None when there is none.

    Called again after each step with the state re-read, so every intermediate
    state a crash can leave behind is also a state this function handles.
    """
    wanted = {c.name: c for c in clients}
    for entry in index.entries:
        if entry.state == "Pending":
            secret = secrets_by_client.get(entry.client)
            holds_it = secret is not None and secret.key_id == entry.key_id and entry.client in wanted
            return ResolvePending(client=entry.client, key_id=entry.key_id, activate=holds_it)

    live = [e for e in index.entries if e.state in ("Active", "Rotating") and e.client not in wanted]
    if live:
        return Revoke(key_ids=tuple(e.key_id for e in live), reason="ClientRemoved")
    for client_name in sorted(secrets_by_client):
        if client_name not in wanted:
            return DeleteSecret(client=client_name)

    ended = [e for e in index.entries if e.state == "Rotating" and e.grace_until and e.grace_until <= now]
    if ended:
        return Revoke(key_ids=tuple(e.key_id for e in ended), reason="GracePeriodEnded")

    if rotate_request is not None and rotate_request != index.rotate_handled:
        return StartRotation(request=rotate_request, clients=tuple(c.name for c in clients))
    for client in clients:
        active = index.for_client(client.name, "Active")
        secret = secrets_by_client.get(client.name)
        if not active:
            return Issue(client=client.name, reason="Initial")
        current = max(active, key=lambda e: e.issued_at)
        if client.name in index.rotation_queue:
            return Issue(client=client.name, reason="RotationRequested")
        if current.expires_at <= now:
            return Issue(client=client.name, reason="RotationPeriodElapsed")
        if current.role != client.role:
            return Issue(client=client.name, reason="RoleChanged")
        if secret is None or secret.key_id != current.key_id:
            return Issue(client=client.name, reason="SecretMissingOrAltered")
        if len(active) > 1:  # cannot happen by this module's writes; repair it if it does
            older = tuple(e.key_id for e in active if e.key_id != current.key_id)
            return Revoke(key_ids=older, reason="DuplicateActive")

    stale = [
        e.key_id
        for e in index.entries
        if e.state == "Revoked" and e.revoked_at is not None and now - e.revoked_at > REVOKED_KEPT
    ]
    if stale:
        return Prune(key_ids=tuple(stale))
    return None


def with_pending(index: KeyIndex, client: ClientSpec, key: IssuedKey, now: datetime) -> KeyIndex:
    entry = KeyEntry(
        key_id=key.key_id,
        client=client.name,
        role=client.role,
        hash=key.hash,
        issued_at=now,
        expires_at=now + client.rotation_period,
        state="Pending",
    )
    return index.replace_entries([*index.entries, entry])


def with_activated(index: KeyIndex, key_id: str, grace: timedelta, now: datetime) -> KeyIndex:
    """The Pending entry becomes Active; the client's previous Active key starts its grace period,
    and the client leaves the rotation queue."""
    target = next(e for e in index.entries if e.key_id == key_id)
    entries = []
    for entry in index.entries:
        if entry.key_id == key_id:
            entries.append(replace(entry, state="Active"))
        elif entry.client == target.client and entry.state == "Active":
            entries.append(replace(entry, state="Rotating", grace_until=now + grace))
        else:
            entries.append(entry)
    queue = tuple(c for c in index.rotation_queue if c != target.client)
    return replace(index, entries=tuple(entries), rotation_queue=queue)


def with_rotation_started(index: KeyIndex, step: StartRotation) -> KeyIndex:
    return replace(index, rotate_handled=step.request, rotation_queue=step.clients)


def without(index: KeyIndex, key_ids: Sequence[str]) -> KeyIndex:
    return index.replace_entries([e for e in index.entries if e.key_id not in key_ids])


def with_revoked(index: KeyIndex, key_ids: Sequence[str], now: datetime) -> KeyIndex:
    return index.replace_entries(
        [
            replace(e, state="Revoked", revoked_at=now, grace_until=None) if e.key_id in key_ids else e
            for e in index.entries
        ]
    )


def next_due(index: KeyIndex) -> datetime | None:
    """When the index next needs attention without any event: a rotation or a grace end."""
    moments = [e.expires_at for e in index.entries if e.state == "Active"]
    moments += [e.grace_until for e in index.entries if e.state == "Rotating" and e.grace_until]
    return min(moments) if moments else None
