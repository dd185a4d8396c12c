"""IncidentPolicy against the real apiserver and moto: storage, API keys, signing keys, deletion."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from incident_commander.storage.provisioner import OWNER_TAG, consensus_definition, derived_collection_name
from tests.support.endpoints import MotoServer, OperatorProcess, moto_client
from tests.support.kube import Kube, condition, wait_for, wait_for_condition
from tests.support.policies import (
    active_keys,
    client_key,
    key_index,
    policy,
    secret_data,
    setup_connection,
    verifies,
)

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"


@pytest.fixture
def connected(crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str) -> Iterator[str]:
    setup_connection(crds, namespace, moto)
    yield namespace


def ready(kube: Kube, namespace: str, name: str, operator: OperatorProcess, **kwargs: Any) -> dict[str, Any]:
    return wait_for_condition(kube, "incidentpolicy", namespace, name, logs=operator.logs, **kwargs)


THREE = [
    {"name": "triage", "role": "responder"},
    {"name": "dashboard", "role": "viewer"},
    {"name": "ops", "role": "admin"},
]


def test_three_clients_get_verifying_keys_that_appear_nowhere_else(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    crds.apply(policy("prod", ns, THREE), ns)
    obj = ready(crds, ns, "prod", operator)
    assert condition(obj, "CredentialsIssued")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "StorageReady")["status"] == "True"  # type: ignore[index]
    status_clients = {c["name"]: c for c in obj["status"]["apiClients"]}
    keys = {}
    for client in THREE:
        data = client_key(crds, ns, "prod", client["name"])
        assert data["apiKey"].startswith(f"ick_{data['keyId']}_") and len(data["apiKey"]) >= 4 + 17 + 43
        assert data["role"] == client["role"]
        assert verifies(crds, ns, "prod", data["apiKey"])
        assert not verifies(crds, ns, "prod", data["apiKey"][:-2] + "xx")
        entry = status_clients[client["name"]]
        assert entry["keyId"] == data["keyId"] and entry["state"] == "Active"
        assert (
            entry["fingerprint"].startswith("sha256:")
            and entry["secretName"] == f"prod-{client['name']}-api-key"
        )
        secret = crds.get("secret", ns, f"prod-{client['name']}-api-key")
        assert secret["type"] == "incidentcommander.io/api-key"
        assert secret["metadata"]["labels"]["incidentcommander.io/role"] == client["role"]
        assert secret["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
        keys[client["name"]] = data["apiKey"]

    assert obj["status"]["signingKeys"][0]["algorithm"] == "EdDSA"
    jwks = json.loads(secret_data(crds, ns, "prod-jwt-signing-keys")["jwks.json"])
    assert jwks["keys"][0]["kid"] == obj["status"]["signingKeys"][0]["kid"] and "d" not in jwks["keys"][0]

    # The plaintext lives only in its own Secret.
    everything_else = "\n".join(
        [
            operator.process.log_text(),
            crds.kubectl("get", "events", "-n", ns, "-o", "yaml").stdout,
            json.dumps(crds.get("incidentpolicy", ns, "prod")),
            json.dumps(secret_data(crds, ns, "prod-api-key-index")),
            json.dumps(secret_data(crds, ns, "prod-jwt-signing-keys")),
        ]
    )
    for name, key in keys.items():
        assert key not in everything_else, name
        secret_part = key.split("_", 2)[2]
        assert secret_part not in everything_else, name
        others = [client_key(crds, ns, "prod", c["name"])["apiKey"] for c in THREE if c["name"] != name]
        assert all(secret_part not in other for other in others)


def test_storage_exists_in_moto_with_the_declared_settings(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    crds.apply(policy("store", ns, []), ns)
    obj = ready(crds, ns, "store", operator)
    storage = {r["kind"]: r for r in obj["status"]["storage"]}
    assert {r["state"] for r in storage.values()} == {"Created"}
    table = moto_client(moto.url, "dynamodb").describe_table(TableName=f"{ns}-store-incidents")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by-status"]
    ttl = moto_client(moto.url, "dynamodb").describe_time_to_live(TableName=f"{ns}-store-incidents")[
        "TimeToLiveDescription"
    ]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expiresAt"
    assert storage["DynamoDBTable"]["arn"] == table["TableArn"]
    stream = moto_client(moto.url, "kinesis").describe_stream_summary(StreamName=f"{ns}-store-events")[
        "StreamDescriptionSummary"
    ]
    assert stream["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    s3 = moto_client(moto.url, "s3")
    bucket = f"{ns}-store-artifacts"[:63]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    machine = moto_client(moto.url, "stepfunctions").describe_state_machine(
        stateMachineArn=storage["StateMachine"]["arn"]
    )
    assert json.loads(machine["definition"]) == json.loads(consensus_definition())


def test_existing_bucket_is_adopted_not_recreated(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    bucket = f"{ns}-adopt-artifacts"[:63]
    s3 = moto_client(moto.url, "s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="marker", Body=b"kept")
    crds.apply(policy("adopt", ns, [], storage={"artifactBucket": bucket, "deletionPolicy": "Delete"}), ns)
    obj = ready(crds, ns, "adopt", operator)
    entry = next(r for r in obj["status"]["storage"] if r["kind"] == "S3Bucket")
    assert entry["state"] == "Drifted", (
        entry
    )  # not versioned, no encryption config, public access not blocked
    assert "versioning" in entry["message"]
    assert condition(obj, "StorageReady")["reason"] == "DriftDetected"  # type: ignore[index]
    assert s3.get_object(Bucket=bucket, Key="marker")["Body"].read() == b"kept"
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None, "adoption must not rewrite settings"
    crds.kubectl("delete", "incidentpolicy", "adopt", "-n", ns, "--timeout=60s")
    assert s3.get_object(Bucket=bucket, Key="marker")["Body"].read() == b"kept", "adopted bucket was deleted"


def test_retain_keeps_and_delete_removes_aws_resources(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    crds.apply(
        policy("keep", ns, [], storage={"deletionPolicy": "Retain", "incidentTable": f"{ns}-keep-t"}), ns
    )
    crds.apply(
        policy("drop", ns, [], storage={"deletionPolicy": "Delete", "incidentTable": f"{ns}-drop-t"}), ns
    )
    ready(crds, ns, "keep", operator)
    dropped = ready(crds, ns, "drop", operator)
    assert "incidentcommander.io/storage-cleanup" in dropped["metadata"].get("finalizers", [])
    assert "finalizers" not in crds.get("incidentpolicy", ns, "keep")["metadata"]
    crds.kubectl("delete", "incidentpolicy", "keep", "drop", "-n", ns, "--timeout=60s")
    tables = moto_client(moto.url, "dynamodb").list_tables()["TableNames"]
    assert f"{ns}-keep-t" in tables
    assert f"{ns}-drop-t" not in tables
    events = crds.kubectl("get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "StorageDeleted" in events


def test_unreachable_aws_does_not_block_deletion_forever(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    crds.apply(policy("stuck", ns, [], storage={"deletionPolicy": "Delete"}), ns)
    ready(crds, ns, "stuck", operator)
    crds.kubectl(
        "patch",
        "awsconnection",
        "conn",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"endpointUrl":"http://127.0.0.1:9"}}',
    )
    wait_for_condition(
        crds, "awsconnection", ns, "conn", status="False", reason="EndpointUnreachable", timeout=60
    )
    crds.kubectl("delete", "incidentpolicy", "stuck", "-n", ns, "--wait=false")
    time.sleep(2)
    assert crds.get_or_none("incidentpolicy", ns, "stuck") is not None, "deleted before cleanup was tried"
    crds.kubectl("annotate", "incidentpolicy", "stuck", "-n", ns, "incidentcommander.io/force-delete=true")
    deadline = time.monotonic() + 30
    while crds.get_or_none("incidentpolicy", ns, "stuck") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert crds.get_or_none("incidentpolicy", ns, "stuck") is None
    events = crds.kubectl("get", "events", "-n", ns, "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "CleanupSkipped" in events


def test_a_search_collection_is_provisioned_and_deleted_with_the_policy(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, connected: str
) -> None:
    ns = connected
    kms = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    refused = crds.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(
            policy("bad", ns, [], storage={"searchCollection": {"enabled": True, "name": "9lives"}})
        ),
        check=False,
    )
    assert refused.returncode != 0 and "searchCollection.name" in refused.stderr
    storage = {"deletionPolicy": "Delete", "searchCollection": {"enabled": True, "kmsKeyArn": kms}}
    crds.apply(policy("search", ns, [], storage=storage), ns)
    obj = ready(crds, ns, "search", operator, timeout=90)
    rows = {r["kind"]: r for r in obj["status"]["storage"]}
    name = derived_collection_name(ns, "search")
    for kind in ("SearchNetworkPolicy", "SearchEncryptionPolicy", "SearchCollection"):
        assert rows[kind]["state"] == "Created" and rows[kind]["name"] == name, rows
    aoss = moto_client(moto.url, "opensearchserverless")
    (summary,) = aoss.list_collections(collectionFilters={"name": name})["collectionSummaries"]
    assert rows["SearchCollection"]["arn"] == summary["arn"]
    assert {"key": OWNER_TAG, "value": f"{ns}/search"} in aoss.list_tags_for_resource(
        resourceArn=summary["arn"]
    )["tags"]

    # Delete: the collection goes; moto cannot delete security policies (no DeleteSecurityPolicy),
    # so the policy waits in DeletionPending, as it would for any AWS error, until force-delete.
    crds.kubectl("delete", "incidentpolicy", "search", "-n", ns, "--wait=false")
    deadline = time.monotonic() + 60
    while aoss.list_collections(collectionFilters={"name": name})["collectionSummaries"]:
        assert time.monotonic() < deadline, operator.logs()
        time.sleep(0.5)
    pending = wait_for(
        crds,
        "incidentpolicy",
        ns,
        "search",
        lambda o: (condition(o, "Ready") or {}).get("reason") == "DeletionPending",
        timeout=60,
        logs=operator.logs,
    )
    assert "ClientError" in condition(pending, "Ready")["message"]  # type: ignore[index]
    crds.kubectl("annotate", "incidentpolicy", "search", "-n", ns, "incidentcommander.io/force-delete=true")
    deadline = time.monotonic() + 30
    while crds.get_or_none("incidentpolicy", ns, "search") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert crds.get_or_none("incidentpolicy", ns, "search") is None


def test_rotation_by_annotation_keeps_the_old_key_for_the_grace_period(
    crds: Kube, operator: OperatorProcess, connected: str
) -> None:
    ns = connected
    crds.apply(
        policy(
            "rot", ns, [{"name": "agent", "role": "responder", "rotationPeriod": "1h", "gracePeriod": "6s"}]
        ),
        ns,
    )
    ready(crds, ns, "rot", operator)
    old = client_key(crds, ns, "rot", "agent")
    crds.kubectl("annotate", "incidentpolicy", "rot", "-n", ns, "incidentcommander.io/rotate=first")
    wait_for(
        crds,
        "incidentpolicy",
        ns,
        "rot",
        lambda o: any(c.get("keyId") not in (None, old["keyId"]) for c in o["status"].get("apiClients", [])),
        timeout=15,
        describe="a new key id",
        logs=operator.logs,
    )
    new = client_key(crds, ns, "rot", "agent")
    assert new["keyId"] != old["keyId"]
    assert verifies(crds, ns, "rot", new["apiKey"])
    assert verifies(crds, ns, "rot", old["apiKey"]), "old key must work during the grace period"
    assert crds.get("incidentpolicy", ns, "rot")["status"]["apiClients"][0]["state"] == "Rotating"
    deadline = time.monotonic() + 20
    while verifies(crds, ns, "rot", old["apiKey"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not verifies(crds, ns, "rot", old["apiKey"]), "old key still valid after the grace period"
    assert verifies(crds, ns, "rot", new["apiKey"])
    assert [e.key_id for e in active_keys(crds, ns, "rot", "agent")] == [new["keyId"]]
    # The verifier stops honouring the old key at graceUntil by itself; the index records the
    # revocation on the pass scheduled for that moment.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        [old_entry] = [e for e in key_index(crds, ns, "rot").entries if e.key_id == old["keyId"]]
        if old_entry.state == "Revoked":
            break
        time.sleep(0.3)
    assert old_entry.state == "Revoked"
    wait_for(
        crds,
        "incidentpolicy",
        ns,
        "rot",
        lambda o: o["status"]["apiClients"][0]["state"] == "Active",
        timeout=10,
    )


def test_rotation_by_period(crds: Kube, operator: OperatorProcess, connected: str) -> None:
    ns = connected
    crds.apply(
        policy(
            "short", ns, [{"name": "agent", "role": "viewer", "rotationPeriod": "10s", "gracePeriod": "3s"}]
        ),
        ns,
    )
    ready(crds, ns, "short", operator)
    first = client_key(crds, ns, "short", "agent")
    wait_for(
        crds,
        "incidentpolicy",
        ns,
        "short",
        lambda o: o["status"]["apiClients"][0]["keyId"] != first["keyId"],
        timeout=25,
        describe="a rotated key",
        logs=operator.logs,
    )
    second = client_key(crds, ns, "short", "agent")
    assert verifies(crds, ns, "short", second["apiKey"])
    time.sleep(4)
    assert not verifies(crds, ns, "short", first["apiKey"])
    assert len(active_keys(crds, ns, "short", "agent")) == 1


def test_removing_a_client_revokes_its_key_and_deletes_its_secret(
    crds: Kube, operator: OperatorProcess, connected: str
) -> None:
    ns = connected
    crds.apply(policy("trim", ns, THREE), ns)
    ready(crds, ns, "trim", operator)
    gone = client_key(crds, ns, "trim", "dashboard")
    crds.apply(policy("trim", ns, [THREE[0], THREE[2]]), ns)
    ready(crds, ns, "trim", operator)
    deadline = time.monotonic() + 10
    while crds.get_or_none("secret", ns, "trim-dashboard-api-key") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert crds.get_or_none("secret", ns, "trim-dashboard-api-key") is None
    assert not verifies(crds, ns, "trim", gone["apiKey"])
    assert [c["name"] for c in crds.get("incidentpolicy", ns, "trim")["status"]["apiClients"]] == [
        "triage",
        "ops",
    ]


def test_a_deleted_client_secret_is_reissued(crds: Kube, operator: OperatorProcess, connected: str) -> None:
    ns = connected
    crds.apply(policy("heal", ns, [THREE[0]]), ns)
    ready(crds, ns, "heal", operator)
    old = client_key(crds, ns, "heal", "triage")
    crds.kubectl("delete", "secret", "heal-triage-api-key", "-n", ns)
    deadline = time.monotonic() + 15
    while crds.get_or_none("secret", ns, "heal-triage-api-key") is None and time.monotonic() < deadline:
        time.sleep(0.3)
    new = client_key(crds, ns, "heal", "triage")
    assert new["keyId"] != old["keyId"] and verifies(crds, ns, "heal", new["apiKey"])
