"""Real keys in an in-memory keyring, for unit tests of the API's pure parts."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from incident_commander.api.keyring import Keyring
from incident_commander.credentials import api_keys, integrity, signing
from incident_commander.credentials.api_keys import ClientSpec, KeyIndex
from incident_commander.credentials.integrity import IntegrityKey, SealedFields
from incident_commander.credentials.issuer import (
    LABEL_POLICY,
    TYPE_KEY_INDEX,
    TYPE_SIGNING,
    index_secret_name,
    signing_secret_name,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NS = "team"
INTEGRITY_KEY = IntegrityKey(b"k" * 32)


def policy_uid(namespace: str, policy: str) -> str:
    """The uid the tests' policies have (one per namespace and name)."""
    return f"uid-{namespace}-{policy}"


def new_keyring() -> Keyring:
    """A keyring that trusts what the operator with INTEGRITY_KEY sealed for the policies above."""
    return Keyring(integrity_key=lambda: INTEGRITY_KEY, policy_uid=policy_uid)


def client(name: str, role: str) -> ClientSpec:
    return ClientSpec(
        name=name, role=role, rotation_period=timedelta(days=30), grace_period=timedelta(hours=1)
    )


def issue(index: KeyIndex, spec: ClientSpec, now: datetime = NOW) -> tuple[KeyIndex, str]:
    key = api_keys.generate_key()
    index = api_keys.with_pending(index, spec, key, now)
    return api_keys.with_activated(index, key.key_id, spec.grace_period, now), key.plaintext


def secret(
    policy: str,
    secret_type: str,
    field: str,
    document: dict[str, Any],
    *,
    namespace: str = NS,
    name: str | None = None,
    owner_uid: str | None = None,
    sealing_key: IntegrityKey | None = INTEGRITY_KEY,
) -> dict[str, Any]:
    """A Secret as the operator writes it: derived name, controller ownerReference, sealed."""
    if name is None:
        name = index_secret_name(policy) if secret_type == TYPE_KEY_INDEX else signing_secret_name(policy)
    owner_uid = owner_uid or policy_uid(namespace, policy)
    text = json.dumps(document)
    body: dict[str, Any] = {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"secret-{name}-{owner_uid}",
            "labels": {LABEL_POLICY: policy},
            "ownerReferences": [
                {
                    "apiVersion": "incidentcommander.io/v1alpha1",
                    "kind": "IncidentPolicy",
                    "name": policy,
                    "uid": owner_uid,
                    "controller": True,
                }
            ],
        },
        "type": secret_type,
        "data": {field: base64.b64encode(text.encode()).decode()},
    }
    if sealing_key is not None:
        fields = SealedFields(
            namespace=namespace,
            name=name,
            secret_type=secret_type,
            policy=policy,
            policy_uid=owner_uid,
            data={field: text},
        )
        body["metadata"]["annotations"] = {integrity.ANNOTATION: sealing_key.seal(fields)}
    return body


def index_secret(policy: str, index: KeyIndex, **kwargs: Any) -> dict[str, Any]:
    return secret(policy, TYPE_KEY_INDEX, "index.json", index.to_json(), **kwargs)


def signing_secret(policy: str, keys: tuple[signing.SigningKey, ...], **kwargs: Any) -> dict[str, Any]:
    return secret(policy, TYPE_SIGNING, "signing-keys.json", {"keys": [k.to_json() for k in keys]}, **kwargs)


def keyring_with(
    policy: str, clients: list[ClientSpec], algorithm: signing.Algorithm = "EdDSA"
) -> tuple[Keyring, dict[str, str], signing.SigningKey]:
    keyring = new_keyring()
    index = KeyIndex()
    keys = {}
    for spec in clients:
        index, keys[spec.name] = issue(index, spec)
    key = signing.generate_signing_key(algorithm, NOW)
    keyring.secret_event(None, index_secret(policy, index))
    keyring.secret_event(None, signing_secret(policy, (key,)))
    return keyring, keys, key


def retire(key: signing.SigningKey, not_after: datetime) -> signing.SigningKey:
    return replace(key, not_after=not_after)
