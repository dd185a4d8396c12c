"""Reading what the operator issued for an IncidentPolicy, the way a client or auditor would."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from incident_commander.credentials.api_keys import KeyIndex, verify_key
from tests.support.endpoints import MotoServer
from tests.support.http import call
from tests.support.kube import Kube, wait_for_condition


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    secret = kube.get("secret", namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def key_index(kube: Kube, namespace: str, policy: str) -> KeyIndex:
    data = secret_data(kube, namespace, f"{policy}-api-key-index")
    return KeyIndex.from_json(json.loads(data["index.json"]))


def client_key(kube: Kube, namespace: str, policy: str, client: str) -> dict[str, str]:
    return secret_data(kube, namespace, f"{policy}-{client}-api-key")


def wait_until_served(url: str, api_key: str, timeout: float = 30) -> None:
    """The keyring follows the index Secret through the watch: wait until this key is accepted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if call(url, "POST", "/v1/token", headers={"Authorization": f"ApiKey {api_key}"}).status == 200:
            return
        time.sleep(0.2)
    raise AssertionError("the API never accepted the issued key")


def verifies(kube: Kube, namespace: str, policy: str, plaintext: str) -> bool:
    return verify_key(plaintext, key_index(kube, namespace, policy), datetime.now(UTC)) is not None


def active_keys(kube: Kube, namespace: str, policy: str, client: str) -> list[Any]:
    return key_index(kube, namespace, policy).for_client(client, "Active")


STORAGE_SERVICES = ("sts", "s3", "dynamodb", "kinesis", "stepfunctions")


def apply_connection(
    kube: Kube,
    namespace: str,
    endpoint_url: str,
    *,
    name: str = "conn",
    services: Sequence[str] = ("sts", "dynamodb"),
    **spec: Any,
) -> None:
    """A Secret ``aws-creds`` with moto's test keys and an AwsConnection using it (extra ``spec`` fields
    merged in); does not wait."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        },
        namespace,
    )
    kube.apply(
        {
            "apiVersion": "incidentcommander.io/v1alpha1",
            "kind": "AwsConnection",
            "metadata": {"name": name},
            "spec": {
                "region": "us-east-1",
                "endpointUrl": endpoint_url,
                "credentials": {"secretRef": {"name": "aws-creds"}},
                "services": list(services),
                **spec,
            },
        },
        namespace,
    )


def setup_connection(
    kube: Kube,
    namespace: str,
    moto: MotoServer,
    *,
    services: Sequence[str] = STORAGE_SERVICES,
    logs: Callable[[], str] | None = None,
    **spec: Any,
) -> None:
    """``apply_connection`` against moto, then wait until the connection is Ready."""
    apply_connection(kube, namespace, moto.url, services=services, **spec)
    wait_for_condition(kube, "awsconnection", namespace, "conn", timeout=30, logs=logs)


def policy(name: str, namespace: str, clients: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "connectionRef": {"name": "conn"},
        "modelRouting": {"simpleModel": "small", "complexModel": "large"},
        "storage": {
            "incidentTable": f"{namespace}-{name}-incidents",
            "eventStream": f"{namespace}-{name}-events",
            "artifactBucket": f"{namespace}-{name}-artifacts"[:63],
            "stateMachine": f"{namespace}-{name}-consensus"[:80],
        },
        "apiClients": clients,
    }
    body.update(spec)
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "IncidentPolicy",
        "metadata": {"name": name},
        "spec": body,
    }
