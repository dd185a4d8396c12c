"""The CRDs on a real apiserver: admission rejects bad specs naming the field, accepts the examples,
and kubectl shows the printer columns and the category."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.integration.manifests import aws_connection, budget_policy, incident_policy, without
from tests.support.kube import Kube

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Invalid:
    id: str
    manifest: dict[str, Any]
    field: str
    says: str


def _aws_role(**assume: Any) -> dict[str, Any]:
    role = {"roleArn": "arn:aws:iam::123456789012:role/ops"}
    role.update(assume)
    return aws_connection(credentials={"assumeRole": role})


INVALID_ON_CREATE = [
    Invalid(
        "aws-missing-region", without(aws_connection(), "spec", "region"), "spec.region", "Required value"
    ),
    Invalid("aws-bad-region", aws_connection(region="EU_WEST"), "spec.region", "should match"),
    Invalid(
        "aws-endpoint-not-http",
        aws_connection(endpointUrl="ftp://moto:5000"),
        "spec.endpointUrl",
        "should match",
    ),
    Invalid(
        "aws-unknown-service",
        aws_connection(services=["sts", "ec2"]),
        "spec.services[1]",
        "Unsupported value",
    ),
    Invalid(
        "aws-duplicate-service",
        aws_connection(services=["sts", "sts"]),
        "spec.services[1]",
        "Duplicate value",
    ),
    Invalid(
        "aws-retry-mode", aws_connection(retry={"mode": "aggressive"}), "spec.retry.mode", "Unsupported value"
    ),
    Invalid(
        "aws-retry-attempts",
        aws_connection(retry={"maxAttempts": 0}),
        "spec.retry.maxAttempts",
        "greater than or equal to 1",
    ),
    Invalid(
        "aws-base-over-max-delay",
        aws_connection(retry={"baseDelay": "30s", "maxDelay": "5s"}),
        "spec.retry.baseDelay",
        "must not exceed retry.maxDelay",
    ),
    Invalid(
        "aws-probe-too-often", aws_connection(probeInterval="1s"), "spec.probeInterval", "between 5s and 24h"
    ),
    Invalid(
        "aws-probe-not-duration", aws_connection(probeInterval="soon"), "spec.probeInterval", "should match"
    ),
    Invalid(
        "aws-role-arn", _aws_role(roleArn="not-an-arn"), "spec.credentials.assumeRole.roleArn", "should match"
    ),
    Invalid(
        "aws-role-duration",
        _aws_role(durationSeconds=60),
        "spec.credentials.assumeRole.durationSeconds",
        "greater than or equal to 900",
    ),
    Invalid(
        "aws-secret-and-web-identity",
        aws_connection(
            credentials={
                "secretRef": {"name": "keys"},
                "webIdentity": {"tokenFile": "/t/token", "roleArn": "arn:aws:iam::123456789012:role/ops"},
            }
        ),
        "spec.credentials",
        "alternative source identities",
    ),
    Invalid(
        "aws-role-and-chain",
        aws_connection(
            credentials={
                "assumeRole": {"roleArn": "arn:aws:iam::123456789012:role/ops"},
                "assumeRoleChain": [{"roleArn": "arn:aws:iam::123456789012:role/ops"}],
            }
        ),
        "spec.credentials",
        "a single role is a chain of one",
    ),
    Invalid(
        "aws-chain-empty",
        aws_connection(credentials={"assumeRoleChain": []}),
        "spec.credentials.assumeRoleChain",
        "at least 1 items",
    ),
    Invalid(
        "aws-chain-too-long",
        aws_connection(
            credentials={
                "assumeRoleChain": [{"roleArn": f"arn:aws:iam::123456789012:role/r{i}"} for i in range(6)]
            }
        ),
        "spec.credentials.assumeRoleChain",
        "at most 5 items",
    ),
    Invalid(
        "aws-chain-hop-arn",
        aws_connection(
            credentials={
                "assumeRoleChain": [
                    {"roleArn": "arn:aws:iam::123456789012:role/ok"},
                    {"roleArn": "role/nope"},
                ]
            }
        ),
        "spec.credentials.assumeRoleChain[1].roleArn",
        "should match",
    ),
    Invalid(
        "aws-web-identity-relative-file",
        aws_connection(
            credentials={
                "webIdentity": {"tokenFile": "token", "roleArn": "arn:aws:iam::123456789012:role/ops"}
            }
        ),
        "spec.credentials.webIdentity.tokenFile",
        "should match",
    ),
    Invalid(
        "aws-web-identity-without-role",
        aws_connection(credentials={"webIdentity": {"tokenFile": "/t/token"}}),
        "spec.credentials.webIdentity.roleArn",
        "Required value",
    ),
    Invalid(
        "aws-connect-timeout",
        aws_connection(timeouts={"connect": "10m"}),
        "spec.timeouts.connect",
        "between 100ms and 5m",
    ),
    Invalid("budget-negative", budget_policy(limit={"amount": "-5"}), "spec.limit.amount", "should match"),
    Invalid("budget-zero", budget_policy(limit={"amount": "0.00"}), "spec.limit.amount", "greater than zero"),
    Invalid(
        "budget-currency",
        budget_policy(limit={"amount": "10", "currency": "EUR"}),
        "spec.limit.currency",
        "Unsupported value",
    ),
    Invalid(
        "budget-descending",
        budget_policy(
            thresholds=[{"percent": 80, "action": "Downgrade"}, {"percent": 50, "action": "Notify"}]
        ),
        "spec.thresholds",
        "strictly ascending",
    ),
    Invalid(
        "budget-equal-thresholds",
        budget_policy(thresholds=[{"percent": 50, "action": "Notify"}, {"percent": 50, "action": "Halt"}]),
        "spec.thresholds",
        "strictly ascending",
    ),
    Invalid(
        "budget-action",
        budget_policy(thresholds=[{"percent": 50, "action": "Panic"}]),
        "spec.thresholds[0].action",
        "Unsupported value",
    ),
    Invalid("budget-period", budget_policy(period="Weekly"), "spec.period", "Unsupported value"),
    Invalid(
        "budget-no-connection",
        without(budget_policy(), "spec", "connectionRef"),
        "spec.connectionRef",
        "Required value",
    ),
    Invalid(
        "budget-interval",
        budget_policy(evaluationInterval="1s"),
        "spec.evaluationInterval",
        "between 10s and 24h",
    ),
    Invalid(
        "budget-duplicate-pricing",
        budget_policy(
            pricing=[
                {"model": "m", "inputPer1kTokens": "0.1", "outputPer1kTokens": "0.2"},
                {"model": "m", "inputPer1kTokens": "0.3", "outputPer1kTokens": "0.4"},
            ]
        ),
        "spec.pricing[1]",
        "Duplicate value",
    ),
    Invalid(
        "policy-complexity",
        incident_policy(modelRouting={"simpleModel": "a", "complexModel": "b", "complexityThreshold": 1.5}),
        "spec.modelRouting.complexityThreshold",
        "less than or equal to 1",
    ),
    Invalid(
        "policy-sampling-floor",
        incident_policy(sampling={"detectionRate": 0.2, "minDetectionRate": 0.5}),
        "spec.sampling.minDetectionRate",
        "must not exceed sampling.detectionRate",
    ),
    Invalid(
        "policy-role",
        incident_policy(apiClients=[{"name": "a", "role": "root"}]),
        "spec.apiClients[0].role",
        "Unsupported value",
    ),
    Invalid(
        "policy-grace-over-rotation",
        incident_policy(
            apiClients=[{"name": "a", "role": "viewer", "rotationPeriod": "1h", "gracePeriod": "2h"}]
        ),
        "spec.apiClients[0].gracePeriod",
        "shorter than rotationPeriod",
    ),
    Invalid(
        "policy-client-name",
        incident_policy(apiClients=[{"name": "Agent_1", "role": "viewer"}]),
        "spec.apiClients[0].name",
        "should match",
    ),
    Invalid(
        "policy-jwt-alg",
        incident_policy(auth={"jwt": {"algorithm": "HS256"}}),
        "spec.auth.jwt.algorithm",
        "Unsupported value",
    ),
    Invalid(
        "policy-jwt-ttl",
        incident_policy(auth={"jwt": {"ttl": "48h"}}),
        "spec.auth.jwt.ttl",
        "between 30s and 24h",
    ),
    Invalid(
        "policy-bucket",
        incident_policy(storage={"artifactBucket": "Bad_Bucket"}),
        "spec.storage.artifactBucket",
        "should match",
    ),
    Invalid(
        "policy-severity-contradiction",
        incident_policy(severities=[{"name": "low", "autoRemediate": True, "requireApproval": True}]),
        "spec.severities[0]",
        "cannot both autoRemediate and requireApproval",
    ),
    Invalid(
        "policy-rate",
        incident_policy(auth={"rateLimit": {"requestsPerMinute": 0}}),
        "spec.auth.rateLimit.requestsPerMinute",
        "greater than or equal to 1",
    ),
]


@pytest.mark.parametrize("case", INVALID_ON_CREATE, ids=lambda c: c.id)
def test_admission_rejects_invalid_spec_naming_the_field(crds: Kube, namespace: str, case: Invalid) -> None:
    result = crds.apply(case.manifest, namespace, check=False)
    assert result.returncode != 0, f"{case.id} was admitted:\n{result.stdout}"
    assert "is invalid" in result.stderr, result.stderr
    assert case.field in result.stderr, f"field {case.field} not named:\n{result.stderr}"
    assert case.says in result.stderr, f"expected {case.says!r}:\n{result.stderr}"
    kind = case.manifest["kind"].lower()
    assert crds.get_or_none(kind, namespace, case.manifest["metadata"]["name"]) is None


MutateSpec = Callable[[dict[str, Any]], None]


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("incidentTable", lambda spec: spec["storage"].__setitem__("incidentTable", "other-table")),
        ("artifactBucket", lambda spec: spec["storage"].__setitem__("artifactBucket", "other-bucket")),
    ],
)
def test_storage_names_are_immutable(crds: Kube, namespace: str, field: str, mutate: MutateSpec) -> None:
    policy = incident_policy(storage={"incidentTable": "incidents", "artifactBucket": "artifacts"})
    crds.apply(policy, namespace)
    mutate(policy["spec"])
    result = crds.apply(policy, namespace, check=False)
    assert result.returncode != 0
    assert f"spec.storage.{field}" in result.stderr and "is immutable" in result.stderr, result.stderr


def test_defaults_are_filled_in_by_the_apiserver(crds: Kube, namespace: str) -> None:
    crds.apply(aws_connection(name="defaults"), namespace)
    crds.apply(incident_policy(name="defaults"), namespace)
    conn = crds.get("awsconnection", namespace, "defaults")["spec"]
    assert conn["probeInterval"] == "60s"
    assert conn["retry"] == {"mode": "standard", "maxAttempts": 3, "baseDelay": "200ms", "maxDelay": "20s"}
    assert conn["timeouts"] == {"connect": "5s", "read": "10s"}
    policy = crds.get("incidentpolicy", namespace, "defaults")["spec"]
    assert policy["auth"]["jwt"]["algorithm"] == "EdDSA"
    assert policy["storage"]["deletionPolicy"] == "Retain"
    assert policy["apiClients"][0]["rotationPeriod"] == "720h"
    assert [s["name"] for s in policy["severities"]] == ["critical", "high", "low"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted(crds: Kube, namespace: str, path: Any) -> None:
    result = crds.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr


def test_category_lists_all_three_kinds_with_printer_columns(crds: Kube, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    listing = crds.kubectl("get", "incidentcommander", "-n", namespace).stdout
    for header in (
        "READY",
        "REGION",
        "ACCOUNT",
        "PHASE",
        "UTILIZATION",
        "LIMIT",
        "CONNECTION",
        "BUDGET",
        "SAMPLING",
        "AGE",
    ):
        assert header in listing, listing
    for name in (
        "awsconnection.incidentcommander.io/emulator",
        "budgetpolicy.incidentcommander.io/platform-monthly",
        "incidentpolicy.incidentcommander.io/production",
    ):
        assert name in listing, listing
    all_namespaces = crds.kubectl("get", "incidentcommander", "-A").stdout
    assert "NAMESPACE" in all_namespaces and namespace in all_namespaces
    short = crds.kubectl("get", "awsconn,budget,incpol", "-n", namespace, "-o", "name").stdout.split()
    assert len(short) == 3
