"""Carries out the API-key and signing-key plans against Kubernetes Secrets. Blocking: run in a thread.

The order of writes and why it is crash-safe is explained in api_keys.py; this
module executes one planned step at a time and re-plans, so it never needs to
know where a previous, interrupted pass stopped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from incident_commander.clock import Clock
from incident_commander.credentials import api_keys, signing
from incident_commander.credentials.api_keys import ClientSecret, ClientSpec, KeyIndex
from incident_commander.credentials.signing import Algorithm, SigningKey
from incident_commander.kube_api import KubeApi, ObjectRef, StoredSecret

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


def api_key_secret_name(policy: str, client: str) -> str:
    return f"{policy}-{client}-api-key"


def index_secret_name(policy: str) -> str:
    return f"{policy}-api-key-index"


def signing_secret_name(policy: str) -> str:
    return f"{policy}-jwt-signing-keys"


@dataclass(kw_only=True)
class CredentialOutcome:
    index: KeyIndex
    signing_keys: tuple[SigningKey, ...]
    happenings: list[tuple[str, str]] = field(default_factory=list)
    """(reason, message) pairs worth an Event: issued, rotated, revoked keys."""


class CredentialIssuer:
    def __init__(self, kube: KubeApi, clock: Clock) -> None:
        self._kube = kube
        self._clock = clock

    def reconcile(
        self,
        owner: ObjectRef,
        *,
        clients: Sequence[ClientSpec],
        algorithm: Algorithm,
        token_ttl: timedelta,
        rotate_request: str | None,
        signing_rotate_request: str | None,
    ) -> CredentialOutcome:
        outcome = CredentialOutcome(index=KeyIndex(), signing_keys=())
        outcome.signing_keys = self._signing_keys(
            owner, algorithm, token_ttl, signing_rotate_request, outcome
        )
        outcome.index = self._api_keys(owner, clients, rotate_request, outcome)
        return outcome

    # -- signing keys -------------------------------------------------------------------------------
    def _signing_keys(
        self,
        owner: ObjectRef,
        algorithm: Algorithm,
        ttl: timedelta,
        request: str | None,
        outcome: CredentialOutcome,
    ) -> tuple[SigningKey, ...]:
        name = signing_secret_name(owner.name)
        stored = self._kube.read_managed_secret(owner.namespace, name)
        document = json.loads(stored.data.get("signing-keys.json", b"{}")) if stored else {}
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
        self._kube.write_secret(
            owner.namespace,
            name=name,
            type_=TYPE_SIGNING,
            labels=self._labels(owner, "jwt-signing-keys"),
            data=payload,
            owner=owner,
            resource_version=stored.resource_version if stored else None,
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
        self, owner: ObjectRef, clients: Sequence[ClientSpec], request: str | None, outcome: CredentialOutcome
    ) -> KeyIndex:
        index_name = index_secret_name(owner.name)
        stored_index = self._kube.read_managed_secret(owner.namespace, index_name)
        index = KeyIndex.from_json(
            json.loads(stored_index.data.get("index.json", b"{}")) if stored_index else None
        )
        index_version = stored_index.resource_version if stored_index else None
        client_secrets = self._client_secrets(owner)
        by_name = {c.name: c for c in clients}

        def save(new_index: KeyIndex) -> None:
            nonlocal index, index_version
            index_version = self._kube.write_secret(
                owner.namespace,
                name=index_name,
                type_=TYPE_KEY_INDEX,
                labels=self._labels(owner, "api-key-index"),
                data={"index.json": json.dumps(new_index.to_json())},
                owner=owner,
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

    def _client_secrets(self, owner: ObjectRef) -> dict[str, tuple[str, ClientSecret]]:
        selector = f"{LABEL_POLICY}={owner.name},{LABEL_PURPOSE}=api-key"
        found: dict[str, tuple[str, ClientSecret]] = {}
        for secret in self._kube.list_managed_secrets(owner.namespace, selector):
            client = secret.labels.get(LABEL_CLIENT)
            if client and secret.name == api_key_secret_name(owner.name, client):
                found[client] = (secret.resource_version, _client_secret(secret))
        return found

    def _write_client_secret(
        self,
        owner: ObjectRef,
        client: ClientSpec,
        key: api_keys.IssuedKey,
        now: datetime,
        existing: tuple[str, ClientSecret] | None,
    ) -> str:
        return self._kube.write_secret(
            owner.namespace,
            name=api_key_secret_name(owner.name, client.name),
            type_=TYPE_API_KEY,
            labels={**self._labels(owner, "api-key"), LABEL_CLIENT: client.name, LABEL_ROLE: client.role},
            data={
                "apiKey": key.plaintext,
                "keyId": key.key_id,
                "role": client.role,
                "issuedAt": api_keys.format_time(now),
                "expiresAt": api_keys.format_time(now + client.rotation_period),
            },
            owner=owner,
            resource_version=existing[0] if existing else None,
        )

    @staticmethod
    def _labels(owner: ObjectRef, purpose: str) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_POLICY: owner.name, LABEL_PURPOSE: purpose}


def _client_secret(secret: StoredSecret) -> ClientSecret:
    key_id = secret.data.get("keyId", b"").decode() or None
    role = secret.data.get("role", b"").decode() or None
    return ClientSecret(key_id=key_id, role=role)
