"""Real keys in an in-memory keyring, for unit tests of the API's pure parts."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from incident_commander.api.keyring import Keyring
from incident_commander.credentials import api_keys, signing
from incident_commander.credentials.api_keys import ClientSpec, KeyIndex
from incident_commander.credentials.issuer import LABEL_POLICY, TYPE_KEY_INDEX, TYPE_SIGNING

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NS = "team"


def client(name: str, role: str) -> ClientSpec:
    return ClientSpec(
        name=name, role=role, rotation_period=timedelta(days=30), grace_period=timedelta(hours=1)
    )


def issue(index: KeyIndex, spec: ClientSpec, now: datetime = NOW) -> tuple[KeyIndex, str]:
    key = api_keys.generate_key()
    index = api_keys.with_pending(index, spec, key, now)
    return api_keys.with_activated(index, key.key_id, spec.grace_period, now), key.plaintext


def secret(policy: str, secret_type: str, field: str, document: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NS, "name": f"{policy}-x", "labels": {LABEL_POLICY: policy}},
        "type": secret_type,
        "data": {field: base64.b64encode(json.dumps(document).encode()).decode()},
    }


def index_secret(policy: str, index: KeyIndex) -> dict[str, Any]:
    return secret(policy, TYPE_KEY_INDEX, "index.json", index.to_json())


def signing_secret(policy: str, keys: tuple[signing.SigningKey, ...]) -> dict[str, Any]:
    return secret(policy, TYPE_SIGNING, "signing-keys.json", {"keys": [k.to_json() for k in keys]})


def keyring_with(
    policy: str, clients: list[ClientSpec], algorithm: signing.Algorithm = "EdDSA"
) -> tuple[Keyring, dict[str, str], signing.SigningKey]:
    keyring = Keyring()
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
