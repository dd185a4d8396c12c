"""Every service of the AwsConnection enum, probed by the operator against real emulators.

moto serves every service but Bedrock; the Bedrock test double serves ``bedrock`` and
``bedrock-runtime`` and forwards the rest to moto, so one ``endpointUrl`` reaches all twelve.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from incident_commander.aws.probes import PROBES
from tests.controlplane.localcluster import free_port
from tests.integration.test_awsconnection import MOTO_ACCOUNT, connection, ready, secret
from tests.support.bedrock import BedrockDouble
from tests.support.endpoints import MotoServer, OperatorProcess
from tests.support.faultproxy import FaultProxy
from tests.support.kube import Kube, condition

pytestmark = pytest.mark.integration

EVERY_SERVICE = list(PROBES)


@pytest.fixture(scope="module")
def bedrock(moto: MotoServer) -> Iterator[BedrockDouble]:
    with BedrockDouble(upstream=moto.url) as double:
        yield double


def probed_operations(double: BedrockDouble, since: float) -> dict[str, set[str]]:
    """Signing name -> what reached the double (Bedrock operations by name, others as forwarded)."""
    seen: dict[str, set[str]] = {}
    for call in double.calls:
        if call.at >= since:
            seen.setdefault(call.service, set()).add(call.operation or "forwarded")
    return seen


def test_every_listed_service_is_probed_on_its_own_endpoint_and_healthy(
    crds: Kube, operator: OperatorProcess, bedrock: BedrockDouble, namespace: str
) -> None:
    crds.apply(secret(), namespace)
    since = time.monotonic()
    crds.apply(connection("everything", bedrock.url, EVERY_SERVICE), namespace)
    obj = ready(crds, namespace, "everything", operator, timeout=60)
    services = obj["status"]["services"]
    assert [s["name"] for s in services] == EVERY_SERVICE
    assert all(s["healthy"] and "lastError" not in s for s in services), services
    assert obj["status"]["accountId"] == MOTO_ACCOUNT
    assert condition(obj, "Ready")["message"].startswith("12 service(s) healthy")  # type: ignore[index]

    seen = probed_operations(bedrock, since)
    assert set(seen) == {p.signing_name for p in PROBES.values()}, seen
    assert seen["bedrock"] == {"ListFoundationModels", "ListAsyncInvokes"}
    [models] = [c for c in bedrock.calls_of("ListFoundationModels") if c.at >= since]
    assert models.region == "us-east-1" and models.access_key_id == "AKIAICTESTMARKER0001"


@pytest.fixture
def proxy(bedrock: BedrockDouble) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(upstream=bedrock.url, port=free_port())
    fault_proxy.start()
    yield fault_proxy
    fault_proxy.stop()


def test_each_probe_fails_on_its_own_service_and_is_classified(
    crds: Kube, operator: OperatorProcess, proxy: FaultProxy, namespace: str
) -> None:
    """Every service but STS throttled (429 in its own protocol's shape): each probe is retried,
    reported Throttled, and STS, untouched, still resolves the credentials."""
    throttled = {p.signing_name for s, p in PROBES.items() if s != "sts"}
    for signing_name in throttled:
        proxy.set_fault(signing_name, "throttle-429")
    crds.apply(secret(), namespace)
    since = time.monotonic()
    crds.apply(
        connection(
            "throttled",
            proxy.url,
            EVERY_SERVICE,
            retry={"maxAttempts": 2, "baseDelay": "100ms", "maxDelay": "200ms"},
        ),
        namespace,
    )
    obj = ready(crds, namespace, "throttled", operator, status="False", reason="Throttled", timeout=60)
    by_name = {s["name"]: s for s in obj["status"]["services"]}
    assert by_name.pop("sts")["healthy"]
    assert {name: s["healthy"] for name, s in by_name.items()} == dict.fromkeys(EVERY_SERVICE[1:], False)
    assert condition(obj, "CredentialsResolved")["status"] == "True"  # type: ignore[index]
    assert condition(obj, "Degraded")["status"] == "True"  # type: ignore[index]
    for signing_name in throttled - {"bedrock"}:
        assert len(proxy.attempts_for(signing_name, since)) == 2, signing_name
    assert len(proxy.attempts_for("bedrock", since)) == 4  # two services sign as bedrock


def test_a_bedrock_error_is_not_retried_and_affects_only_its_service(
    crds: Kube, operator: OperatorProcess, bedrock: BedrockDouble, namespace: str
) -> None:
    bedrock.fail(100, status=403, code="AccessDeniedException", operations=["ListAsyncInvokes"])
    try:
        crds.apply(secret(), namespace)
        since = time.monotonic()
        # Its own region tells its calls from those of connections left by earlier tests.
        manifest = connection(
            "denied", bedrock.url, ["sts", "bedrock", "bedrock-runtime"], region="eu-central-1"
        )
        crds.apply(manifest, namespace)
        obj = ready(crds, namespace, "denied", operator, status="False", reason="AccessDenied")
        attempts = [
            c.status
            for c in bedrock.calls_of("ListAsyncInvokes")
            if c.at >= since and c.region == "eu-central-1"
        ]
    finally:
        bedrock.reset()
    assert attempts == [403]  # access denied is not retried (maxAttempts is 3)
    by_name = {s["name"]: s for s in obj["status"]["services"]}
    assert by_name["bedrock"]["healthy"]
    assert by_name["bedrock-runtime"]["lastError"]["code"] == "AccessDeniedException"
    assert "bedrock-runtime (AccessDenied" in condition(obj, "Ready")["message"]  # type: ignore[index]


def test_moto_alone_does_not_emulate_the_bedrock_probes(
    crds: Kube, operator: OperatorProcess, moto: MotoServer, namespace: str
) -> None:
    """Pins the gap the double fills: moto 5 answers 500 (not implemented) to both Bedrock probes,
    so a connection to moto (or another emulator without Bedrock) that lists them is not Ready."""
    crds.apply(secret(), namespace)
    crds.apply(
        connection(
            "gap",
            moto.url,
            ["sts", "bedrock", "bedrock-runtime"],
            retry={"maxAttempts": 1, "baseDelay": "100ms", "maxDelay": "200ms"},
        ),
        namespace,
    )
    obj = ready(crds, namespace, "gap", operator, status="False", reason="ServiceError")
    errors: dict[str, Any] = {s["name"]: s.get("lastError") for s in obj["status"]["services"]}
    assert errors["sts"] is None
    assert errors["bedrock"]["code"] == errors["bedrock-runtime"]["code"] == "500"
