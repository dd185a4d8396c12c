"""The operator against LocalStack community in host mode (tests/localstack/install.sh), the AWS
of `make kind-up`, for what LocalStack emulates on this machine: STS, S3, Kinesis and Step
Functions. Where it does not (DynamoDB needs DynamoDB Local and a JRE that LocalStack downloads on
first use, which cannot happen here; Cost Explorer is not in the community edition), the tests pin
what the operator reports: a clear condition, never a crash or a false Ready."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.support.endpoints import OperatorProcess
from tests.support.kube import Kube, condition, wait_for, wait_for_condition
from tests.support.localstack import LocalStackServer
from tests.support.policies import apply_connection, policy

pytestmark = pytest.mark.integration

EMULATED = ("sts", "s3", "kinesis", "stepfunctions")


def aws(localstack: LocalStackServer, service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=localstack.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def services(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (obj.get("status") or {}).get("services") or []}


def test_a_connection_to_what_localstack_emulates_becomes_ready(
    crds: Kube, operator: OperatorProcess, localstack: LocalStackServer, namespace: str
) -> None:
    apply_connection(crds, namespace, localstack.url, services=EMULATED)
    obj = wait_for_condition(crds, "awsconnection", namespace, "conn", timeout=120, logs=operator.logs)
    assert condition(obj, "Ready")["reason"] == "AllServicesHealthy"
    assert set(services(obj)) == set(EMULATED)
    assert all(s["healthy"] for s in services(obj).values()), obj["status"]
    assert obj["status"]["accountId"] == "000000000000"  # LocalStack's default account
    # The probes reached LocalStack (its request log), not some other endpoint.
    seen = "\n".join(localstack.requests())
    for call in (
        "sts.GetCallerIdentity",
        "s3.ListBuckets",
        "kinesis.ListStreams",
        "stepfunctions.ListStateMachines",
    ):
        assert re.search(rf"AWS {re.escape(call)} => 200", seen), (call, seen)


def test_cost_explorer_and_dynamodb_are_reported_unhealthy_by_name(
    crds: Kube, operator: OperatorProcess, localstack: LocalStackServer, namespace: str
) -> None:
    apply_connection(crds, namespace, localstack.url, services=(*EMULATED, "ce", "dynamodb"))
    obj = wait_for_condition(
        crds, "awsconnection", namespace, "conn", status="False", timeout=180, logs=operator.logs
    )
    by_name = services(obj)
    assert {n for n, s in by_name.items() if not s["healthy"]} == {"ce", "dynamodb"}, obj["status"]
    ready = condition(obj, "Ready")
    assert "ce" in ready["message"] and "dynamodb" in ready["message"], ready
    assert condition(obj, "Degraded")["status"] == "True"
    seen = "\n".join(localstack.requests())
    assert "AWS ce.GetCostAndUsage => 501" in seen or "AWS ce." in seen, seen
    assert re.search(r"AWS dynamodb\.\w+ => 500", seen), seen


def test_an_incident_policy_provisions_everything_but_its_table(
    crds: Kube, operator: OperatorProcess, localstack: LocalStackServer, namespace: str
) -> None:
    apply_connection(crds, namespace, localstack.url, services=EMULATED)
    wait_for_condition(crds, "awsconnection", namespace, "conn", timeout=120, logs=operator.logs)
    crds.apply(policy("prod", namespace, [{"name": "agent", "role": "responder"}]), namespace)

    def storage_settled(obj: dict[str, Any]) -> bool:
        storage = (obj.get("status") or {}).get("storage") or []
        return len(storage) == 4 and condition(obj, "StorageReady") is not None

    obj = wait_for(
        crds, "incidentpolicy", namespace, "prod", storage_settled, timeout=240, logs=operator.logs
    )
    states = {s["kind"]: s for s in obj["status"]["storage"]}
    assert {k: s["state"] for k, s in states.items()} == {
        "DynamoDBTable": "Failed",
        "KinesisStream": "Created",
        "S3Bucket": "Created",
        "StateMachine": "Created",
    }, obj["status"]["storage"]
    assert states["DynamoDBTable"]["message"].startswith("InternalError"), states["DynamoDBTable"]
    storage_ready = condition(obj, "StorageReady")
    assert (storage_ready["status"], storage_ready["reason"]) == ("False", "ProvisioningFailed")
    assert f"{namespace}-prod-incidents" in storage_ready["message"]
    assert condition(obj, "Ready")["status"] == "False"

    # The three resources exist in LocalStack, tagged as the policy's.
    names = obj["spec"]["storage"]
    owner = f"{namespace}/prod"
    stream = aws(localstack, "kinesis").describe_stream_summary(StreamName=names["eventStream"])
    assert stream["StreamDescriptionSummary"]["StreamStatus"] in ("CREATING", "ACTIVE")
    tags = aws(localstack, "s3").get_bucket_tagging(Bucket=names["artifactBucket"])["TagSet"]
    assert {"Key": "incidentcommander.io/policy", "Value": owner} in tags
    machines = aws(localstack, "stepfunctions").list_state_machines()["stateMachines"]
    assert names["stateMachine"] in {m["name"] for m in machines}


def test_budgets_on_localstack(
    crds: Kube, operator: OperatorProcess, localstack: LocalStackServer, namespace: str
) -> None:
    """The kind example's filter (Bedrock only) asks Cost Explorer nothing; the repository
    example's filter does and gets 501, which is a warning (CostExplorerAvailable=False), not what
    makes the budget not Ready. Both budgets need the ledger, a DynamoDB table: here that is
    LedgerUnavailable, named in Ready (on kind, LocalStack's image has DynamoDB Local)."""
    apply_connection(crds, namespace, localstack.url, services=EMULATED)
    wait_for_condition(crds, "awsconnection", namespace, "conn", timeout=120, logs=operator.logs)
    example = yaml.safe_load((EXAMPLES / "budgetpolicy.yaml").read_text())
    spec = {**example["spec"], "connectionRef": {"name": "conn"}}
    before = len(localstack.requests())
    crds.apply(
        {
            **example,
            "metadata": {"name": "ledger-only"},
            "spec": {**spec, "filter": {"services": ["Amazon Bedrock"]}},
        },
        namespace,
    )
    obj = wait_for_condition(
        crds, "budgetpolicy", namespace, "ledger-only", status="False", timeout=180, logs=operator.logs
    )
    ready = condition(obj, "Ready")
    assert ready["reason"] == "LedgerUnavailable", ready
    assert "CostExplorer" not in ready["message"]
    assert (condition(obj, "CostExplorerAvailable") or {}).get("reason") == "NotNeeded", obj["status"]
    assert not [r for r in localstack.requests()[before:] if "AWS ce." in r]

    crds.apply({**example, "metadata": {"name": "with-ce"}, "spec": spec}, namespace)
    obj = wait_for(
        crds,
        "budgetpolicy",
        namespace,
        "with-ce",
        lambda o: "license plan" in (condition(o, "CostExplorerAvailable") or {}).get("message", ""),
        timeout=180,
        describe="CostExplorerAvailable=False naming the Cost Explorer answer",
        logs=operator.logs,
    )
    ready, cost_explorer = condition(obj, "Ready"), condition(obj, "CostExplorerAvailable")
    # The ledger decides Ready; Cost Explorer's 501 is a warning of its own.
    assert (ready["status"], ready["reason"]) == ("False", "LedgerUnavailable"), ready
    assert "dynamodb" in ready["message"] and "license plan" not in ready["message"], ready
    assert (cost_explorer["status"], cost_explorer["reason"]) == ("False", "CostExplorerUnavailable")
    assert obj["status"]["lastCostExplorerQuery"]
    assert any("AWS ce.GetCostAndUsage => 501" in r for r in localstack.requests()), localstack.requests()
