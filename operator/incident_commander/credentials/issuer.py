"""Carries out the API-key and signing-key plans against Kubernetes Secrets. Blocking: run in a thread.

The order of writes and why it is crash-safe is explained in api_keys.py; this
module executes one planned step at a time and re-plans, so it never needs to
know where a previous, interrupted pass stopped.

Whose Secret is it? The names are derived from the policy (and client) names, so somebody else
may hold one of them. The operator only ever writes a Secret whose controller ownerReference is
this policy (by uid); any other Secret under one of its names is left alone and reported
(``SecretNameConflict``). The key index and the signing keys carry an integrity seal
(credentials/integrity.py): a Secret of ours whose seal does not verify (edited, or planted by
someone who deleted ours) is not read, but replaced with fresh keys, with a Warning Event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from incident_commander.clock import Clock
from incident_commander.credentials import api_keys, integrity, signing
from incident_commander.credentials.api_keys import ClientSecret, ClientSpec, KeyIndex
from incident_commander.credentials.integrity import IntegrityKey, SealedFields
from incident_commander.credentials.signing import Algorithm, SigningKey
from incident_commander.kube_api import AlreadyExists, KubeApi, ObjectRef, StoredSecret
from incident_commander.timestamps import precise_time

logger = logging.getLogger(__name__)

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_POLICY = "incidentcommander.io/policy"
LABEL_CLIENT = "incidentcommander.io/client"
LABEL_ROLE = "incidentcommander.io/role"
LABEL_PURPOSE = "incidentcommander.io/purpose"
MANAGED_BY = "incident-commander"
TYPE_API_KEY = "incidentcommander.io/api-key"
TYPE_KEY_INDEX = "incidentcommander.io/api-key-index"
TYPE_SIGNING = "incidentcommander.io/jwt-signing-keys"
MAX_STEPS = 200
OWN_WRITES_KEPT = 8
"""A pass writes a policy's Secrets up to five times when it issues (index, client Secret, index
again, signing keys); the watch brings each write back, possibly after the next has been made."""


def api_key_secret_name(policy: str, client: str) -> str:
    return f"{policy}-{client}-api-key"


def index_secret_name(policy: str) -> str:
    return f"{policy}-api-key-index"


def signing_secret_name(policy: str) -> str:
    return f"{policy}-jwt-signing-keys"


class SecretNameConflict(Exception):
    """A Secret the policy needs is held by something else; the operator will not overwrite it."""


@dataclass(kw_only=True)
class CredentialOutcome:
    index: KeyIndex
    signing_keys: tuple[SigningKey, ...]
    happenings: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) pairs worth a Normal Event: issued, rotated, revoked keys."""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) pairs worth a Warning Event: an untrusted Secret of ours replaced."""
    conflicts: list[str] = field(default_factory=list)
    """Clients left without a key because another object holds their Secret's name."""


def sealed_fields(owner: ObjectRef, name: str, secret_type: str, data: Mapping[str, str]) -> SealedFields:
    return SealedFields(
        namespace=owner.namespace,
        name=name,
        secret_type=secret_type,
        policy=owner.name,
        policy_uid=owner.uid,
        data=data,
    )


class CredentialIssuer:
    def __init__(self, kube: KubeApi, clock: Clock, integrity_key: Callable[[], IntegrityKey]) -> None:
        self._kube = kube
        self._clock = clock
        self._integrity_key = integrity_key
        """Raises when the key is not loaded yet: nothing is written unsealed."""
        self._written: dict[tuple[str, str], deque[str]] = {}
        """Per policy (namespace, name), the resourceVersions of its Secrets this process wrote
        last: the Secret watch brings every write back, and a write of ours is no news."""
        self._written_lock = threading.Lock()
        """Passes write from worker threads; the watch asks from the event loop."""

    def wrote(self, namespace: str, policy: str, resource_version: str) -> bool:
        """Whether this process made the write that gave one of ``policy``'s Secrets
        ``resource_version``. Resource versions are unique across the cluster's writes, so a Secret
        anyone else wrote, deleted or planted under the policy's label never matches."""
        with self._written_lock:
            return resource_version in self._written.get((namespace, policy), ())

    def forget(self, owner: ObjectRef) -> None:
        """The policy is gone: its writes are no longer worth knowing."""
        with self._written_lock:
            self._written.pop((owner.namespace, owner.name), None)

    def _remember(self, owner: ObjectRef, resource_version: str) -> str:
        with self._written_lock:
            kept = self._written.setdefault((owner.namespace, owner.name), deque(maxlen=OWN_WRITES_KEPT))
            kept.append(resource_version)
        return resource_version

    def reconcile(
        self,
        owner: ObjectRef,
        *,
        clients: Sequence[ClientSpec],
        algorithm: Algorithm,
        token_ttl: timedelta,
        rotate_request: str | None,
        signing_rotate_request: str | None,
        first_sight: bool = False,
    ) -> CredentialOutcome:
        """Read the policy's Secrets, carry out the plans, and say what happened.

        ``first_sight``: no pass has reconciled the policy yet (its status is empty), so its
        Secrets most likely do not exist, and the run skips reading them (two GETs, a LIST, and a
        GET per client). That is safe because such a run creates every name the reads would look
        at: the signing keys first, the key index for its first client, then each client's
        Secret. Anything already under one of those names (a Secret of an earlier pass that
        crashed before its status write, or one planted by someone else) fails its create with
        AlreadyExists, and the run starts again with the reads, keeping the happenings of the
        writes that landed. Without clients no index is written, so the reads are never skipped.
        """

        def run(outcome: CredentialOutcome, read: bool) -> CredentialOutcome:
            outcome.signing_keys = self._signing_keys(
                owner, algorithm, token_ttl, signing_rotate_request, outcome, read
            )
            outcome.index = self._api_keys(owner, clients, rotate_request, outcome, read)
            return outcome

        landed: list[tuple[str, str]] = []
        if first_sight and clients:
            unread = CredentialOutcome(index=KeyIndex(), signing_keys=())
            try:
                return run(unread, read=False)
            except AlreadyExists:
                landed = unread.happenings
        return run(CredentialOutcome(index=KeyIndex(), signing_keys=(), happenings=landed), read=True)

    # -- signing keys -------------------------------------------------------------------------------
    def _signing_keys(
        self,
        owner: ObjectRef,
        algorithm: Algorithm,
        ttl: timedelta,
        request: str | None,
        outcome: CredentialOutcome,
        read: bool,
    ) -> tuple[SigningKey, ...]:
        name = signing_secret_name(owner.name)
        stored = self._own_secret(owner, name, TYPE_SIGNING, outcome) if read else None
        document = (
            json.loads(stored.data.get("signing-keys.json", b"{}")) if stored and stored.trusted else {}
        )
        keys = tuple(SigningKey.from_json(k) for k in document.get("keys", []))
        handled = document.get("rotateHandled")
        decision = signing.plan_signing_keys(
            keys,
            algorithm=algorithm,
            token_ttl=ttl,
            rotate_request=request,
            rotate_handled=handled,
            now=self._clock(),
        )
        if decision.keys is None:
            return keys
        new_handled = request if decision.reason == "RotationRequested" else handled
        payload = {
            "signing-keys.json": json.dumps(
                {"rotateHandled": new_handled, "keys": [k.to_json() for k in decision.keys]}
            ),
            "jwks.json": json.dumps(signing.jwks(decision.keys)),
        }
        self._write_sealed(
            owner,
            name=name,
            type_=TYPE_SIGNING,
            purpose="jwt-signing-keys",
            data=payload,
            resource_version=stored.secret.resource_version if stored else None,
        )
        if decision.reason != "RetiredKeyExpired":
            current = decision.keys[0]
            outcome.happenings.append(
                (
                    "SigningKeyRotated",
                    f"new {current.algorithm} signing key {current.kid} ({decision.reason})",
                )
            )
        return decision.keys

    # -- API keys ------------------------------------------------------------------------------------
    def _api_keys(
        self,
        owner: ObjectRef,
        clients: Sequence[ClientSpec],
        request: str | None,
        outcome: CredentialOutcome,
        read: bool,
    ) -> KeyIndex:
        index_name = index_secret_name(owner.name)
        stored_index = self._own_secret(owner, index_name, TYPE_KEY_INDEX, outcome) if read else None
        index = KeyIndex.from_json(
            json.loads(stored_index.data.get("index.json", b"{}"))
            if stored_index and stored_index.trusted
            else None
        )
        index_version = stored_index.secret.resource_version if stored_index else None
        client_secrets = self._client_secrets(owner, clients, outcome) if read else {}
        clients = [c for c in clients if c.name not in outcome.conflicts]
        by_name = {c.name: c for c in clients}

        def save(new_index: KeyIndex) -> None:
            nonlocal index, index_version
            index_version = self._write_sealed(
                owner,
                name=index_name,
                type_=TYPE_KEY_INDEX,
                purpose="api-key-index",
                data={"index.json": json.dumps(new_index.to_json())},
                resource_version=index_version,
            )
            index = new_index

        for _ in range(MAX_STEPS):
            now = self._clock()
            step = api_keys.next_step(
                clients=clients,
                index=index,
                secrets_by_client={c: s[1] for c, s in client_secrets.items()},
                rotate_request=request,
                now=now,
            )
            if step is None:
                return index
            if isinstance(step, api_keys.ResolvePending):
                if step.activate:
                    save(api_keys.with_activated(index, step.key_id, by_name[step.client].grace_period, now))
                    outcome.happenings.append(
                        ("ApiKeyIssued", f"key {step.key_id} of client {step.client} activated")
                    )
                else:
                    save(api_keys.without(index, [step.key_id]))
            elif isinstance(step, api_keys.StartRotation):
                save(api_keys.with_rotation_started(index, step))
            elif isinstance(step, api_keys.Issue):
                client = by_name[step.client]
                key = api_keys.generate_key()
                save(api_keys.with_pending(index, client, key, now))
                version = self._write_client_secret(owner, client, key, now, client_secrets.get(client.name))
                client_secrets[client.name] = (version, ClientSecret(key_id=key.key_id, role=client.role))
                save(api_keys.with_activated(index, key.key_id, client.grace_period, now))
                outcome.happenings.append(
                    ("ApiKeyIssued", f"key {key.key_id} issued to client {client.name} ({step.reason})")
                )
            elif isinstance(step, api_keys.Revoke):
                save(api_keys.with_revoked(index, step.key_ids, now))
                outcome.happenings.append(
                    ("ApiKeyRevoked", f"keys {', '.join(step.key_ids)} revoked ({step.reason})")
                )
            elif isinstance(step, api_keys.DeleteSecret):
                self._kube.delete_secret(owner.namespace, api_key_secret_name(owner.name, step.client))
                client_secrets.pop(step.client, None)
            elif isinstance(step, api_keys.Prune):
                save(api_keys.without(index, step.key_ids))
        raise RuntimeError(f"API keys of {owner.namespace}/{owner.name} did not settle in {MAX_STEPS} steps")

    def _own_secret(
        self, owner: ObjectRef, name: str, type_: str, outcome: CredentialOutcome
    ) -> _Stored | None:
        """The policy's Secret under ``name``: None when there is none; SecretNameConflict when
        another object holds the name; untrusted (to be replaced) when its seal does not verify."""
        stored = self._kube.read_managed_secret(owner.namespace, name)
        if stored is None:
            return None
        if not stored.controlled_by(owner):
            raise SecretNameConflict(_conflict_message(owner, name, stored))
        key = self._integrity_key()
        fields = sealed_fields(owner, name, stored.type, stored.texts())
        trusted = stored.type == type_ and key.verify(fields, stored.annotations.get(integrity.ANNOTATION))
        if not trusted:
            outcome.warnings.append(
                (
                    "UntrustedSecretReplaced",
                    f"Secret {name} does not carry this operator's integrity seal (edited, or not "
                    "written by the operator); its keys are not trusted and new ones replace them",
                )
            )
        return _Stored(secret=stored, trusted=trusted)

    def _write_sealed(
        self,
        owner: ObjectRef,
        *,
        name: str,
        type_: str,
        purpose: str,
        data: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        seal = self._integrity_key().seal(sealed_fields(owner, name, type_, data))
        return self._remember(
            owner,
            self._kube.write_secret(
                owner.namespace,
                name=name,
                type_=type_,
                labels=self._labels(owner, purpose),
                annotations={integrity.ANNOTATION: seal},
                data=data,
                owner=owner,
                resource_version=resource_version,
            ),
        )

    def _client_secrets(
        self, owner: ObjectRef, clients: Sequence[ClientSpec], outcome: CredentialOutcome
    ) -> dict[str, tuple[str, ClientSecret]]:
        """The client Secrets this policy controls, by client. A wanted client whose Secret name is
        held by another object is recorded in ``outcome.conflicts`` and gets no key."""
        selector = f"{LABEL_POLICY}={owner.name},{LABEL_PURPOSE}=api-key"
        found: dict[str, tuple[str, ClientSecret]] = {}
        for secret in self._kube.list_managed_secrets(owner.namespace, selector):
            client = secret.labels.get(LABEL_CLIENT)
            if (
                client
                and secret.name == api_key_secret_name(owner.name, client)
                and secret.controlled_by(owner)
            ):
                found[client] = (secret.resource_version, _client_secret(secret))
        for client_spec in clients:
            if client_spec.name in found:
                continue
            # Not among ours: is the name free? (Only for clients without a Secret: rare after issuance.)
            name = api_key_secret_name(owner.name, client_spec.name)
            holder = self._kube.read_managed_secret(owner.namespace, name)
            if holder is None:
                continue
            if holder.controlled_by(owner):  # ours, with its labels edited away
                found[client_spec.name] = (holder.resource_version, _client_secret(holder))
            else:
                outcome.conflicts.append(client_spec.name)  # reported in the policy's condition
        return found

    def _write_client_secret(
        self,
        owner: ObjectRef,
        client: ClientSpec,
        key: api_keys.IssuedKey,
        now: datetime,
        existing: tuple[str, ClientSecret] | None,
    ) -> str:
        return self._remember(
            owner,
            self._kube.write_secret(
                owner.namespace,
                name=api_key_secret_name(owner.name, client.name),
                type_=TYPE_API_KEY,
                labels={**self._labels(owner, "api-key"), LABEL_CLIENT: client.name, LABEL_ROLE: client.role},
                data={
                    "apiKey": key.plaintext,
                    "keyId": key.key_id,
                    "role": client.role,
                    "issuedAt": precise_time(now),
                    "expiresAt": precise_time(now + client.rotation_period),
                },
                owner=owner,
                resource_version=existing[0] if existing else None,
            ),
        )

    @staticmethod
    def _labels(owner: ObjectRef, purpose: str) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_POLICY: owner.name, LABEL_PURPOSE: purpose}


@dataclass(frozen=True, kw_only=True)
class _Stored:
    secret: StoredSecret
    trusted: bool

    @property
    def data(self) -> Mapping[str, bytes]:
        return self.secret.data


def _conflict_message(owner: ObjectRef, name: str, holder: StoredSecret) -> str:
    if holder.controller is not None:
        kind, holder_name, _ = holder.controller
        who = (
            f"is controlled by {kind} {holder_name}"
            if holder_name != owner.name
            else "belongs to an earlier object of this name"
        )
    else:
        who = "was not created by the operator"
    return f"Secret {name} {who}; the operator will not overwrite it (delete or rename it)"


def _client_secret(secret: StoredSecret) -> ClientSecret:
    key_id = secret.data.get("keyId", b"").decode() or None
    role = secret.data.get("role", b"").decode() or None
    return ClientSecret(key_id=key_id, role=role)
