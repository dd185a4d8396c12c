"""The OpenSearch Serverless collection of IncidentPolicy storage against moto server over HTTP.

What moto 5.2.5 does not emulate is pinned here, so that a moto that learns it fails a test and
the docs get updated: DeleteSecurityPolicy (500), a collection under the AWS-owned key (500 from
CreateCollection), and the collection's data plane (no incident indexing can be tested)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from incident_commander.storage.provisioner import (
    OWNER_TAG,
    ResourceStatus,
    SearchCollection,
    StorageNames,
    delete_owned,
    ensure_all,
    keep_created,
    owner_description,
)
from tests.support.endpoints import MotoServer

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
REGION = "us-east-1"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SEARCH_KINDS = ("SearchNetworkPolicy", "SearchEncryptionPolicy", "SearchCollection")


def clients(moto: MotoServer) -> Callable[[str], Any]:
    """One attempt per call: moto's 500s for what it lacks should not be retried for seconds."""
    config = Config(retries={"total_max_attempts": 1})

    def client(service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=moto.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )

    return client


def storage_names(search: SearchCollection) -> StorageNames:
    unique = uuid.uuid4().hex[:8]
    return StorageNames(
        incident_table=f"t-{unique}",
        event_stream=f"s-{unique}",
        artifact_bucket=f"b-{unique}",
        state_machine=f"m-{unique}",
        state_machine_role_arn=f"arn:aws:iam::{ACCOUNT}:role/r",
        search=search,
    )


def unique_collection() -> str:
    return f"ic-test-{uuid.uuid4().hex[:12]}"


def by_kind(results: list[ResourceStatus]) -> dict[str, ResourceStatus]:
    return {r.kind: r for r in results}


def collection_named(aoss: Any, name: str) -> list[dict[str, Any]]:
    return list(aoss.list_collections(collectionFilters={"name": name})["collectionSummaries"])


def test_created_with_both_security_policies_then_kept_and_updated_in_place(moto: MotoServer) -> None:
    client, owner = clients(moto), "team/prod"
    aoss = client("opensearchserverless")
    names = storage_names(SearchCollection(name=unique_collection(), kms_key_arn=KMS))
    assert names.search is not None
    name = names.search.name

    first = ensure_all(client, names, region=REGION, account=ACCOUNT, owner=owner)
    rows = by_kind(first)
    assert [r.kind for r in first][-3:] == list(SEARCH_KINDS)
    assert {rows[k].state for k in SEARCH_KINDS} == {"Created"}, first
    assert {rows[k].name for k in SEARCH_KINDS} == {name}
    (summary,) = collection_named(aoss, name)
    assert rows["SearchCollection"].arn == summary["arn"]
    (detail,) = aoss.batch_get_collection(ids=[summary["id"]])["collectionDetails"]
    assert detail["type"] == "SEARCH" and detail["kmsKeyArn"] == KMS
    tags = aoss.list_tags_for_resource(resourceArn=summary["arn"])["tags"]
    assert {"key": OWNER_TAG, "value": owner} in tags
    encryption = aoss.get_security_policy(name=name, type="encryption")["securityPolicyDetail"]
    assert encryption["description"] == owner_description(owner)
    assert encryption["policy"]["KmsARN"] == KMS
    network = aoss.get_security_policy(name=name, type="network")["securityPolicyDetail"]
    assert network["policy"][0]["AllowFromPublic"] is True

    # The next pass finds them in place: nothing created again, no drift, still ours.
    second = ensure_all(client, names, region=REGION, account=ACCOUNT, owner=owner)
    assert {by_kind(second)[k].state for k in SEARCH_KINDS} == {"Adopted"}, second
    assert {by_kind(keep_created(first, second))[k].state for k in SEARCH_KINDS} == {"Created"}
    assert len(collection_named(aoss, name)) == 1

    # The spec now names VPC endpoints: our own network policy follows it in place.
    private = replace(names, search=replace(names.search, vpc_endpoints=("vpce-0abc",)))
    third = by_kind(ensure_all(client, private, region=REGION, account=ACCOUNT, owner=owner))
    assert third["SearchNetworkPolicy"].state == "Created"
    assert "updated in place" in third["SearchNetworkPolicy"].message
    network = aoss.get_security_policy(name=name, type="network")["securityPolicyDetail"]
    assert network["policy"][0]["AllowFromPublic"] is False
    assert network["policy"][0]["SourceVPCEs"] == ["vpce-0abc"]
    assert (
        by_kind(ensure_all(client, private, region=REGION, account=ACCOUNT, owner=owner))[
            "SearchNetworkPolicy"
        ].state
        == "Adopted"
    )

    # Another key in the spec: reported, never rewritten (a collection's key cannot change).
    rekeyed = replace(names, search=replace(names.search, kms_key_arn=KMS.replace("1234abcd", "9999abcd")))
    fourth = by_kind(ensure_all(client, rekeyed, region=REGION, account=ACCOUNT, owner=owner))
    assert fourth["SearchEncryptionPolicy"].state == "Drifted"
    assert (
        fourth["SearchCollection"].state == "Drifted"
        and "encrypted with" in fourth["SearchCollection"].message
    )
    assert (
        aoss.get_security_policy(name=name, type="encryption")["securityPolicyDetail"]["policy"]["KmsARN"]
        == KMS
    )


def test_a_foreign_collection_and_its_policies_are_adopted_and_never_deleted(moto: MotoServer) -> None:
    client = clients(moto)
    aoss = client("opensearchserverless")
    name = unique_collection()
    rules = [{"ResourceType": "collection", "Resource": [f"collection/{name}"]}]
    # Another tool's policies, under other names (network first: moto reads the key from the last one).
    aoss.create_security_policy(
        name=f"net-{name}"[:32],
        type="network",
        policy=json.dumps([{"Rules": rules, "AllowFromPublic": True}]),
    )
    aoss.create_security_policy(
        name=f"enc-{name}"[:32], type="encryption", policy=json.dumps({"Rules": rules, "KmsARN": KMS})
    )
    aoss.create_collection(name=name, type="SEARCH")
    names = storage_names(SearchCollection(name=name, kms_key_arn=KMS))

    rows = by_kind(ensure_all(client, names, region=REGION, account=ACCOUNT, owner="team/adopter"))
    assert {rows[k].state for k in SEARCH_KINDS} == {"Adopted"}, rows
    assert rows["SearchNetworkPolicy"].name == f"net-{name}"[:32]
    assert rows["SearchEncryptionPolicy"].name == f"enc-{name}"[:32]
    for policy_type in ("network", "encryption"):
        with pytest.raises(ClientError) as missing:
            aoss.get_security_policy(name=name, type=policy_type)
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"

    deleted = delete_owned(client, names, region=REGION, account=ACCOUNT, owner="team/adopter")
    assert deleted == [names.incident_table, names.event_stream, names.artifact_bucket, names.state_machine]
    assert len(collection_named(aoss, name)) == 1
    for policy_type, prefix in (("network", "net-"), ("encryption", "enc-")):
        aoss.get_security_policy(name=f"{prefix}{name}"[:32], type=policy_type)  # still there


def test_observe_creates_nothing_and_reports_what_is_missing(moto: MotoServer) -> None:
    client = clients(moto)
    aoss = client("opensearchserverless")
    names = storage_names(SearchCollection(name=unique_collection(), kms_key_arn=KMS))
    assert names.search is not None
    rows = by_kind(ensure_all(client, names, region=REGION, account=ACCOUNT, owner="team/obs", observe=True))
    assert {rows[k].state for k in SEARCH_KINDS} == {"Missing"}
    assert collection_named(aoss, names.search.name) == []
    assert (
        aoss.list_security_policies(type="network", resource=[f"collection/{names.search.name}"])[
            "securityPolicySummaries"
        ]
        == []
    )


def test_delete_removes_our_collection_but_moto_cannot_delete_security_policies(moto: MotoServer) -> None:
    client, owner = clients(moto), "team/gone"
    aoss = client("opensearchserverless")
    names = storage_names(SearchCollection(name=unique_collection(), kms_key_arn=KMS))
    assert names.search is not None
    rows = by_kind(ensure_all(client, names, region=REGION, account=ACCOUNT, owner=owner))
    assert {rows[k].state for k in SEARCH_KINDS} == {"Created"}
    # Another policy's owner deletes nothing.
    assert names.search.name not in delete_owned(client, names, region=REGION, account=ACCOUNT, owner="x/y")
    assert len(collection_named(aoss, names.search.name)) == 1
    with pytest.raises(ClientError) as refused:
        delete_owned(client, names, region=REGION, account=ACCOUNT, owner=owner)
    # moto 5.2.5 has no DeleteSecurityPolicy: AWS deletes them (the operator retries until its
    # deletion window closes, then posts StorageOrphaned).
    assert refused.value.operation_name == "DeleteSecurityPolicy"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert collection_named(aoss, names.search.name) == []
    assert client("dynamodb").list_tables()["TableNames"].count(names.incident_table) == 0


def test_moto_cannot_create_a_collection_under_the_aws_owned_key(moto: MotoServer) -> None:
    client = clients(moto)
    names = storage_names(SearchCollection(name=unique_collection()))
    rows = by_kind(ensure_all(client, names, region=REGION, account=ACCOUNT, owner="team/owned"))
    assert rows["SearchEncryptionPolicy"].state == "Created"
    assert rows["SearchCollection"].state == "Failed"
    assert rows["SearchCollection"].message.startswith("500")


def test_moto_does_not_serve_the_collection_data_plane(moto: MotoServer) -> None:
    """Why incidents are not indexed: nothing here answers OpenSearch's document API."""
    client = clients(moto)
    aoss = client("opensearchserverless")
    names = storage_names(SearchCollection(name=unique_collection(), kms_key_arn=KMS))
    assert names.search is not None
    ensure_all(client, names, region=REGION, account=ACCOUNT, owner="team/data")
    (summary,) = collection_named(aoss, names.search.name)
    (detail,) = aoss.batch_get_collection(ids=[summary["id"]])["collectionDetails"]
    endpoint_host = detail["collectionEndpoint"].removeprefix("https://")
    request = urllib.request.Request(  # noqa: S310 - the local moto server
        f"{moto.url}/incidents/_doc/1",
        data=b'{"title": "disk full"}',
        method="PUT",
        headers={"Host": endpoint_host, "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    body = answer.value.read().decode(errors="replace")
    assert answer.value.code == 404 and "NoSuchBucket" in body  # taken for S3, not indexed
