"""Create what is missing, adopt what exists with a compatible shape, report drift, delete what we made.

Blocking boto3 calls: callers run these functions in a thread. Every resource
the operator creates is tagged ``incidentcommander.io/policy = <ns>/<name>``;
only resources carrying that tag are ever deleted, so adopted resources survive
``deletionPolicy: Delete``.

With ``observe=True`` (``storage.managementPolicy: Observe``) nothing is created, changed or
deleted: each resource is only looked at, reported ``Missing`` when absent and checked for drift
when present (read-only calls only).
"""

from __future__ import annotations

import json
import logging
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


@dataclass(frozen=True, kw_only=True)
class StorageNames:
    incident_table: str
    event_stream: str
    artifact_bucket: str
    state_machine: str
    state_machine_role_arn: str


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
    return deleted
