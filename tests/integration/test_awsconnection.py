"""AwsConnection against the real apiserver and moto in server mode, with a fault proxy in between."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.controlplane.localcluster import free_port
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Kube, condition, wait_for_condition

pytestmark = pytest.mark.integration

MOTO_ACCOUNT = "123456789012"
# Distinctive key material: the last test greps logs, Events and status for it.
ACCESS_KEY = "AKIAICTESTMARKER0001"
SECRET_KEY = "icTestSecretMarker/neverLogged+0001"


def secret(name: str = "aws-creds", **data: str) -> dict[str, Any]:
    values = data or {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}


def connection(name: str, endpoint: str, services: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region": "us-east-1",
        "endpointUrl": endpoint,
        "credentials": {"secretRef": {"name": "aws-creds"}},
        "services": services,
        "probeInterval": "60s",
    }
    body.update(spec)
    return {
        "apiVersion": "incidentcommander.io/v1alpha1",
        "kind": "AwsConnection",
        "metadata": {"name": name},
        "spec": body,
    }


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(upstream=moto.url, port=free_port())
    fault_proxy.start()
    yield fault_proxy
    fault_proxy.stop()


def ready(kube: Kube, namespace: str, name: str, operator: OperatorProcess, **kwargs: Any) -> dict[str, Any]:
    return wait_for_condition(kube, "awsconnection", namespace, name, logs=operator.logs, **kwargs)


def test_valid_secret_is_ready_with_the_moto_account_within_10s(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    started = time.monotonic()
    crds.apply(connection("moto", moto.url, ["sts", "s3", "dynamodb", "kinesis", "stepfunctions"]), namespace)
    obj = ready(crds, namespace, "moto", operator, timeout=10)
    elapsed = time.monotonic() - started
    status = obj["status"]
    assert status["accountId"] == MOTO_ACCOUNT
    assert status["arn"].startswith("arn:aws:") and MOTO_ACCOUNT in status["arn"]
    assert [s["name"] for s in status["services"]] == ["sts", "s3", "dynamodb", "kinesis", "stepfunctions"]
    assert all(
        s["healthy"] and s["consecutiveFailures"] == 0 and "lastError" not in s for s in status["services"]
    )
    assert condition(obj, "CredentialsResolved")["reason"] == "Resolved"  # type: ignore[index]
    assert condition(obj, "Degraded")["status"] == "False"  # type: ignore[index]
    listing = crds.kubectl("get", "awsconnections", "-n", namespace).stdout
    assert "moto" in listing and MOTO_ACCOUNT in listing and "True" in listing
    print(f"Ready after {elapsed:.2f}s")

    version = obj["metadata"]["resourceVersion"]
    time.sleep(2)
    assert crds.get("awsconnection", namespace, "moto")["metadata"]["resourceVersion"] == version
    events = crds.kubectl(
        "get", "events", "-n", namespace, "-o", "jsonpath={range .items[*]}{.reason}{'\\n'}{end}"
    ).stdout.split()
    assert events == ["AllServicesHealthy"]


def test_missing_secret_then_created_becomes_ready_without_waiting_for_the_interval(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    crds.apply(connection("late", moto.url, ["sts"], probeInterval="1h"), namespace)
    obj = ready(crds, namespace, "late", operator, status="False", reason="SecretNotFound")
    assert condition(obj, "CredentialsResolved")["reason"] == "SecretNotFound"  # type: ignore[index]
    assert "aws-creds" in condition(obj, "Ready")["message"]  # type: ignore[index]
    crds.apply(secret(), namespace)
    ready(crds, namespace, "late", operator, timeout=10)


def test_secret_edit_re_resolves_credentials(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    crds.apply(secret(AWS_ACCESS_KEY_ID=ACCESS_KEY), namespace)
    crds.apply(connection("edited", moto.url, ["sts"], probeInterval="1h"), namespace)
    obj = ready(crds, namespace, "edited", operator, status="False", reason="KeyMissing")
    assert "AWS_SECRET_ACCESS_KEY" in condition(obj, "Ready")["message"]  # type: ignore[index]
    crds.apply(secret(), namespace)
    ready(crds, namespace, "edited", operator, timeout=10)
    crds.kubectl("delete", "secret", "aws-creds", "-n", namespace)
    ready(crds, namespace, "edited", operator, status="False", reason="SecretNotFound", timeout=10)


def test_spec_edit_probes_at_once(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    crds.apply(connection("grow", moto.url, ["sts"], probeInterval="1h"), namespace)
    ready(crds, namespace, "grow", operator)
    crds.kubectl(
        "patch",
        "awsconnection",
        "grow",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"services":["sts","s3","dynamodb"]}}',
    )
    obj = ready(crds, namespace, "grow", operator, timeout=10)
    assert obj["status"]["observedGeneration"] == 2
    assert [s["name"] for s in obj["status"]["services"]] == ["sts", "s3", "dynamodb"]


def test_connection_refused_then_recovery(
    crds: Kube, operator: OperatorProcess, proxy: FaultProxy, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    proxy.stop()
    crds.apply(
        connection(
            "refused",
            proxy.url,
            ["sts", "s3"],
            probeInterval="5s",
            retry={"maxAttempts": 2, "baseDelay": "100ms", "maxDelay": "200ms"},
        ),
        namespace,
    )
    obj = ready(crds, namespace, "refused", operator, status="False", reason="EndpointUnreachable")
    assert condition(obj, "Degraded")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "CredentialsResolved")["status"] == "Unknown"  # type: ignore[index]
    assert {s["lastError"]["code"] for s in obj["status"]["services"]} == {"EndpointConnectionError"}
    proxy.start()
    ready(crds, namespace, "refused", operator, timeout=30)


def test_slow_endpoint_times_out_then_recovers(
    crds: Kube, operator: OperatorProcess, proxy: FaultProxy, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    proxy.delay = 3.0
    proxy.set_fault("*", "slow")
    crds.apply(
        connection(
            "slow",
            proxy.url,
            ["sts"],
            probeInterval="5s",
            timeouts={"connect": "1s", "read": "1s"},
            retry={"maxAttempts": 1, "baseDelay": "100ms", "maxDelay": "200ms"},
        ),
        namespace,
    )
    obj = ready(crds, namespace, "slow", operator, status="False", reason="Timeout", timeout=20)
    assert obj["status"]["services"][0]["lastError"]["code"] == "ReadTimeoutError"
    proxy.set_fault("*", None)
    ready(crds, namespace, "slow", operator, timeout=30)


@pytest.mark.parametrize("fault", ["throttle-query", "throttle-429", "throttle-503"])
def test_throttling_is_retried_max_attempts_with_backoff(
    crds: Kube, operator: OperatorProcess, proxy: FaultProxy, namespace: str, fault: str
) -> None:
    max_attempts, base, cap = 4, 0.1, 0.4
    crds.apply(secret(), namespace)
    proxy.set_fault("sts", fault)
    since = time.monotonic()
    crds.apply(
        connection(
            "throttled",
            proxy.url,
            ["sts"],
            probeInterval="60s",
            retry={"maxAttempts": max_attempts, "baseDelay": "100ms", "maxDelay": "400ms"},
        ),
        namespace,
    )
    ready(crds, namespace, "throttled", operator, status="False", reason="Throttled")
    attempts = proxy.attempts_for("sts", since)
    assert len(attempts) == max_attempts
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    for retry, gap in enumerate(gaps, start=1):
        ceiling = min(cap, base * 2 ** (retry - 1))
        assert gap <= ceiling + 0.3, f"retry {retry} waited {gap:.3f}s, backoff ceiling {ceiling}s ({gaps})"
    proxy.set_fault("sts", None)
    crds.kubectl(
        "patch",
        "awsconnection",
        "throttled",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"probeInterval":"59s"}}',
    )
    ready(crds, namespace, "throttled", operator, timeout=10)


def test_one_dead_service_does_not_delay_the_others(
    crds: Kube, operator: OperatorProcess, proxy: FaultProxy, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    proxy.delay = 6.0
    proxy.set_fault("kinesis", "slow")
    crds.apply(
        connection(
            "partial",
            proxy.url,
            ["sts", "s3", "dynamodb", "kinesis"],
            probeInterval="60s",
            timeouts={"connect": "1s", "read": "2s"},
            retry={"maxAttempts": 1, "baseDelay": "100ms", "maxDelay": "200ms"},
        ),
        namespace,
    )
    obj = ready(crds, namespace, "partial", operator, status="False", reason="Timeout", timeout=20)
    services = {s["name"]: s for s in obj["status"]["services"]}
    assert not services["kinesis"]["healthy"]
    assert services["kinesis"]["latencyMs"] >= 1900
    for name in ("sts", "s3", "dynamodb"):
        assert services[name]["healthy"], services[name]
        assert services[name]["latencyMs"] < 1000, f"{name} waited for kinesis: {services[name]}"
    assert condition(obj, "Degraded")["status"] == "True"  # type: ignore[index]
    assert (
        "kinesis" in condition(obj, "Ready")["message"] and "s3 (" not in condition(obj, "Ready")["message"]
    )  # type: ignore[index]


def test_assume_role_with_the_secret_as_source_identity(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    role = {"roleArn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/responder", "sessionName": "ic-test"}
    manifest = connection("role", moto.url, ["sts"])
    manifest["spec"]["credentials"]["assumeRole"] = role
    crds.apply(manifest, namespace)
    obj = ready(crds, namespace, "role", operator)
    assert "assumed-role/responder/ic-test" in obj["status"]["arn"]
    assert "role arn:aws:iam" in condition(obj, "CredentialsResolved")["message"]  # type: ignore[index]


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto checking credentials against its IAM: unknown keys get InvalidClientTokenId."""
    server = MotoServer.start(
        tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}, name="moto-auth"
    )
    yield server
    server.stop()


def test_unknown_keys_are_reported_as_invalid_client_token(
    crds: Kube, operator: OperatorProcess, moto_with_auth: MotoServer, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    crds.apply(connection("badkeys", moto_with_auth.url, ["sts", "s3"]), namespace)
    obj = ready(crds, namespace, "badkeys", operator, status="False", reason="InvalidClientTokenId")
    assert condition(obj, "CredentialsResolved")["reason"] == "InvalidClientTokenId"  # type: ignore[index]
    role = connection("badrole", moto_with_auth.url, ["sts"])
    role["spec"]["credentials"]["assumeRole"] = {"roleArn": f"arn:aws:iam::{MOTO_ACCOUNT}:role/x"}
    crds.apply(role, namespace)
    obj = ready(crds, namespace, "badrole", operator, status="False", reason="AssumeRoleFailed")
    assert "InvalidClientTokenId" in condition(obj, "CredentialsResolved")["message"]  # type: ignore[index]


def test_key_material_never_leaves_the_secret(crds: Kube, operator: OperatorProcess) -> None:
    """Runs after the tests above (file order): their logs, Events and statuses must not hold the keys."""
    markers = (ACCESS_KEY, SECRET_KEY, base64.b64encode(SECRET_KEY.encode()).decode())
    log = operator.process.log_text()
    events = crds.kubectl("get", "events", "-A", "-o", "yaml").stdout
    statuses = crds.kubectl("get", "awsconnections", "-A", "-o", "jsonpath={.items[*].status}").stdout
    assert "awsconnection" in events.lower() and statuses
    for marker in markers:
        assert marker not in log
        assert marker not in events
        assert marker not in statuses
