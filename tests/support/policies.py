"""Reading what the operator issued for an IncidentPolicy, the way a client or auditor would."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from incident_commander.credentials.api_keys import KeyIndex, verify_key
from tests.support.kube import Kube


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    secret = kube.get("secret", namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def key_index(kube: Kube, namespace: str, policy: str) -> KeyIndex:
    data = secret_data(kube, namespace, f"{policy}-api-key-index")
    return KeyIndex.from_json(json.loads(data["index.json"]))


def client_key(kube: Kube, namespace: str, policy: str, client: str) -> dict[str, str]:
    return secret_data(kube, namespace, f"{policy}-{client}-api-key")


def verifies(kube: Kube, namespace: str, policy: str, plaintext: str) -> bool:
    return verify_key(plaintext, key_index(kube, namespace, policy), datetime.now(UTC)) is not None


def active_keys(kube: Kube, namespace: str, policy: str, client: str) -> list[Any]:
    return key_index(kube, namespace, policy).for_client(client, "Active")
