"""Create what is missing, adopt what exists with a compatible shape, report drift, delete what we made.

Blocking boto3 calls: callers run these functions in a thread. Every resource
the operator creates is tagged ``incidentcommander.io/policy = <ns>/<name>``;
only resources carrying that tag are ever deleted, so adopted resources survive
``deletionPolicy: Delete``.

With ``observe=True`` (``storage.managementPolicy: Observe``) nothing is created, changed or
deleted: each resource is only looked at, reported ``Missing`` when absent and checked for drift
when present (read-only calls only).

The optional OpenSearch Serverless collection (``storage.searchCollection``) comes with its network
and encryption security policies. Security policies take no tags: ours carry the owner mark in
their description instead, and only those are deleted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Literal

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

OWNER_TAG = "incidentcommander.io/policy"
TTL_ATTRIBUTE = "expiresAt"
STATUS_INDEX = "by-status"
ResourceState = Literal["Created", "Adopted", "Drifted", "Failed", "Missing"]
STATES = ("Created", "Adopted", "Drifted", "Failed", "Missing")


SEARCH_COLLECTION_MAX = 32
"""OpenSearch Serverless: collection and security policy names are 3-32 characters, [a-z0-9-],
starting with a letter."""
SEARCH_NAME = re.compile(r"^[a-z][a-z0-9-]{2,31}$")
SEARCH_COLLECTION_TYPE = "SEARCH"
AWS_OWNED_KEY = "auto"
"""What OpenSearch Serverless reports as a collection's ``kmsKeyArn`` under an AWS-owned key."""


@dataclass(frozen=True, kw_only=True)
class SearchCollection:
    """``spec.storage.searchCollection`` when enabled: one OpenSearch Serverless collection with an
    encryption and a network security policy, all three under ``name``."""

    name: str
    kms_key_arn: str | None = None
    """A customer managed KMS key; None means the AWS-owned key (moto cannot emulate that)."""
    vpc_endpoints: tuple[str, ...] = ()
    """OpenSearch Serverless VPC endpoints allowed to reach the collection; none means the
    public endpoint (requests still need SigV4 and a data access policy)."""


@dataclass(frozen=True, kw_only=True)
class StorageNames:
    incident_table: str
    event_stream: str
    artifact_bucket: str
    state_machine: str
    state_machine_role_arn: str
    search: SearchCollection | None = None


@dataclass(frozen=True, kw_only=True)
class ResourceStatus:
    kind: str
    name: str
    arn: str | None
    state: ResourceState
    message: str

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "name": self.name, "state": self.state, "message": self.message}
        if self.arn:
            data["arn"] = self.arn
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceStatus:
        state = str(data.get("state"))
        return cls(
            kind=str(data.get("kind")),
            name=str(data.get("name")),
            arn=data.get("arn"),
            state=state if state in STATES else "Failed",  # type: ignore[arg-type]
            message=str(data.get("message") or ""),
        )


def keep_created(
    previous: Sequence[ResourceStatus], current: Sequence[ResourceStatus]
) -> list[ResourceStatus]:
    """A resource this operator created stays ``Created`` on later passes: finding it in place is
    not adopting it. (The status is the record; the owner tag says the same, at an API call each.)"""
    created = {(r.kind, r.name) for r in previous if r.state == "Created"}
    return [
        replace(r, state="Created", message="created")
        if r.state == "Adopted" and (r.kind, r.name) in created
        else r
        for r in current
    ]


def derived_collection_name(namespace: str, policy: str) -> str:
    """A collection name for ``<namespace>/<policy>`` within OpenSearch Serverless's 32 characters.

    The readable part (``ic-`` and the namespace and policy, cut to fit) cannot tell policies apart
    once cut, nor ``a-b/c`` from ``a/b-c``; the 8 hex digits of a hash of ``<namespace>/<policy>``
    do, so two policies never derive the same name (which would make one adopt the other's
    collection). Pure."""
    readable = re.sub(r"[^a-z0-9-]+", "-", f"{namespace}-{policy}".lower())
    digest = hashlib.sha256(f"{namespace}/{policy}".encode()).hexdigest()[:8]
    room = SEARCH_COLLECTION_MAX - len("ic-") - len("-") - len(digest)
    readable = readable[:room].strip("-")
    return f"ic-{readable}-{digest}" if readable else f"ic-{digest}"


def owner_description(owner: str) -> str:
    """The ownership mark of a security policy we created: security policies take no tags, so it
    goes into their description."""
    return f"{OWNER_TAG}={owner}"


def encryption_policy_document(search: SearchCollection) -> dict[str, Any]:
    """The encryption security policy for the collection (AWS requires one before CreateCollection)."""
    document: dict[str, Any] = {
        "Rules": [{"ResourceType": "collection", "Resource": [f"collection/{search.name}"]}]
    }
    if search.kms_key_arn:
        document["KmsARN"] = search.kms_key_arn
    else:
        document["AWSOwnedKey"] = True
    return document


def network_policy_document(search: SearchCollection) -> list[dict[str, Any]]:
    """The network security policy: the VPC endpoints named, or the public endpoint without any."""
    rule: dict[str, Any] = {
        "Rules": [
            {"ResourceType": "collection", "Resource": [f"collection/{search.name}"]},
            {"ResourceType": "dashboard", "Resource": [f"collection/{search.name}"]},
        ],
    }
    if search.vpc_endpoints:
        rule["AllowFromPublic"] = False
        rule["SourceVPCEs"] = list(search.vpc_endpoints)
    else:
        rule["AllowFromPublic"] = True
    return [rule]


def _covers(rules: Sequence[Mapping[str, Any]], collection: str, resource_type: str = "collection") -> bool:
    target = f"collection/{collection}"
    return any(
        rule.get("ResourceType") == resource_type
        and any(fnmatch.fnmatchcase(target, str(pattern)) for pattern in rule.get("Resource") or [])
        for rule in rules
    )


def encryption_drift(document: Any, search: SearchCollection) -> list[str]:
    """What differs between an existing encryption policy and the one we would write. Pure."""
    if not isinstance(document, Mapping):
        return ["the encryption policy is not a JSON object"]
    drift = []
    if not _covers(document.get("Rules") or [], search.name):
        drift.append(f"encryption policy does not cover collection/{search.name}")
    if search.kms_key_arn:
        if document.get("KmsARN") != search.kms_key_arn:
            drift.append(f"encryption key is {document.get('KmsARN') or 'the AWS-owned key'}, not the spec's")
    elif not document.get("AWSOwnedKey"):
        drift.append("encryption uses a customer key, not the AWS-owned key")
    return drift


def network_drift(document: Any, search: SearchCollection) -> list[str]:
    """What differs between an existing network policy and the one we would write. Pure."""
    rules = [r for r in document if isinstance(r, Mapping)] if isinstance(document, list) else []
    covering = [r for r in rules if _covers(r.get("Rules") or [], search.name)]
    if not covering:
        return [f"network policy does not cover collection/{search.name}"]
    rule = covering[0]
    public = bool(rule.get("AllowFromPublic"))
    if search.vpc_endpoints:
        drift = []
        if public:
            drift.append("the collection is reachable from the public endpoint")
        if set(rule.get("SourceVPCEs") or []) != set(search.vpc_endpoints):
            drift.append(f"VPC endpoints are {sorted(rule.get('SourceVPCEs') or [])}, not the spec's")
        return drift
    if not public:
        return ["public access is off but the spec names no VPC endpoint"]
    return []


def collection_drift(detail: Mapping[str, Any], search: SearchCollection) -> list[str]:
    """What differs between an existing collection and what the spec asks for. Pure."""
    drift = []
    if detail.get("type") != SEARCH_COLLECTION_TYPE:
        drift.append(f"type is {detail.get('type')}, not {SEARCH_COLLECTION_TYPE}")
    wanted = search.kms_key_arn or AWS_OWNED_KEY
    if detail.get("kmsKeyArn") and detail.get("kmsKeyArn") != wanted:
        drift.append(f"encrypted with {detail.get('kmsKeyArn')}, not {wanted}")
    return drift


def consensus_definition() -> str:
    """The Step Functions definition shipped in the package."""
    return resources.files("incident_commander.storage").joinpath("consensus.asl.json").read_text()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(kind: str, name: str) -> ResourceStatus:
    return ResourceStatus(
        kind=kind,
        name=name,
        arn=None,
        state="Missing",
        message="does not exist; managementPolicy Observe creates nothing",
    )


def ensure_table(dynamodb: Any, name: str, owner: str, *, observe: bool = False) -> ResourceStatus:
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        if observe:
            return _missing("DynamoDBTable", name)
        table = dynamodb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            GlobalSecondaryIndexes=[
                {
                    "IndexName": STATUS_INDEX,
                    "KeySchema": [
                        {"AttributeName": "status", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            Tags=[{"Key": OWNER_TAG, "Value": owner}],
        )["TableDescription"]
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        return ResourceStatus(
            kind="DynamoDBTable", name=name, arn=table["TableArn"], state="Created", message="created"
        )
    drift = []
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
    if keys != {"pk": "HASH", "sk": "RANGE"}:
        return ResourceStatus(
            kind="DynamoDBTable",
            name=name,
            arn=table.get("TableArn"),
            state="Failed",
            message=f"incompatible key schema {keys}; expected pk (HASH) and sk (RANGE)",
        )
    if (table.get("BillingModeSummary") or {}).get("BillingMode") != "PAY_PER_REQUEST":
        drift.append("billing mode is not on-demand")
    if STATUS_INDEX not in {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}:
        drift.append(f"global secondary index {STATUS_INDEX} is missing")
    ttl = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if (
        ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING")
        or ttl.get("AttributeName") != TTL_ATTRIBUTE
    ):
        drift.append(f"TTL on {TTL_ATTRIBUTE} is not enabled")
    return _adopted("DynamoDBTable", name, table.get("TableArn"), drift)


def ensure_stream(kinesis: Any, name: str, owner: str, *, observe: bool = False) -> ResourceStatus:
    try:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        if observe:
            return _missing("KinesisStream", name)
        kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        kinesis.add_tags_to_stream(StreamName=name, Tags={OWNER_TAG: owner})
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return ResourceStatus(
            kind="KinesisStream", name=name, arn=summary["StreamARN"], state="Created", message="created"
        )
    return _adopted("KinesisStream", name, summary.get("StreamARN"), [])


def ensure_bucket(s3: Any, name: str, owner: str, region: str, *, observe: bool = False) -> ResourceStatus:
    arn = f"arn:aws:s3:::{name}"
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if _code(exc) in ("403", "AccessDenied"):
            return ResourceStatus(
                kind="S3Bucket",
                name=name,
                arn=arn,
                state="Failed",
                message="the bucket exists but belongs to another account",
            )
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        if observe:
            return _missing("S3Bucket", name)
        params: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**params)
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": OWNER_TAG, "Value": owner}]})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        return ResourceStatus(kind="S3Bucket", name=name, arn=arn, state="Created", message="created")
    drift = []
    if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
        drift.append("versioning is not enabled")
    try:
        s3.get_bucket_encryption(Bucket=name)
    except ClientError as exc:
        if _code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        drift.append("default encryption is not configured")
    try:
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        if not all(block.values()):
            drift.append("public access is not fully blocked")
    except ClientError as exc:
        if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        drift.append("public access is not blocked")
    return _adopted("S3Bucket", name, arn, drift)


def ensure_state_machine(
    sfn: Any, names: StorageNames, region: str, account: str, owner: str, *, observe: bool = False
) -> ResourceStatus:
    arn = f"arn:aws:states:{region}:{account}:stateMachine:{names.state_machine}"
    definition = consensus_definition()
    try:
        described = sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as exc:
        if _code(exc) not in ("StateMachineDoesNotExist", "ResourceNotFound"):
            raise
        if observe:
            return _missing("StateMachine", names.state_machine)
        created = sfn.create_state_machine(
            name=names.state_machine,
            definition=definition,
            roleArn=names.state_machine_role_arn,
            tags=[{"key": OWNER_TAG, "value": owner}],
        )
        return ResourceStatus(
            kind="StateMachine",
            name=names.state_machine,
            arn=created["stateMachineArn"],
            state="Created",
            message="created",
        )
    definition_differs = json.loads(described["definition"]) != json.loads(definition)
    role_differs = described.get("roleArn") != names.state_machine_role_arn
    if (definition_differs or role_differs) and not observe and _owned_state_machine(sfn, arn, owner):
        # Ours (tagged at creation): an operator upgrade ships a new workflow, or the spec names a
        # new role. Update in place: the ARN stays, running executions finish on the revision they
        # started with, and there is nothing to report as drift.
        sfn.update_state_machine(
            stateMachineArn=arn, definition=definition, roleArn=names.state_machine_role_arn
        )
        return ResourceStatus(
            kind="StateMachine",
            name=names.state_machine,
            arn=arn,
            state="Created",
            message="created; updated in place to the shipped consensus workflow",
        )
    drift = []
    if definition_differs:
        drift.append("definition differs from the shipped consensus workflow")
    return _adopted("StateMachine", names.state_machine, arn, drift)


SECURITY_POLICY_KINDS = {"network": "SearchNetworkPolicy", "encryption": "SearchEncryptionPolicy"}
SEARCH_KINDS = ("SearchNetworkPolicy", "SearchEncryptionPolicy", "SearchCollection")
"""The optional search collection's rows: incidents do not use them (nothing is indexed yet)."""


def ensure_security_policy(
    aoss: Any,
    search: SearchCollection,
    policy_type: Literal["network", "encryption"],
    owner: str,
    *,
    observe: bool = False,
) -> ResourceStatus:
    """The collection's network or encryption policy: ours by name, or any that applies to it.

    A policy of someone else's that already covers the collection is adopted (AWS would refuse a
    second encryption policy for it anyway). Our own network policy (marked in its description) is
    updated in place when the spec's VPC endpoints change; an encryption policy never is (AWS
    applies it only to collections created after the change)."""
    kind = SECURITY_POLICY_KINDS[policy_type]
    wanted: Any
    if policy_type == "network":
        wanted, drift_of = network_policy_document(search), network_drift
    else:
        wanted, drift_of = encryption_policy_document(search), encryption_drift
    found = _security_policy_for(aoss, search.name, policy_type)
    if found is None:
        if observe:
            return _missing(kind, search.name)
        aoss.create_security_policy(
            name=search.name,
            type=policy_type,
            description=owner_description(owner),
            policy=json.dumps(wanted),
        )
        return ResourceStatus(kind=kind, name=search.name, arn=None, state="Created", message="created")
    name = str(found["name"])
    drift = drift_of(found.get("policy"), search)
    ours = found.get("description") == owner_description(owner)
    if drift and ours and not observe and policy_type == "network":
        aoss.update_security_policy(
            name=name,
            type=policy_type,
            policyVersion=found["policyVersion"],
            description=owner_description(owner),
            policy=json.dumps(wanted),
        )
        return ResourceStatus(
            kind=kind, name=name, arn=None, state="Created", message="created; updated in place to the spec"
        )
    return _adopted(kind, name, None, drift)


def _security_policy_for(aoss: Any, collection: str, policy_type: str) -> dict[str, Any] | None:
    """Ours (named after the collection), else the first one that applies to the collection."""
    try:
        return dict(aoss.get_security_policy(name=collection, type=policy_type)["securityPolicyDetail"])
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    summaries = aoss.list_security_policies(type=policy_type, resource=[f"collection/{collection}"]).get(
        "securityPolicySummaries", []
    )
    if not summaries:
        return None
    name = sorted(str(s["name"]) for s in summaries)[0]
    return dict(aoss.get_security_policy(name=name, type=policy_type)["securityPolicyDetail"])


def _collection_summary(aoss: Any, name: str) -> dict[str, Any] | None:
    summaries = aoss.list_collections(collectionFilters={"name": name}).get("collectionSummaries", [])
    return next((dict(s) for s in summaries if s.get("name") == name), None)


def ensure_collection(
    aoss: Any, search: SearchCollection, owner: str, *, observe: bool = False
) -> ResourceStatus:
    """The OpenSearch Serverless collection (type SEARCH), tagged as the policy's when created.
    Its security policies must exist first: ensure_all runs them before it."""
    kind = "SearchCollection"
    summary = _collection_summary(aoss, search.name)
    if summary is None:
        if observe:
            return _missing(kind, search.name)
        created = aoss.create_collection(
            name=search.name,
            type=SEARCH_COLLECTION_TYPE,
            description=f"incidents of {owner}",
            tags=[{"key": OWNER_TAG, "value": owner}],
        )["createCollectionDetail"]
        status = created.get("status")
        message = "created" if status in (None, "ACTIVE") else f"created; {status}"
        return ResourceStatus(
            kind=kind, name=search.name, arn=created.get("arn"), state="Created", message=message
        )
    details = aoss.batch_get_collection(ids=[summary["id"]]).get("collectionDetails", [])
    detail = next((d for d in details if d.get("id") == summary["id"]), summary)
    status = detail.get("status")
    if status in ("FAILED", "DELETING"):
        return ResourceStatus(
            kind=kind,
            name=search.name,
            arn=detail.get("arn"),
            state="Failed",
            message=f"collection is {status}",
        )
    return _adopted(kind, search.name, detail.get("arn"), collection_drift(detail, search))


class SearchCollectionDeleting(RuntimeError):
    """The collection is being deleted; its security policies are deleted on a later attempt."""


def delete_owned_search(aoss: Any, search: SearchCollection, owner: str) -> list[str]:
    """Delete the collection and the security policies this policy created; return what was deleted.

    A collection that exists but is not ours is left, and so are the policies under its name,
    which may be what encrypts or admits it. AWS deletes a collection asynchronously: while it is
    listed, SearchCollectionDeleting is raised so the caller's deletion window retries."""
    deleted: list[str] = []
    summary = _collection_summary(aoss, search.name)
    if summary is not None:
        tags = aoss.list_tags_for_resource(resourceArn=summary["arn"]).get("tags", [])
        if {t["key"]: t["value"] for t in tags}.get(OWNER_TAG) != owner:
            return deleted
        if summary.get("status") != "DELETING":
            aoss.delete_collection(id=summary["id"])
            deleted.append(search.name)
        if _collection_summary(aoss, search.name) is not None:
            raise SearchCollectionDeleting(f"collection {search.name} is still being deleted")
    for policy_type in ("network", "encryption"):
        try:
            found = aoss.get_security_policy(name=search.name, type=policy_type)["securityPolicyDetail"]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            continue
        if found.get("description") == owner_description(owner):
            aoss.delete_security_policy(name=search.name, type=policy_type)
            deleted.append(f"{search.name} ({policy_type} policy)")
    return deleted


def _owned_state_machine(sfn: Any, arn: str, owner: str) -> bool:
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn).get("tags", [])}
    return tags.get(OWNER_TAG) == owner


def _adopted(kind: str, name: str, arn: str | None, drift: list[str]) -> ResourceStatus:
    if drift:
        return ResourceStatus(kind=kind, name=name, arn=arn, state="Drifted", message="; ".join(drift))
    return ResourceStatus(
        kind=kind, name=name, arn=arn, state="Adopted", message="exists with a compatible shape"
    )


def ensure_all(
    client: Callable[[str], Any],
    names: StorageNames,
    *,
    region: str,
    account: str,
    owner: str,
    observe: bool = False,
) -> list[ResourceStatus]:
    """Ensure (or with ``observe`` only look at) every resource; one failing resource does not stop
    the others."""
    steps: list[tuple[str, str, Callable[[], ResourceStatus]]] = [
        (
            "DynamoDBTable",
            names.incident_table,
            lambda: ensure_table(client("dynamodb"), names.incident_table, owner, observe=observe),
        ),
        (
            "KinesisStream",
            names.event_stream,
            lambda: ensure_stream(client("kinesis"), names.event_stream, owner, observe=observe),
        ),
        (
            "S3Bucket",
            names.artifact_bucket,
            lambda: ensure_bucket(client("s3"), names.artifact_bucket, owner, region, observe=observe),
        ),
        (
            "StateMachine",
            names.state_machine,
            lambda: ensure_state_machine(
                client("stepfunctions"), names, region, account, owner, observe=observe
            ),
        ),
    ]
    if names.search is not None:
        search = names.search
        # Network before encryption: moto's CreateCollection reads the KMS key from the last policy
        # created for the collection. AWS needs the encryption policy before the collection.
        steps += [
            (
                "SearchNetworkPolicy",
                search.name,
                lambda: ensure_security_policy(
                    client("opensearchserverless"), search, "network", owner, observe=observe
                ),
            ),
            (
                "SearchEncryptionPolicy",
                search.name,
                lambda: ensure_security_policy(
                    client("opensearchserverless"), search, "encryption", owner, observe=observe
                ),
            ),
            (
                "SearchCollection",
                search.name,
                lambda: ensure_collection(client("opensearchserverless"), search, owner, observe=observe),
            ),
        ]
    results = []
    for kind, name, step in steps:
        try:
            results.append(step())
        except Exception as exc:
            code = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            results.append(
                ResourceStatus(kind=kind, name=name, arn=None, state="Failed", message=f"{code}: {exc}"[:400])
            )
    return results


def delete_owned(
    client: Callable[[str], Any], names: StorageNames, *, region: str, account: str, owner: str
) -> list[str]:
    """Delete the resources this policy created (tagged as owned); return what was deleted.
    Raises on AWS errors so the caller can retry within its bounded deletion window."""
    deleted = []
    dynamodb = client("dynamodb")
    try:
        arn = dynamodb.describe_table(TableName=names.incident_table)["Table"]["TableArn"]
        tags = {t["Key"]: t["Value"] for t in dynamodb.list_tags_of_resource(ResourceArn=arn).get("Tags", [])}
        if tags.get(OWNER_TAG) == owner:
            dynamodb.delete_table(TableName=names.incident_table)
            deleted.append(names.incident_table)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    kinesis = client("kinesis")
    try:
        tags = {
            t["Key"]: t["Value"] for t in kinesis.list_tags_for_stream(StreamName=names.event_stream)["Tags"]
        }
        if tags.get(OWNER_TAG) == owner:
            kinesis.delete_stream(StreamName=names.event_stream, EnforceConsumerDeletion=True)
            deleted.append(names.event_stream)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    s3 = client("s3")
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=names.artifact_bucket)["TagSet"]}
        if tags.get(OWNER_TAG) == owner:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=names.artifact_bucket):
                objects = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if objects:
                    s3.delete_objects(Bucket=names.artifact_bucket, Delete={"Objects": objects})
            s3.delete_bucket(Bucket=names.artifact_bucket)
            deleted.append(names.artifact_bucket)
    except ClientError as exc:
        if _code(exc) not in ("NoSuchBucket", "NoSuchTagSet", "404"):
            raise
    sfn = client("stepfunctions")
    arn = f"arn:aws:states:{region}:{account}:stateMachine:{names.state_machine}"
    try:
        tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn).get("tags", [])}
        if tags.get(OWNER_TAG) == owner:
            sfn.delete_state_machine(stateMachineArn=arn)
            deleted.append(names.state_machine)
    except ClientError as exc:
        if _code(exc) not in ("StateMachineDoesNotExist", "ResourceNotFound"):
            raise
    if names.search is not None:  # last: it may raise SearchCollectionDeleting for a retry
        deleted += delete_owned_search(client("opensearchserverless"), names.search, owner)
    return deleted
