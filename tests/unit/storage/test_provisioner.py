"""The provisioner's pure parts for the OpenSearch Serverless collection: names, documents, drift."""

from __future__ import annotations

import json

from incident_commander.storage.provisioner import (
    SEARCH_NAME,
    SearchCollection,
    collection_drift,
    derived_collection_name,
    encryption_drift,
    encryption_policy_document,
    network_drift,
    network_policy_document,
    owner_description,
)

KMS = "arn:aws:kms:us-east-1:123456789012:key/k-1"


def test_derived_names_fit_opensearch_serverless_and_tell_policies_apart() -> None:
    cases = [
        ("team", "prod"),
        ("a-b", "c"),
        ("a", "b-c"),
        ("x" * 63, "y" * 253),
        ("x" * 63, "y" * 252),
        ("9lives", "p.q"),
        ("Ns", "P"),
    ]
    names = [derived_collection_name(ns, policy) for ns, policy in cases]
    for name in names:
        assert SEARCH_NAME.fullmatch(name), name
        assert 3 <= len(name) <= 32
    assert len(set(names)) == len(names), "two policies derived the same collection name"
    assert derived_collection_name("team", "prod") == derived_collection_name("team", "prod")
    assert derived_collection_name("team", "prod").startswith("ic-team-prod-")


def test_the_encryption_policy_names_the_key_or_the_aws_owned_one() -> None:
    customer = encryption_policy_document(SearchCollection(name="ic-a", kms_key_arn=KMS))
    assert customer == {
        "Rules": [{"ResourceType": "collection", "Resource": ["collection/ic-a"]}],
        "KmsARN": KMS,
    }
    owned = encryption_policy_document(SearchCollection(name="ic-a"))
    assert owned["AWSOwnedKey"] is True and "KmsARN" not in owned
    json.dumps(customer)  # what CreateSecurityPolicy is sent


def test_encryption_drift() -> None:
    search = SearchCollection(name="ic-a", kms_key_arn=KMS)
    assert encryption_drift(encryption_policy_document(search), search) == []
    wildcard = {"Rules": [{"ResourceType": "collection", "Resource": ["collection/ic-*"]}], "KmsARN": KMS}
    assert encryption_drift(wildcard, search) == []
    other_key = {**wildcard, "KmsARN": KMS.replace("k-1", "k-2")}
    assert encryption_drift(other_key, search) == [f"encryption key is {other_key['KmsARN']}, not the spec's"]
    elsewhere = {"Rules": [{"ResourceType": "collection", "Resource": ["collection/other"]}], "KmsARN": KMS}
    assert encryption_drift(elsewhere, search) == ["encryption policy does not cover collection/ic-a"]
    aws_owned = SearchCollection(name="ic-a")
    assert encryption_drift(encryption_policy_document(search), aws_owned) == [
        "encryption uses a customer key, not the AWS-owned key"
    ]
    assert encryption_drift([1], search) == ["the encryption policy is not a JSON object"]


def test_network_policy_and_drift() -> None:
    public = SearchCollection(name="ic-a")
    private = SearchCollection(name="ic-a", vpc_endpoints=("vpce-1",))
    assert network_policy_document(public)[0]["AllowFromPublic"] is True
    assert network_policy_document(private)[0] == {
        "Rules": [
            {"ResourceType": "collection", "Resource": ["collection/ic-a"]},
            {"ResourceType": "dashboard", "Resource": ["collection/ic-a"]},
        ],
        "AllowFromPublic": False,
        "SourceVPCEs": ["vpce-1"],
    }
    assert network_drift(network_policy_document(public), public) == []
    assert network_drift(network_policy_document(private), private) == []
    assert network_drift(network_policy_document(public), private) == [
        "the collection is reachable from the public endpoint",
        "VPC endpoints are [], not the spec's",
    ]
    assert network_drift(network_policy_document(private), public) == [
        "public access is off but the spec names no VPC endpoint"
    ]
    assert network_drift(network_policy_document(SearchCollection(name="ic-b")), public) == [
        "network policy does not cover collection/ic-a"
    ]
    assert network_drift({"not": "a list"}, public) == ["network policy does not cover collection/ic-a"]


def test_collection_drift() -> None:
    search = SearchCollection(name="ic-a", kms_key_arn=KMS)
    assert collection_drift({"type": "SEARCH", "kmsKeyArn": KMS}, search) == []
    assert collection_drift({"type": "TIMESERIES", "kmsKeyArn": "auto"}, search) == [
        "type is TIMESERIES, not SEARCH",
        f"encrypted with auto, not {KMS}",
    ]
    assert collection_drift({"type": "SEARCH", "kmsKeyArn": "auto"}, SearchCollection(name="ic-a")) == []


def test_the_owner_mark_names_the_policy() -> None:
    assert owner_description("team/prod") == "incidentcommander.io/policy=team/prod"
